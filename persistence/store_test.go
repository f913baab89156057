package persistence

import (
	"errors"
	"fmt"
	"testing"

	"github.com/seckill/seckill/engine"
)

type storeFactory struct {
	name string
	// open returns a store and a function that closes it and opens it again
	// over the same data, as a restart would.
	open func(t testing.TB) (Store, func() Store)
}

var factories = []storeFactory{
	{"mem", func(t testing.TB) (Store, func() Store) {
		m := NewMem()
		return m, func() Store { return m }
	}},
	{"pebble", func(t testing.TB) (Store, func() Store) {
		dir := t.TempDir()
		p, err := OpenPebble(dir)
		if err != nil {
			t.Fatal(err)
		}
		cur := p
		t.Cleanup(func() { cur.Close() })
		return p, func() Store {
			if err := cur.Close(); err != nil {
				t.Fatal(err)
			}
			n, err := OpenPebble(dir)
			if err != nil {
				t.Fatal(err)
			}
			cur = n
			return n
		}
	}},
}

func TestStoreRoundTrip(t *testing.T) {
	for _, f := range factories {
		t.Run(f.name, func(t *testing.T) {
			s, reopen := f.open(t)
			cfgs := []engine.ItemConfig{
				{Item: "b-item", Stock: 7, Shards: 3, PerUserLimit: 2, StartsAtMs: 5, EndsAtMs: 99},
				{Item: "a:item.1", Stock: 100, Shards: 4, PerUserLimit: 1},
			}
			var b Batch
			for _, c := range cfgs {
				b.PutItem(c)
			}
			if err := s.Apply(&b); err != nil {
				t.Fatal(err)
			}
			shards := map[string][]*engine.Shard{}
			for _, c := range cfgs {
				for i := 0; i < c.Shards; i++ {
					shards[c.Item] = append(shards[c.Item], engine.NewShard(c, i))
				}
			}
			b.Reset()
			var waits []func() error // pipelined: submitted, waited at the end
			for u := 0; u < 60; u++ {
				c := cfgs[u%2]
				user := fmt.Sprintf("user-%d", u)
				sh := shards[c.Item][engine.ShardFor(c.Item, user, c.Shards)]
				d := sh.Grab(engine.GrabInput{User: user, Qty: 1, Key: fmt.Sprintf("key %d", u), NowMs: 10})
				if d.MustPersist() {
					b.PutGrab(d.Grab, d.Counters)
				}
				if u%7 == 0 { // several batches, submitted without waiting
					wait, err := s.Submit(&b)
					if err != nil {
						t.Fatal(err)
					}
					waits = append(waits, wait)
					b.Reset() // Submit has encoded it: b is free again
				}
			}
			if err := s.Apply(&b); err != nil {
				t.Fatal(err)
			}
			for i, wait := range waits {
				if err := wait(); err != nil {
					t.Fatalf("wait %d: %v", i, err)
				}
			}
			s = reopen()
			items, err := s.Items()
			if err != nil {
				t.Fatal(err)
			}
			if len(items) != 2 || items[0] != cfgs[1] || items[1] != cfgs[0] {
				t.Fatalf("items %+v", items)
			}
			for _, c := range items {
				loaded, err := LoadItem(s, c)
				if err != nil {
					t.Fatal(err)
				}
				for i, sh := range loaded.Shards {
					if sh.Counters() != shards[c.Item][i].Counters() || sh.Users() != shards[c.Item][i].Users() {
						t.Errorf("%s.%d loaded %+v/%d users, had %+v/%d", c.Item, i, sh.Counters(), sh.Users(),
							shards[c.Item][i].Counters(), shards[c.Item][i].Users())
					}
				}
			}
			if err := s.Close(); err != nil {
				t.Fatal(err)
			}
			if err := s.Apply(&b); !errors.Is(err, ErrClosed) {
				t.Fatalf("Apply after Close: %v", err)
			}
			if _, err := s.Submit(&b); !errors.Is(err, ErrClosed) {
				t.Fatalf("Submit after Close: %v", err)
			}
		})
	}
}

// TestLoadRejectsInconsistentShard: counters that claim more sold units than
// the grabs on disk hold must stop the load, not be believed.
func TestLoadRejectsInconsistentShard(t *testing.T) {
	for _, f := range factories {
		t.Run(f.name, func(t *testing.T) {
			s, _ := f.open(t)
			cfg := engine.ItemConfig{Item: "x", Stock: 10, Shards: 1, PerUserLimit: 1}
			var b Batch
			b.PutItem(cfg)
			b.PutGrab(engine.Grab{Item: "x", Shard: 0, Seq: 1, User: "u", Qty: 1, AtMs: 1},
				engine.Counters{Allocated: 10, Sold: 2, NextSeq: 3})
			if err := s.Apply(&b); err != nil {
				t.Fatal(err)
			}
			if _, err := LoadItem(s, cfg); err == nil {
				t.Fatal("loaded a shard whose counters disagree with its grabs")
			}
		})
	}
}

func TestCodecRoundTrip(t *testing.T) {
	g := engine.Grab{Item: "it", Shard: 1023, Seq: 1<<64 - 1, User: "u-1", Qty: 3, Key: "k ~!", AtMs: -5}
	k := grabKey(nil, g.Item, g.Shard, g.Seq)
	item, sh, seq, err := ParseGrabKey(k)
	if err != nil || item != g.Item || sh != g.Shard || seq != g.Seq {
		t.Fatalf("key round trip: %q %d %d %v", item, sh, seq, err)
	}
	got, err := DecodeGrab(item, sh, seq, encodeGrab(nil, g))
	if err != nil || got != g {
		t.Fatalf("grab round trip: %+v %v", got, err)
	}
	c := engine.Counters{Allocated: engine.MaxStock, Sold: 17, NextSeq: 18}
	if got, err := DecodeCounters(encodeCounters(nil, c)); err != nil || got != c {
		t.Fatalf("counters round trip: %+v %v", got, err)
	}
	cfg := engine.ItemConfig{Item: "i", Stock: 5, Shards: 2, PerUserLimit: 1, StartsAtMs: 1, EndsAtMs: 2}
	if got, err := DecodeItem("i", encodeItem(nil, cfg)); err != nil || got != cfg {
		t.Fatalf("item round trip: %+v %v", got, err)
	}
	for name, v := range map[string][]byte{
		"empty":       nil,
		"version":     {2},
		"trailing":    append(encodeCounters(nil, c), 0),
		"truncated":   encodeCounters(nil, c)[:2],
		"oversold":    encodeCounters(nil, engine.Counters{Allocated: 1, Sold: 2, NextSeq: 1}),
		"zero seq":    encodeCounters(nil, engine.Counters{Allocated: 1, NextSeq: 0}),
		"negative":    encodeCounters(nil, engine.Counters{Allocated: -1, NextSeq: 1}),
		"huge varint": {1, 0xff, 0xff, 0xff, 0xff, 0xff, 0xff, 0xff, 0xff, 0xff, 0xff, 0x01},
	} {
		if _, err := DecodeCounters(v); err == nil {
			t.Errorf("DecodeCounters accepted %s", name)
		}
	}
}

// TestLoadCompletesTransfersInFlight: a crash between the two sides of a
// transfer leaves units in transit; loading completes them once, durably.
func TestLoadCompletesTransfersInFlight(t *testing.T) {
	for _, f := range factories {
		t.Run(f.name, func(t *testing.T) {
			s, reopen := f.open(t)
			cfg := engine.ItemConfig{Item: "t", Stock: 100, Shards: 2, PerUserLimit: 1}
			pool := engine.NewPool(cfg)
			shards := []*engine.Shard{engine.NewShard(cfg, 0), engine.NewShard(cfg, 1)}
			var b Batch
			b.PutItem(cfg)
			// The pool sent 7 units to shard 1 (durable), the shard never heard.
			pool.Grant(1, 7)
			b.PutPool(cfg.Item, pool.State())
			// Shard 0 gave 5 units back (durable), the pool never heard.
			shards[0].GiveBack(5)
			b.PutCounters(cfg.Item, 0, shards[0].Counters())
			if err := s.Apply(&b); err != nil {
				t.Fatal(err)
			}
			for round := 0; round < 2; round++ { // loading twice changes nothing more
				s = reopen()
				loaded, err := LoadItem(s, cfg)
				if err != nil {
					t.Fatal(err)
				}
				c0, c1 := loaded.Shards[0].Counters(), loaded.Shards[1].Counters()
				if c1.Allocated != 25+7 || c1.Received != 7 || c0.Allocated != 25-5 || loaded.Pool.Available() != 50-7+5 {
					t.Fatalf("round %d: shard0 %+v shard1 %+v pool %d", round, c0, c1, loaded.Pool.Available())
				}
				if b := engine.Account(loaded.Pool, []engine.Counters{c0, c1}); b.InTransit != 0 || b.Check() != nil {
					t.Fatalf("round %d: %+v", round, b)
				}
			}
		})
	}
}

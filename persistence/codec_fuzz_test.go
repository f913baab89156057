package persistence

import (
	"bytes"
	"encoding/binary"
	"testing"

	"github.com/seckill/seckill/engine"
)

// Every decoder must reject or accept without panicking, and what it accepts
// must encode back to the same bytes (one spelling per record).

func FuzzDecodeGrab(f *testing.F) {
	f.Add(encodeGrab(nil, engine.Grab{User: "u", Qty: 1, Key: "k", AtMs: 9}))
	f.Add([]byte{1, 200, 1})
	f.Fuzz(func(t *testing.T, v []byte) {
		g, err := DecodeGrab("it", 3, 7, v)
		if err != nil {
			return
		}
		if !bytes.Equal(encodeGrab(nil, g), v) {
			t.Fatalf("%x decoded to %+v which encodes differently", v, g)
		}
		// Strings cut from a shared arena (a shard's load) are the same
		// strings, and later cuts do not change earlier ones.
		var a strArena
		g1, err1 := decodeGrab("it", 3, 7, v, &a)
		g2, err2 := decodeGrab("it", 3, 7, v, &a)
		if err1 != nil || err2 != nil || g1 != g || g2 != g {
			t.Fatalf("%x through an arena: %+v %v, %+v %v; want %+v", v, g1, err1, g2, err2, g)
		}
	})
}

func FuzzDecodeCounters(f *testing.F) {
	f.Add(encodeCounters(nil, engine.Counters{Allocated: 10, Sold: 3, NextSeq: 4}))
	f.Fuzz(func(t *testing.T, v []byte) {
		c, err := DecodeCounters(v)
		if err != nil {
			return
		}
		if c.Sold > c.Allocated || c.Sold < 0 || c.NextSeq == 0 {
			t.Fatalf("accepted broken counters %+v", c)
		}
	})
}

func FuzzDecodeItem(f *testing.F) {
	f.Add(encodeItem(nil, engine.ItemConfig{Item: "i", Stock: 10, Shards: 2, PerUserLimit: 1}))
	f.Fuzz(func(t *testing.T, v []byte) {
		c, err := DecodeItem("i", v)
		if err != nil {
			return
		}
		if err := c.Validate(); err != nil {
			t.Fatalf("accepted invalid item %+v: %v", c, err)
		}
	})
}

func FuzzParseGrabKey(f *testing.F) {
	f.Add(grabKey(nil, "item", 5, 99))
	f.Add([]byte("g\x00\x00\x00"))
	f.Fuzz(func(t *testing.T, k []byte) {
		item, sh, seq, err := ParseGrabKey(k)
		if err != nil {
			return
		}
		if !bytes.Equal(grabKey(nil, item, sh, seq), k) {
			t.Fatalf("%q parsed to %q %d %d", k, item, sh, seq)
		}
	})
}

func FuzzDecodePool(f *testing.F) {
	f.Add(encodePool(nil, engine.PoolState{Stock: 10, Pool: 4, Sent: []int64{1, 2}, Got: []int64{0, 1}}))
	f.Add([]byte{1, 2, 2, 0xff, 0xff, 0xff, 0x0f})
	f.Fuzz(func(t *testing.T, v []byte) {
		st, err := DecodePool(v)
		if err != nil {
			return
		}
		if len(st.Sent) != len(st.Got) || len(st.Sent) > engine.MaxShards || st.Pool < 0 || st.Pool > st.Stock {
			t.Fatalf("accepted %+v", st)
		}
	})
}

func FuzzDecodeOrder(f *testing.F) {
	o := engine.NewOrder(engine.Grab{Item: "i", Shard: 1, Seq: 2, User: "u", Qty: 1, AtMs: 5}, 6, 100)
	f.Add(o.GrabID, encodeOrder(nil, o))
	f.Fuzz(func(t *testing.T, id string, v []byte) {
		got, err := DecodeOrder(id, v)
		if err != nil {
			return
		}
		if got.GrabID != id || got.State < engine.PendingPayment || got.State > engine.Cancelled || !engine.ValidID(got.User) {
			t.Fatalf("accepted %+v", got)
		}
	})
}

func FuzzDecodeCursor(f *testing.F) {
	f.Add([]byte{1, 5})
	f.Fuzz(func(t *testing.T, v []byte) {
		if seq, err := DecodeCursor(v); err == nil && !bytes.Equal(binary.AppendUvarint([]byte{1}, seq), v) {
			t.Fatalf("%x decoded to %d", v, seq)
		}
	})
}

func FuzzDecodeShardSnapshot(f *testing.F) {
	for _, s := range snapshotSeeds(f) {
		f.Add(AppendShardSnapshot(nil, s))
	}
	f.Add([]byte{1, 1, 'i', 0, 0, 0, 0, 2, 0, 0, 1})
	f.Fuzz(func(t *testing.T, v []byte) {
		s, err := DecodeShardSnapshot(v)
		if err != nil {
			return
		}
		if !bytes.Equal(AppendShardSnapshot(nil, s), v) {
			t.Fatalf("%x decoded to %+v which encodes differently", v, s)
		}
		if err := CheckShardSnapshot(s); err != nil {
			t.Fatalf("accepted %+v: %v", s, err)
		}
		// What decodes either restores or is refused; it never panics.
		cfg := engine.ItemConfig{Item: s.Item, Stock: 100, Shards: s.Shard + 1, PerUserLimit: engine.MaxPerUserLimit}
		if sh, err := engine.RestoreSnapshot(cfg, s); err == nil {
			if err := sh.Verify(); err != nil {
				t.Fatalf("restored a broken shard: %v", err)
			}
		}
	})
}

package persistence

import (
	"fmt"
	"sync"
	"sync/atomic"
	"testing"

	"github.com/seckill/seckill/engine"
)

func TestOrderStore(t *testing.T) {
	dir := t.TempDir()
	s, err := OpenPebbleOrders(dir)
	if err != nil {
		t.Fatal(err)
	}
	mk := func(item string, seq uint64, atMs int64) engine.Order {
		return engine.NewOrder(engine.Grab{Item: item, Shard: 0, Seq: seq, User: fmt.Sprint("u", seq), Qty: 1, AtMs: atMs}, atMs, 100)
	}
	a1, a2, ab := mk("a", 1, 1000), mk("a", 2, 2000), mk("a.b", 1, 1500)
	if n, err := s.WriteNew([]engine.Order{a1, a2, ab, a1}); n != 3 || err != nil {
		t.Fatalf("first write: %d %v", n, err)
	}
	// Redelivery: the same orders again make nothing new.
	if n, err := s.WriteNew([]engine.Order{a2, ab}); n != 0 || err != nil {
		t.Fatalf("rewrite: %d %v", n, err)
	}
	var ids []string
	if err := s.Scan("a", func(o engine.Order) error { ids = append(ids, o.GrabID); return nil }); err != nil || len(ids) != 2 {
		t.Fatalf("scan a: %v %v", ids, err)
	}
	due, err := s.Due(1150, 10)
	if err != nil || len(due) != 1 || due[0].GrabID != a1.GrabID {
		t.Fatalf("due at 1150: %+v %v", due, err)
	}
	if _, out, err := s.Update(a1.GrabID, func(o engine.Order) (engine.Order, engine.OrderOutcome) { return o.Expire(1150) }); out != engine.OrderChanged || err != nil {
		t.Fatalf("expire: %v %v", out, err)
	}
	if due, _ := s.Due(1150, 10); len(due) != 0 {
		t.Fatalf("a cancelled order is still due: %+v", due)
	}
	if _, _, err := s.Update("a.0.99", func(o engine.Order) (engine.Order, engine.OrderOutcome) { return o.Pay(1) }); err != ErrNoOrder {
		t.Fatalf("update of a missing order: %v", err)
	}
	// Pay and cancel race: exactly one wins.
	var paid, cancelled atomic.Int64
	var wg sync.WaitGroup
	for i := 0; i < 20; i++ {
		wg.Go(func() {
			_, out, _ := s.Update(a2.GrabID, func(o engine.Order) (engine.Order, engine.OrderOutcome) { return o.Pay(2050) })
			if out == engine.OrderChanged {
				paid.Add(1)
			}
		})
		wg.Go(func() {
			_, out, _ := s.Update(a2.GrabID, func(o engine.Order) (engine.Order, engine.OrderOutcome) { return o.Cancel(a2.User, 2050) })
			if out == engine.OrderChanged {
				cancelled.Add(1)
			}
		})
	}
	wg.Wait()
	if paid.Load()+cancelled.Load() != 1 {
		t.Fatalf("paid %d times and cancelled %d times", paid.Load(), cancelled.Load())
	}
	s.Close()
	s, err = OpenPebbleOrders(dir)
	if err != nil {
		t.Fatal(err)
	}
	defer s.Close()
	o, ok, err := s.Get(a1.GrabID)
	if !ok || err != nil || o.State != engine.Cancelled || o.Reason != "timeout" {
		t.Fatalf("after reopen: %+v %v %v", o, ok, err)
	}
}

func TestRelayCursorAndOutbox(t *testing.T) {
	for _, f := range factories {
		t.Run(f.name, func(t *testing.T) {
			s, reopen := f.open(t)
			cfg := engine.ItemConfig{Item: "o", Stock: 100, Shards: 1, PerUserLimit: 1}
			sh := engine.NewShard(cfg, 0)
			var b Batch
			b.PutItem(cfg)
			for i := 0; i < 5; i++ {
				d := sh.Grab(engine.GrabInput{User: fmt.Sprint("u", i), Qty: 1, NowMs: 1})
				b.PutGrab(d.Grab, d.Counters)
			}
			b.PutCursor("o", 0, 2)
			if err := s.Apply(&b); err != nil {
				t.Fatal(err)
			}
			s = reopen()
			if c, err := s.RelayCursor("o", 0); c != 2 || err != nil {
				t.Fatalf("cursor %d %v", c, err)
			}
			if c, err := s.RelayCursor("o", 1); c != 0 || err != nil {
				t.Fatalf("absent cursor %d %v", c, err)
			}
			var seqs []uint64
			if err := s.GrabsAfter("o", 0, 2, 2, func(g engine.Grab) error { seqs = append(seqs, g.Seq); return nil }); err != nil || fmt.Sprint(seqs) != "[3 4]" {
				t.Fatalf("grabs after 2: %v %v", seqs, err)
			}
		})
	}
}

package orders

import (
	"context"
	"fmt"
	"sync/atomic"
	"testing"

	"github.com/seckill/seckill/engine"
	"github.com/seckill/seckill/persistence"
	"github.com/seckill/seckill/sale"
)

func TestReconcileFindsEachMismatch(t *testing.T) {
	var clock atomic.Int64
	clock.Store(100_000)
	n, o, store := startOrders(t, &clock)
	cfg := engine.ItemConfig{Item: "rc", Stock: 10, Shards: 2, PerUserLimit: 1}
	if err := n.CreateItem(cfg); err != nil {
		t.Fatal(err)
	}
	var grabs []engine.Grab
	for i := 0; i < 5; i++ {
		r := grabRetrying(t, n, "rc", fmt.Sprint("u", i), "k")
		if r.Outcome != engine.Confirmed {
			t.Fatal(r.Outcome, r.Err)
		}
		grabs = append(grabs, r.Grab)
	}
	stream := map[string]bool{}
	reader := func(ctx context.Context, item string, fn func(string, int64) error) error {
		for id := range stream {
			if err := fn(id, clock.Load()); err != nil {
				return err
			}
		}
		return nil
	}
	report := func() sale.Report {
		t.Helper()
		rep, err := Reconcile(context.Background(), store, o.store, reader, cfg, clock.Load(), false)
		if err != nil {
			t.Fatal(err)
		}
		return rep
	}
	// Fresh grabs are in flight, not missing.
	if rep := report(); !rep.Clean || rep.InFlight == 0 {
		t.Fatalf("young grabs: %+v", rep)
	}
	clock.Add(ReconcileGraceMs)
	for _, g := range grabs {
		stream[g.ID()] = true
		o.Write([]Msg{{Grab: g}})
	}
	if rep := report(); !rep.Clean || rep.InStream != 5 || rep.Orders["pending_payment"] != 5 {
		t.Fatalf("all in place: %+v", rep)
	}
	// Break one thing of each kind.
	delete(stream, grabs[0].ID())                                                                                      // grab_not_in_stream
	stream["rc.1.99"] = true                                                                                           // message_without_grab
	o.store.WriteNew([]engine.Order{{GrabID: "rc.0.77", Item: "rc", User: "x", Qty: 1, State: engine.PendingPayment}}) // order_without_grab
	n.Release("rc", grabs[1].ID())                                                                                     // released_not_cancelled
	o.store.Update(grabs[2].ID(), func(ord engine.Order) (engine.Order, engine.OrderOutcome) { return ord.Cancel(ord.User, 1) })
	o.store.MarkReleased(grabs[2].ID()) // cancelled_not_released
	rep := report()
	got := map[string][]string{}
	for _, m := range rep.Mismatches {
		got[m.Kind] = m.GrabIDs
	}
	want := map[string]string{
		"grab_not_in_stream":     grabs[0].ID(),
		"message_without_grab":   "rc.1.99",
		"order_without_grab":     "rc.0.77",
		"released_not_cancelled": grabs[1].ID(),
		"cancelled_not_released": grabs[2].ID(),
	}
	if rep.Clean || len(got) != len(want) {
		t.Fatalf("mismatches %+v", rep.Mismatches)
	}
	for k, id := range want {
		if len(got[k]) != 1 || got[k][0] != id {
			t.Errorf("%s: %v, want [%s]", k, got[k], id)
		}
	}
}

// TestLiveReconcileIgnoresGrabsAfterItsSnapshot: a grab made while the
// report is being built (after its snapshot) with its message and order
// already in place is not a mismatch live; offline it would be.
func TestLiveReconcileIgnoresGrabsAfterItsSnapshot(t *testing.T) {
	var clock atomic.Int64
	clock.Store(100_000)
	n, o, store := startOrders(t, &clock)
	cfg := engine.ItemConfig{Item: "live", Stock: 10, Shards: 1, PerUserLimit: 1}
	if err := n.CreateItem(cfg); err != nil {
		t.Fatal(err)
	}
	for _, live := range []bool{true, false} {
		user := fmt.Sprint("during-", live)
		reader := func(ctx context.Context, item string, fn func(string, int64) error) error {
			// Runs after the snapshot: a sale goes on meanwhile.
			r := grabRetrying(t, n, "live", user, "k")
			if r.Outcome != engine.Confirmed {
				t.Fatal(r.Outcome, r.Err)
			}
			o.Write([]Msg{{Grab: r.Grab}})
			return fn(r.Grab.ID(), clock.Load())
		}
		rep, err := Reconcile(context.Background(), store, o.store, reader, cfg, clock.Load(), live)
		if err != nil {
			t.Fatal(err)
		}
		if rep.Clean != live {
			t.Fatalf("live=%v: clean %v, mismatches %+v", live, rep.Clean, rep.Mismatches)
		}
	}
}

// TestLiveReconcileReportsForgedGrabs: a message or an order whose grab
// was never confirmed (an id past what its shard confirmed, or a shard the
// item does not have) is a mismatch in the live report once it is older
// than the in-flight allowance, as it is offline at once; younger, only an
// id its shard may still confirm is in flight.
func TestLiveReconcileReportsForgedGrabs(t *testing.T) {
	var clock atomic.Int64
	clock.Store(1_000_000)
	n, o, store := startOrders(t, &clock)
	cfg := engine.ItemConfig{Item: "fk", Stock: 10, Shards: 2, PerUserLimit: 1}
	if err := n.CreateItem(cfg); err != nil {
		t.Fatal(err)
	}
	r := grabRetrying(t, n, "fk", "real", "k")
	if r.Outcome != engine.Confirmed {
		t.Fatal(r.Outcome, r.Err)
	}
	clock.Add(ReconcileGraceMs)
	o.Write([]Msg{{Grab: r.Grab}})
	now := clock.Load()
	for _, tc := range []struct {
		name     string
		id       string
		message  bool  // forged onto the stream (else: an order only)
		ageMs    int64 // how long ago it was stored or written
		live     bool
		mismatch string // "" : clean, in flight
	}{
		{"young message past the shard", "fk.1.999", true, 1_000, true, ""},
		{"old message past the shard", "fk.1.999", true, ReconcileGraceMs, true, "message_without_grab"},
		{"young order past the shard", "fk.0.999", false, 1_000, true, ""},
		{"old order past the shard", "fk.0.999", false, ReconcileGraceMs + 5_000, true, "order_without_grab"},
		{"young message of no shard", "fk.7.1", true, 1_000, true, "message_without_grab"},
		{"young order of no shard", "fk.7.1", false, 0, true, "order_without_grab"},
		{"young message offline", "fk.1.999", true, 1_000, false, "message_without_grab"},
	} {
		t.Run(tc.name, func(t *testing.T) {
			stream := map[string]int64{r.Grab.ID(): now}
			ostore, err := persistence.OpenPebbleOrders(t.TempDir())
			if err != nil {
				t.Fatal(err)
			}
			defer ostore.Close()
			ostore.WriteNew([]engine.Order{engine.NewOrder(r.Grab, now, 900_000)})
			if tc.message {
				stream[tc.id] = now - tc.ageMs
			}
			// Its order is written (as the writers would) either way.
			forged := engine.Grab{Item: "fk", User: "victim", Qty: 1}
			forged.Item, forged.Shard, forged.Seq, _ = engine.ParseGrabID(tc.id)
			ostore.WriteNew([]engine.Order{engine.NewOrder(forged, now-tc.ageMs, 900_000)})
			reader := func(ctx context.Context, item string, fn func(string, int64) error) error {
				for id, at := range stream {
					if err := fn(id, at); err != nil {
						return err
					}
				}
				return nil
			}
			rep, err := Reconcile(context.Background(), store, ostore, reader, cfg, now, tc.live)
			if err != nil {
				t.Fatal(err)
			}
			if tc.mismatch == "" {
				if !rep.Clean {
					t.Fatalf("want clean (in flight): %+v", rep)
				}
				return
			}
			found := false
			for _, m := range rep.Mismatches {
				if m.Kind == tc.mismatch && len(m.GrabIDs) == 1 && m.GrabIDs[0] == tc.id {
					found = true
				}
			}
			if rep.Clean || !found {
				t.Fatalf("want %s naming %s: %+v", tc.mismatch, tc.id, rep)
			}
		})
	}
}

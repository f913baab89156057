package orders

import (
	"errors"
	"fmt"
	"sync"
	"sync/atomic"
	"testing"

	"github.com/seckill/seckill/actors"
	"github.com/seckill/seckill/engine"
	"github.com/seckill/seckill/persistence"
	"github.com/seckill/seckill/sale"
)

// The local node is the order side's stock.
var _ Stock = (*actors.Local)(nil)

// startOrders runs orders beside a live node over an in-memory store,
// which it returns for Reconcile.
func startOrders(t *testing.T, clock *atomic.Int64) (*actors.Node, *Orders, persistence.Store) {
	t.Helper()
	store := persistence.NewMem()
	n, err := actors.Start(store, actors.Options{Clock: clock.Load})
	if err != nil {
		t.Fatal(err)
	}
	t.Cleanup(func() { n.Close() })
	os, err := persistence.OpenPebbleOrders(t.TempDir())
	if err != nil {
		t.Fatal(err)
	}
	t.Cleanup(func() { os.Close() })
	return n, New(actors.NewLocal(n), os, nil), store
}

// grabRetrying grabs like a real client: a 503 is retried with the same key.
func grabRetrying(t *testing.T, n *actors.Node, item, user, key string) sale.Reply {
	t.Helper()
	for attempt := 0; ; attempt++ {
		r := n.Grab(item, user, 1, key)
		if !errors.Is(r.Err, sale.ErrUnavailable) || attempt == 50 {
			return r
		}
	}
}

func mustItem(t *testing.T, n *actors.Node, id string) *actors.Item {
	t.Helper()
	it, ok := n.Item(id)
	if !ok {
		t.Fatalf("no item %s", id)
	}
	return it
}

func TestOrderLifecycle(t *testing.T) {
	var clock atomic.Int64
	clock.Store(10_000)
	n, o, _ := startOrders(t, &clock)
	if err := n.CreateItem(engine.ItemConfig{Item: "o", Stock: 3, Shards: 1, PerUserLimit: 1, PaymentWindowMs: 5000}); err != nil {
		t.Fatal(err)
	}
	var grabs []engine.Grab
	for _, u := range []string{"a", "b", "c"} {
		r := n.Grab("o", u, 1, "k")
		if r.Outcome != engine.Confirmed {
			t.Fatalf("%s: %v %v", u, r.Outcome, r.Err)
		}
		grabs = append(grabs, r.Grab)
	}
	if _, err := o.Get(grabs[0].ID()); !errors.Is(err, sale.ErrProcessing) {
		t.Fatalf("before the order is written: %v", err)
	}
	if _, err := o.Get("o.0.99"); !errors.Is(err, sale.ErrNoOrder) {
		t.Fatalf("unknown grab: %v", err)
	}
	msgs := []Msg{{Grab: grabs[0]}, {Grab: grabs[1]}, {Grab: grabs[2]}, {Grab: grabs[0]}}
	if failed := o.Write(msgs); failed != nil {
		t.Fatal(failed)
	}
	if failed := o.Write(msgs[:2]); failed != nil { // redelivery
		t.Fatal(failed)
	}
	if ord, err := o.Get(grabs[0].ID()); err != nil || ord.State != engine.PendingPayment || ord.PayByMs != 15_000 {
		t.Fatalf("order %+v %v", ord, err)
	}
	// a pays; b cancels (twice); another user cannot cancel c.
	if ord, out, err := o.Pay(grabs[0].ID()); err != nil || out != engine.OrderChanged || ord.State != engine.Paid {
		t.Fatalf("pay: %+v %v %v", ord, out, err)
	}
	if _, out, _ := o.Cancel(grabs[0].ID(), "a"); out != engine.OrderConflict {
		t.Fatalf("cancel of a paid order: %v", out)
	}
	for i := 0; i < 2; i++ {
		if ord, _, err := o.Cancel(grabs[1].ID(), "b"); err != nil || ord.State != engine.Cancelled {
			t.Fatalf("cancel %d: %+v %v", i, ord, err)
		}
	}
	if _, _, err := o.Cancel(grabs[2].ID(), "a"); !errors.Is(err, sale.ErrNotBuyer) {
		t.Fatalf("cancel by another user: %v", err)
	}
	it := mustItem(t, n, "o")
	if b := it.Balance(); b.Sold != 2 || b.Remaining() != 1 {
		t.Fatalf("after one cancel: %+v", b)
	}
	// c never pays: the sweeper cancels it once the window closes.
	if k, err := o.Sweep(); k != 0 || err != nil {
		t.Fatalf("early sweep cancelled %d: %v", k, err)
	}
	clock.Store(15_000)
	if k, err := o.Sweep(); k != 1 || err != nil {
		t.Fatalf("sweep cancelled %d: %v", k, err)
	}
	if ord, _ := o.Get(grabs[2].ID()); ord.State != engine.Cancelled || ord.Reason != "timeout" {
		t.Fatalf("unpaid order %+v", ord)
	}
	if b := it.Balance(); b.Sold != 1 || b.Remaining() != 2 || b.Check() != nil {
		t.Fatalf("after the timeout: %+v", b)
	}
	// The returned units sell again, to b and c too.
	for _, u := range []string{"b", "c"} {
		if r := n.Grab("o", u, 1, "again"); r.Outcome != engine.Confirmed {
			t.Fatalf("%s again: %v %v", u, r.Outcome, r.Err)
		}
	}
}

// TestCancelRacesTimeoutAndPayment: cancel, timeout and payment race on
// many orders; each order ends paid or cancelled, and each cancelled
// order's unit comes back exactly once.
func TestCancelRacesTimeoutAndPayment(t *testing.T) {
	var clock atomic.Int64
	clock.Store(1000)
	n, o, _ := startOrders(t, &clock)
	const units = 60
	if err := n.CreateItem(engine.ItemConfig{Item: "race", Stock: units, Shards: 4, PerUserLimit: 1, PaymentWindowMs: 1000}); err != nil {
		t.Fatal(err)
	}
	var grabs []engine.Grab
	for i := 0; i < units; i++ {
		r := grabRetrying(t, n, "race", fmt.Sprint("u", i), "k")
		if r.Outcome != engine.Confirmed {
			t.Fatalf("grab %d: %v %v", i, r.Outcome, r.Err)
		}
		grabs = append(grabs, r.Grab)
		if failed := o.Write([]Msg{{Grab: r.Grab}}); failed != nil {
			t.Fatal(failed)
		}
	}
	clock.Store(1999) // a payment may still land; the sweep at 2000 may not
	var wg sync.WaitGroup
	for i, g := range grabs {
		wg.Go(func() { o.Cancel(g.ID(), g.User) })
		wg.Go(func() { o.Cancel(g.ID(), g.User) })
		if i%2 == 0 {
			wg.Go(func() { o.Pay(g.ID()) })
		}
	}
	wg.Go(func() {
		clock.Store(2000)
		o.Sweep()
	})
	wg.Wait()
	if _, err := o.Sweep(); err != nil {
		t.Fatal(err)
	}
	var paid, cancelled int64
	for _, g := range grabs {
		ord, err := o.Get(g.ID())
		if err != nil {
			t.Fatal(err)
		}
		switch ord.State {
		case engine.Paid:
			paid++
		case engine.Cancelled:
			cancelled++
		default:
			t.Fatalf("order %s still %v", g.ID(), ord.State)
		}
	}
	b := mustItem(t, n, "race").Balance()
	if paid+cancelled != units || b.Sold != paid || b.Remaining() != cancelled || b.Check() != nil {
		t.Fatalf("paid %d cancelled %d, balance %+v", paid, cancelled, b)
	}
}

package actors

import (
	"errors"
	"fmt"
	"sync"
	"sync/atomic"
	"testing"

	"github.com/seckill/seckill/engine"
	"github.com/seckill/seckill/persistence"
)

// grabRetrying grabs like a real client: a 503 is retried with the same key.
func grabRetrying(t *testing.T, n *Node, item, user, key string) Reply {
	t.Helper()
	for attempt := 0; ; attempt++ {
		r := n.Grab(item, user, 1, key)
		if !errors.Is(r.Err, ErrUnavailable) || attempt == 50 {
			return r
		}
	}
}

// TestEveryUnitSellsAcrossManyShards: 100 units over 64 shards (most hold
// zero or one unit) are all sold to 100 buyers; the 101st hears sold out.
func TestEveryUnitSellsAcrossManyShards(t *testing.T) {
	n := startNode(t, persistence.NewMem())
	defer n.Close()
	if err := n.CreateItem(engine.ItemConfig{Item: "few", Stock: 100, Shards: 64, PerUserLimit: 1}); err != nil {
		t.Fatal(err)
	}
	var confirmed atomic.Int64
	var wg sync.WaitGroup
	for w := 0; w < 10; w++ {
		wg.Go(func() {
			for i := 0; i < 10; i++ {
				u := fmt.Sprintf("user-%d-%d", w, i)
				r := grabRetrying(t, n, "few", u, "k-"+u)
				if r.Err != nil || r.Outcome != engine.Confirmed {
					t.Errorf("%s: %v %v", u, r.Outcome, r.Err)
					continue
				}
				confirmed.Add(1)
			}
		})
	}
	wg.Wait()
	if confirmed.Load() != 100 {
		t.Fatalf("%d of 100 buyers got a unit", confirmed.Load())
	}
	if r := grabRetrying(t, n, "few", "user-101", "k"); r.Outcome != engine.SoldOut {
		t.Fatalf("101st buyer: %v %v", r.Outcome, r.Err)
	}
	it := n.mustItem(t, "few")
	if b := it.Balance(); b.Sold != 100 || b.Remaining() != 0 || b.Check() != nil || !it.SoldOut() {
		t.Fatalf("balance %+v sold out %v", b, it.SoldOut())
	}
}

// TestConservationUnderLoad reads the balance while buyers, releases and
// stock changes run: every read adds up.
func TestConservationUnderLoad(t *testing.T) {
	n := startNode(t, persistence.NewMem())
	defer n.Close()
	if err := n.CreateItem(engine.ItemConfig{Item: "c", Stock: 400, Shards: 16, PerUserLimit: 2}); err != nil {
		t.Fatal(err)
	}
	it := n.mustItem(t, "c")
	stop := make(chan struct{})
	var reads atomic.Int64
	var readers sync.WaitGroup
	readers.Go(func() {
		for {
			select {
			case <-stop:
				return
			default:
			}
			if b := it.Balance(); b.Check() != nil {
				t.Errorf("balance broken: %+v", b)
				return
			}
			reads.Add(1)
		}
	})
	var grabs sync.Map
	var wg sync.WaitGroup
	for w := 0; w < 16; w++ {
		wg.Go(func() {
			for i := 0; i < 60; i++ {
				u := fmt.Sprintf("u%d", (w*60+i)%500)
				r := grabRetrying(t, n, "c", u, fmt.Sprintf("k%d-%d", w, i))
				if r.Outcome == engine.Confirmed {
					grabs.Store(r.Grab.ID(), r.Grab)
					if i%5 == 0 {
						if rr := n.Release("c", r.Grab.ID()); rr.Err != nil || rr.Outcome != engine.Released {
							t.Errorf("release %s: %v %v", r.Grab.ID(), rr.Outcome, rr.Err)
						}
					}
				}
				if i%20 == 0 {
					n.ChangeStock("c", 3)
				}
			}
		})
	}
	wg.Wait()
	close(stop)
	readers.Wait()
	b := it.Balance()
	if b.Check() != nil || b.Stock != 400+16*3*3 || b.InTransit != 0 {
		t.Fatalf("final balance %+v", b)
	}
	t.Logf("%d balance reads, final %+v", reads.Load(), b)
}

// TestReleaseReturnsEachUnitOnce: 500 grabs of a sold-out item are released
// (each twice, concurrently); exactly 500 units sell again, to new users
// and to the released users themselves.
func TestReleaseReturnsEachUnitOnce(t *testing.T) {
	store := persistence.NewMem()
	n := startNode(t, store)
	if err := n.CreateItem(engine.ItemConfig{Item: "r", Stock: 1000, Shards: 8, PerUserLimit: 1}); err != nil {
		t.Fatal(err)
	}
	var mu sync.Mutex
	var sold []engine.Grab
	var wg sync.WaitGroup
	for w := 0; w < 8; w++ {
		wg.Go(func() {
			for i := 0; i < 150; i++ {
				u := fmt.Sprintf("buyer-%d-%d", w, i)
				if r := grabRetrying(t, n, "r", u, "first"); r.Outcome == engine.Confirmed {
					mu.Lock()
					sold = append(sold, r.Grab)
					mu.Unlock()
				}
			}
		})
	}
	wg.Wait()
	if len(sold) != 1000 || !n.mustItem(t, "r").SoldOut() {
		t.Fatalf("sold %d, sold out %v", len(sold), n.mustItem(t, "r").SoldOut())
	}
	var released, again atomic.Int64
	for _, g := range sold[:500] {
		for range 2 {
			wg.Go(func() {
				switch r := n.Release("r", g.ID()); {
				case r.Err != nil:
					t.Errorf("release %s: %v", g.ID(), r.Err)
				case r.Outcome == engine.Released:
					released.Add(1)
				case r.Outcome == engine.AlreadyReleased:
					again.Add(1)
				}
			})
		}
	}
	wg.Wait()
	if released.Load() != 500 || again.Load() != 500 {
		t.Fatalf("released %d, already released %d", released.Load(), again.Load())
	}
	if r := n.Release("r", "r.0.999999"); !errors.Is(r.Err, ErrUnknownGrab) {
		t.Fatalf("unknown grab: %+v", r)
	}
	// A released key replays as released; a new key by the same user buys.
	g0 := sold[0]
	if r := n.Grab("r", g0.User, 1, "first"); r.Outcome != engine.Released {
		t.Fatalf("replay of a released grab: %v", r.Outcome)
	}
	var resold atomic.Int64
	for i := 0; i < 600; i++ {
		u := fmt.Sprintf("late-%d", i)
		if i < 250 {
			u = sold[i].User // half the released users come back
		}
		wg.Go(func() {
			if r := grabRetrying(t, n, "r", u, "second"); r.Outcome == engine.Confirmed {
				resold.Add(1)
			} else if r.Outcome != engine.SoldOut {
				t.Errorf("%s: %v %v", u, r.Outcome, r.Err)
			}
		})
	}
	wg.Wait()
	if resold.Load() != 500 {
		t.Fatalf("%d units sold again, want 500", resold.Load())
	}
	b := n.mustItem(t, "r").Balance()
	if b.Sold != 1000 || b.Remaining() != 0 || b.Check() != nil {
		t.Fatalf("balance %+v", b)
	}
	n.Close()
	n2 := startNode(t, store.Reopen())
	defer n2.Close()
	if b2 := n2.mustItem(t, "r").Balance(); b2 != b {
		t.Fatalf("after restart %+v, before %+v", b2, b)
	}
	if r := n2.Release("r", g0.ID()); r.Outcome != engine.AlreadyReleased {
		t.Fatalf("release after restart: %v %v", r.Outcome, r.Err)
	}
}

func TestStockChanges(t *testing.T) {
	n := startNode(t, persistence.NewMem())
	defer n.Close()
	if err := n.CreateItem(engine.ItemConfig{Item: "s", Stock: 10, Shards: 2, PerUserLimit: 1}); err != nil {
		t.Fatal(err)
	}
	for _, tc := range []struct {
		delta     int64
		stock     int64
		err       error
		available int64
	}{
		{+5, 15, nil, 0},
		{-3, 12, nil, 0}, // from the pool
		{-20, 0, ErrInsufficient, 12},
		{-10, 2, nil, 0}, // needs the shards' units back
		{-3, 0, ErrInsufficient, 2},
		{-2, 0, nil, 0},
		{engine.MaxStock + 1, 0, engine.ErrBadStock, 0},
	} {
		r := n.ChangeStock("s", tc.delta)
		if !errors.Is(r.Err, tc.err) || (tc.err == nil && r.Stock != tc.stock) || (errors.Is(tc.err, ErrInsufficient) && r.Available != tc.available) {
			t.Fatalf("delta %d: %+v, want stock %d err %v available %d", tc.delta, r, tc.stock, tc.err, tc.available)
		}
	}
	if r := n.Grab("s", "u", 1, ""); r.Outcome != engine.SoldOut {
		t.Fatalf("grab with zero stock: %v %v", r.Outcome, r.Err)
	}
	if r := n.ChangeStock("s", 1); r.Err != nil {
		t.Fatal(r.Err)
	}
	if r := grabRetrying(t, n, "s", "u", "k"); r.Outcome != engine.Confirmed {
		t.Fatalf("grab after adding a unit: %v %v", r.Outcome, r.Err)
	}
	if r := n.ChangeStock("nope", 1); !errors.Is(r.Err, ErrUnknownItem) {
		t.Fatal(r.Err)
	}
}

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

// faultyStore fails every Apply and Submit while failing is set: a Submit
// at once, or, with atSync, only when its wait is called (an fdatasync that
// failed after the batch was handed over; nothing of it is kept).
type faultyStore struct {
	persistence.Store
	atSync  bool
	failing atomic.Bool
	applies atomic.Int64
}

var errInjected = errors.New("injected commit failure")

func (f *faultyStore) Apply(b *persistence.Batch) error {
	f.applies.Add(1)
	if f.failing.Load() {
		return errInjected
	}
	return f.Store.Apply(b)
}

func (f *faultyStore) Submit(b *persistence.Batch) (func() error, error) {
	f.applies.Add(1)
	if f.failing.Load() {
		if f.atSync {
			return func() error { return errInjected }, nil
		}
		return nil, errInjected
	}
	return f.Store.Submit(b)
}

func startNode(t *testing.T, s persistence.Store) *Node {
	t.Helper()
	n, err := Start(s, Options{Clock: func() int64 { return 1000 }})
	if err != nil {
		t.Fatal(err)
	}
	return n
}

func TestConcurrentGrabsNeverOversell(t *testing.T) {
	store := persistence.NewMem()
	n := startNode(t, store)
	cfg := engine.ItemConfig{Item: "hot", Stock: 300, Shards: 8, PerUserLimit: 2}
	if err := n.CreateItem(cfg); err != nil {
		t.Fatal(err)
	}
	if err := n.CreateItem(cfg); !errors.Is(err, ErrItemExists) {
		t.Fatalf("second create: %v", err)
	}
	var (
		mu        sync.Mutex
		confirmed = map[string]engine.Grab{}
		perUser   = map[string]int64{}
		wg        sync.WaitGroup
	)
	for w := 0; w < 32; w++ {
		wg.Go(func() {
			for i := 0; i < 60; i++ {
				user := fmt.Sprintf("u%d", (w*60+i)%700)
				r := n.Grab("hot", user, 1, fmt.Sprintf("k%d-%d", w, i))
				if r.Err != nil {
					t.Errorf("grab: %v", r.Err)
					return
				}
				if r.Outcome == engine.Confirmed {
					mu.Lock()
					confirmed[r.Grab.ID()] = r.Grab
					perUser[user]++
					mu.Unlock()
				}
			}
		})
	}
	wg.Wait()
	bal := n.mustItem(t, "hot").Balance()
	sold := bal.Sold
	if sold != int64(len(confirmed)) || sold > cfg.Stock || bal.Check() != nil || bal.Stock != cfg.Stock {
		t.Fatalf("balance %+v, confirmed %d, stock %d", bal, len(confirmed), cfg.Stock)
	}
	for u, q := range perUser {
		if q > cfg.PerUserLimit {
			t.Fatalf("user %s got %d", u, q)
		}
	}
	if err := n.Close(); err != nil {
		t.Fatal(err)
	}
	// Everything confirmed is on disk after a restart.
	n2 := startNode(t, reopenMem(store))
	defer n2.Close()
	it := n2.mustItem(t, "hot")
	if got := cfg.Stock - it.Remaining(); got != sold {
		t.Fatalf("after restart sold %d, want %d", got, sold)
	}
	for _, g := range confirmed {
		r := n2.Grab("hot", g.User, g.Qty, g.Key)
		if r.Outcome != engine.Replayed || r.Grab.ID() != g.ID() {
			t.Fatalf("replay of %s after restart: %+v", g.ID(), r)
		}
	}
}

// reopenMem gives a closed Mem store's data to a new node, as a restart would.
func reopenMem(m *persistence.Mem) persistence.Store { return m.Reopen() }

func (n *Node) mustItem(t *testing.T, id string) *Item {
	t.Helper()
	it, ok := n.Item(id)
	if !ok {
		t.Fatalf("no item %s", id)
	}
	return it
}

func TestFailedCommitNeverConfirmsAndReloads(t *testing.T) {
	for _, atSync := range []bool{false, true} {
		t.Run(fmt.Sprintf("atSync=%v", atSync), func(t *testing.T) {
			store := &faultyStore{Store: persistence.NewMem(), atSync: atSync}
			n := startNode(t, store)
			defer n.Close()
			if err := n.CreateItem(engine.ItemConfig{Item: "f", Stock: 10, Shards: 1, PerUserLimit: 1}); err != nil {
				t.Fatal(err)
			}
			if r := n.Grab("f", "a", 1, "ka"); r.Outcome != engine.Confirmed {
				t.Fatalf("first grab: %+v", r)
			}
			store.failing.Store(true)
			var wg sync.WaitGroup
			var confirmedWhileFailing atomic.Int64
			for i := 0; i < 20; i++ {
				wg.Go(func() {
					r := n.Grab("f", fmt.Sprintf("b%d", i), 1, "k")
					if r.Err == nil && r.Outcome == engine.Confirmed {
						confirmedWhileFailing.Add(1)
					}
				})
			}
			wg.Wait()
			if c := confirmedWhileFailing.Load(); c != 0 {
				t.Fatalf("%d grabs confirmed while every commit failed", c)
			}
			if !n.CommitFailing() {
				t.Fatal("CommitFailing false after failed commits (readiness would say ready)")
			}
			store.failing.Store(false)
			// The shard reloads: only "a" holds a unit, so 9 remain for others and
			// every failed user can grab again.
			for i := 0; i < 9; i++ {
				r := n.Grab("f", fmt.Sprintf("b%d", i), 1, "k")
				if r.Err != nil || r.Outcome != engine.Confirmed {
					t.Fatalf("grab %d after recovery: %+v", i, r)
				}
			}
			if r := n.Grab("f", "z", 1, ""); r.Outcome != engine.SoldOut {
				t.Fatalf("11th unit: %+v", r)
			}
			if n.CommitFailing() {
				t.Fatal("CommitFailing still true after commits succeed again")
			}
			if r := n.Grab("f", "a", 1, "ka"); r.Outcome != engine.Replayed {
				t.Fatalf("replay of first grab: %+v", r)
			}
		})
	}
}

func TestGrabAnswers(t *testing.T) {
	clock := atomic.Int64{}
	clock.Store(500)
	n, err := Start(persistence.NewMem(), Options{Clock: clock.Load})
	if err != nil {
		t.Fatal(err)
	}
	defer n.Close()
	if err := n.CreateItem(engine.ItemConfig{Item: "w", Stock: 1, Shards: 2, PerUserLimit: 1, StartsAtMs: 1000, EndsAtMs: 2000}); err != nil {
		t.Fatal(err)
	}
	u := "user-on-the-stocked-shard"
	for i := 0; engine.ShardFor("w", u, 2) != 0; i++ { // shard 0 holds the one unit
		u = fmt.Sprintf("user-%d", i)
	}
	for _, tc := range []struct {
		now  int64
		item string
		user string
		key  string
		want engine.Outcome
		err  error
	}{
		{500, "w", u, "", engine.NotStarted, nil},
		{500, "w", u, "k", engine.NotStarted, nil},
		{500, "nope", u, "", 0, ErrUnknownItem},
		{1500, "w", u, "k", engine.Confirmed, nil},
		{1500, "w", u, "k", engine.Replayed, nil},
		{1500, "w", u, "k2", engine.LimitReached, nil},
		{1500, "w", "other", "", engine.SoldOut, nil},
		{1500, "w", "other", "k", engine.SoldOut, nil}, // keyed, but never held a grab
		{1500, "w", u, "k", engine.Replayed, nil},      // a holder's key still replays
		{2500, "w", u, "k", engine.Replayed, nil},
		{2500, "w", "late", "", engine.Ended, nil},
	} {
		clock.Store(tc.now)
		r := n.Grab(tc.item, tc.user, 1, tc.key)
		if r.Outcome != tc.want || !errors.Is(r.Err, tc.err) {
			t.Errorf("%+v: got %v %v", tc, r.Outcome, r.Err)
		}
	}
	if !n.mustItem(t, "w").SoldOut() {
		t.Error("sold-out flag not set with every shard empty")
	}
}

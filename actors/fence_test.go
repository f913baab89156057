package actors

import (
	"errors"
	"fmt"
	"sync/atomic"
	"testing"
	"time"

	"github.com/seckill/seckill/engine"
	"github.com/seckill/seckill/persistence"
)

// TestFencedRoundsAnswer503ButStayDurable: while the fence says no, every
// grab answers unavailable, yet what it decided is on disk and its refills
// are sent: once the fence says yes again, each key replays its grab, the
// whole stock is sold (the pool's grants went through while fenced), and a
// restart finds the same.
func TestFencedRoundsAnswer503ButStayDurable(t *testing.T) {
	store := persistence.NewMem()
	var valid atomic.Bool
	var asked atomic.Int64
	fence := func(now time.Time) bool {
		asked.Add(1)
		return valid.Load()
	}
	n, err := Start(store, Options{Clock: func() int64 { return 1000 }, Fence: fence})
	if err != nil {
		t.Fatal(err)
	}
	const stock = 10
	cfg := engine.ItemConfig{Item: "fenced", Stock: stock, Shards: 2, PerUserLimit: 1}
	if err := n.CreateItem(cfg); err != nil {
		t.Fatal(err)
	}
	user := func(i int) string { return fmt.Sprintf("u%d", i) }
	for i := range stock {
		if r := n.Grab(cfg.Item, user(i), 1, "k"); !errors.Is(r.Err, ErrUnavailable) {
			t.Fatalf("grab %d while fenced: %+v, want ErrUnavailable", i, r)
		}
	}
	if asked.Load() == 0 {
		t.Fatal("the fence was never asked")
	}
	if sold := n.mustItem(t, cfg.Item).Balance().Sold; sold != stock {
		t.Fatalf("sold %d while fenced, want %d (decided, durable, not reloaded)", sold, stock)
	}
	valid.Store(true)
	ids := map[string]string{}
	for i := range stock {
		r := n.Grab(cfg.Item, user(i), 1, "k")
		if r.Err != nil || r.Outcome != engine.Replayed {
			t.Fatalf("retry %d after the fence: %+v, want replayed", i, r)
		}
		ids[user(i)] = r.Grab.ID()
	}
	if r := n.Grab(cfg.Item, "late", 1, ""); r.Outcome != engine.SoldOut {
		t.Fatalf("a grab past the stock: %+v", r)
	}
	if err := n.Close(); err != nil {
		t.Fatal(err)
	}
	n2 := startNode(t, reopenMem(store))
	defer n2.Close()
	bal := n2.mustItem(t, cfg.Item).Balance()
	if bal.Sold != stock || bal.Check() != nil {
		t.Fatalf("after restart: %+v", bal)
	}
	for i := range stock {
		if r := n2.Grab(cfg.Item, user(i), 1, "k"); r.Outcome != engine.Replayed || r.Grab.ID() != ids[user(i)] {
			t.Fatalf("replay %d after restart: %+v, want %s", i, r, ids[user(i)])
		}
	}
}

package actors

import (
	"errors"
	"fmt"
	"runtime"
	"sync"
	"sync/atomic"
	"testing"
	"time"

	"github.com/seckill/seckill/engine"
	"github.com/seckill/seckill/persistence"
)

// memLedger is a pool ledger with etcd's rule: a write lands only over the
// state the writer last read or wrote (compare-and-swap by revision).
type memLedger struct {
	mu    sync.Mutex
	st    map[string]engine.PoolState
	rev   map[string]int64
	seen  map[string]int64 // the revision the pool last read or wrote
	fail  atomic.Int32     // refuse this many commits
	fails atomic.Int64
}

func newMemLedger() *memLedger {
	return &memLedger{st: map[string]engine.PoolState{}, rev: map[string]int64{}, seen: map[string]int64{}}
}

// create writes a new clustered item's ledger: every unit in the pool,
// each shard's initial allocation counted as given back (ClusterStart).
func (l *memLedger) create(cfg engine.ItemConfig) {
	st := engine.NewPool(cfg).State()
	st.Pool = cfg.Stock
	for i := range st.Got {
		st.Got[i] = cfg.InitialAllocation(i)
	}
	l.mu.Lock()
	l.st[cfg.Item], l.rev[cfg.Item] = st, 1
	l.mu.Unlock()
}

func (l *memLedger) Load(item string) (engine.PoolState, error) {
	l.mu.Lock()
	defer l.mu.Unlock()
	st, ok := l.st[item]
	if !ok {
		return st, errors.New("no ledger")
	}
	l.seen[item] = l.rev[item]
	st.Sent, st.Got = append([]int64(nil), st.Sent...), append([]int64(nil), st.Got...)
	return st, nil
}

func (l *memLedger) Commit(item string, st engine.PoolState, granted []int) error {
	if l.fail.Add(-1) >= 0 {
		l.fails.Add(1)
		return errors.New("injected: compare failed")
	}
	l.mu.Lock()
	defer l.mu.Unlock()
	if l.seen[item] != l.rev[item] {
		return errors.New("stale")
	}
	old := l.st[item]
	for i := range st.Sent {
		if st.Sent[i] < old.Sent[i] || st.Got[i] < old.Got[i] {
			return fmt.Errorf("shard %d totals fell", i)
		}
	}
	l.rev[item]++
	l.seen[item] = l.rev[item]
	st.Sent, st.Got = append([]int64(nil), st.Sent...), append([]int64(nil), st.Got...)
	l.st[item] = st
	return nil
}

// twoNodes is a cluster of two nodes in one process: placement maps each
// shard (and the pool, with shard 0) to a node; messages go where it says.
type twoNodes struct {
	nodes  [2]*Node
	ledger *memLedger
	mu     sync.Mutex
	place  map[int]int // shard → node index
}

func (c *twoNodes) owner(shard int) int {
	c.mu.Lock()
	defer c.mu.Unlock()
	if shard == engine.PoolShard {
		shard = 0
	}
	return c.place[shard]
}

func (c *twoNodes) send(m engine.Msg) {
	if m.To.Shard == engine.FrontShard {
		for _, n := range c.nodes {
			if n != nil {
				n.Deliver(m)
			}
		}
		return
	}
	if n := c.nodes[c.owner(m.To.Shard)]; n != nil {
		n.Deliver(m)
	}
}

func startTwoNodes(t *testing.T, cfg engine.ItemConfig) *twoNodes {
	return startTwoNodesSeqs(t, cfg, nil)
}

// startTwoNodesSeqs is startTwoNodes with grab sequences granted by extend
// (nil: not limited).
func startTwoNodesSeqs(t *testing.T, cfg engine.ItemConfig, extend func(item string, shard int, epoch, atLeast uint64) (uint64, error)) *twoNodes {
	t.Helper()
	c := &twoNodes{ledger: newMemLedger(), place: map[int]int{}}
	c.ledger.create(cfg)
	for i := range c.nodes {
		n, err := Start(persistence.NewMem(), Options{Clock: func() int64 { return 1000 },
			Cluster: &ClusterHooks{Send: c.send, Ledger: c.ledger, ExtendSeqs: extend}})
		if err != nil {
			t.Fatal(err)
		}
		t.Cleanup(func() { n.Close() })
		if err := n.AddItem(cfg); err != nil {
			t.Fatal(err)
		}
		c.nodes[i] = n
	}
	for s := range cfg.Shards {
		c.mu.Lock()
		c.place[s] = s % 2
		c.mu.Unlock()
		if err := c.nodes[s%2].ActivateShard(cfg.Item, s, 1, nil); err != nil {
			t.Fatal(err)
		}
	}
	if err := c.nodes[0].ActivatePool(cfg.Item, 1); err != nil {
		t.Fatal(err)
	}
	return c
}

// grab sends a grab to its shard's node, retrying 503s as a buyer with
// the same key does.
func (c *twoNodes) grab(t *testing.T, cfg engine.ItemConfig, user, key string) Reply {
	t.Helper()
	for range 200 {
		n := c.nodes[c.owner(engine.ShardFor(cfg.Item, user, cfg.Shards))]
		r := n.Grab(cfg.Item, user, 1, key)
		if !errors.Is(r.Err, ErrUnavailable) {
			return r
		}
	}
	t.Fatalf("%s: unavailable 200 times", user)
	return Reply{}
}

// TestClusterHostingSellsTheStockOnce: shards on two nodes, the pool on
// one with its ledger behind compare-and-swap (one write in three refused
// at random times): every unit sells once, no more, and both nodes hear
// the item is sold out.
func TestClusterHostingSellsTheStockOnce(t *testing.T) {
	cfg := engine.ItemConfig{Item: "c", Stock: 400, Shards: 6, PerUserLimit: 1}
	c := startTwoNodes(t, cfg)
	c.ledger.fail.Store(5)
	var confirmed atomic.Int64
	var wg sync.WaitGroup
	for w := range 8 {
		wg.Go(func() {
			for u := w; u < 600; u += 8 {
				r := c.grab(t, cfg, fmt.Sprintf("u%d", u), fmt.Sprintf("k%d", u))
				if r.Err == nil && r.Outcome == engine.Confirmed {
					confirmed.Add(1)
				}
			}
		})
	}
	wg.Wait()
	if confirmed.Load() != cfg.Stock {
		t.Fatalf("confirmed %d of %d", confirmed.Load(), cfg.Stock)
	}
	if c.ledger.fails.Load() == 0 {
		t.Fatal("no ledger write was refused: the test did not test the reload")
	}
	for i, n := range c.nodes {
		it := n.mustItem(t, cfg.Item)
		if !it.SoldOut() {
			t.Fatalf("node %d does not know the item is sold out", i)
		}
	}
	st, _ := c.ledger.Load(cfg.Item)
	if st.Pool != 0 {
		t.Fatalf("pool holds %d after the sale", st.Pool)
	}
}

// TestClusterMoveHandsOverEverything: a shard deactivated on one node gives
// back its unsold units and hands over a snapshot; activated from it on
// the other node at the next epoch it replays the same grab for the same
// key, refuses the buyer a second unit, and sells the rest.
func TestClusterMoveHandsOverEverything(t *testing.T) {
	cfg := engine.ItemConfig{Item: "m", Stock: 100, Shards: 2, PerUserLimit: 1}
	c := startTwoNodes(t, cfg)
	// Find a user of shard 1 (on node 1).
	user := ""
	for u := 0; user == ""; u++ {
		if engine.ShardFor(cfg.Item, fmt.Sprint("b", u), cfg.Shards) == 1 {
			user = fmt.Sprint("b", u)
		}
	}
	first := c.grab(t, cfg, user, "k1")
	if first.Err != nil || first.Outcome != engine.Confirmed {
		t.Fatalf("first grab: %+v", first)
	}
	snap, err := c.nodes[1].DeactivateShard(cfg.Item, 1, 1)
	if err != nil {
		t.Fatal(err)
	}
	if snap.Counters.Remaining() != 0 || snap.Counters.Sold != 1 {
		t.Fatalf("handed over %+v: units still held", snap.Counters)
	}
	if r := c.nodes[1].Grab(cfg.Item, user, 1, "k1"); !errors.Is(r.Err, ErrUnavailable) {
		t.Fatalf("old node after the move: %+v, want unavailable", r)
	}
	c.mu.Lock()
	c.place[1] = 0
	c.mu.Unlock()
	if err := c.nodes[0].ActivateShard(cfg.Item, 1, 2, &snap); err != nil {
		t.Fatal(err)
	}
	if r := c.grab(t, cfg, user, "k1"); r.Outcome != engine.Replayed || r.Grab.ID() != first.Grab.ID() {
		t.Fatalf("replay after the move: %+v, want %s", r, first.Grab.ID())
	}
	if r := c.grab(t, cfg, user, "k2"); r.Outcome != engine.LimitReached {
		t.Fatalf("second unit after the move: %+v, want limit_reached", r)
	}
	sold := int64(1)
	for u := 0; u < 400; u++ {
		if r := c.grab(t, cfg, fmt.Sprint("x", u), ""); r.Outcome == engine.Confirmed {
			sold++
		}
	}
	if sold != cfg.Stock {
		t.Fatalf("sold %d of %d after the move", sold, cfg.Stock)
	}
	// The old node's copy of the shard sells nothing: it holds no unit.
	if err := c.nodes[1].ActivateSecond(cfg.Item, 1, 1); err != nil {
		t.Fatal(err)
	}
	if r := c.nodes[1].Grab(cfg.Item, "late", 1, ""); r.Outcome == engine.Confirmed {
		t.Fatalf("the old node's second activation sold: %+v", r)
	}
}

// TestClusterShardSellsOnlyGrantedSequences: a clustered shard numbers its
// grabs only below the limit etcd granted it. With a limit of 4 and no
// extension answering, exactly sequences 1-3 are confirmed and the other
// buyers get 503; once extensions answer, the same buyers retrying with
// their keys are all served, every sequence used once.
func TestClusterShardSellsOnlyGrantedSequences(t *testing.T) {
	cfg := engine.ItemConfig{Item: "q", Stock: 100, Shards: 2, PerUserLimit: 1}
	gate := make(chan struct{})
	var asked atomic.Int64
	c := startTwoNodesSeqs(t, cfg, func(item string, shard int, epoch, atLeast uint64) (uint64, error) {
		asked.Add(1)
		<-gate
		return atLeast + 4, nil
	})
	defer func() {
		select {
		case <-gate:
		default:
			close(gate)
		}
	}()
	var users []string
	for u := 0; len(users) < 10; u++ {
		if name := fmt.Sprintf("u%d", u); engine.ShardFor(cfg.Item, name, cfg.Shards) == 0 {
			users = append(users, name)
		}
	}
	n := c.nodes[c.owner(0)]
	if r := n.Grab(cfg.Item, users[0], 1, "k-"+users[0]); !errors.Is(r.Err, ErrUnavailable) {
		t.Fatalf("a grab with no sequence granted: %+v", r)
	}
	n.GrantSeqs(cfg.Item, 0, 1, 4)
	seqs := map[uint64]string{}
	var refused []string
	for _, u := range users {
		r := n.Grab(cfg.Item, u, 1, "k-"+u)
		switch {
		case r.Err == nil && r.Outcome == engine.Confirmed:
			seqs[r.Grab.Seq] = u
		case errors.Is(r.Err, ErrUnavailable):
			refused = append(refused, u)
		default:
			t.Fatalf("%s: %+v", u, r)
		}
	}
	if len(seqs) != 3 || seqs[1] == "" || seqs[2] == "" || seqs[3] == "" {
		t.Fatalf("below a limit of 4: confirmed %v", seqs)
	}
	if asked.Load() == 0 {
		t.Fatal("the shard never asked for more sequences")
	}
	close(gate)
	for _, u := range refused {
		var r Reply
		// Retried as a buyer does, until extensions (goroutines) land.
		for deadline := time.Now().Add(10 * time.Second); time.Now().Before(deadline); {
			if r = n.Grab(cfg.Item, u, 1, "k-"+u); !errors.Is(r.Err, ErrUnavailable) {
				break
			}
			runtime.Gosched()
		}
		if r.Err != nil || r.Outcome != engine.Confirmed {
			t.Fatalf("%s after the extension: %+v", u, r)
		}
		if prev := seqs[r.Grab.Seq]; prev != "" {
			t.Fatalf("sequence %d given to %s and %s", r.Grab.Seq, prev, u)
		}
		seqs[r.Grab.Seq] = u
	}
	if len(seqs) != len(users) {
		t.Fatalf("%d grabs for %d buyers", len(seqs), len(users))
	}
}

// TestForcedActivationSkipsSequences: a shard activated from a snapshot
// that skips to sequence 50 (a forced move) sells from 50 on; the skipped
// ids are nobody's grab, for a release and for an order lookup alike.
func TestForcedActivationSkipsSequences(t *testing.T) {
	cfg := engine.ItemConfig{Item: "f", Stock: 100, Shards: 2, PerUserLimit: 1}
	c := startTwoNodes(t, cfg)
	n := c.nodes[0]
	n.StopShard(cfg.Item, 0)
	snap := engine.ShardSnapshot{Item: cfg.Item, Shard: 0, Epoch: 2, Counters: ClusterStart(cfg, 0)}.SkipTo(50)
	if err := n.ActivateForced(cfg.Item, 0, 2, &snap); err != nil {
		t.Fatal(err)
	}
	var user string
	for u := 0; user == ""; u++ {
		if name := fmt.Sprintf("u%d", u); engine.ShardFor(cfg.Item, name, cfg.Shards) == 0 {
			user = name
		}
	}
	r := c.grab(t, cfg, user, "k")
	if r.Err != nil || r.Outcome != engine.Confirmed || r.Grab.Seq != 50 {
		t.Fatalf("first grab after the skip: %+v", r)
	}
	for _, tc := range []struct {
		id      string
		durable bool
	}{{"f.0.1", false}, {"f.0.49", false}, {"f.0.50", true}, {"f.0.51", false}} {
		if got := n.GrabDurable(tc.id); got != tc.durable {
			t.Errorf("GrabDurable(%s) = %v, want %v", tc.id, got, tc.durable)
		}
	}
	if r := n.Release(cfg.Item, "f.0.7"); !errors.Is(r.Err, ErrUnknownGrab) {
		t.Fatalf("release of a skipped id: %+v", r)
	}
}

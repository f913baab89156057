package actors

import (
	"context"
	"errors"
	"fmt"
	"slices"
	"sync"
	"testing"
	"time"

	"github.com/seckill/seckill/engine"
	"github.com/seckill/seckill/persistence"
)

// gateJournal is a replicated journal in memory that takes every append at
// once, but holds the first round carrying a grab until the test opens the
// gate, and then answers it with an unknown outcome (what a NATS server's death
// gives: "no response from stream").
type gateJournal struct {
	mu      sync.Mutex
	last    map[int]uint64
	seq     uint64
	held    chan struct{} // a round with a grab is held
	release chan struct{}
	done    bool // the held round was answered
}

func (j *gateJournal) AppendAll(_ context.Context, apps []persistence.JournalAppend) {
	for i := range apps {
		a := &apps[i]
		e, err := engine.DecodeEntry(a.Item, a.Shard, a.Data)
		if err == nil && !j.done && slices.ContainsFunc(e.Records, func(r engine.Record) bool { return r.Kind == engine.RecGrab }) {
			j.held <- struct{}{}
			<-j.release
			j.done = true
			a.Err = errors.New("no response from stream")
			continue
		}
		j.mu.Lock()
		if j.last[a.Shard] != a.Expect {
			a.Err = persistence.ErrJournalFenced
		} else {
			j.seq++
			a.Seq, j.last[a.Shard] = j.seq, j.seq
		}
		j.mu.Unlock()
	}
}

// startJournaled starts a clustered node with journal j (its last entry at
// sequence 1) running cfg's shard 0 at epoch 1 and its pool, closed when the
// test ends.
func startJournaled(t *testing.T, cfg engine.ItemConfig, j persistence.ReplicatedJournal, rounds RoundObserver) *Node {
	t.Helper()
	var n *Node
	ledger := newMemLedger()
	ledger.create(cfg)
	n, err := Start(persistence.NewMem(), Options{Clock: func() int64 { return 1000 }, RequestTimeout: time.Minute, Rounds: rounds,
		Cluster: &ClusterHooks{Node: "n1", Ledger: ledger, Journal: j, Send: func(m engine.Msg) { n.Deliver(m) }}})
	if err != nil {
		t.Fatal(err)
	}
	t.Cleanup(func() { n.Close() })
	if err := n.AddItem(cfg); err != nil {
		t.Fatal(err)
	}
	snap := engine.ShardSnapshot{Item: cfg.Item, Shard: 0, Epoch: 1, Counters: engine.ClusterStart(cfg, 0)}
	if err := n.ActivateJournaled(cfg.Item, 0, 1, snap, 1, RelayAfterSnapshot); err != nil {
		t.Fatal(err)
	}
	if err := n.ActivatePool(cfg.Item, 1); err != nil {
		t.Fatal(err)
	}
	return n
}

// TestReplayOfALostRoundIsNotConfirmed: a buyer's retry that replays a grab
// whose round is still being appended waits for it; if the journal does
// not take that round, the replay is not confirmed either. (Seen in
// seckill chaos before the fix: a replay alone in its commit round, which
// writes nothing, was answered 201 with the id of a grab the journal never
// took, and the new incarnation gave that id to another buyer.)
func TestReplayOfALostRoundIsNotConfirmed(t *testing.T) {
	cfg := engine.ItemConfig{Item: "sku", Stock: 10, Shards: 1, PerUserLimit: 1}
	j := &gateJournal{last: map[int]uint64{0: 1}, seq: 1, held: make(chan struct{}), release: make(chan struct{})}
	n := startJournaled(t, cfg, j, nil)
	first := make(chan Reply, 1)
	go func() { first <- n.Grab(cfg.Item, "u1", 1, "k1") }()
	select {
	case <-j.held: // the grab's round is in the journal's hands
	case r := <-first:
		t.Fatalf("the grab was answered before its round reached the journal: %+v", r)
	}
	// The buyer retries with the same key: the shard replays the grab in
	// flight, a wait for the commits queued before it, queued for the
	// round after the held one.
	again := make(chan Reply, 1)
	go func() { again <- n.Grab(cfg.Item, "u1", 1, "k1") }()
	it, _ := n.Item(cfg.Item)
	cm := it.shards[0].committer
	for deadline := time.Now().Add(time.Minute); len(cm.in) == 0 && len(cm.submitted) == 0; {
		if time.Now().After(deadline) {
			t.Fatal("the replay never reached the committer")
		}
		time.Sleep(time.Millisecond) // poll interval
	}
	close(j.release)
	for name, ch := range map[string]chan Reply{"the grab": first, "its replay": again} {
		if r := <-ch; !errors.Is(r.Err, ErrUnavailable) {
			t.Errorf("%s, whose round the journal did not take: %+v, want unavailable", name, r)
		}
	}
}

// holdJournal is a replicated journal in memory that takes every append,
// and holds the first round carrying a grab until the test opens the gate.
type holdJournal struct {
	mu      sync.Mutex
	last    map[int]uint64
	seq     uint64
	held    chan struct{}
	release chan struct{}
}

func (j *holdJournal) AppendAll(_ context.Context, apps []persistence.JournalAppend) {
	for i := range apps {
		e, err := engine.DecodeEntry(apps[i].Item, apps[i].Shard, apps[i].Data)
		if err == nil && j.held != nil && slices.ContainsFunc(e.Records, func(r engine.Record) bool { return r.Kind == engine.RecGrab }) {
			j.held <- struct{}{}
			<-j.release
			j.held = nil
		}
	}
	j.mu.Lock()
	defer j.mu.Unlock()
	for i := range apps {
		a := &apps[i]
		if j.last[a.Shard] != a.Expect {
			a.Err = persistence.ErrJournalFenced
			continue
		}
		j.seq++
		a.Seq, j.last[a.Shard] = j.seq, j.seq
	}
}

// roundSizes records the records of each commit round.
type roundSizes struct {
	mu    sync.Mutex
	sizes []int
}

func (o *roundSizes) ObserveRound(records int, _ time.Duration) {
	o.mu.Lock()
	defer o.mu.Unlock()
	o.sizes = append(o.sizes, records)
}

// TestJournalRoundHoldsAllThatWaited: with a replicated journal, a commit
// round is gathered only once the round before it is answered, so the
// decisions made while one round is appended go together in the next (one
// append per shard for all of them) instead of being split into rounds
// gathered ahead, each costing the journal's servers a proposal.
func TestJournalRoundHoldsAllThatWaited(t *testing.T) {
	const waiting = 12
	cfg := engine.ItemConfig{Item: "sku", Stock: 10_000, Shards: 1, PerUserLimit: 1}
	j := &holdJournal{last: map[int]uint64{0: 1}, seq: 1, held: make(chan struct{}), release: make(chan struct{})}
	rounds := &roundSizes{}
	n := startJournaled(t, cfg, j, rounds)
	var open sync.Once
	t.Cleanup(func() { open.Do(func() { close(j.release) }) }) // runs before Close
	replies := make(chan Reply, waiting+1)
	go func() { replies <- n.Grab(cfg.Item, "first", 1, "") }()
	select {
	case <-j.held: // the first grab's round is in the journal's hands
	case r := <-replies:
		t.Fatalf("the first grab was answered before its round reached the journal: %+v", r)
	}
	for u := range waiting {
		go func() { replies <- n.Grab(cfg.Item, fmt.Sprintf("u%d", u), 1, "") }()
	}
	it, _ := n.Item(cfg.Item)
	cm := it.shards[0].committer
	queued := 0
	for deadline := time.Now().Add(5 * time.Second); queued < waiting; queued = len(cm.in) {
		if time.Now().After(deadline) {
			t.Fatalf("%d of %d grabs wait for the committer: the others went into rounds gathered ahead", len(cm.in), waiting)
		}
		time.Sleep(time.Millisecond) // poll interval
	}
	open.Do(func() { close(j.release) })
	for range waiting + 1 {
		if r := <-replies; r.Err != nil || r.Outcome != engine.Confirmed {
			t.Fatalf("grab: %+v", r)
		}
	}
	rounds.mu.Lock()
	defer rounds.mu.Unlock()
	// The queue only grows until the committer gathers it, so the round
	// after the held one holds at least what was queued at the release.
	if len(rounds.sizes) == 0 || slices.Max(rounds.sizes) < queued {
		t.Errorf("records per round %v: one round should hold the %d decisions queued behind the held one", rounds.sizes, queued)
	}
}

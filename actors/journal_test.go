package actors

import (
	"context"
	"errors"
	"sync"
	"testing"
	"time"

	"github.com/seckill/seckill/engine"
	"github.com/seckill/seckill/persistence"
)

// gateJournal is a replicated journal in memory that takes every append at
// once, but holds each round carrying a grab until the test opens the gate,
// and then answers it with an unknown outcome (what a NATS server's death
// gives: "no response from stream").
type gateJournal struct {
	mu      sync.Mutex
	last    map[int]uint64
	seq     uint64
	held    chan struct{} // a round with a grab is held
	release chan struct{}
}

func (j *gateJournal) AppendAll(_ context.Context, apps []persistence.JournalAppend) {
	for i := range apps {
		a := &apps[i]
		e, err := engine.DecodeEntry(a.Item, a.Shard, a.Data)
		if err == nil && len(e.Records) > 0 && e.Records[len(e.Records)-1].Kind == engine.RecGrab {
			j.held <- struct{}{}
			<-j.release
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

// TestReplayOfALostRoundIsNotConfirmed: a buyer's retry that replays a grab
// whose round is still being appended waits for it; if the journal does
// not take that round, the replay is not confirmed either. (Seen in
// seckill chaos before the fix: a replay alone in its commit round, which
// writes nothing, was answered 201 with the id of a grab the journal never
// took, and the new incarnation gave that id to another buyer.)
func TestReplayOfALostRoundIsNotConfirmed(t *testing.T) {
	cfg := engine.ItemConfig{Item: "sku", Stock: 10, Shards: 1, PerUserLimit: 1}
	j := &gateJournal{last: map[int]uint64{0: 1}, seq: 1, held: make(chan struct{}), release: make(chan struct{})}
	var n *Node
	ledger := newMemLedger()
	ledger.create(cfg)
	n, err := Start(persistence.NewMem(), Options{Clock: func() int64 { return 1000 }, RequestTimeout: time.Minute,
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
	first := make(chan Reply, 1)
	go func() { first <- n.Grab(cfg.Item, "u1", 1, "k1") }()
	<-j.held // the grab's round is in the journal's hands
	// The buyer retries with the same key: the shard replays the grab in
	// flight, a wait for the commits queued before it, in a round of its
	// own behind the held one.
	again := make(chan Reply, 1)
	go func() { again <- n.Grab(cfg.Item, "u1", 1, "k1") }()
	it, _ := n.Item(cfg.Item)
	cm := it.shards[0].committer
	for deadline := time.Now().Add(time.Minute); len(cm.submitted) == 0; {
		if time.Now().After(deadline) {
			t.Fatal("the replay's round was never submitted")
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

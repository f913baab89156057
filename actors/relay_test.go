package actors

import (
	"context"
	"errors"
	"fmt"
	"slices"
	"sync"
	"sync/atomic"
	"testing"
	"time"

	"github.com/seckill/seckill/engine"
	"github.com/seckill/seckill/persistence"
)

// recordingPublisher is the relay's view of a stream: it fails while down
// and records every grab acknowledged.
type recordingPublisher struct {
	mu    sync.Mutex
	down  bool
	seen  map[string]int // grab id -> times published
	order map[string][]uint64
	fails int
	got   chan struct{}
}

func newRecordingPublisher() *recordingPublisher {
	return &recordingPublisher{seen: map[string]int{}, order: map[string][]uint64{}, got: make(chan struct{}, 1)}
}

func (p *recordingPublisher) Publish(ctx context.Context, grabs []engine.Grab) error {
	p.mu.Lock()
	defer p.mu.Unlock()
	if p.down {
		p.fails++
		return errors.New("stream unreachable")
	}
	for _, g := range grabs {
		p.seen[g.ID()]++
		k := fmt.Sprintf("%s.%d", g.Item, g.Shard)
		p.order[k] = append(p.order[k], g.Seq)
	}
	select {
	case p.got <- struct{}{}:
	default:
	}
	return nil
}

func (p *recordingPublisher) count() int {
	p.mu.Lock()
	defer p.mu.Unlock()
	return len(p.seen)
}

// waitFor blocks until the publisher has seen n distinct grabs.
func (p *recordingPublisher) waitFor(t *testing.T, n int) {
	t.Helper()
	for p.count() < n {
		<-p.got
	}
}

// TestRelayHeld: a held relay publishes nothing, however many grabs become
// durable, and everything once the hold lets go.
func TestRelayHeld(t *testing.T) {
	store := persistence.NewMem()
	n := startNode(t, store)
	if err := n.CreateItem(engine.ItemConfig{Item: "h", Stock: 100, Shards: 2, PerUserLimit: 1}); err != nil {
		t.Fatal(err)
	}
	pub := newRecordingPublisher()
	var held atomic.Bool
	held.Store(true)
	asked := make(chan struct{}, 1)
	hold := func() bool {
		select {
		case asked <- struct{}{}:
		default:
		}
		return held.Load()
	}
	ctx, cancel := context.WithCancel(context.Background())
	done := make(chan error, 1)
	go func() { done <- n.RunRelayHeld(ctx, pub, hold) }()
	for i := range 50 {
		if r := n.Grab("h", fmt.Sprint("u", i), 1, ""); r.Outcome != engine.Confirmed {
			t.Fatalf("grab %d: %v %v", i, r.Outcome, r.Err)
		}
	}
	// Asked three times after every grab was durable: a relay that
	// published regardless would have done so by the third.
	for range 3 {
		select {
		case <-asked:
		case <-time.After(10 * time.Second):
			t.Fatal("the relay never asked whether it may publish")
		}
	}
	if c := pub.count(); c != 0 {
		t.Fatalf("held relay published %d grabs", c)
	}
	held.Store(false)
	pub.waitFor(t, 50)
	cancel()
	<-done
	n.Close()
}

func TestRelayPublishesEveryGrabOnceInOrder(t *testing.T) {
	store := persistence.NewMem()
	n := startNode(t, store)
	if err := n.CreateItem(engine.ItemConfig{Item: "r", Stock: 1000, Shards: 4, PerUserLimit: 1}); err != nil {
		t.Fatal(err)
	}
	pub := newRecordingPublisher()
	pub.down = true // the stream is down when the sale starts
	ctx, cancel := context.WithCancel(context.Background())
	done := make(chan error, 1)
	go func() { done <- n.RunRelay(ctx, pub) }()
	var confirmed []string
	for i := 0; i < 300; i++ {
		r := n.Grab("r", fmt.Sprint("u", i), 1, "")
		if r.Outcome != engine.Confirmed {
			t.Fatalf("grab %d: %v %v", i, r.Outcome, r.Err)
		}
		confirmed = append(confirmed, r.Grab.ID())
	}
	pub.mu.Lock()
	pub.down = false // back: the backlog drains
	pub.mu.Unlock()
	pub.waitFor(t, 300)
	cancel()
	<-done
	n.Close()
	for _, id := range confirmed {
		if pub.seen[id] != 1 {
			t.Fatalf("grab %s published %d times", id, pub.seen[id])
		}
	}
	for k, seqs := range pub.order {
		for i, s := range seqs {
			if s != uint64(i+1) {
				t.Fatalf("shard %s published out of order: %v", k, seqs)
			}
		}
	}
	// After a restart the relay starts from the durable cursor: nothing
	// is published again, and new grabs follow.
	n2 := startNode(t, store.Reopen())
	defer n2.Close()
	ctx2, cancel2 := context.WithCancel(context.Background())
	defer cancel2()
	go n2.RunRelay(ctx2, pub)
	r := n2.Grab("r", "late", 1, "")
	pub.waitFor(t, 301)
	pub.mu.Lock()
	defer pub.mu.Unlock()
	if pub.seen[r.Grab.ID()] != 1 || len(pub.seen) != 301 {
		t.Fatalf("after restart: %d published, late grab %d times", len(pub.seen), pub.seen[r.Grab.ID()])
	}
	for id, k := range pub.seen {
		if k != 1 {
			t.Fatalf("grab %s published %d times across the restart", id, k)
		}
	}
}

// countingStore counts the relay's reads of the outbox from disk.
type countingStore struct {
	persistence.Store
	reads atomic.Int64
}

func (c *countingStore) GrabsAfter(item string, shard int, after uint64, max int, fn func(engine.Grab) error) error {
	c.reads.Add(1)
	return c.Store.GrabsAfter(item, shard, after, max, fn)
}

// TestRelayHandoff: grabs reach the relay in memory from the committer
// while the stream keeps up (no read of Pebble), and when it does not (a
// backlog larger than a shard keeps in memory) the relay reads the rest
// from Pebble; either way every grab is published once, in order per shard.
func TestRelayHandoff(t *testing.T) {
	cases := []struct {
		name      string
		shards    int
		grabs     int
		down      bool // the stream is down while the grabs are made
		wantReads bool // the relay must read Pebble
	}{
		{"keeping up", 4, 300, false, false},
		{"backlog past memory", 1, 3*MaxFreshGrabs + 7, true, true},
	}
	for _, c := range cases {
		t.Run(c.name, func(t *testing.T) {
			store := &countingStore{Store: persistence.NewMem()}
			n := startNode(t, store)
			defer n.Close()
			if err := n.CreateItem(engine.ItemConfig{Item: "h", Stock: int64(c.grabs), Shards: c.shards, PerUserLimit: 1}); err != nil {
				t.Fatal(err)
			}
			pub := newRecordingPublisher()
			pub.down = c.down
			ctx, cancel := context.WithCancel(context.Background())
			done := make(chan error, 1)
			go func() { done <- n.RunRelay(ctx, pub) }()
			for i := 0; i < c.grabs; i++ {
				if r := n.Grab("h", fmt.Sprint("u", i), 1, ""); r.Outcome != engine.Confirmed {
					t.Fatalf("grab %d: %v %v", i, r.Outcome, r.Err)
				}
				if !c.down {
					pub.waitFor(t, i+1) // the stream keeps up
				}
			}
			pub.mu.Lock()
			pub.down = false
			pub.mu.Unlock()
			pub.waitFor(t, c.grabs)
			cancel()
			<-done
			pub.mu.Lock()
			defer pub.mu.Unlock()
			for id, k := range pub.seen {
				if k != 1 {
					t.Errorf("grab %s published %d times", id, k)
				}
			}
			for k, seqs := range pub.order {
				for i, s := range seqs {
					if s != uint64(i+1) {
						t.Fatalf("shard %s published out of order at %d: %d", k, i, s)
					}
				}
			}
			if reads := store.reads.Load(); (reads > 0) != c.wantReads {
				t.Fatalf("the relay read Pebble %d times", reads)
			}
		})
	}
}

// TestPublishableDropsGaps: a forced move's gap grabs never reach the
// stream (no buyer, no order); a batch without any is published as it is.
func TestPublishableDropsGaps(t *testing.T) {
	g := func(seq uint64, user string) engine.Grab {
		return engine.Grab{Item: "i", Shard: 0, Seq: seq, User: user, Qty: 1}
	}
	cases := []struct {
		name       string
		batch      []engine.Grab
		want       []uint64
		sameMemory bool
	}{
		{"no gap", []engine.Grab{g(1, "a"), g(2, "b")}, []uint64{1, 2}, true},
		{"gaps in the middle", []engine.Grab{g(1, "a"), g(2, engine.GapUser), g(3, engine.GapUser), g(4, "b")}, []uint64{1, 4}, false},
		{"only gaps", []engine.Grab{g(5, engine.GapUser), g(6, engine.GapUser)}, nil, false},
		{"gap first", []engine.Grab{g(7, engine.GapUser), g(8, "c")}, []uint64{8}, false},
	}
	for _, tc := range cases {
		t.Run(tc.name, func(t *testing.T) {
			out, _ := publishable(tc.batch, nil)
			var got []uint64
			for _, x := range out {
				got = append(got, x.Seq)
			}
			if !slices.Equal(got, tc.want) {
				t.Fatalf("published %v, want %v", got, tc.want)
			}
			if same := len(out) > 0 && &out[0] == &tc.batch[0]; same != tc.sameMemory {
				t.Fatalf("batch reused: %v, want %v", same, tc.sameMemory)
			}
		})
	}
}

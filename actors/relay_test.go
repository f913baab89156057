package actors

import (
	"context"
	"errors"
	"fmt"
	"sync"
	"testing"

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

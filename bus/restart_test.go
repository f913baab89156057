package bus

import (
	"context"
	"errors"
	"testing"
	"time"
)

// restart stops e and starts a new server on the same store and address,
// as an operator restarting NATS would.
func restart(t *testing.T, e *Embedded, dir string) *Embedded {
	t.Helper()
	e.Shutdown()
	return startServer(t, dir, e.addr.String())
}

// TestPublisherServerDown: with the server gone PublishBatch fails within
// its timeout instead of hanging; once a server is back on the same store
// the client reconnects, the retried batch goes through, and nothing is
// stored twice.
func TestPublisherServerDown(t *testing.T) {
	dir := t.TempDir()
	e := startServer(t, dir, "127.0.0.1:0")
	js := dial(t, e, Config{})
	ctx := context.Background()
	p := newPublisher(js, 16, time.Second) // short timeout: the test waits it out
	defer p.Close()
	first, second := grabs("p", 1, 100), grabs("p", 101, 100)
	if err := p.PublishBatch(ctx, first); err != nil {
		t.Fatal(err)
	}

	e.Shutdown()
	for i := 0; i < 2; i++ { // the first may see the disconnect, the second waits out the timeout
		err := p.PublishBatch(ctx, second)
		if err == nil {
			t.Fatal("published with the server down")
		}
		t.Logf("server down: %v", err)
	}
	cctx, cancel := context.WithCancel(ctx)
	cancel()
	if err := p.PublishBatch(cctx, second); !errors.Is(err, context.Canceled) {
		t.Fatalf("with a cancelled context: %v", err)
	}

	e = restart(t, e, dir)
	eventually(t, "published after the restart", func() bool { return p.PublishBatch(ctx, second) == nil })
	// Each grab exactly once. Not necessarily in order: an attempt cut off
	// by the restart may have stored later grabs of the batch and not
	// earlier ones, which the retry then adds (the writer takes any order).
	seen := map[uint64]int{}
	err := GrabsInStream(ctx, js, "p", func(g GrabMsg) error {
		seen[g.Seq]++
		return nil
	})
	if err != nil {
		t.Fatal(err)
	}
	for seq := uint64(1); seq <= uint64(len(first)+len(second)); seq++ {
		if seen[seq] != 1 {
			t.Errorf("grab seq %d stored %d times", seq, seen[seq])
		}
	}
	if len(seen) != len(first)+len(second) {
		t.Errorf("%d distinct grabs in the stream, want %d", len(seen), len(first)+len(second))
	}
}

// TestWriterSurvivesRestart: a writer on a TCP connection keeps writing
// across a restart of the server on the same store and port.
func TestWriterSurvivesRestart(t *testing.T) {
	dir := t.TempDir()
	e := startServer(t, dir, "127.0.0.1:0")
	js := dial(t, e, Config{})
	ctx := context.Background()
	o := newOrders()
	run(t, func(ctx context.Context) error { return RunWriter(ctx, js, 32, o.handle) })
	p := NewPublisher(js, 32)
	defer p.Close()

	before := grabs("p", 1, 100)
	if err := p.PublishBatch(ctx, before); err != nil {
		t.Fatal(err)
	}
	eventually(t, "written before the restart", func() bool { return o.hasAll(before) })

	e = restart(t, e, dir)
	after := grabs("p", 101, 100)
	eventually(t, "published after the restart", func() bool { return p.PublishBatch(ctx, after) == nil })
	eventually(t, "written after the restart", func() bool { return o.hasAll(after) })
	eventually(t, "all acked", func() bool {
		ci := consumerInfo(t, js, StreamGrabs, ConsumerOrders)
		return ci.NumAckPending == 0 && ci.NumPending == 0
	})
}

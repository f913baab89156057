package bus

import (
	"context"
	"errors"
	"fmt"
	"strings"
	"testing"
	"time"

	"github.com/nats-io/nats.go"
	"github.com/nats-io/nats.go/jetstream"
)

// TestPublishWriteOnce: every published grab reaches the writer once, a
// republished batch (same Msg-Ids) is not stored again, items whose ids
// hold dots work, and GrabsInStream sees each item's grabs.
func TestPublishWriteOnce(t *testing.T) {
	e := startServer(t, t.TempDir(), "")
	js := inProcess(t, e, Config{})
	ctx := context.Background()
	items := map[string][]GrabMsg{
		"phone-x": grabs("phone-x", 1, 600),
		"a..b.":   grabs("a..b.", 1, 300), // "seckill.grabs.a..b." would be an invalid subject
		"a":       grabs("a", 1, 100),     // a prefix of the others' names
	}
	var all []GrabMsg
	for _, gs := range items {
		all = append(all, gs...)
	}
	p := NewPublisher(js, DefaultPublishWindow)
	defer p.Close()
	var runs uint64 // messages: runs of one item and shard, at most MaxGrabsPerMsg
	for i := 0; i < len(all); i += 256 {
		batch := all[i:min(i+256, len(all))]
		if err := p.PublishBatch(ctx, batch); err != nil {
			t.Fatal(err)
		}
		for rest := batch; len(rest) > 0; runs++ {
			rest = rest[len(nextRun(rest)):]
		}
	}
	if runs >= uint64(len(all))/MaxGrabsPerMsg+20 {
		t.Fatalf("%d runs for %d grabs: not batched", runs, len(all))
	}
	if err := p.PublishBatch(ctx, all[:256]); err != nil { // the relay's retry
		t.Fatal(err)
	}
	if n := streamInfo(t, js, StreamGrabs).State.Msgs; n != runs {
		t.Fatalf("GRABS holds %d messages, want %d: the retry was stored again", n, runs)
	}

	o := newOrders()
	run(t, func(ctx context.Context) error { return RunWriter(ctx, js, DefaultWriterBatch, o.handle) })
	eventually(t, "all written", func() bool { return o.hasAll(all) })
	eventually(t, "all acked", func() bool {
		ci := consumerInfo(t, js, StreamGrabs, ConsumerOrders)
		return ci.NumAckPending == 0 && ci.NumPending == 0
	})
	for _, g := range all {
		if n := o.deliveries(g.GrabID); n != 1 {
			t.Fatalf("%s delivered %d times", g.GrabID, n)
		}
		if got := o.order(g.GrabID); got != g {
			t.Fatalf("%s written as %+v, want %+v", g.GrabID, got, g)
		}
	}

	for item, want := range items {
		var got []GrabMsg
		err := GrabsInStream(ctx, js, item, func(g GrabMsg) error { got = append(got, g); return nil })
		if err != nil || len(got) != len(want) {
			t.Fatalf("%s: %d grabs in stream, want %d (%v)", item, len(got), len(want), err)
		}
		for i := range want {
			if got[i] != want[i] {
				t.Fatalf("%s: grab %d is %+v, want %+v", item, i, got[i], want[i])
			}
		}
	}
	if err := GrabsInStream(ctx, js, "none", func(GrabMsg) error { return errors.New("called") }); err != nil {
		t.Fatalf("item without grabs: %v", err)
	}
}

func TestPublishRefusesInvalid(t *testing.T) {
	e := startServer(t, t.TempDir(), "")
	js := inProcess(t, e, Config{})
	batch := grabs("p", 1, 3)
	batch[1].Qty = 0
	p := NewPublisher(js, 2)
	defer p.Close()
	if err := p.PublishBatch(context.Background(), batch); !errors.Is(err, ErrInvalidGrab) {
		t.Fatalf("got %v, want ErrInvalidGrab", err)
	}
	if n := streamInfo(t, js, StreamGrabs).State.Msgs; n != 0 {
		t.Fatalf("%d messages published from a refused batch", n)
	}
}

// deadCfg makes a grab die after three deliveries: the first failure waits
// BackOff[0], which is also the first delivery's ack wait and so long
// enough for a healthy batch under -race; the later ones are short.
var deadCfg = Config{MaxDeliver: 3, BackOff: []time.Duration{time.Second, 100 * time.Millisecond}}

// deadLetterRig starts a server with deadCfg, a writer whose handler fails
// the grabs in poison, and a dead-letter copier, and publishes batch.
func deadLetterRig(t *testing.T, batch []GrabMsg, poison map[string]error) (jetstream.JetStream, *orders) {
	t.Helper()
	e := startServer(t, t.TempDir(), "")
	js := inProcess(t, e, deadCfg)
	o := newOrders()
	for id, err := range poison {
		o.setPoison(id, err)
	}
	run(t, func(ctx context.Context) error { return RunWriter(ctx, js, 4, o.handle) })
	run(t, func(ctx context.Context) error { return RunDLQCopier(ctx, js) })
	p := NewPublisher(js, 4)
	t.Cleanup(p.Close)
	if err := p.PublishBatch(context.Background(), batch); err != nil {
		t.Fatal(err)
	}
	return js, o
}

// waitDead waits for n dead letters and returns them.
func waitDead(t *testing.T, js jetstream.JetStream, n int) []DeadLetter {
	t.Helper()
	var dead []DeadLetter
	eventually(t, fmt.Sprintf("%d dead letters", n), func() bool {
		var err error
		dead, err = ListDead(context.Background(), js, 10)
		if err != nil {
			t.Fatal(err)
		}
		return len(dead) == n
	})
	return dead
}

// TestDeadLetterAndRetry: a grab the handler always fails is split out of
// its run (the others are acked) and redelivered alone with NakWithDelay,
// terminated on its last delivery with the handler's error, copied to the
// DLQ, listed, and after the cause is fixed RetryDead makes the handler
// write it. A body that does not decode takes the same road.
func TestDeadLetterAndRetry(t *testing.T) {
	ctx := context.Background()
	batch := grabs("p", 1, 10)
	poison := batch[3]
	js, o := deadLetterRig(t, batch, map[string]error{poison.GrabID: errors.New("order store: constraint\nviolated")})
	garbage := &nats.Msg{Subject: GrabSubject("p"), Data: []byte(`{"grab_id":"p.9.9"}`)}
	if _, err := js.PublishMsg(ctx, garbage, jetstream.WithMsgID("p.9.9")); err != nil {
		t.Fatal(err)
	}

	dead := waitDead(t, js, 2)
	if !o.hasAll(append(append([]GrabMsg{}, batch[:3]...), batch[4:]...)) {
		t.Fatal("healthy grabs not written")
	}
	// Once in its run, whose other grabs were written and acked; then,
	// split out as a message of its own, MaxDeliver times.
	if n := o.deliveries(poison.GrabID); n != 1+deadCfg.MaxDeliver {
		t.Fatalf("poison delivered %d times, want %d", n, 1+deadCfg.MaxDeliver)
	}
	byID := map[string]DeadLetter{}
	for _, d := range dead {
		byID[d.GrabID] = d
	}
	d := byID[poison.GrabID]
	if g, err := DecodeGrab(d.Body); err != nil || g != poison || d.Item != "p" || d.Deliveries != deadCfg.MaxDeliver ||
		d.Reason != "order store: constraint violated" {
		t.Fatalf("dead letter %+v (body %s, %v)", d, d.Body, err)
	}
	if d := byID["p.9.9"]; !strings.HasPrefix(d.Reason, "decode: ") || string(d.Body) != string(garbage.Data) {
		t.Fatalf("undecodable dead letter %+v", d)
	}

	o.setPoison(poison.GrabID, nil) // the cause is fixed
	if err := RetryDead(ctx, js, poison.GrabID); err != nil {
		t.Fatal(err)
	}
	eventually(t, "retried grab written", func() bool { return o.hasAll([]GrabMsg{poison}) })
	eventually(t, "retried grab acked", func() bool {
		ci := consumerInfo(t, js, StreamGrabs, ConsumerOrders)
		return ci.NumAckPending == 0 && ci.NumPending == 0 && ci.NumRedelivered == 0
	})
	dead, err := ListDead(ctx, js, 10)
	if err != nil || len(dead) != 1 || dead[0].GrabID != "p.9.9" {
		t.Fatalf("after retry the DLQ holds %+v (%v), want only p.9.9", dead, err)
	}
	for _, id := range []string{poison.GrabID, "q.1.1", "", "not an id"} {
		if err := RetryDead(ctx, js, id); !errors.Is(err, ErrNotFound) {
			t.Fatalf("RetryDead(%q) = %v, want ErrNotFound", id, err)
		}
	}
}

// TestRunFailingWholeSplitsOnLastDelivery: a run whose grabs all fail (the
// order store is down) is redelivered whole with backoff, split on its last
// delivery, and each grab then dies alone under its own id; none is lost.
func TestRunFailingWholeSplitsOnLastDelivery(t *testing.T) {
	batch := grabs("p", 1, 3)
	down := map[string]error{}
	for _, g := range batch {
		down[g.GrabID] = errors.New("order store down")
	}
	js, o := deadLetterRig(t, batch, down)
	dead := waitDead(t, js, len(batch))
	for i, g := range batch {
		if n := o.deliveries(g.GrabID); n != 2*deadCfg.MaxDeliver {
			t.Errorf("grab %s delivered %d times, want %d (as the run, then alone)", g.GrabID, n, 2*deadCfg.MaxDeliver)
		}
		if d := dead[i]; d.GrabID != g.GrabID || d.Deliveries != deadCfg.MaxDeliver {
			t.Errorf("dead letter %d: %+v, want grab %s after %d deliveries", i, d, g.GrabID, deadCfg.MaxDeliver)
		}
	}
}

// TestDeadLetterWhenNeverAcked: a grab that a writer takes on its last
// delivery and never answers (the writer died or hung) dies through the
// server's max-deliveries advisory, reaches the DLQ, and is not delivered
// again.
func TestDeadLetterWhenNeverAcked(t *testing.T) {
	e := startServer(t, t.TempDir(), "")
	cfg := Config{MaxDeliver: 2, BackOff: []time.Duration{100 * time.Millisecond}}
	js := inProcess(t, e, cfg)
	ctx := context.Background()
	run(t, func(ctx context.Context) error { return RunDLQCopier(ctx, js) })
	g := grabs("p", 1, 1)
	p := NewPublisher(js, 1)
	defer p.Close()
	if err := p.PublishBatch(ctx, g); err != nil {
		t.Fatal(err)
	}
	cons, err := js.Consumer(ctx, StreamGrabs, ConsumerOrders)
	if err != nil {
		t.Fatal(err)
	}
	for n := 1; n <= cfg.MaxDeliver; n++ { // a writer that takes it and never acks
		m, err := cons.Next(jetstream.FetchMaxWait(waitFor))
		if err != nil {
			t.Fatalf("delivery %d: %v", n, err)
		}
		if md, _ := m.Metadata(); md.NumDelivered != uint64(n) {
			t.Fatalf("delivery %d numbered %d", n, md.NumDelivered)
		}
	}
	// The server notices an unacked last delivery only when the next pull
	// comes (nats-server#1716): a healthy writer's.
	o := newOrders()
	run(t, func(ctx context.Context) error { return RunWriter(ctx, js, 1, o.handle) })
	var dead []DeadLetter
	eventually(t, "a dead letter", func() bool {
		dead, err = ListDead(ctx, js, 10)
		return err == nil && len(dead) == 1
	})
	if d := dead[0]; d.GrabID != g[0].GrabID || d.Deliveries != cfg.MaxDeliver || !strings.Contains(d.Reason, "not acked") {
		t.Fatalf("dead letter %+v", d)
	}
	if n := o.deliveries(g[0].GrabID); n != 0 {
		t.Fatalf("delivered %d more times after its last delivery", n)
	}
}

package bus

import (
	"context"
	"errors"
	"fmt"
	"strconv"
	"time"

	"github.com/nats-io/nats.go"
	"github.com/nats-io/nats.go/jetstream"
)

// Publisher settings.
const (
	// DefaultPublishWindow keeps enough acks in flight to hide the round
	// trip (measured 68-125 k msgs/s at 256 on the build machine).
	DefaultPublishWindow = 256
	// PublishTimeout bounds one PublishBatch: a healthy server acks a batch
	// in milliseconds; an outage should send the relay to its backoff soon.
	PublishTimeout = 5 * time.Second
	// abandonedWindows is how many windows of futures a publisher may leave
	// behind after failed batches (each is settled by the ack timeout)
	// before the library refuses new publishes.
	abandonedWindows = 4
)

// ErrPublishTimeout is returned when a batch is not acknowledged within
// PublishTimeout.
var ErrPublishTimeout = errors.New("publish timed out")

// Publisher publishes batches of grabs to GRABS with a bounded window of
// acks in flight. It is safe for concurrent use; batches go one at a time.
type Publisher struct {
	js      jetstream.JetStream // its own context: own ack timeout and reply subscription
	window  int
	timeout time.Duration
	turn    chan struct{} // held by the batch being published
	node    string        // the cluster node publishing ("" on one node)
}

// From makes p publish on node's lane (GrabSubjectFrom): the relay of a
// cluster's node, whose own writers write the orders.
func (p *Publisher) From(node string) *Publisher {
	p.node = node
	return p
}

// NewPublisher returns a publisher on js's connection. window is clamped
// to 1..MaxPublishWindow.
func NewPublisher(js jetstream.JetStream, window int) *Publisher {
	return newPublisher(js, window, PublishTimeout)
}

func newPublisher(js jetstream.JetStream, window int, timeout time.Duration) *Publisher {
	window = min(max(window, 1), MaxPublishWindow)
	// A context of our own, so that the ack timeout settles every future
	// even after a batch gave up on it. Publishing does not use the API
	// prefix or domain, so nothing of js's options is lost.
	own, err := jetstream.New(js.Conn(),
		jetstream.WithPublishAsyncMaxPending(abandonedWindows*window),
		jetstream.WithPublishAsyncTimeout(timeout))
	if err != nil {
		panic(fmt.Sprintf("bus: jetstream options: %v", err)) // only for bad constants
	}
	return &Publisher{js: own, window: window, timeout: timeout, turn: make(chan struct{}, 1)}
}

// PublishBatch publishes msgs to GRABS and returns nil once the server has
// acknowledged all of them; on an error some may be stored, and publishing
// the batch again is harmless. Consecutive grabs of one shard go in one
// message of up to MaxGrabsPerMsg (their order kept), a lone grab as a
// message of its own. Nats-Msg-Id is the grab id of a lone grab and
// "<first grab id>+<last seq>" of a run ('+' is in no id), so the stream's
// dedupe window drops a republished message; a run cut differently after a
// restart may store a grab twice, which writers take (orders are keyed by
// grab id). Acks are waited for with at most the window in flight, and a
// duplicate within the window counts as acknowledged. It returns within
// PublishTimeout, sooner if ctx ends. A batch holding an invalid grab is
// refused whole (ErrInvalidGrab, nothing sent): retrying it cannot help.
func (p *Publisher) PublishBatch(ctx context.Context, msgs []GrabMsg) error {
	if len(msgs) > MaxBatch {
		return fmt.Errorf("publish %d grabs: at most %d a batch", len(msgs), MaxBatch)
	}
	for i := range msgs {
		if err := msgs[i].Validate(); err != nil {
			return fmt.Errorf("publish: %w", err)
		}
	}
	ctx, cancel := context.WithTimeoutCause(ctx, p.timeout, ErrPublishTimeout)
	defer cancel()
	select {
	case p.turn <- struct{}{}:
		defer func() { <-p.turn }()
	case <-ctx.Done():
		return fmt.Errorf("publish %d grabs: %w", len(msgs), context.Cause(ctx))
	}

	// One buffer for the batch: every body must stay intact until its ack
	// (the library resends it on "no responders").
	buf := make([]byte, 0, len(msgs)*256)
	inflight := make([]jetstream.PubAckFuture, 0, min(len(msgs), p.window))
	ids := make([]string, 0, cap(inflight))
	for rest := msgs; len(rest) > 0; {
		run := nextRun(rest)
		rest = rest[len(run):]
		if len(inflight) == p.window {
			if err := settle(ctx, inflight[0]); err != nil {
				return fmt.Errorf("publish %s: %w", ids[0], err)
			}
			inflight, ids = inflight[1:], ids[1:]
		}
		id := run[0].GrabID
		if len(run) > 1 {
			id += "+" + strconv.FormatUint(run[len(run)-1].Seq, 10)
		}
		start := len(buf)
		buf = EncodeGrabs(buf, run)
		m := &nats.Msg{Subject: GrabSubjectFrom(p.node, run[0].Item), Data: buf[start:len(buf):len(buf)]}
		f, err := p.js.PublishMsgAsync(m, jetstream.WithMsgID(id))
		if err != nil {
			return fmt.Errorf("publish %s: %w", id, err)
		}
		inflight, ids = append(inflight, f), append(ids, id)
	}
	for i, f := range inflight {
		if err := settle(ctx, f); err != nil {
			return fmt.Errorf("publish %s: %w", ids[i], err)
		}
	}
	return nil
}

// nextRun is the longest prefix of msgs, up to MaxGrabsPerMsg, whose grabs
// are of one item and shard: one message's worth.
func nextRun(msgs []GrabMsg) []GrabMsg {
	n := 1
	for n < len(msgs) && n < MaxGrabsPerMsg && msgs[n].Item == msgs[0].Item && msgs[n].Shard == msgs[0].Shard {
		n++
	}
	return msgs[:n]
}

// settle waits for one ack.
func settle(ctx context.Context, f jetstream.PubAckFuture) error {
	select {
	case <-f.Ok():
		return nil
	case err := <-f.Err():
		return err
	case <-ctx.Done():
		return context.Cause(ctx)
	}
}

// Close drops the publisher's reply subscription; futures still pending
// fail. The connection stays open.
func (p *Publisher) Close() { p.js.CleanupPublisher() }

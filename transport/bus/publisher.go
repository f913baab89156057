package bus

import (
	"context"
	"errors"
	"fmt"
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

// PublishBatch publishes every message on GrabSubject(Item) with
// Nats-Msg-Id = GrabID and returns nil once the server has acknowledged all
// of them (a duplicate within the window counts as acknowledged). On error
// some may be stored and others not: the caller retries the whole batch
// later, and the Msg-Id makes that safe. It returns within PublishTimeout,
// sooner if ctx ends. A batch holding an invalid grab is refused whole
// (ErrInvalidGrab, nothing sent): retrying it cannot help.
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
	for i := range msgs {
		if len(inflight) == p.window {
			if err := settle(ctx, inflight[0]); err != nil {
				return fmt.Errorf("publish grab %s: %w", ids[0], err)
			}
			inflight, ids = inflight[1:], ids[1:]
		}
		start := len(buf)
		buf = EncodeGrab(buf, msgs[i])
		m := &nats.Msg{Subject: GrabSubject(msgs[i].Item), Data: buf[start:len(buf):len(buf)]}
		f, err := p.js.PublishMsgAsync(m, jetstream.WithMsgID(msgs[i].GrabID))
		if err != nil {
			return fmt.Errorf("publish grab %s: %w", msgs[i].GrabID, err)
		}
		inflight, ids = append(inflight, f), append(ids, msgs[i].GrabID)
	}
	for i, f := range inflight {
		if err := settle(ctx, f); err != nil {
			return fmt.Errorf("publish grab %s: %w", ids[i], err)
		}
	}
	return nil
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

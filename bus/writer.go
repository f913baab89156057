package bus

import (
	"context"
	"errors"
	"fmt"
	"log/slog"
	"strings"
	"time"

	"github.com/nats-io/nats.go"
	"github.com/nats-io/nats.go/jetstream"
)

// Writer loop settings.
const (
	// DefaultWriterBatch fills one order-store transaction without making
	// the first grab of the batch wait long for the last.
	DefaultWriterBatch = 256
	// FetchWait is how long one pull waits for a first message. A pull lost
	// in a server restart is replaced after at most this long.
	FetchWait = 5 * time.Second
	// RetryWaitMin and RetryWaitMax bound the backoff of the writer and the
	// copier after an error (server down, consumer missing).
	RetryWaitMin = 100 * time.Millisecond
	RetryWaitMax = 5 * time.Second
	// PauseWait is how often a paused writer (its order store cannot
	// write: a full disk) looks again; it fetches nothing meanwhile, so no
	// delivery is spent and nothing goes to the dead letters.
	PauseWait = time.Second
	// policyRefresh is how often a writer rereads MaxDeliver and BackOff,
	// so that a changed Config reaches running writers.
	policyRefresh = time.Minute
)

// Handler writes a batch of grabs as orders, in one transaction, and
// returns only after its commit. It reports the grabs it could not write,
// keyed by grab id; every other grab of the batch is acked. A batch may hold
// the same grab id twice (a republish after the dedupe window), and a grab
// may come again after it was written (a lost ack): the order store must
// key orders by grab id.
type Handler func(ctx context.Context, msgs []GrabMsg) (failed map[string]error)

// RunWriter fetches batches of up to batch grabs from the orders consumer
// and hands them to h until ctx ends; several writers may share the
// consumer. A grab h reports failed, or a body that does not decode, is
// redelivered after the consumer's BackOff for its delivery count; on its
// last delivery it is terminated with the error as reason, which the
// dead-letter copier turns into a dead letter. Errors (server down or
// restarting, consumer missing) are logged and retried with backoff. It
// returns nil when ctx ends.
func RunWriter(ctx context.Context, js jetstream.JetStream, batch int, h Handler) error {
	return RunWriterFor(ctx, js, "", batch, h)
}

// RunWriterFor is RunWriter for the order writers of a cluster's node:
// they read ConsumerFor(node), the grabs node's relay published.
func RunWriterFor(ctx context.Context, js jetstream.JetStream, node string, batch int, h Handler) error {
	return RunWriterWhen(ctx, js, node, batch, h, nil)
}

// ErrHold, from a writer's ready func, holds the writer back for HoldWait,
// without a log line: the node is busy confirming grabs (the first moments
// of a flash sale) and orders, asynchronous anyway, can wait a moment.
var ErrHold = errors.New("order writer held: the node is confirming grabs")

// HoldWait is how long a held writer waits before asking again.
const HoldWait = 10 * time.Millisecond

// RunWriterWhen is RunWriterFor that fetches only while ready says nil:
// while the order store cannot write, the writer backs off without taking
// messages (ready nil: always ready).
func RunWriterWhen(ctx context.Context, js jetstream.JetStream, node string, batch int, h Handler, ready func() error) error {
	if h == nil {
		return errors.New("run writer: nil handler")
	}
	batch = min(max(batch, 1), MaxBatch)
	log := slog.Default().With("component", "bus.writer")
	var b backoff
	for ctx.Err() == nil {
		err := writeLoop(ctx, js, ConsumerFor(node), batch, h, ready, log, &b)
		if ctx.Err() != nil {
			break
		}
		log.Warn("order writer: retrying", "err", err, "wait", b.next())
		b.wait(ctx)
	}
	return nil
}

// writeLoop runs until an error.
func writeLoop(ctx context.Context, js jetstream.JetStream, consumer string, batch int, h Handler, ready func() error, log *slog.Logger, b *backoff) error {
	cons, err := js.Consumer(ctx, StreamGrabs, consumer)
	if err != nil {
		return fmt.Errorf("consumer %s/%s: %w", StreamGrabs, consumer, err)
	}
	pol, polAt := policyOf(cons.CachedInfo()), time.Now()
	paused := false
	for {
		if ready != nil {
			if err := ready(); errors.Is(err, ErrHold) {
				select {
				case <-ctx.Done():
					return ctx.Err()
				case <-time.After(HoldWait):
				}
				continue
			} else if err != nil {
				if !paused {
					log.Warn("order writer paused: the order store cannot write", "err", err)
					paused = true
				}
				select {
				case <-ctx.Done():
					return ctx.Err()
				case <-time.After(PauseWait):
				}
				continue
			}
			if paused {
				log.Info("order writer resumed")
				paused = false
			}
		}
		if st := js.Conn().Status(); st != nats.CONNECTED {
			// A pull sent now would sit in the reconnect buffer and reach
			// the server stale.
			return fmt.Errorf("connection %s", st)
		}
		if time.Since(polAt) > policyRefresh {
			info, err := cons.Info(ctx)
			if err != nil {
				return fmt.Errorf("consumer info: %w", err)
			}
			pol, polAt = policyOf(info), time.Now()
		}
		msgs, err := fetch(ctx, cons, batch)
		if err != nil {
			return err
		}
		b.reset()
		if len(msgs) > 0 {
			write(ctx, js, msgs, pol, h, log)
		}
	}
}

// fetch waits up to FetchWait for one message, then takes whatever else is
// ready, up to batch: a lone grab is not held back to fill a batch, and a
// backlog still goes in full batches.
func fetch(ctx context.Context, cons jetstream.Consumer, batch int) ([]jetstream.Msg, error) {
	wctx, cancel := context.WithTimeout(ctx, FetchWait)
	defer cancel()
	first, err := cons.Fetch(1, jetstream.FetchContext(wctx))
	if err != nil {
		return nil, fmt.Errorf("fetch: %w", err)
	}
	msgs := make([]jetstream.Msg, 0, batch)
	for m := range first.Messages() {
		msgs = append(msgs, m)
	}
	if err := first.Error(); err != nil && !(errors.Is(err, context.DeadlineExceeded) && ctx.Err() == nil) {
		return nil, fmt.Errorf("fetch: %w", err)
	}
	if len(msgs) == 0 || batch == 1 {
		return msgs, nil
	}
	rest, err := cons.FetchNoWait(batch - 1)
	if err != nil {
		return msgs, nil // the next fetch reports it
	}
	for m := range rest.Messages() {
		msgs = append(msgs, m)
	}
	return msgs, nil
}

// write hands the decodable grabs to h, then acks the messages whose grabs
// were all written and naks or terminates the others. A message holding a
// run of grabs of which some failed is split: each failed grab goes back to
// GRABS as a message of its own (Msg-Id = grab id), to be redelivered and,
// if it keeps failing, dead-lettered alone; the run is acked once the server
// holds them. A run whose grabs all failed (the order store is down, say)
// is redelivered whole, and split only on its last delivery.
func write(ctx context.Context, js jetstream.JetStream, msgs []jetstream.Msg, pol consumerPolicy, h Handler, log *slog.Logger) {
	var grabs []GrabMsg
	runs := make([][]GrabMsg, len(msgs))
	errs := make([]error, len(msgs)) // decode errors, then handler errors
	ids := make([]string, len(msgs)) // for the logs
	for i, m := range msgs {
		run, err := DecodeGrabs(m.Data())
		if err != nil {
			ids[i] = m.Headers().Get(jetstream.MsgIDHeader)
			errs[i] = fmt.Errorf("decode: %w", err)
			continue
		}
		ids[i] = run[0].GrabID
		if len(run) > 1 {
			ids[i] = m.Headers().Get(jetstream.MsgIDHeader)
		}
		runs[i] = run
		grabs = append(grabs, run...)
	}
	var failed map[string]error
	if len(grabs) > 0 {
		failed = h(ctx, grabs)
	}
	var nFailed int
	var firstErr error
	for i, m := range msgs {
		err := errs[i]
		var bad []GrabMsg
		for _, g := range runs[i] {
			if gerr := failed[g.GrabID]; gerr != nil {
				bad = append(bad, g)
				if err == nil {
					err = gerr
				}
			}
		}
		if err == nil {
			if aerr := m.Ack(); aerr != nil {
				log.Warn("ack failed; the grabs will be redelivered", "msg", ids[i], "err", aerr)
			}
			continue
		}
		nFailed += max(len(bad), 1)
		if firstErr == nil {
			firstErr = err
		}
		if len(runs[i]) > 1 && (len(bad) < len(runs[i]) || lastDelivery(m, pol)) {
			if perr := republish(ctx, js, bad); perr != nil {
				log.Warn("split of a run failed; the run will be redelivered", "msg", ids[i], "err", perr)
			} else {
				if aerr := m.Ack(); aerr != nil {
					log.Warn("ack failed; the run will be redelivered", "msg", ids[i], "err", aerr)
				}
				continue
			}
		}
		fail(m, ids[i], err, pol, log)
	}
	if nFailed > 0 {
		log.Warn("grabs not written", "failed", nFailed, "of", len(grabs), "first_err", firstErr)
	}
}

// lastDelivery reports whether m is on its last delivery.
func lastDelivery(m jetstream.Msg, pol consumerPolicy) bool {
	md, err := m.Metadata()
	return err == nil && pol.last(md.NumDelivered)
}

// republish puts each grab back in GRABS as a message of its own and
// returns once the server holds them all.
func republish(ctx context.Context, js jetstream.JetStream, grabs []GrabMsg) error {
	for _, g := range grabs {
		m := &nats.Msg{Subject: GrabSubject(g.Item), Data: EncodeGrab(nil, g)}
		if _, err := js.PublishMsg(ctx, m, jetstream.WithMsgID(g.GrabID), jetstream.WithExpectStream(StreamGrabs)); err != nil {
			return fmt.Errorf("republish grab %s: %w", g.GrabID, err)
		}
	}
	return nil
}

// fail schedules a redelivery of m, or terminates it on its last delivery.
func fail(m jetstream.Msg, grabID string, cause error, pol consumerPolicy, log *slog.Logger) {
	md, err := m.Metadata()
	if err != nil { // not a JetStream delivery: nothing to schedule
		log.Error("failed grab without metadata", "grab_id", grabID, "err", err, "cause", cause)
		return
	}
	n := md.NumDelivered
	if pol.last(n) {
		reason := sanitizeReason(cause.Error())
		log.Error("grab dead after its last delivery", "grab_id", grabID, "stream_seq", md.Sequence.Stream, "deliveries", n, "reason", reason)
		err = m.TermWithReason(reason)
	} else {
		err = m.NakWithDelay(pol.delay(n))
	}
	if err != nil {
		log.Warn("nak failed; the grab comes back after its ack wait", "grab_id", grabID, "err", err)
	}
}

// sanitizeReason makes an error fit a header value: printable ASCII, at
// most MaxReasonLen bytes.
func sanitizeReason(s string) string {
	s = strings.Map(func(r rune) rune {
		if r < 0x20 || r > 0x7e {
			return ' '
		}
		return r
	}, s)
	if len(s) > MaxReasonLen {
		s = s[:MaxReasonLen]
	}
	return s
}

// backoff doubles from RetryWaitMin to RetryWaitMax.
type backoff struct{ d time.Duration }

func (b *backoff) next() time.Duration {
	if b.d == 0 {
		return RetryWaitMin
	}
	return min(2*b.d, RetryWaitMax)
}

func (b *backoff) wait(ctx context.Context) {
	b.d = b.next()
	t := time.NewTimer(b.d)
	defer t.Stop()
	select {
	case <-t.C:
	case <-ctx.Done():
	}
}

func (b *backoff) reset() { b.d = 0 }

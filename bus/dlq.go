package bus

import (
	"context"
	"encoding/json"
	"errors"
	"fmt"
	"log/slog"
	"strconv"
	"time"

	"github.com/nats-io/nats.go"
	"github.com/nats-io/nats.go/jetstream"

	"github.com/seckill/seckill/engine"
	"github.com/seckill/seckill/sale"
)

// ErrNotFound is returned by RetryDead when no dead letter has the grab id:
// sale's, so the admin API can tell it without a translation.
var ErrNotFound = sale.ErrNoDeadLetter

const (
	// copierBatch bounds the advisories one copier takes at a time: dead
	// letters are rare, and each costs two round trips.
	copierBatch = 64
	// copyRetryDelay is how long a failed copy (DLQ full, server busy)
	// waits before its advisory comes again.
	copyRetryDelay = 5 * time.Second
)

// DeadLetter is a message of GRABS that no order writer could write; Seq
// is its sequence in GRABS_DLQ. One type with the admin API's.
type DeadLetter = sale.DeadLetter

// advisory holds the fields we use of the server's max-deliveries and
// terminated advisories (the same names in both).
type advisory struct {
	Type       string `json:"type"`
	Stream     string `json:"stream"`
	Consumer   string `json:"consumer"`
	StreamSeq  uint64 `json:"stream_seq"`
	Deliveries uint64 `json:"deliveries"`
	Reason     string `json:"reason"`
}

// RunDLQCopier turns advisories into dead letters until ctx ends: for each
// one it reads the original message from GRABS by sequence, publishes it to
// DLQSubject(item) and only then acks the advisory. Several copiers may run;
// a copy made twice is deduplicated by its Msg-Id. It returns nil when ctx
// ends.
func RunDLQCopier(ctx context.Context, js jetstream.JetStream) error {
	log := slog.Default().With("component", "bus.dlq")
	var b backoff
	for ctx.Err() == nil {
		err := copyLoop(ctx, js, log, &b)
		if ctx.Err() != nil {
			break
		}
		log.Warn("dlq copier: retrying", "err", err, "wait", b.next())
		b.wait(ctx)
	}
	return nil
}

func copyLoop(ctx context.Context, js jetstream.JetStream, log *slog.Logger, b *backoff) error {
	cons, err := js.Consumer(ctx, StreamAdvisories, ConsumerDLQCopier)
	if err != nil {
		return fmt.Errorf("consumer %s/%s: %w", StreamAdvisories, ConsumerDLQCopier, err)
	}
	grabs, err := js.Stream(ctx, StreamGrabs)
	if err != nil {
		return fmt.Errorf("stream %s: %w", StreamGrabs, err)
	}
	for {
		if st := js.Conn().Status(); st != nats.CONNECTED {
			return fmt.Errorf("connection %s", st)
		}
		msgs, err := fetch(ctx, cons, copierBatch)
		if err != nil {
			return err
		}
		b.reset()
		for _, m := range msgs {
			if err := copyDead(ctx, js, grabs, m.Data(), log); err != nil {
				log.Error("dead letter not copied, will retry", "err", err)
				_ = m.NakWithDelay(copyRetryDelay) // if lost, the ack wait brings it back
				continue
			}
			if err := m.Ack(); err != nil {
				log.Warn("advisory ack failed; the copy will be made again and deduplicated", "err", err)
			}
		}
	}
}

// copyDead copies the message an advisory names to the DLQ. An advisory it
// cannot act on is logged and dropped (nil): retrying would not help.
func copyDead(ctx context.Context, js jetstream.JetStream, grabs jetstream.Stream, data []byte, log *slog.Logger) error {
	var a advisory
	if err := json.Unmarshal(data, &a); err != nil || a.Stream != StreamGrabs || !isOrdersConsumer(a.Consumer) || a.StreamSeq == 0 {
		log.Error("unusable advisory dropped", "advisory", string(data), "err", err)
		return nil
	}
	orig, err := grabs.GetMsg(ctx, a.StreamSeq)
	if errors.Is(err, jetstream.ErrMsgNotFound) {
		log.Error("dead grab is gone from GRABS (aged out or deleted), nothing to copy", "stream_seq", a.StreamSeq, "deliveries", a.Deliveries, "reason", a.Reason)
		return nil
	}
	if err != nil {
		return fmt.Errorf("get %s seq %d: %w", StreamGrabs, a.StreamSeq, err)
	}
	item, ok := itemFromSubject(SubjectPrefix, orig.Subject)
	if !ok {
		log.Error("dead grab on an unexpected subject, not copied", "subject", orig.Subject, "stream_seq", a.StreamSeq)
		return nil
	}
	// A run's Msg-Id, "<first grab id>+<last seq>", names its dead letter.
	grabID := orig.Header.Get(jetstream.MsgIDHeader)
	if grabID == "" {
		if g, err := DecodeGrab(orig.Data); err == nil {
			grabID = g.GrabID
		}
	}
	reason := a.Reason
	if reason == "" {
		reason = fmt.Sprintf("not acked after %d deliveries (writer stopped or too slow)", a.Deliveries)
	}
	dl := &nats.Msg{Subject: DLQSubject(item), Data: orig.Data, Header: nats.Header{}}
	dl.Header.Set(HeaderGrabID, grabID)
	dl.Header.Set(HeaderGrabsSeq, strconv.FormatUint(a.StreamSeq, 10))
	dl.Header.Set(HeaderDeliveries, strconv.FormatUint(a.Deliveries, 10))
	dl.Header.Set(HeaderReason, sanitizeReason(reason))
	dl.Header.Set(HeaderSubject, orig.Subject)
	// Keyed by the GRABS sequence, not the grab id alone: a retried grab
	// that dies again within the window must not be taken for a duplicate.
	msgID := grabID + "/" + strconv.FormatUint(a.StreamSeq, 10)
	if _, err := js.PublishMsg(ctx, dl, jetstream.WithMsgID(msgID), jetstream.WithExpectStream(StreamDLQ)); err != nil {
		return fmt.Errorf("publish dead letter %s: %w", msgID, err)
	}
	log.Warn("grab dead-lettered", "grab_id", grabID, "stream_seq", a.StreamSeq, "deliveries", a.Deliveries, "reason", reason)
	return nil
}

// ListDead returns up to limit dead letters, oldest first (limit is
// clamped to 1..MaxListDead).
func ListDead(ctx context.Context, js jetstream.JetStream, limit int) ([]DeadLetter, error) {
	limit = min(max(limit, 1), MaxListDead)
	var out []DeadLetter
	err := scanDead(ctx, js, DLQPrefix+">", func(d DeadLetter) bool {
		out = append(out, d)
		return len(out) < limit
	})
	if err != nil {
		return nil, fmt.Errorf("list dead letters: %w", err)
	}
	return out, nil
}

// RetryDead publishes the dead letter of grabID to GRABS again and then
// removes it (and any other dead letter of the same grab) from the DLQ. The
// new message's Msg-Id is "<grabID>/retry/<dlq seq>", so the dedupe window
// does not swallow it; its body is unchanged, so writers still key the
// order by grab id. ErrNotFound when there is no such dead letter.
func RetryDead(ctx context.Context, js jetstream.JetStream, grabID string) error {
	if grabID == "" {
		return fmt.Errorf("retry dead letter: empty grab id: %w", ErrNotFound)
	}
	filter := DLQPrefix + ">"
	if item, _, _, ok := engine.ParseGrabID(grabID); ok {
		filter = DLQSubject(item)
	}
	var found []DeadLetter
	err := scanDead(ctx, js, filter, func(d DeadLetter) bool {
		if d.GrabID == grabID {
			found = append(found, d)
		}
		return true
	})
	if err != nil {
		return fmt.Errorf("retry dead letter %s: %w", grabID, err)
	}
	if len(found) == 0 {
		return fmt.Errorf("retry dead letter %s: %w", grabID, ErrNotFound)
	}
	d := found[0]
	subj := d.Subject
	if item, ok := itemFromSubject(SubjectPrefix, subj); !ok || item != d.Item {
		subj = GrabSubject(d.Item) // a dead letter of before, or a header not ours
	}
	m := &nats.Msg{Subject: subj, Data: d.Body}
	msgID := grabID + "/retry/" + strconv.FormatUint(d.Seq, 10)
	if _, err := js.PublishMsg(ctx, m, jetstream.WithMsgID(msgID), jetstream.WithExpectStream(StreamGrabs)); err != nil {
		return fmt.Errorf("retry dead letter %s: republish: %w", grabID, err)
	}
	dlq, err := js.Stream(ctx, StreamDLQ)
	if err != nil {
		return fmt.Errorf("retry dead letter %s: %w", grabID, err)
	}
	for _, d := range found {
		if err := dlq.DeleteMsg(ctx, d.Seq); err != nil && !errors.Is(err, jetstream.ErrMsgNotFound) {
			// Republished already: a second retry republishes under the same
			// Msg-Id (deduplicated) and deletes again.
			return fmt.Errorf("retry dead letter %s: delete seq %d: %w", grabID, d.Seq, err)
		}
	}
	return nil
}

// scanDead calls fn for each dead letter on subjects matching filter, in
// order, until fn returns false. One direct read per letter: the DLQ is
// small and this keeps no consumer state on the server.
func scanDead(ctx context.Context, js jetstream.JetStream, filter string, fn func(DeadLetter) bool) error {
	dlq, err := js.Stream(ctx, StreamDLQ)
	if err != nil {
		return err
	}
	for seq, n := uint64(1), 0; n < MaxDLQMsgs; n++ {
		raw, err := dlq.GetMsg(ctx, seq, jetstream.WithGetMsgSubject(filter))
		if errors.Is(err, jetstream.ErrMsgNotFound) {
			return nil
		}
		if err != nil {
			return err
		}
		item, _ := itemFromSubject(DLQPrefix, raw.Subject)
		deliveries, _ := strconv.Atoi(raw.Header.Get(HeaderDeliveries))
		d := DeadLetter{
			GrabID:     raw.Header.Get(HeaderGrabID),
			Item:       item,
			Seq:        raw.Sequence,
			Deliveries: deliveries,
			Reason:     raw.Header.Get(HeaderReason),
			Subject:    raw.Header.Get(HeaderSubject),
			Body:       raw.Data,
		}
		if !fn(d) {
			return nil
		}
		seq = raw.Sequence + 1
	}
	return nil
}

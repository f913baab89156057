package bus

import (
	"context"
	"errors"
	"fmt"
	"time"

	"github.com/nats-io/nats.go/jetstream"
)

const (
	// scanBuffer bounds the messages a scan holds in memory at once.
	scanBuffer = 512
	// scanInactive lets the server drop a scan's consumer soon after the
	// scan ends (the library default keeps it 5 minutes).
	scanInactive = 30 * time.Second
)

// GrabsInStream calls fn with every grab of item in GRABS, in stream order
// (a grab stored twice, in two runs cut differently, comes twice),
// up to the last one present when it starts. It reads through an ephemeral
// consumer that it deletes when done (scans polled often would otherwise
// pile up consumers until the stream's limit), with at most scanBuffer
// messages in memory. A message that does not decode is skipped and reported in the
// returned error (wrapping ErrInvalidGrab) after the others; an error from
// fn stops the scan and is returned. Bound it with ctx.
func GrabsInStream(ctx context.Context, js jetstream.JetStream, item string, fn func(GrabMsg) error) error {
	return GrabsInStreamAt(ctx, js, item, func(m GrabMsg, _ int64) error { return fn(m) })
}

// GrabsInStreamAt is GrabsInStream that also gives when the server stored
// each grab's message (Unix ms, the server's clock): unlike the grab's own
// time, which its publisher wrote, a publisher cannot forge it.
func GrabsInStreamAt(ctx context.Context, js jetstream.JetStream, item string, fn func(m GrabMsg, storedMs int64) error) error {
	subj := GrabSubject(item)
	s, err := js.Stream(ctx, StreamGrabs)
	if err != nil {
		return fmt.Errorf("scan %s: %w", subj, err)
	}
	// The item's subject on one node, and every node's lane of it on a
	// cluster (GrabSubjectFrom).
	subjects := []string{subj, subj + ".*"}
	var lastSeq uint64
	for _, sj := range subjects {
		last, err := s.GetLastMsgForSubject(ctx, sj)
		if errors.Is(err, jetstream.ErrMsgNotFound) {
			continue
		}
		if err != nil {
			return fmt.Errorf("scan %s: last message: %w", sj, err)
		}
		lastSeq = max(lastSeq, last.Sequence)
	}
	if lastSeq == 0 {
		return nil
	}
	cons, err := s.CreateConsumer(ctx, jetstream.ConsumerConfig{
		FilterSubjects:    subjects,
		AckPolicy:         jetstream.AckNonePolicy,
		DeliverPolicy:     jetstream.DeliverAllPolicy,
		InactiveThreshold: scanInactive, // cleans up if the delete below is lost
		MemoryStorage:     true,
	})
	if err != nil {
		return fmt.Errorf("scan %s: %w", subj, err)
	}
	defer func() {
		dctx, cancel := context.WithTimeout(context.Background(), 5*time.Second)
		defer cancel()
		_ = s.DeleteConsumer(dctx, cons.CachedInfo().Name)
	}()
	it, err := cons.Messages(jetstream.PullMaxMessages(scanBuffer))
	if err != nil {
		return fmt.Errorf("scan %s: %w", subj, err)
	}
	defer it.Stop()
	var bad int
	var firstBad error
	for {
		m, err := it.Next(jetstream.NextContext(ctx))
		if err != nil {
			return fmt.Errorf("scan %s: %w", subj, err)
		}
		md, err := m.Metadata()
		if err != nil {
			return fmt.Errorf("scan %s: %w", subj, err)
		}
		run, err := DecodeGrabs(m.Data())
		if err != nil {
			if bad++; firstBad == nil {
				firstBad = fmt.Errorf("seq %d: %w", md.Sequence.Stream, err)
			}
		}
		for _, g := range run {
			if err := fn(g, md.Timestamp.UnixMilli()); err != nil {
				return err
			}
		}
		if md.Sequence.Stream >= lastSeq {
			break
		}
	}
	if bad > 0 {
		return fmt.Errorf("scan %s: %d messages do not decode, first %w", subj, bad, firstBad)
	}
	return nil
}

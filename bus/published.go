package bus

import (
	"context"
	"fmt"
	"time"

	"github.com/nats-io/nats.go/jetstream"
)

// publishedFetch bounds one fetch of a scan of GRABS: the scan reads the
// item's messages as many as there were when it began; a fetch this long
// that brings none of them is an error.
const publishedFetch = 500 * time.Millisecond

// PublishedUpTo is the highest sequence of shard's grabs of item that any
// node's relay published on GRABS (0: none). A relay publishes a shard's
// grabs in sequence order from its cursor, and a node that adopts a shard
// from a lost node relays only past this, so what the stream holds of a
// shard is the run 1..PublishedUpTo: a failover publishes each grab once.
// It reads every message of the item's lanes: a failover's cost, not a
// grab's.
func PublishedUpTo(ctx context.Context, js jetstream.JetStream, item string, shard int) (uint64, error) {
	st, err := js.Stream(ctx, StreamGrabs)
	if err != nil {
		return 0, fmt.Errorf("published %s.%d: %w", item, shard, err)
	}
	cons, err := st.OrderedConsumer(ctx, jetstream.OrderedConsumerConfig{
		FilterSubjects: []string{GrabSubject(item), GrabSubject(item) + ".*"},
	})
	if err != nil {
		return 0, fmt.Errorf("published %s.%d: %w", item, shard, err)
	}
	ci, err := cons.Info(ctx)
	if err != nil {
		return 0, fmt.Errorf("published %s.%d: %w", item, shard, err)
	}
	pending := ci.NumPending // the item's messages when the scan began
	var max uint64
	for read := uint64(0); read < pending; {
		b, err := cons.Fetch(JournalReadBatch, jetstream.FetchMaxWait(publishedFetch))
		if err != nil {
			return 0, fmt.Errorf("published %s.%d: %w", item, shard, err)
		}
		n := 0
		for m := range b.Messages() {
			n++
			gs, err := DecodeGrabs(m.Data())
			if err != nil {
				continue // not a relay's message: the writers dead-letter it
			}
			for _, g := range gs {
				if g.Shard == shard && g.Item == item && g.Seq > max {
					max = g.Seq
				}
			}
		}
		if err := b.Error(); err != nil {
			return 0, fmt.Errorf("published %s.%d: %w", item, shard, err)
		}
		if n == 0 {
			return 0, fmt.Errorf("published %s.%d: read %d of %d messages, then nothing", item, shard, read, pending)
		}
		read += uint64(n)
	}
	return max, nil
}

// ReadLane hands h, in batches of up to batch, every grab node's relay
// ever published (its lane), as an order writer would get them; a message
// that is not a relay's is skipped. It reads the lane as it was when it
// began.
func ReadLane(ctx context.Context, js jetstream.JetStream, node string, batch int, h Handler) error {
	st, err := js.Stream(ctx, StreamGrabs)
	if err != nil {
		return fmt.Errorf("read lane %s: %w", node, err)
	}
	cons, err := st.OrderedConsumer(ctx, jetstream.OrderedConsumerConfig{FilterSubjects: []string{consumerFilter(node)}})
	if err != nil {
		return fmt.Errorf("read lane %s: %w", node, err)
	}
	ci, err := cons.Info(ctx)
	if err != nil {
		return fmt.Errorf("read lane %s: %w", node, err)
	}
	batch = min(max(batch, 1), MaxBatch)
	for read, pending := uint64(0), ci.NumPending; read < pending; {
		b, err := cons.Fetch(batch, jetstream.FetchMaxWait(publishedFetch))
		if err != nil {
			return fmt.Errorf("read lane %s: %w", node, err)
		}
		var msgs []GrabMsg
		n := 0
		for m := range b.Messages() {
			n++
			if gs, err := DecodeGrabs(m.Data()); err == nil {
				msgs = append(msgs, gs...)
			}
		}
		if err := b.Error(); err != nil {
			return fmt.Errorf("read lane %s: %w", node, err)
		}
		if n == 0 {
			return fmt.Errorf("read lane %s: read %d of %d messages, then nothing", node, read, pending)
		}
		read += uint64(n)
		for len(msgs) > 0 {
			k := min(len(msgs), batch)
			for id, err := range h(ctx, msgs[:k]) {
				if err != nil {
					return fmt.Errorf("read lane %s: order %s: %w", node, id, err)
				}
			}
			msgs = msgs[k:]
		}
	}
	return nil
}

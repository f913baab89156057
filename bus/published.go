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

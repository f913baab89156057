package bus

import (
	"context"
	"fmt"

	"github.com/nats-io/nats.go/jetstream"
)

// Backlog is how many messages of GRABS node's order writers have not
// acknowledged yet (ConsumerFor(node)): pending delivery plus delivered and
// not yet acked. A writer acks only after the orders are durable, so this
// is the order lag in messages (a message holds up to MaxGrabsPerMsg grabs).
func Backlog(ctx context.Context, js jetstream.JetStream, node string) (int64, error) {
	c, err := js.Consumer(ctx, StreamGrabs, ConsumerFor(node))
	if err != nil {
		return 0, fmt.Errorf("order backlog: %w", err)
	}
	info, err := c.Info(ctx)
	if err != nil {
		return 0, fmt.Errorf("order backlog: %w", err)
	}
	return int64(info.NumPending) + int64(info.NumAckPending), nil
}

// DeadCount is how many dead letters GRABS_DLQ holds.
func DeadCount(ctx context.Context, js jetstream.JetStream) (int64, error) {
	s, err := js.Stream(ctx, StreamDLQ)
	if err != nil {
		return 0, fmt.Errorf("dead letters: %w", err)
	}
	info, err := s.Info(ctx)
	if err != nil {
		return 0, fmt.Errorf("dead letters: %w", err)
	}
	return int64(info.State.Msgs), nil
}

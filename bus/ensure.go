package bus

import (
	"context"
	"errors"
	"fmt"
	"time"

	"github.com/nats-io/nats.go/jetstream"
)

// Defaults and bounds of Config.
const (
	// DefaultMaxDeliver gives a grab five tries at the order store before it
	// becomes a dead letter.
	DefaultMaxDeliver = 5
	// MaxMaxDeliver bounds MaxDeliver: past that a failure is not transient.
	MaxMaxDeliver = 100
	// DefaultDuplicateWindow is how long GRABS remembers a Nats-Msg-Id: a
	// relay that retries a batch within it publishes nothing twice.
	DefaultDuplicateWindow = 2 * time.Minute
	// MaxStreamMsgSize bounds a GRABS message, body and headers: a poison
	// message from a foreign publisher cannot be large.
	MaxStreamMsgSize = 2 * MaxGrabMsgSize
	// MaxReplicas is the most copies of a stream JetStream keeps.
	MaxReplicas = 5
	// copierAckWait gives a copier time to fetch, publish and ack one
	// advisory before another copier is handed it.
	copierAckWait = 30 * time.Second
)

// DefaultBackOff is the default Config.BackOff. The first value is also the
// first delivery's ack wait, so it is far above a batch commit (ms), and the
// four together ride out an order store that is down for about 12 minutes
// before anything is dead-lettered.
func DefaultBackOff() []time.Duration {
	return []time.Duration{5 * time.Second, 30 * time.Second, 2 * time.Minute, 10 * time.Minute}
}

// Config sets the streams and the orders consumer. Zero fields take the
// defaults.
type Config struct {
	// MaxDeliver is how many times a grab is delivered before it is dead.
	MaxDeliver int
	// BackOff[i] is how long after delivery i+1 the grab comes again, both
	// when a writer reports it failed (NakWithDelay) and when no writer acks
	// it (the server's ack wait); the last value repeats. The server needs
	// len(BackOff) <= MaxDeliver. nil means DefaultBackOff(); empty means
	// AckWait for every delivery.
	BackOff []time.Duration
	// AckWait is how long a writer may hold a delivery unacked. The server
	// replaces it with BackOff[0] when BackOff is set, so it may only be 0
	// or equal to BackOff[0]; it matters only with an empty BackOff (then
	// 0 means DefaultBackOff()[0]).
	AckWait time.Duration
	// DuplicateWindow is the GRABS Nats-Msg-Id dedupe window.
	DuplicateWindow time.Duration
	// Node is the cluster node whose order writers' consumer to ensure
	// (ConsumerFor); "" on one node.
	Node string
	// Replicas is how many servers of a JetStream cluster keep each
	// stream (0: 1). More than 1 needs a clustered server. It is a floor:
	// Ensure raises a stream's replicas to it but never lowers them, so a
	// process started without it (an order writer) cannot scale a
	// cluster's streams down; scaling down is an operator's act.
	Replicas int
}

// withDefaults fills in the zero fields and checks the rest.
func (c Config) withDefaults() (Config, error) {
	if c.MaxDeliver == 0 {
		c.MaxDeliver = DefaultMaxDeliver
	}
	if c.BackOff == nil {
		c.BackOff = DefaultBackOff()
	}
	if c.DuplicateWindow == 0 {
		c.DuplicateWindow = DefaultDuplicateWindow
	}
	if c.Replicas == 0 {
		c.Replicas = 1
	}
	if c.AckWait == 0 {
		c.AckWait = DefaultBackOff()[0]
		if len(c.BackOff) > 0 {
			c.AckWait = c.BackOff[0]
		}
	}
	switch {
	case c.MaxDeliver < 1 || c.MaxDeliver > MaxMaxDeliver:
		return c, fmt.Errorf("max deliver %d, want 1..%d", c.MaxDeliver, MaxMaxDeliver)
	case len(c.BackOff) > c.MaxDeliver:
		return c, fmt.Errorf("%d backoff values for max deliver %d: the server allows at most one per delivery", len(c.BackOff), c.MaxDeliver)
	case len(c.BackOff) > 0 && c.AckWait != c.BackOff[0]:
		return c, fmt.Errorf("ack wait %s differs from backoff[0] %s, which the server would use instead", c.AckWait, c.BackOff[0])
	case c.AckWait < 0:
		return c, fmt.Errorf("ack wait %s", c.AckWait)
	case c.Replicas < 1 || c.Replicas > MaxReplicas:
		return c, fmt.Errorf("replicas %d, want 1..%d", c.Replicas, MaxReplicas)
	case c.DuplicateWindow < 0 || c.DuplicateWindow > GrabsMaxAge:
		return c, fmt.Errorf("duplicate window %s, want up to %s", c.DuplicateWindow, GrabsMaxAge)
	}
	for _, d := range c.BackOff {
		if d <= 0 {
			return c, fmt.Errorf("backoff %s", d)
		}
	}
	return c, nil
}

// Ensure creates or updates GRABS, GRABS_DLQ, GRABS_ADVISORIES and their
// consumers to match cfg. It is idempotent: every process calls it at start.
// The consumers keep as many replicas as their stream (the server's
// default for a durable consumer).
func Ensure(ctx context.Context, js jetstream.JetStream, cfg Config) error {
	cfg, err := cfg.withDefaults()
	if err != nil {
		return fmt.Errorf("ensure streams: %w", err)
	}
	streams := []jetstream.StreamConfig{{
		Name:        StreamGrabs,
		Description: "confirmed grabs, one message each, Nats-Msg-Id = grab id",
		Subjects:    []string{SubjectPrefix + ">"},
		Storage:     jetstream.FileStorage,
		Retention:   jetstream.LimitsPolicy, // kept after ack, for reconciliation
		MaxAge:      GrabsMaxAge,
		MaxMsgSize:  MaxStreamMsgSize,
		Duplicates:  cfg.DuplicateWindow,
		Discard:     jetstream.DiscardOld,
	}, {
		Name:        StreamDLQ,
		Description: "grabs no order writer could write, until retried",
		Subjects:    []string{DLQPrefix + ">"},
		Storage:     jetstream.FileStorage,
		Retention:   jetstream.LimitsPolicy,
		MaxMsgs:     MaxDLQMsgs,
		MaxMsgSize:  2 * MaxStreamMsgSize, // the original plus our headers
		Duplicates:  cfg.DuplicateWindow,
		Discard:     jetstream.DiscardNew, // refuse, never drop, a dead letter
	}, {
		Name:        StreamAdvisories,
		Description: "max-deliveries and terminated advisories of GRABS's order writers, consumed by the DLQ copier",
		Subjects:    []string{advisoryMaxDeliveries, advisoryTerminated},
		Storage:     jetstream.FileStorage,
		Retention:   jetstream.WorkQueuePolicy, // gone once copied
		MaxMsgs:     MaxDLQMsgs,
		Discard:     jetstream.DiscardNew,
	}}
	for _, sc := range streams {
		if sc.Replicas, err = replicasFloor(ctx, js, sc.Name, cfg.Replicas); err != nil {
			return fmt.Errorf("ensure stream %s: %w", sc.Name, err)
		}
		if _, err := js.CreateOrUpdateStream(ctx, sc); err != nil {
			return fmt.Errorf("ensure stream %s: %w", sc.Name, err)
		}
	}
	consumers := []struct {
		stream string
		cfg    jetstream.ConsumerConfig
	}{{StreamGrabs, jetstream.ConsumerConfig{
		Durable:         ConsumerFor(cfg.Node),
		FilterSubject:   consumerFilter(cfg.Node),
		Description:     "order writers",
		AckPolicy:       jetstream.AckExplicitPolicy,
		AckWait:         cfg.AckWait,
		MaxDeliver:      cfg.MaxDeliver,
		BackOff:         cfg.BackOff,
		MaxAckPending:   MaxAckPending,
		MaxRequestBatch: MaxBatch,
	}}, {StreamAdvisories, jetstream.ConsumerConfig{
		Durable:         ConsumerDLQCopier,
		Description:     "copies dead grabs to GRABS_DLQ",
		AckPolicy:       jetstream.AckExplicitPolicy,
		AckWait:         copierAckWait,
		MaxDeliver:      -1, // the DLQ is the last stop: never give up on one
		MaxAckPending:   MaxListDead,
		MaxRequestBatch: MaxListDead,
	}}}
	for _, c := range consumers {
		if _, err := js.CreateOrUpdateConsumer(ctx, c.stream, c.cfg); err != nil {
			return fmt.Errorf("ensure consumer %s/%s: %w", c.stream, c.cfg.Durable, err)
		}
	}
	return nil
}

// replicasFloor is want, or the stream's replicas when it exists with more.
func replicasFloor(ctx context.Context, js jetstream.JetStream, name string, want int) (int, error) {
	s, err := js.Stream(ctx, name)
	switch {
	case errors.Is(err, jetstream.ErrStreamNotFound):
		return want, nil
	case err != nil:
		return 0, err
	}
	return max(want, s.CachedInfo().Config.Replicas), nil
}

// consumerPolicy is what a writer needs to know of the orders consumer to
// grade its NakWithDelay and to know a delivery is the last.
type consumerPolicy struct {
	maxDeliver int
	backOff    []time.Duration
	ackWait    time.Duration
}

func policyOf(info *jetstream.ConsumerInfo) consumerPolicy {
	return consumerPolicy{maxDeliver: info.Config.MaxDeliver, backOff: info.Config.BackOff, ackWait: info.Config.AckWait}
}

// delay is the wait after delivery n (1-based) failed.
func (p consumerPolicy) delay(n uint64) time.Duration {
	if len(p.backOff) == 0 {
		return p.ackWait
	}
	return p.backOff[min(max(n, 1), uint64(len(p.backOff)))-1]
}

// last reports whether delivery n is the last one the server will make.
func (p consumerPolicy) last(n uint64) bool {
	return p.maxDeliver > 0 && n >= uint64(p.maxDeliver)
}

// Package system is the composition root. It wires a node's order side: the stream connection
// (embedded NATS or external), the relay, order writers, the dead-letter
// copier and the payment-window sweeper. seckill serve and the bench
// harness run the same wiring.
package system

import (
	"context"
	"fmt"
	"log/slog"
	"path/filepath"
	"sync"
	"time"

	"github.com/nats-io/nats.go"
	"github.com/nats-io/nats.go/jetstream"
	"github.com/seckill/seckill/actors"
	"github.com/seckill/seckill/bus"
	"github.com/seckill/seckill/engine"
	"github.com/seckill/seckill/orders"
	"github.com/seckill/seckill/persistence"
	"github.com/seckill/seckill/sale"
)

const (
	// publishWindow bounds async publishes awaiting acknowledgement.
	publishWindow = 256
	// WriterBatch is how many messages an order writer fetches at once and
	// writes in one commit.
	WriterBatch = 256
	// ensureRetry is how often stream set-up is retried while NATS is away.
	ensureRetry = 2 * time.Second
)

// Stream is a connection to NATS JetStream, embedded or external.
type Stream struct {
	Emb *bus.Embedded // nil when the server is external
	nc  *nats.Conn
	JS  jetstream.JetStream
}

// OpenStream starts the embedded server under dataDir/nats (listening on
// listen, "" for in-process only) or dials url.
func OpenStream(url, dataDir, listen, name string) (*Stream, error) {
	s := &Stream{}
	var err error
	if url == "" {
		if s.Emb, err = bus.StartEmbedded(filepath.Join(dataDir, "nats"), listen); err != nil {
			return nil, err
		}
		s.nc, err = s.Emb.Connect(name)
	} else {
		s.nc, err = bus.Dial(url, name)
	}
	if err != nil {
		s.Close()
		return nil, err
	}
	if s.JS, err = jetstream.New(s.nc); err != nil {
		s.Close()
		return nil, err
	}
	return s, nil
}

// Ensure sets up streams and consumer, retrying until it works or ctx ends:
// NATS being away at start does not stop the sale.
func (s *Stream) Ensure(ctx context.Context, cfg bus.Config, log *slog.Logger) error {
	for {
		c, cancel := context.WithTimeout(ctx, 10*time.Second)
		err := bus.Ensure(c, s.JS, cfg)
		cancel()
		if err == nil {
			return nil
		}
		log.Warn("nats: stream set-up failed, retrying", "err", err)
		select {
		case <-ctx.Done():
			return ctx.Err()
		case <-time.After(ensureRetry):
		}
	}
}

// Close ends the connection; nothing unacknowledged is lost with it (the
// relay republishes from its cursor, writers' messages are redelivered).
func (s *Stream) Close() {
	if s.Emb != nil {
		s.Emb.Shutdown() // drains its in-process connections first
		return
	}
	if s.nc != nil {
		s.nc.Close()
	}
}

// relayPublisher adapts the bus publisher to the relay.
type relayPublisher struct {
	pub  *bus.Publisher
	node *actors.Node
	msgs []bus.GrabMsg
}

func (p *relayPublisher) Publish(ctx context.Context, grabs []engine.Grab) error {
	p.msgs = p.msgs[:0]
	for _, g := range grabs {
		m := bus.GrabMsg{GrabID: g.ID(), Item: g.Item, Shard: g.Shard, Seq: g.Seq, User: g.User, Qty: g.Qty, Key: g.Key, AtMs: g.AtMs}
		if it, ok := p.node.Item(g.Item); ok {
			m.PayByMs = g.AtMs + it.Config.PaymentWindow()
		}
		p.msgs = append(p.msgs, m)
	}
	return p.pub.PublishBatch(ctx, p.msgs)
}

// WriterHandler writes a fetched batch of grabs as orders.
func WriterHandler(o *orders.Orders) bus.Handler {
	return func(ctx context.Context, msgs []bus.GrabMsg) map[string]error {
		om := make([]orders.Msg, len(msgs))
		for i, m := range msgs {
			om[i] = orders.Msg{PayByMs: m.PayByMs, Grab: engine.Grab{Item: m.Item, Shard: m.Shard, Seq: m.Seq,
				User: m.User, Qty: m.Qty, Key: m.Key, AtMs: m.AtMs}}
		}
		return o.Write(om)
	}
}

// DeadLetters adapts the bus to the admin API (sale.DeadLetters).
type DeadLetters struct{ JS jetstream.JetStream }

func (d DeadLetters) ListDead(ctx context.Context, limit int) ([]sale.DeadLetter, error) {
	return bus.ListDead(ctx, d.JS, limit)
}

func (d DeadLetters) RetryDead(ctx context.Context, grabID string) error {
	return bus.RetryDead(ctx, d.JS, grabID)
}

// StreamReader lists the grab ids of an item in the stream.
func StreamReader(js jetstream.JetStream) orders.StreamReader {
	return func(ctx context.Context, item string, fn func(string) error) error {
		return bus.GrabsInStream(ctx, js, item, func(m bus.GrabMsg) error { return fn(m.GrabID) })
	}
}

// Pipeline runs the order side of a node: relay, order writers, dead-letter
// copier and payment-window sweeper.
type Pipeline struct {
	cancel context.CancelFunc
	wg     sync.WaitGroup
	Orders *orders.Orders
	ostore persistence.OrderStore
	st     *Stream
	pub    *bus.Publisher
}

// Start runs the pipeline over an open order store, which it
// closes on stop.
func Start(node *actors.Node, st *Stream, ostore persistence.OrderStore, writers int, cfg bus.Config, log *slog.Logger) *Pipeline {
	ctx, cancel := context.WithCancel(context.Background())
	p := &Pipeline{cancel: cancel, Orders: orders.New(actors.NewLocal(node), ostore, log), ostore: ostore, st: st,
		pub: bus.NewPublisher(st.JS, publishWindow)}
	p.wg.Go(func() {
		if p.st.Ensure(ctx, cfg, log) != nil {
			return
		}
		var inner sync.WaitGroup
		inner.Go(func() { node.RunRelay(ctx, &relayPublisher{pub: p.pub, node: node}) })
		for range writers {
			inner.Go(func() { bus.RunWriter(ctx, st.JS, WriterBatch, WriterHandler(p.Orders)) })
		}
		inner.Go(func() { bus.RunDLQCopier(ctx, st.JS) })
		inner.Wait()
	})
	if writers > 0 {
		p.wg.Go(func() { p.Orders.RunSweeper(ctx) })
	}
	return p
}

// Reconciler reports on an item from this node's stores and the stream.
func (p *Pipeline) Reconciler(store persistence.Store, node *actors.Node) sale.Reconciler {
	return func(ctx context.Context, cfg engine.ItemConfig) (sale.Report, error) {
		return orders.Reconcile(ctx, store, p.ostore, StreamReader(p.st.JS), cfg, node.Now(), true)
	}
}

// Stop ends the background work; the node and stream are closed by the caller.
func (p *Pipeline) Stop() error {
	p.cancel()
	p.wg.Wait()
	p.pub.Close()
	if err := p.ostore.Close(); err != nil {
		return fmt.Errorf("close order store: %w", err)
	}
	return nil
}

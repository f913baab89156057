package system

import (
	"context"
	"fmt"
	"log/slog"
	"sync"
	"sync/atomic"

	"github.com/prometheus/client_golang/prometheus"

	"github.com/seckill/seckill/actors"
	"github.com/seckill/seckill/bus"
	"github.com/seckill/seckill/engine"
	"github.com/seckill/seckill/metrics"
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
)

// relayPublisher adapts the bus publisher to the relay.
type relayPublisher struct {
	pub  *bus.Publisher
	node *actors.Node
	msgs []bus.GrabMsg
	errs prometheus.Counter
}

func (p *relayPublisher) Publish(ctx context.Context, grabs []engine.Grab) error {
	p.msgs = p.msgs[:0]
	for _, g := range grabs {
		var payBy int64 // 0: the writer's node decides
		if it, ok := p.node.Item(g.Item); ok {
			payBy = engine.PayBy(g, it.Config.PaymentWindow())
		}
		p.msgs = append(p.msgs, bus.NewGrabMsg(g, payBy))
	}
	err := p.pub.PublishBatch(ctx, p.msgs)
	if err != nil && ctx.Err() == nil {
		p.errs.Inc()
	}
	return err
}

// WriterHandler writes a fetched batch of grabs as orders.
func WriterHandler(o *orders.Orders) bus.Handler {
	return func(ctx context.Context, msgs []bus.GrabMsg) map[string]error {
		om := make([]orders.Msg, len(msgs))
		for i, m := range msgs {
			om[i] = orders.Msg{PayByMs: m.PayByMs, Grab: m.Grab()}
		}
		return o.Write(om)
	}
}

// Pipeline runs the order side of a node: relay, order writers, dead-letter
// copier and payment-window sweeper.
type Pipeline struct {
	ctx    context.Context
	cancel context.CancelFunc
	wg     sync.WaitGroup
	Orders *orders.Orders
	ostore persistence.OrderStore
	st     *Stream
	pub    *bus.Publisher
	// PublishErrors counts the relay's failed publishes (metrics).
	PublishErrors prometheus.Counter
	// ready, when set, says whether the order store can write; writers
	// fetch nothing while it cannot.
	ready func() error
	// superseded, on a journaled cluster, says which grabs of a lane a
	// failover gave to another node's lane (grid.Superseded).
	superseded atomic.Pointer[func(node, item string, shard int, seq uint64) bool]
	node       string // this node's lane ("" on one node)
	nodeRef    *actors.Node
}

// member holds the writers of a journaled node while it is past its lease
// or has not read etcd under its current one (node.InCluster): a failover
// may have given grabs of its lane to another node, and it learns that
// only from etcd.
func (p *Pipeline) member() error {
	if p.superseded.Load() != nil && !p.nodeRef.InCluster() {
		return bus.ErrHold
	}
	return nil
}

// laneHandler is WriterHandler for node's lane: a grab a failover gave to
// another node's lane is acknowledged and not written (its new owner
// relays it, and its writers write it).
func (p *Pipeline) laneHandler(node string) bus.Handler {
	write := WriterHandler(p.Orders)
	return func(ctx context.Context, msgs []bus.GrabMsg) map[string]error {
		if f := p.superseded.Load(); f != nil {
			kept := msgs[:0:0]
			for _, m := range msgs {
				if !(*f)(node, m.Item, m.Shard, m.Seq) {
					kept = append(kept, m)
				}
			}
			msgs = kept
		}
		if len(msgs) == 0 {
			return nil
		}
		return write(ctx, msgs)
	}
}

// Start runs the pipeline over an open order store, which it
// closes on stop.
func Start(node *actors.Node, stock orders.Stock, st *Stream, ostore persistence.OrderStore, writers int, cfg bus.Config, log *slog.Logger) *Pipeline {
	ctx, cancel := context.WithCancel(context.Background())
	p := &Pipeline{ctx: ctx, cancel: cancel, node: cfg.Node, nodeRef: node, Orders: orders.New(stock, ostore, log), ostore: ostore, st: st,
		pub: bus.NewPublisher(st.JS, publishWindow).From(cfg.Node), PublishErrors: metrics.NewPublishErrors()}
	p.wg.Go(func() {
		if p.st.Ensure(ctx, cfg, log) != nil {
			return
		}
		var inner sync.WaitGroup
		// One hold for the relay and the writers: while the node confirms
		// grabs fast, neither takes its CPU (see HoldRate).
		hold := &hotHold{durable: node.DurableGrabs}
		inner.Go(func() {
			node.RunRelayHeld(ctx, &relayPublisher{pub: p.pub, node: node, errs: p.PublishErrors},
				func() bool { return hold.check() != nil })
		})
		for range writers {
			inner.Go(func() {
				bus.RunWriterWhen(ctx, st.JS, cfg.Node, WriterBatch, p.laneHandler(cfg.Node), func() error {
					if err := p.member(); err != nil {
						return err
					}
					if p.ready != nil {
						if err := p.ready(); err != nil {
							return err
						}
					}
					return hold.check()
				})
			})
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
func (p *Pipeline) Reconciler(store persistence.Viewer, node *actors.Node) sale.Reconciler {
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

package system

import (
	"context"
	"errors"
	"log/slog"
	"slices"
	"strings"
	"time"

	"github.com/nats-io/nats.go/jetstream"

	"github.com/seckill/seckill/bus"
	"github.com/seckill/seckill/fence"
)

// HeirEvery is how often a clustered node looks for order lanes whose node
// holds no lease: at the pace of the grid's own refresh.
const HeirEvery = time.Second

// LaneLostAfter is how long a lane's node must have been without a lease
// before its heir rewrites the orders it wrote (they are on its disk): a
// node paused or cut off for less comes back with its orders, and they
// must not then be in two stores. Six leases: longer than a pause a
// machine survives, short beside a sale's payment window.
const LaneLostAfter = 6 * fence.LeaseTTL

// runHeir writes the orders of lost nodes' lanes. Each node's relay
// publishes on its own lane of the order stream, read by its own writers
// (bus.ConsumerFor), into its own order store: a node that is lost takes
// the orders it wrote with its disk, and leaves grabs on its lane that it
// did not write. Once a node has been gone LaneLostAfter, the live node
// with the lowest id records in etcd that it takes the lane (only while
// the node holds no lease), writes every grab the lane ever held into its
// own order store, then reads the lane's durable consumer, until the node
// holds a lease again. The lost node's shards' heirs relay only what it
// did not publish (grid/failover.go), so each grab's order is written once
// among the live nodes. A node back sooner writes its own lane: with its
// disk it has its orders; empty, it rewrites them (takeOwnLane). One back
// with its disk later than that has its orders in the heir's store too
// (reconcile lists them as duplicate_order), and what it recorded as paid
// or cancelled is pending_payment in the heir's copy: order states live on
// one disk until orders are kept where the journal is.
func (p *Pipeline) runHeir(ctx context.Context, self string, live func() []string, rebuild func(ctx context.Context, node string) error, log *slog.Logger) {
	running := map[string]context.CancelFunc{}
	since := map[string]time.Time{} // when this heir first saw the lane's node gone
	defer func() {
		for _, stop := range running {
			stop()
		}
	}()
	t := time.NewTicker(HeirEvery)
	defer t.Stop()
	for {
		select {
		case <-ctx.Done():
			return
		case <-t.C:
		}
		lost := p.lostLanes(ctx, self, live())
		for node, stop := range running {
			if !lost[node] {
				log.Info("orders: lane back with its node, or taken by another heir", "node", node)
				stop()
				delete(running, node)
			}
		}
		for node := range since {
			if !lost[node] {
				delete(since, node)
			}
		}
		for node := range lost {
			if since[node].IsZero() {
				since[node] = time.Now()
			}
			if running[node] != nil || time.Since(since[node]) < LaneLostAfter {
				continue
			}
			// Lost for good: every grab the lane ever held, the orders the
			// node wrote included (the order store keeps one order a grab
			// id, so rewriting is harmless), then the lane's consumer, for
			// what the node published and did not write. Not before: a
			// node back within LaneLostAfter, with its disk or without,
			// writes its lane itself, and nothing is in two stores.
			if err := rebuild(ctx, node); err != nil {
				log.Warn("orders: a lost node's lane not taken", "node", node, "err", err)
				continue // back meanwhile, or etcd did not answer: the next tick decides again
			}
			log.Warn("orders: node lost for good: writing every order of its lane", "node", node, "after", LaneLostAfter)
			if err := bus.ReadLane(ctx, p.st.JS, node, WriterBatch, p.laneHandler(node)); err != nil {
				log.Warn("orders: rewriting a lost node's lane", "node", node, "err", err)
				continue
			}
			wctx, stop := context.WithCancel(ctx)
			running[node] = stop
			p.wg.Go(func() {
				bus.RunWriterWhen(wctx, p.st.JS, node, WriterBatch, p.laneHandler(node), func() error {
					if err := p.member(); err != nil {
						return err
					}
					if p.ready != nil {
						return p.ready()
					}
					return nil
				})
			})
		}
	}
}

// lostLanes is the lanes this node is heir to: none unless it is the live
// node with the lowest id; then every node's lane whose node is not live.
func (p *Pipeline) lostLanes(ctx context.Context, self string, live []string) map[string]bool {
	if len(live) == 0 || slices.Min(live) != self {
		return nil
	}
	st, err := p.st.JS.Stream(ctx, bus.StreamGrabs)
	if err != nil {
		return nil
	}
	lost := map[string]bool{}
	names := st.ConsumerNames(ctx)
	for name := range names.Name() {
		tok, ok := strings.CutPrefix(name, bus.ConsumerOrders+"-")
		if !ok {
			continue
		}
		node := strings.ReplaceAll(tok, "~", ".")
		if !slices.Contains(live, node) {
			lost[node] = true
		}
	}
	return lost
}

// takeOwnLane runs at a journaled node's start: its lane of the order
// stream is its own again. A node that starts with an empty order store
// (its disk was lost) while no heir rewrote its lane rewrites the lane's
// orders itself: they were written on the disk it lost.
func (p *Pipeline) takeOwnLane(ctx context.Context, self string, fresh bool, take func(ctx context.Context, node string) (string, error), log *slog.Logger) {
	heir, err := take(ctx, self)
	switch {
	case err != nil:
		log.Warn("orders: own lane: etcd did not say who wrote it meanwhile", "err", err)
	case heir != "":
		log.Info("orders: own lane's earlier orders were rewritten by its heir while this node was lost", "heir", heir)
	case fresh:
		for try := 1; ; try++ {
			err := bus.ReadLane(ctx, p.st.JS, self, WriterBatch, p.laneHandler(self))
			if err == nil {
				log.Info("orders: own lane's orders rewritten into an empty order store")
				return
			}
			if errors.Is(err, jetstream.ErrStreamNotFound) {
				return // a new cluster: nothing was ever published
			}
			log.Warn("orders: rewriting own lane into an empty order store", "try", try, "err", err)
			select {
			case <-ctx.Done():
				return
			case <-time.After(HeirEvery):
			}
		}
	}
}

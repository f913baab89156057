package system

import (
	"context"
	"log/slog"
	"slices"
	"strings"
	"time"

	"github.com/seckill/seckill/bus"
)

// HeirEvery is how often a clustered node looks for order lanes whose node
// holds no lease: at the pace of the grid's own refresh.
const HeirEvery = time.Second

// runHeir writes the orders of lost nodes' lanes. Each node's relay
// publishes on its own lane of the order stream, read by its own writers
// (bus.ConsumerFor), into its own order store: a node that is lost takes
// the orders it wrote with its disk, and leaves grabs on its lane that it
// did not write. The live node with the lowest id writes every grab of
// the lane into its own order store, then takes the lane's durable
// consumer, until the node holds a lease again. The lost node's shards'
// heirs relay only what it did not publish (grid/failover.go), so each
// grab's order is written once among the live nodes, and the lane's
// consumer has nothing left to deliver when the node comes back empty. A
// node that comes back with its disk still has the orders it wrote: those
// are then in two stores (reconcile lists them as duplicate_order), and
// what was paid or cancelled on the lost node before it was lost is not
// in the heir's copy (its order is pending_payment there).
func (p *Pipeline) runHeir(ctx context.Context, self string, live func() []string, log *slog.Logger) {
	running := map[string]context.CancelFunc{}
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
		for node := range lost {
			if running[node] != nil {
				continue
			}
			log.Warn("orders: writing the orders of a lost node's lane", "node", node)
			wctx, stop := context.WithCancel(ctx)
			running[node] = stop
			p.wg.Go(func() {
				// First every grab the lane ever held: the orders the lost
				// node wrote are on its disk, which may be gone. The order
				// store keeps one order a grab id, so rewriting is harmless.
				if err := bus.ReadLane(wctx, p.st.JS, node, WriterBatch, WriterHandler(p.Orders)); err != nil {
					log.Warn("orders: rebuilding a lost node's lane", "node", node, "err", err)
				}
				bus.RunWriterWhen(wctx, p.st.JS, node, WriterBatch, WriterHandler(p.Orders), p.ready)
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

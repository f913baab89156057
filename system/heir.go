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
// (bus.ConsumerFor): a node that is lost leaves grabs there that it
// published but did not write. The live node with the lowest id writes
// them, from the same durable consumer, into its own order store, until
// the node holds a lease again; the lost node's shards' heirs relay only
// what it did not publish (grid/failover.go), so each grab's order is
// written once. Orders the lost node wrote and did not acknowledge before
// it died are delivered again here: with its disk lost, they are written
// once; if it comes back with its disk, such an order is in two stores
// (reconcile lists it).
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

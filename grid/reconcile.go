package grid

import (
	"context"
	"fmt"
	"net/http"
	"strings"
	"sync"

	"github.com/seckill/seckill/engine"
	"github.com/seckill/seckill/orders"
	"github.com/seckill/seckill/sale"
)

// MaxFactsBytes bounds one node's facts about an item: a grab costs about
// 120 bytes of JSON and an order 200, so 64 MiB holds a few hundred
// thousand of each, more than one node sells of one item.
const MaxFactsBytes = 64 << 20

// FactsFunc reads what this node's stores hold of an item (orders.Gather),
// counting the counters of the shards shards says.
type FactsFunc func(cfg engine.ItemConfig, shards func(int) bool) (orders.Facts, error)

// SetFacts gives the grid this node's facts reader: the cluster
// reconcile's local half.
func (g *Grid) SetFacts(f FactsFunc) { g.facts = f }

// LocalFacts implements sale.ClusterAdmin: this node's facts about item,
// counters of the shards etcd places here.
func (g *Grid) LocalFacts(item string) (any, error) {
	it, ok := g.cfg.Node.Item(item)
	if !ok {
		return nil, &sale.AdminError{Status: http.StatusNotFound, Code: "unknown_item", Msg: "no such item"}
	}
	if g.facts == nil {
		return nil, fmt.Errorf("no order side on this node")
	}
	f, err := g.facts(it.Config, func(i int) bool { _, mine := g.EpochOf(item, i); return mine })
	f.Node = g.cfg.Self.ID
	return f, err
}

// Reconciler reconciles an item over the whole cluster: every live node's
// facts, the pool's ledger in etcd and the shared stream. A node that does
// not answer makes the report fail (its part is unknown), never look clean.
func (g *Grid) Reconciler(stream orders.StreamReader) sale.Reconciler {
	return func(ctx context.Context, cfg engine.ItemConfig) (sale.Report, error) {
		v := g.view.Load()
		var mu sync.Mutex
		var facts []orders.Facts
		var errs []error
		var wg sync.WaitGroup
		for id, m := range v.peers {
			wg.Go(func() {
				var f orders.Facts
				var err error
				if id == g.cfg.Self.ID {
					var a any
					if a, err = g.LocalFacts(cfg.Item); err == nil {
						f = a.(orders.Facts)
					}
				} else {
					err = g.fetchFacts(ctx, m.CallURL(), cfg.Item, &f)
				}
				mu.Lock()
				defer mu.Unlock()
				if err != nil {
					errs = append(errs, fmt.Errorf("node %s: %w", id, err))
					return
				}
				facts = append(facts, f)
			})
		}
		wg.Wait()
		if len(errs) > 0 {
			return sale.Report{Item: cfg.Item}, errs[0]
		}
		pl, err := g.cfg.Fence.LoadPool(ctx, cfg.Item)
		if err != nil {
			return sale.Report{Item: cfg.Item}, err
		}
		return orders.Check(ctx, cfg, pl.State(), facts, stream, true, g.cfg.Node.Now(), true)
	}
}

func (g *Grid) fetchFacts(ctx context.Context, base, item string, f *orders.Facts) error {
	return g.peerGet(ctx, g.factsClient(), strings.TrimRight(base, "/")+FactsPath+item, MaxFactsBytes, f)
}

// FactsPath is where a node serves its facts about an item.
const FactsPath = "/admin/v1/cluster/facts/"

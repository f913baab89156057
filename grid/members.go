package grid

import (
	"context"
	"sync"

	"github.com/seckill/seckill/fence"
	"github.com/seckill/seckill/sale"
)

// SelfPath is where a node serves its own numbers to members lists.
const SelfPath = "/admin/v1/cluster/self"

// SelfReport is a node's own numbers.
type SelfReport struct {
	Node     string `json:"node"`
	RelayLag int64  `json:"relay_lag"`
}

// Self implements sale.ClusterAdmin.
func (g *Grid) Self() any {
	return SelfReport{Node: g.cfg.Self.ID, RelayLag: g.cfg.Node.RelayLag()}
}

// Decorate adds to a members list what the grid knows: the shards etcd
// places on each node, drain marks, and each node's relay lag (asked of it).
func (g *Grid) Decorate(ctx context.Context, ms []sale.Member) {
	v := g.view.Load()
	shards := map[string]int{}
	for _, ps := range v.placement {
		for _, p := range ps {
			shards[p.Node]++
		}
	}
	draining, _ := g.cfg.Fence.Draining(ctx)
	var wg sync.WaitGroup
	for i := range ms {
		m := &ms[i]
		m.Shards, m.Draining = shards[m.Node], draining[m.Node]
		wg.Go(func() {
			if m.Node == g.cfg.Self.ID {
				lag := g.cfg.Node.RelayLag()
				m.RelayLag = &lag
				return
			}
			var r SelfReport
			if g.peerGet(ctx, g.httpClient(), fence.NodeInfo{HTTP: m.HTTP, PeerHTTP: m.PeerHTTP}.CallURL()+SelfPath, MaxReportBytes, &r) == nil {
				m.RelayLag = &r.RelayLag
			}
		})
	}
	wg.Wait()
}

// Unavailable counts the shards whose buyers get 503 now: placed on a node
// without a live lease, or moving.
func (g *Grid) Unavailable() int {
	v := g.view.Load()
	n := 0
	for _, ps := range v.placement {
		for _, p := range ps {
			if _, alive := v.peers[p.Node]; !alive || p.State != fence.Active {
				n++
			}
		}
	}
	return n
}

// Frozen sums the units forced moves took out of play, over every item.
func (g *Grid) Frozen(ctx context.Context) (int64, error) {
	var sum int64
	for item := range g.view.Load().items {
		pl, err := g.cfg.Fence.LoadPool(ctx, item)
		if err != nil {
			return 0, err
		}
		sum += pl.Frozen
	}
	return sum, nil
}

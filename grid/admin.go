package grid

import (
	"context"
	"errors"
	"fmt"
	"net/http"
	"slices"

	"github.com/seckill/seckill/actors"
	"github.com/seckill/seckill/engine"
	"github.com/seckill/seckill/fence"
	"github.com/seckill/seckill/sale"
)

// ForceMoveRisk is what a forced move answers: what an operator accepts.
const ForceMoveRisk = "the shard started again from its last snapshot in Redis, its unsold units frozen (out of the sale; " +
	"add stock to sell them again). Grabs the lost node confirmed after that snapshot are not on the new node: their " +
	"buyers may buy again up to the limit (their ids are never given to other grabs), and if the node comes back they " +
	"are not published (reconcile lists them). The snapshot's grabs are published again by the new node: if the lost " +
	"node's order store comes back, those it had written show as duplicate_order in reconcile"

// LocalReport implements sale.ClusterAdmin.
func (g *Grid) LocalReport(item string) (any, bool) { return g.Local(item) }

// Placement implements sale.ClusterAdmin: etcd's placement, each shard's
// numbers from its owner, and its last snapshot.
func (g *Grid) Placement(ctx context.Context, item string) ([]sale.ShardPlacement, error) {
	if _, ok := g.cfg.Node.Item(item); !ok {
		return nil, &sale.AdminError{Status: http.StatusNotFound, Code: "unknown_item", Msg: "no such item"}
	}
	ps, err := g.cfg.Fence.Placement(ctx, item)
	if err != nil {
		return nil, err
	}
	slices.SortFunc(ps, func(a, b fence.Placement) int { return a.Shard - b.Shard })
	shards := g.gather(item)
	out := make([]sale.ShardPlacement, 0, len(ps))
	now := g.cfg.Node.Now()
	for _, p := range ps {
		sp := sale.ShardPlacement{Shard: p.Shard, Node: p.Node, Epoch: p.Epoch, State: string(p.State), MovingTo: p.To}
		if s, ok := shards[p.Shard]; ok {
			rem, sold := s.Allocated-s.Sold, s.Sold
			sp.Remaining, sp.Sold = &rem, &sold
		}
		if g.cfg.Snapshots != nil {
			if m, ok, err := g.cfg.Snapshots.SnapshotMeta(ctx, item, p.Shard); err == nil && ok {
				sp.Snapshot = &sale.SnapshotInfo{Epoch: m.Epoch, Seq: m.Seq, AgeMs: max(0, now-m.SavedAtMs)}
			}
		}
		out = append(out, sp)
	}
	return out, nil
}

// Move implements sale.ClusterAdmin. A cooperative move is asked of the
// owner through etcd (state moving); the owner hands over and etcd names
// the new node. A forced move takes the shard of a node whose lease
// expired at once.
func (g *Grid) Move(ctx context.Context, item string, shard int, to string, force bool) (sale.MoveAsked, error) {
	cfg, ok := g.cfg.Node.Item(item)
	if !ok {
		return sale.MoveAsked{}, &sale.AdminError{Status: http.StatusNotFound, Code: "unknown_item", Msg: "no such item"}
	}
	if shard >= cfg.Config.Shards {
		return sale.MoveAsked{}, &sale.AdminError{Status: http.StatusNotFound, Code: "unknown_shard", Msg: fmt.Sprintf("item has %d shards", cfg.Config.Shards)}
	}
	if force {
		return g.forceMove(ctx, item, shard, to)
	}
	if err := g.givenBack(item, shard, to); err != nil {
		return sale.MoveAsked{}, err
	}
	p, err := g.cfg.Fence.RequestMove(ctx, item, shard, to)
	if err != nil {
		return sale.MoveAsked{}, moveErr(err)
	}
	g.poke()
	return sale.MoveAsked{Item: item, Shard: shard, From: p.Node, To: to, Epoch: p.Epoch, State: "moving"}, nil
}

func moveErr(err error) error {
	switch {
	case errors.Is(err, fence.ErrNodeDown):
		return &sale.AdminError{Status: http.StatusConflict, Code: "node_down", Msg: err.Error()}
	case errors.Is(err, fence.ErrOwnerAlive):
		return &sale.AdminError{Status: http.StatusConflict, Code: "owner_alive", Msg: "the owner's lease lives: move without force, or drain it"}
	case errors.Is(err, fence.ErrOwnerExpired):
		return &sale.AdminError{Status: http.StatusConflict, Code: "owner_expired", Msg: "the owner's lease expired: only a forced move can take the shard"}
	case errors.Is(err, fence.ErrSameNode):
		return &sale.AdminError{Status: http.StatusConflict, Code: "same_node", Msg: "the shard is already on that node"}
	case errors.Is(err, fence.ErrNotOwner), errors.Is(err, fence.ErrStale), errors.Is(err, fence.ErrNotActive):
		return &sale.AdminError{Status: http.StatusConflict, Code: "not_movable", Msg: err.Error()}
	case errors.Is(err, fence.ErrUnplaced):
		return &sale.AdminError{Status: http.StatusNotFound, Code: "unknown_shard", Msg: err.Error()}
	}
	return err
}

// Drain implements sale.ClusterAdmin: mark the node, then ask each of its
// shards to move to the other live, undrained nodes in turn.
func (g *Grid) Drain(ctx context.Context, node string, on bool) ([]sale.MoveAsked, error) {
	if err := fence.CheckNodeID(node); err != nil {
		return nil, &sale.AdminError{Status: http.StatusBadRequest, Code: "bad_node", Msg: err.Error()}
	}
	ms, err := g.cfg.Fence.Members(ctx)
	if err != nil {
		return nil, err
	}
	if on && !slices.ContainsFunc(ms, func(m fence.NodeInfo) bool { return m.ID == node }) {
		// Its shards move only if it hands them over.
		return nil, &sale.AdminError{Status: http.StatusNotFound, Code: "unknown_node", Msg: "no live member of that name"}
	}
	if err := g.cfg.Fence.SetDraining(ctx, node, on); err != nil {
		return nil, err
	}
	g.poke()
	if !on {
		return nil, nil
	}
	draining, err := g.cfg.Fence.Draining(ctx)
	if err != nil {
		return nil, err
	}
	var targets []string
	for _, m := range ms {
		if m.ID != node && !draining[m.ID] {
			targets = append(targets, m.ID)
		}
	}
	slices.Sort(targets)
	if len(targets) == 0 {
		return nil, &sale.AdminError{Status: http.StatusConflict, Code: "no_target", Msg: "no other live node that is not draining"}
	}
	var moves []sale.MoveAsked
	k := 0
	for _, it := range g.cfg.Node.Items() {
		ps, err := g.cfg.Fence.Placement(ctx, it.Config.Item)
		if err != nil {
			return moves, err
		}
		for _, p := range ps {
			if p.Node != node || p.State != fence.Active {
				continue
			}
			to := targets[k%len(targets)]
			k++
			if g.givenBack(it.Config.Item, p.Shard, to) != nil {
				to = targets[k%len(targets)] // the next one, once
				k++
				if g.givenBack(it.Config.Item, p.Shard, to) != nil {
					continue
				}
			}
			if _, err := g.cfg.Fence.RequestMove(ctx, it.Config.Item, p.Shard, to); err != nil {
				return moves, moveErr(err)
			}
			moves = append(moves, sale.MoveAsked{Item: it.Config.Item, Shard: p.Shard, From: node, To: to, Epoch: p.Epoch, State: "moving"})
		}
	}
	return moves, nil
}

// forceMove takes the shard of a node whose lease expired: it starts
// again on to, at the next epoch, from its last snapshot in Redis with the
// unsold units of that snapshot frozen (fence.ForceMove, in the same
// transaction as the placement). The snapshot the new incarnation starts
// from is written for its epoch after the transaction; the new owner waits
// for it.
func (g *Grid) forceMove(ctx context.Context, item string, shard int, to string) (sale.MoveAsked, error) {
	it, _ := g.cfg.Node.Item(item)
	if g.cfg.Journal != nil {
		// The journal holds everything: a lost node's shards fail over by
		// themselves with nothing frozen. A forced move is for a lost
		// journal, which these nodes would still append to.
		return sale.MoveAsked{}, &sale.AdminError{Status: http.StatusConflict, Code: "journaled",
			Msg: "this cluster runs a replicated journal: a lost node's shards fail over by themselves once its lease expires; a forced move is for a lost journal: restart the nodes with --journal=false (SECKILL_JOURNAL=0) first"}
	}
	if g.cfg.Snapshots == nil {
		return sale.MoveAsked{}, &sale.AdminError{Status: http.StatusConflict, Code: "no_snapshots", Msg: "a forced move starts from a Redis snapshot: run the nodes with --redis"}
	}
	if err := g.givenBack(item, shard, to); err != nil {
		return sale.MoveAsked{}, err
	}
	ps, err := g.cfg.Fence.Placement(ctx, item)
	if err != nil {
		return sale.MoveAsked{}, err
	}
	var from fence.Placement
	for _, p := range ps {
		if p.Shard == shard {
			from = p
		}
	}
	snap, ok, err := g.cfg.Snapshots.LoadSnapshot(ctx, item, shard)
	if err != nil {
		return sale.MoveAsked{}, err
	}
	if !ok {
		// Nothing was ever written of it: it starts empty.
		snap = engine.ShardSnapshot{Item: item, Shard: shard, Counters: actors.ClusterStart(it.Config, shard)}
	}
	start := snap.Counters
	start.Returned += start.Allocated - start.Sold // the unsold units: frozen
	start.Allocated = start.Sold
	p, err := g.cfg.Fence.ForceMove(ctx, item, shard, to, start)
	if err != nil {
		return sale.MoveAsked{}, moveErr(err)
	}
	snap.Counters, snap.Epoch = start, p.Epoch
	// Past every sequence the lost incarnation was granted: a grab it
	// confirmed after this snapshot keeps its id to itself.
	snap = snap.SkipTo(p.SeqStart)
	if err := g.cfg.Snapshots.SaveSnapshot(ctx, snap); err != nil {
		// The placement is the new node's: it waits for this snapshot.
		// Asking again writes it.
		return sale.MoveAsked{}, fmt.Errorf("forced move of %s.%d done in etcd, its snapshot not written yet (ask again): %w", item, shard, err)
	}
	g.poke()
	return sale.MoveAsked{Item: item, Shard: shard, From: from.Node, To: to, Epoch: p.Epoch, State: "moved", Risk: ForceMoveRisk}, nil
}

// givenBack refuses a move of shard to a node a forced move took it from:
// that node's copy of the shard diverges from the shard's.
func (g *Grid) givenBack(item string, shard int, to string) error {
	for _, n := range g.view.Load().forcedAway[shardKey{item, shard}] {
		if n == to {
			return &sale.AdminError{Status: http.StatusConflict, Code: "forced_away", Msg: "a forced move took this shard from that node: its copy diverges"}
		}
	}
	return nil
}

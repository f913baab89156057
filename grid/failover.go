package grid

import (
	"errors"
	"slices"

	"github.com/seckill/seckill/actors"
	"github.com/seckill/seckill/engine"
	"github.com/seckill/seckill/fence"
)

// Failover, with a replicated journal. How a shard leaves a lost node:
//
//  1. etcd expires the node's lease (fence.LeaseTTL after its last
//     keep-alive): its member key goes, and every live node's layout watch
//     fires.
//  2. Each live node's refresh sees shards placed on a node without a
//     lease and picks an heir for each (the live, undrained node with the
//     fewest shards); fence.Failover names it at epoch+1 by a
//     compare-and-swap, so one decision wins and the rest are ErrStale.
//  3. The heir's refresh activates the shard (activateJournaled): a takeover
//     marker in the shard's journal fences every earlier incarnation, and
//     the journal folded up to it is the shard's state, with every grab,
//     buyer, key and unit the lost node confirmed. Buyers' retries reach
//     the heir, and replays of their keys find their grabs.
//  4. If the lost node comes back (restarted, resumed, healed), it holds
//     a new lease: it sees the shard placed elsewhere and stops it; any
//     round it still appends is refused by the journal (its marker is not
//     the last), so it confirms nothing; and its relay publishes none of
//     the shard's grabs (fence.Forced.Journaled), which the heir relays.
//
// Cooperative moves and drains go through the same activation: the old
// owner gives back its units and stops, the new one takes over the journal.

// activateJournaled starts a shard placed here from its journal.
func (g *Grid) activateJournaled(cfg engine.ItemConfig, p fence.Placement) {
	ctx, cancel := g.ctx()
	tk, err := g.cfg.Journal.Takeover(ctx, cfg, p.Shard, p.Epoch, g.cfg.Self.ID)
	cancel()
	for _, r := range tk.Refused {
		g.log.Error("grid: journal entry refused, not applied", "item", cfg.Item, "shard", p.Shard, "err", r)
	}
	if err != nil {
		g.log.Warn("grid: journal takeover", "item", cfg.Item, "shard", p.Shard, "epoch", p.Epoch, "err", err)
		return
	}
	if !g.grantFirstSeqs(cfg, p) {
		return
	}
	if _, ok := g.view.Load().relayFrom[laneShard{shardKey{cfg.Item, p.Shard}, g.cfg.Self.ID}]; ok {
		// The shard is back here after a failover took it: this node's
		// lane carries its grabs again.
		ctx, cancel := g.ctx()
		err := g.cfg.Fence.ClearFailover(ctx, cfg.Item, p.Shard, g.cfg.Self.ID)
		cancel()
		if err != nil {
			g.log.Warn("grid: clear failover record", "item", cfg.Item, "shard", p.Shard, "err", err)
			return
		}
		g.cfg.Node.SetRelayCeiling(cfg.Item, p.Shard, 0)
	}
	// Which of the grabs the local store lacks are relayed from here: those
	// their maker relays no more. A lost node's (a failover, also when this
	// node takes it again at the same epoch): those no lane published. This
	// node's own (they reached the journal but not its store before a
	// crash): all. A live one's (a cooperative move): none.
	relay := actors.RelayAfterSnapshot
	switch {
	case p.Failover:
		ctx, cancel := g.ctx()
		up, err := g.cfg.Published(ctx, cfg.Item, p.Shard)
		cancel()
		if err == nil && tk.Prev != "" {
			// The lost node's lane takes none of the shard's grabs past
			// this (a publish of its still in flight is not written); a
			// second try relays from what the first recorded.
			ctx, cancel := g.ctx()
			var from uint64
			from, err = g.cfg.Fence.RelayFrom(ctx, cfg.Item, p.Shard, tk.Prev, up+1)
			cancel()
			switch {
			case err == nil:
				up = from - 1
			case errors.Is(err, fence.ErrUnplaced):
				// The incarnation before the lost one's placement never
				// started, and no failover took it from tk.Prev: nothing
				// to record.
				err = nil
			}
		}
		if err != nil {
			g.log.Warn("grid: failover: what the lost node published", "item", cfg.Item, "shard", p.Shard, "err", err)
			return
		}
		relay = int64(up)
	case tk.Prev == g.cfg.Self.ID:
		relay = actors.RelayOwn
	}
	if err := g.cfg.Node.ActivateJournaled(cfg.Item, p.Shard, p.Epoch, tk.Snap, tk.At, relay); errors.Is(err, actors.ErrActive) {
		// Another activation got there first; its next append is refused
		// (this marker follows its), and the shard is taken over again.
		g.log.Info("grid: shard already running here", "item", cfg.Item, "shard", p.Shard, "epoch", p.Epoch)
		return
	} else if err != nil {
		g.log.Warn("grid: activate shard", "item", cfg.Item, "shard", p.Shard, "epoch", p.Epoch, "err", err)
		return
	}
	g.log.Info("grid: shard taken over from its journal", "item", cfg.Item, "shard", p.Shard, "epoch", p.Epoch,
		"next_seq", tk.Snap.Counters.NextSeq, "sold", tk.Snap.Counters.Sold, "prev", tk.Prev)
}

// failover places every shard of a node without a lease on a live node.
// It reports whether it moved any.
func (g *Grid) failover(v *view) bool {
	if g.cfg.Journal == nil || !g.valid() {
		return false
	}
	load := map[string]int{}
	var heirs []string
	for id := range v.peers {
		if !v.draining[id] {
			heirs = append(heirs, id)
			load[id] = 0
		}
	}
	if len(heirs) == 0 {
		return false
	}
	slices.Sort(heirs)
	for _, ps := range v.placement {
		for _, p := range ps {
			if _, ok := load[p.Node]; ok {
				load[p.Node]++
			}
		}
	}
	moved := false
	for _, item := range sortedItems(v) {
		for _, p := range v.placement[item] {
			if _, alive := v.peers[p.Node]; alive || p.State == fence.Frozen {
				continue
			}
			to := heirs[0]
			for _, h := range heirs[1:] {
				if load[h] < load[to] {
					to = h
				}
			}
			ctx, cancel := g.ctx()
			np, err := g.cfg.Fence.Failover(ctx, item, p.Shard, p.Node, to)
			cancel()
			switch {
			case err == nil:
				load[to]++
				moved = true
				g.log.Warn("grid: failover: shard of a lost node placed on a live one", "item", item, "shard", p.Shard,
					"from", p.Node, "to", to, "epoch", np.Epoch)
			case errors.Is(err, fence.ErrStale), errors.Is(err, fence.ErrOwnerAlive):
				// Another node decided first, or the owner is back.
			default:
				g.log.Warn("grid: failover", "item", item, "shard", p.Shard, "from", p.Node, "to", to, "err", err)
			}
		}
	}
	return moved
}

func sortedItems(v *view) []string {
	items := make([]string, 0, len(v.placement))
	for it := range v.placement {
		items = append(items, it)
	}
	slices.Sort(items)
	return items
}

// LiveMembers lists the nodes holding a lease, as last read from etcd.
func (g *Grid) LiveMembers() []string {
	v := g.view.Load()
	out := make([]string, 0, len(v.peers))
	for id := range v.peers {
		out = append(out, id)
	}
	return out
}

// Superseded reports whether the grab seq of shard of item, on node's lane
// of the order stream, is one a failover took from that lane: the shard's
// new owner relays it, so no writer writes it from node's lane (a relay
// publish node had in flight when it was lost and that landed late).
func (g *Grid) Superseded(node, item string, shard int, seq uint64) bool {
	from, ok := g.view.Load().relayFrom[laneShard{shardKey{item, shard}, node}]
	return ok && from > 0 && seq >= from
}

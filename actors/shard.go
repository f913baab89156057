package actors

import (
	"sync/atomic"

	"github.com/asynkron/protoactor-go/actor"
	"github.com/seckill/seckill/engine"
	"github.com/seckill/seckill/persistence"
)

// shardRef is what the front and the committers know of a shard actor.
type shardRef struct {
	item      *Item
	index     int
	pid       *actor.PID
	committer *committer
	stopped   chan struct{} // closed when the actor has stopped

	// counters packs allocated<<32 | sold as last decided, so a reader sees
	// a consistent pair without asking the actor (MaxStock < 2^32).
	counters atomic.Uint64
	inflight atomic.Int32
	// durableSeq is the highest grab sequence known to be on disk; a replay
	// of an older grab needs no wait for a commit.
	durableSeq atomic.Uint64
	// failedGen is the newest generation of decisions a failed commit
	// poisoned; the committers drop decisions of that generation or older.
	failedGen atomic.Uint64
}

func (r *shardRef) publish(c engine.Counters) {
	r.counters.Store(uint64(c.Allocated)<<32 | uint64(c.Sold))
}

func (r *shardRef) load() (allocated, sold int64) {
	v := r.counters.Load()
	return int64(v >> 32), int64(v & 0xffffffff)
}

// reloadMsg asks a shard to drop its memory and reload from disk after a
// failed commit of generation gen.
type reloadMsg struct{ gen uint64 }

// shardActor owns one engine.Shard. It decides in arrival order and never
// waits for the disk: confirmed decisions go to its committer, which replies.
type shardActor struct {
	node  *Node
	ref   *shardRef
	shard *engine.Shard // nil while a reload has failed
	// gen numbers the decisions made since the last reload from disk; it
	// starts at 1 so that failedGen's zero value poisons nothing.
	gen uint64
}

func (a *shardActor) Receive(ctx actor.Context) {
	switch m := ctx.Message().(type) {
	case *call:
		a.grab(m)
	case reloadMsg:
		if m.gen >= a.gen {
			a.reload()
		}
	case *actor.Started:
		a.gen = 1
	case *actor.Stopped:
		close(a.ref.stopped)
	}
}

func (a *shardActor) grab(c *call) {
	if a.shard == nil && !a.reload() {
		c.finish(Reply{Err: ErrUnavailable})
		return
	}
	in := c.in
	in.NowMs = a.node.opts.Clock()
	d := a.shard.Grab(in)
	switch {
	case d.Outcome == engine.Confirmed:
		a.ref.publish(d.Counters)
		if d.Counters.Remaining() == 0 {
			a.ref.item.updateSoldOut()
		}
		a.ref.committer.in <- commitReq{ref: a.ref, gen: a.gen, d: d, c: c}
	case d.Outcome == engine.Replayed && d.Grab.Seq > a.ref.durableSeq.Load():
		// The original is decided but maybe not yet on disk: answer after
		// the commit that holds it, which is queued ahead of this.
		a.ref.committer.in <- commitReq{ref: a.ref, gen: a.gen, d: d, c: c}
	default:
		c.finish(Reply{Outcome: d.Outcome, Grab: d.Grab})
	}
}

// reload replaces the shard's memory with what is durable. Decisions of the
// current generation still queued are dropped by the committers.
func (a *shardActor) reload() bool {
	cfg := a.ref.item.Config
	a.gen = max(a.gen, a.ref.failedGen.Load()) + 1
	sh, err := persistence.LoadShard(a.node.store, cfg, a.ref.index)
	if err != nil {
		a.node.opts.Logger.Error("reload shard", "item", cfg.Item, "shard", a.ref.index, "err", err)
		a.shard = nil
		return false
	}
	a.shard = sh
	a.ref.publish(sh.Counters())
	a.ref.item.updateSoldOut()
	return true
}

package actors

import (
	"errors"
	"fmt"
	"sync/atomic"
	"time"

	"github.com/asynkron/protoactor-go/actor"
	"github.com/seckill/seckill/engine"
	"github.com/seckill/seckill/persistence"
)

// Messages a shard or pool actor receives besides engine.Msg, *call and
// *stockCall.
type (
	// reloadMsg asks an actor to drop its memory and reload from disk after
	// a failed commit of generation gen. With done (ReloadAll) it reloads
	// whatever its generation, first poisoning every decision it made so
	// far, and closes done once reloaded.
	reloadMsg struct {
		gen  uint64
		done chan struct{}
	}
	// tickMsg: the time a step asked to be woken at has come.
	tickMsg struct{}
)

// shardActor hosts one engine.ShardNode: it feeds it requests, messages
// and the time, and carries out its Ready. It never waits for the disk:
// what must be durable goes to its committer, which answers and sends after
// the commit.
type shardActor struct {
	node *Node
	ref  *shardRef
	sn   *engine.ShardNode
	// broken: the last reload failed; the next request tries again.
	broken bool
	// gen numbers the decisions made since the last reload from disk; it
	// starts at 1 so that failedGen's zero value poisons nothing.
	gen     uint64
	tickets tickets[*call]
	timer   wake
	// genBase is the placement epoch << GenShift on a clustered node (0 on
	// one node): the incarnation the pool sees is genBase + gen.
	genBase uint64
	// leaving: a handover is under way; nothing more is sold here.
	leaving bool
	// epoch: the placement epoch of this activation (0 on one node).
	epoch uint64
}

func (a *shardActor) Receive(ctx actor.Context) {
	switch m := ctx.Message().(type) {
	case *call:
		if a.leaving {
			m.finish(Reply{Err: ErrUnavailable})
			return
		}
		if a.broken && !a.reload() {
			m.finish(Reply{Err: ErrUnavailable})
			return
		}
		if !m.release && a.seqsShort() {
			m.finish(Reply{Err: ErrUnavailable})
			return
		}
		t := a.tickets.add(m)
		if m.release {
			a.sn.Release(t, m.seq)
		} else {
			in := m.in
			in.NowMs = a.node.opts.Clock()
			a.sn.Grab(t, in)
		}
	case engine.Msg:
		if a.leaving || a.broken && !a.reload() {
			return
		}
		a.sn.Step(m, a.node.opts.Clock())
	case tickMsg:
		a.timer.fired()
		a.sn.Tick(a.node.opts.Clock())
	case reloadMsg:
		if m.done != nil {
			raiseGen(&a.ref.failedGen, a.gen)
			a.reload()
			close(m.done)
		} else if m.gen >= a.gen {
			a.reload()
		}
	case handoverMsg:
		a.handover(ctx, m)
		return
	case *actor.Started:
		a.gen = max(a.gen, 1)
		return
	case *actor.Stopped:
		a.sn.Stop()
		a.flush()
		close(a.ref.stopped)
		return
	default:
		return
	}
	a.flush()
}

// flush carries out the node's Ready.
func (a *shardActor) flush() {
	rd := a.sn.Ready()
	if rd.Empty() && rd.WakeAtMs == 0 {
		return
	}
	ref := a.ref
	for _, ans := range rd.Answers {
		if ans.Outcome == engine.Confirmed && ans.Grab.Key != "" {
			// Before the counters and any message that may make the item
			// sold out: whoever sees it sold out also sees its holders.
			// Only a grab made with a key can be replayed, so only those
			// count (unkeyed ones cost a locked map insert for nothing).
			ref.addHolder(ans.Grab.User)
		}
	}
	sh := a.sn.Shard()
	ref.publish(sh.Counters(), a.sn.Refills(), a.sn.Steals())
	if w := int32(a.sn.Waiting()); w != ref.waiting.Load() {
		ref.waiting.Store(w)
	}
	for _, ans := range rd.NowAnswers {
		a.tickets.take(ans.Ticket).finish(reply(ans))
	}
	for _, m := range rd.NowMsgs {
		a.node.send(m)
	}
	if len(rd.Records) > 0 || len(rd.Answers) > 0 || len(rd.Msgs) > 0 {
		a.commit(rd)
	}
	a.timer.at(rd.WakeAtMs, a.node, ref.pid())
	a.sn.Advance()
}

// commit queues the Ready's records on the shard's committer, the answers
// and messages riding on the last of them. The common case, one grab and
// its answer, is one request and no allocation.
func (a *shardActor) commit(rd *engine.Ready) {
	ref := a.ref
	in := ref.committer.in
	last := len(rd.Records) - 1
	for i := 0; i < last; i++ {
		in <- a.recordReq(rd.Records[i])
	}
	q := commitReq{lane: &ref.lane, gen: a.gen, shard: ref}
	if last >= 0 {
		q = a.recordReq(rd.Records[last])
	}
	if len(rd.Answers) == 1 && len(rd.Msgs) == 0 {
		q.c, q.reply = a.tickets.take(rd.Answers[0].Ticket), reply(rd.Answers[0])
	} else {
		for _, ans := range rd.Answers {
			q.answers = append(q.answers, pending{c: a.tickets.take(ans.Ticket), a: ans})
		}
		q.msgs = append([]engine.Msg(nil), rd.Msgs...)
	}
	in <- q
}

func (a *shardActor) recordReq(r engine.Record) commitReq {
	q := commitReq{lane: &a.ref.lane, gen: a.gen, rec: persistence.FromEngine(r), shard: a.ref}
	if r.Kind == engine.RecGrab {
		q.durable = a.ref
	}
	return q
}

// reload replaces the shard's memory with what is durable. Decisions of the
// current generation still queued are dropped by the committers.
func (a *shardActor) reload() bool {
	cfg := a.ref.item.Config
	a.gen = max(a.gen, a.ref.failedGen.Load()) + 1
	sh, err := persistence.LoadShard(a.node.store, cfg, a.ref.index)
	if err != nil {
		a.node.opts.Logger.Error("reload shard", "item", cfg.Item, "shard", a.ref.index, "err", err)
		a.broken = true
		return false
	}
	a.broken = false
	a.sn.Restart(sh, a.genBase+a.gen)
	return true
}

// handover gives every unsold unit back to the pool, tells the buyers
// waiting to retry, and stops the actor; m.done hears, once everything the
// shard decided is durable, whether it all is.
func (a *shardActor) handover(ctx actor.Context, m handoverMsg) {
	if a.leaving {
		m.done <- errors.New("handover under way")
		return
	}
	a.leaving = true
	self := engine.ShardAddr(a.ref.item.Config.Item, a.ref.index)
	rem := a.sn.Shard().Counters().Remaining()
	a.sn.Step(engine.Msg{Kind: engine.MsgGiveBack, From: engine.PoolAddr(self.Item), To: self, Want: rem}, a.node.opts.Clock())
	a.sn.Stop()
	a.flush()
	// A request that writes nothing waits for every commit queued before it.
	barrier := &call{done: make(chan Reply, 1)}
	a.ref.committer.in <- commitReq{lane: &a.ref.lane, gen: a.gen, c: barrier, shard: a.ref}
	go func() {
		if r := <-barrier.done; r.Err != nil {
			m.done <- fmt.Errorf("handover of %s.%d: %w", self.Item, self.Shard, r.Err)
			return
		}
		m.done <- nil
	}()
	ctx.Poison(ctx.Self())
}

// tickets maps the engine's tickets to the host's waiting requests: a slab
// with a free list, so a ticket costs no map and no allocation.
type tickets[T any] struct {
	slots []T
	free  []engine.Ticket
}

func (t *tickets[T]) add(v T) engine.Ticket {
	if n := len(t.free); n > 0 {
		k := t.free[n-1]
		t.free = t.free[:n-1]
		t.slots[k-1] = v
		return k
	}
	t.slots = append(t.slots, v)
	return engine.Ticket(len(t.slots))
}

func (t *tickets[T]) take(k engine.Ticket) T {
	v := t.slots[k-1]
	var zero T
	t.slots[k-1] = zero
	t.free = append(t.free, k)
	return v
}

// wake schedules the tick a Ready asks for: one timer at a time, the
// earliest asked.
type wake struct {
	atMs int64 // the tick scheduled; 0: none
}

func (w *wake) fired() { w.atMs = 0 }

func (w *wake) at(atMs int64, n *Node, pid *actor.PID) {
	if atMs == 0 || pid == nil || (w.atMs != 0 && w.atMs <= atMs) {
		return
	}
	w.atMs = atMs
	d := max(time.Duration(atMs-n.opts.Clock())*time.Millisecond, time.Millisecond)
	root := n.sys.Root
	time.AfterFunc(d, func() { root.Send(pid, tickMsg{}) })
}

// reply is the front's form of a shard's answer.
func reply(a engine.Answer) Reply {
	switch a.Outcome {
	case engine.Busy:
		return Reply{Err: ErrOverloaded}
	case engine.Retry:
		return Reply{Err: ErrUnavailable}
	case engine.UnknownGrab:
		return Reply{Outcome: a.Outcome, Err: ErrUnknownGrab}
	}
	return Reply{Outcome: a.Outcome, Grab: a.Grab}
}

// raiseGen raises a lane's failedGen to at least gen.
func raiseGen(g *atomic.Uint64, gen uint64) {
	for {
		cur := g.Load()
		if cur >= gen || g.CompareAndSwap(cur, gen) {
			return
		}
	}
}

package actors

import (
	"time"

	"github.com/asynkron/protoactor-go/actor"
	"github.com/seckill/seckill/engine"
	"github.com/seckill/seckill/persistence"
)

// Messages a shard actor receives besides *call.
type (
	// reloadMsg asks an actor to drop its memory and reload from disk after
	// a failed commit of generation gen.
	reloadMsg struct{ gen uint64 }
	// refillMsg carries the pool's cumulative count sent to the shard.
	refillMsg struct{ sentTotal int64 }
	// noStockMsg: the pool found no unit anywhere for this shard's buyers.
	noStockMsg struct{}
	// giveBackMsg asks the shard to hand up to want unsold units to the pool.
	giveBackMsg struct{ want int64 }
	// tickMsg makes the shard look at buyers waiting for a refill.
	tickMsg struct{}
	// releaseCall returns grab seq to stock.
	releaseCall struct {
		seq  uint64
		done chan Reply
	}
)

// parked is a buyer waiting for stock to reach this shard.
type parked struct {
	c        *call
	deadline time.Time
}

// shardActor owns one engine.Shard. It decides in arrival order and never
// waits for the disk: durable decisions go to its committer, which replies.
type shardActor struct {
	node  *Node
	ref   *shardRef
	shard *engine.Shard // nil while a reload has failed
	// gen numbers the decisions made since the last reload from disk; it
	// starts at 1 so that failedGen's zero value poisons nothing.
	gen uint64
	// asked: a refill request is with the pool and not yet answered.
	asked bool
	// waiting buyers, oldest first, and whether a tick is scheduled.
	waiting []parked
	ticking bool
}

func (a *shardActor) Receive(ctx actor.Context) {
	switch m := ctx.Message().(type) {
	case *call:
		a.grab(m)
	case refillMsg:
		a.refill(m.sentTotal)
	case noStockMsg:
		a.asked = false
		a.answerWaiting(Reply{Outcome: engine.SoldOut})
	case giveBackMsg:
		a.giveBack(m.want)
	case *releaseCall:
		a.release(m)
	case tickMsg:
		a.tick()
	case reloadMsg:
		if m.gen >= a.gen {
			a.reload()
		}
	case *actor.Started:
		a.gen = 1
	case *actor.Stopped:
		a.answerWaiting(Reply{Err: ErrUnavailable})
		close(a.ref.stopped)
	}
}

func (a *shardActor) now() int64 { return a.node.opts.Clock() }

func (a *shardActor) grab(c *call) {
	if a.shard == nil && !a.reload() {
		c.finish(Reply{Err: ErrUnavailable})
		return
	}
	in := c.in
	in.NowMs = a.now()
	d := a.shard.Grab(in)
	switch {
	case d.Outcome == engine.Confirmed:
		a.ref.addHolder(in.User)
		a.ref.publishGrab(d.Counters)
		a.ref.committer.in <- grabReq(a.ref, a.gen, d, c)
		a.topUp()
	case d.Outcome == engine.Replayed && d.Grab.Seq > a.ref.durableSeq.Load(), d.Outcome == engine.Released:
		// The original grab (or its release) is decided but maybe not yet
		// on disk: answer after the commit that holds it, queued ahead.
		a.ref.committer.in <- grabReq(a.ref, a.gen, d, c)
	case d.Outcome == engine.NeedStock:
		a.needStock(c, in.Qty)
	default:
		c.finish(Reply{Outcome: d.Outcome, Grab: d.Grab})
	}
}

// needStock parks a buyer this shard cannot serve yet and asks the pool,
// unless every unit of the item is already sold.
func (a *shardActor) needStock(c *call, qty int64) {
	if a.ref.item.soldOut.Load() {
		c.finish(Reply{Outcome: engine.SoldOut})
		return
	}
	if len(a.waiting) >= MaxWaitingPerShard {
		c.finish(Reply{Err: ErrOverloaded})
		return
	}
	a.waiting = append(a.waiting, parked{c: c, deadline: time.Now().Add(RefillWait)})
	a.ask(max(a.shard.Config().RefillChunk(), qty), true)
	if !a.ticking {
		a.ticking = true
		pid, root := a.ref.pid, a.node.sys.Root
		time.AfterFunc(RefillWait, func() { root.Send(pid, tickMsg{}) })
	}
}

// topUp asks the pool for a chunk before the shard runs dry, when the pool
// has units to give.
func (a *shardActor) topUp() {
	if want := a.shard.RefillWant(); want > 0 && !a.ref.item.poolEmpty.Load() {
		a.ask(want, false)
	}
}

func (a *shardActor) ask(want int64, urgent bool) {
	if a.asked {
		return
	}
	a.asked = true
	a.node.sys.Root.Send(a.ref.item.pool.pid, refillReq{shard: a.ref.index, want: want, urgent: urgent})
}

func (a *shardActor) refill(sentTotal int64) {
	a.asked = false
	if a.shard == nil && !a.reload() {
		return
	}
	n, c, err := a.shard.ApplyRefill(sentTotal)
	if err != nil {
		a.node.opts.Logger.Error("refill refused", "item", a.ref.item.Config.Item, "shard", a.ref.index, "err", err)
		return
	}
	if n > 0 {
		a.ref.publishMove(c, true, false)
		// Queued ahead of the grabs it enables, on the same committer.
		a.ref.committer.in <- commitReq{lane: &a.ref.lane, gen: a.gen, rec: persistence.Record{
			Kind: persistence.KindCounters, Item: engine.ItemConfig{Item: a.ref.item.Config.Item}, Shard: a.ref.index, Counters: c}}
	}
	a.serveWaiting()
}

// serveWaiting retries parked buyers in arrival order until one still
// finds no stock.
func (a *shardActor) serveWaiting() {
	for len(a.waiting) > 0 {
		p := a.waiting[0]
		in := p.c.in
		in.NowMs = a.now()
		d := a.shard.Grab(in)
		if d.Outcome == engine.NeedStock {
			if a.ref.item.soldOut.Load() {
				a.answerWaiting(Reply{Outcome: engine.SoldOut})
				return
			}
			a.ask(max(a.shard.Config().RefillChunk(), in.Qty), true)
			return
		}
		a.waiting[0] = parked{}
		a.waiting = a.waiting[1:]
		switch {
		case d.Outcome == engine.Confirmed:
			a.ref.addHolder(in.User)
			a.ref.publishGrab(d.Counters)
			a.ref.committer.in <- grabReq(a.ref, a.gen, d, p.c)
		case d.Outcome == engine.Replayed && d.Grab.Seq > a.ref.durableSeq.Load(), d.Outcome == engine.Released:
			a.ref.committer.in <- grabReq(a.ref, a.gen, d, p.c)
		default:
			p.c.finish(Reply{Outcome: d.Outcome, Grab: d.Grab})
		}
	}
	a.topUp()
}

func (a *shardActor) answerWaiting(r Reply) {
	for _, p := range a.waiting {
		p.c.finish(r)
	}
	clear(a.waiting)
	a.waiting = a.waiting[:0]
}

// tick answers buyers who waited RefillWait without a refill: 503, so they
// retry; stock exists but has not reached this shard in time.
func (a *shardActor) tick() {
	a.ticking = false
	now := time.Now()
	i := 0
	for ; i < len(a.waiting) && !now.Before(a.waiting[i].deadline); i++ {
		a.waiting[i].c.finish(Reply{Err: ErrUnavailable})
		a.waiting[i] = parked{}
	}
	a.waiting = a.waiting[i:]
	if len(a.waiting) > 0 {
		a.ticking = true
		pid, root := a.ref.pid, a.node.sys.Root
		time.AfterFunc(time.Until(a.waiting[0].deadline), func() { root.Send(pid, tickMsg{}) })
	}
}

func (a *shardActor) giveBack(want int64) {
	total := int64(-1)
	if a.shard != nil || a.reload() {
		k, c := a.shard.GiveBack(want)
		total = c.Returned
		if k > 0 {
			a.ref.publishMove(c, false, true)
			pool, root := a.ref.item.pool.pid, a.node.sys.Root
			shard := a.ref.index
			a.ref.committer.in <- commitReq{lane: &a.ref.lane, gen: a.gen, rec: persistence.Record{
				Kind: persistence.KindCounters, Item: engine.ItemConfig{Item: a.ref.item.Config.Item}, Shard: shard, Counters: c},
				after: func(err error) {
					if err == nil {
						root.Send(pool, returnedMsg{shard: shard, total: c.Returned, answer: true})
					} else {
						root.Send(pool, returnedMsg{shard: shard, total: -1, answer: true})
					}
				}}
			return
		}
	}
	// Nothing to give: tell the pool at once so it can look elsewhere.
	a.node.sys.Root.Send(a.ref.item.pool.pid, returnedMsg{shard: a.ref.index, total: total, answer: true})
}

func (a *shardActor) release(m *releaseCall) {
	if a.shard == nil && !a.reload() {
		m.done <- Reply{Err: ErrUnavailable}
		return
	}
	d := a.shard.Release(m.seq)
	switch d.Outcome {
	case engine.Released:
		a.ref.publishMove(d.Counters, false, false)
		pool, root := a.ref.item.pool.pid, a.node.sys.Root
		shard := a.ref.index
		a.ref.committer.in <- commitReq{lane: &a.ref.lane, gen: a.gen,
			rec: persistence.Record{Kind: persistence.KindRelease, Grab: d.Grab, Counters: d.Counters},
			after: func(err error) {
				if err != nil {
					m.done <- Reply{Err: ErrUnavailable}
					return
				}
				root.Send(pool, returnedMsg{shard: shard, total: d.Counters.Returned})
				m.done <- Reply{Outcome: engine.Released, Grab: d.Grab}
			}}
	case engine.AlreadyReleased:
		// The first release may still be on its way to disk: answer after it.
		a.ref.committer.in <- commitReq{lane: &a.ref.lane, gen: a.gen, after: func(err error) {
			if err != nil {
				m.done <- Reply{Err: ErrUnavailable}
				return
			}
			m.done <- Reply{Outcome: d.Outcome, Grab: d.Grab}
		}}
	default:
		m.done <- Reply{Outcome: d.Outcome}
	}
}

// reload replaces the shard's memory with what is durable. Decisions of the
// current generation still queued are dropped by the committers. The pool
// is asked to resend its side, in case a refill was lost with the memory.
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
	a.ref.publishMove(sh.Counters(), false, false)
	a.asked = false
	a.node.sys.Root.Send(a.ref.item.pool.pid, syncMsg{shard: a.ref.index})
	return true
}

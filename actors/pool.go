package actors

import (
	"github.com/asynkron/protoactor-go/actor"
	"github.com/seckill/seckill/engine"
	"github.com/seckill/seckill/persistence"
)

// stockCall changes the item's stock by delta.
type stockCall struct {
	delta int64
	done  chan StockReply
}

// poolActor hosts an item's engine.PoolNode: grants, give-backs, steals,
// stock changes and the sold-out decision are the engine's; the actor
// delivers messages, runs the commits and sends what a step asks for after
// the commit that holds its records.
type poolActor struct {
	node    *Node
	item    *Item
	lane    *lane
	pn      *engine.PoolNode
	gen     uint64
	c       *committer
	tickets tickets[*stockCall]
	timer   wake
	// Clustered: lc writes the pool's steps to the ledger instead of c,
	// and statusBase lifts its status numbers above earlier activations'.
	lc         *ledgerCommitter
	statusBase uint64
}

func (p *poolActor) Receive(ctx actor.Context) {
	switch m := ctx.Message().(type) {
	case engine.Msg:
		p.pn.Step(m, p.node.opts.Clock())
	case *stockCall:
		p.pn.ChangeStock(p.tickets.add(m), m.delta, p.node.opts.Clock())
	case tickMsg:
		p.timer.fired()
		p.pn.Tick(p.node.opts.Clock())
	case reloadMsg:
		if m.done != nil {
			raiseGen(&p.lane.failedGen, p.gen)
			p.reload()
			close(m.done)
		} else if m.gen < p.gen {
			return
		} else {
			p.reload()
		}
	case *actor.Started:
		p.gen = 1
		return
	case *actor.Stopped:
		p.pn.Stop()
		p.flush()
		if p.lc != nil {
			close(p.lc.in)
			<-p.lc.done
		}
		close(p.lane.stopped)
		return
	default:
		return
	}
	p.flush()
}

func (p *poolActor) flush() {
	rd := p.pn.Ready()
	if rd.Empty() && rd.WakeAtMs == 0 {
		return
	}
	if len(rd.Records) > 0 {
		p.item.publishPool(p.pn.Pool())
	}
	for _, ans := range rd.NowAnswers {
		p.tickets.take(ans.Ticket).done <- stockReply(ans)
	}
	for _, m := range rd.NowMsgs {
		if m.Kind == engine.MsgStatus {
			m.Seq += p.statusBase
		}
		p.node.send(m)
	}
	if p.lc != nil && (len(rd.Records) > 0 || len(rd.Answers) > 0 || len(rd.Msgs) > 0) {
		q := ledgerReq{gen: p.gen, msgs: append([]engine.Msg(nil), rd.Msgs...)}
		if last := len(rd.Records) - 1; last >= 0 {
			st := rd.Records[last].Pool
			q.st = &st
		}
		for _, ans := range rd.Answers {
			q.answers = append(q.answers, pending{s: p.tickets.take(ans.Ticket), a: ans})
		}
		p.lc.in <- q
	} else if len(rd.Records) > 0 || len(rd.Answers) > 0 || len(rd.Msgs) > 0 {
		in := p.c.in
		last := len(rd.Records) - 1
		for i := 0; i < last; i++ {
			in <- commitReq{lane: p.lane, gen: p.gen, rec: persistence.FromEngine(rd.Records[i])}
		}
		q := commitReq{lane: p.lane, gen: p.gen}
		if last >= 0 {
			q.rec = persistence.FromEngine(rd.Records[last])
		}
		for _, ans := range rd.Answers {
			q.answers = append(q.answers, pending{s: p.tickets.take(ans.Ticket), a: ans})
		}
		q.msgs = append([]engine.Msg(nil), rd.Msgs...)
		in <- q
	}
	p.timer.at(rd.WakeAtMs, p.node, p.lane.pid())
	p.pn.Advance()
}

// reload replaces the pool's memory with its durable ledger.
func (p *poolActor) reload() {
	p.gen = max(p.gen, p.lane.failedGen.Load()) + 1
	var st engine.PoolState
	var err error
	if p.lc != nil {
		st, err = p.node.opts.Cluster.Ledger.Load(p.item.Config.Item)
		if err == nil {
			copy(p.lc.lastSent, st.Sent)
		}
	} else {
		st, err = p.node.store.Pool(p.item.Config.Item)
	}
	if err == nil {
		var pool *engine.Pool
		if pool, err = engine.RestorePool(p.item.Config, st); err == nil {
			p.pn.Restart(pool, p.node.opts.Clock())
			p.item.publishPool(pool)
			return
		}
	}
	p.node.opts.Logger.Error("reload pool", "item", p.item.Config.Item, "err", err)
}

// stockReply is the front's form of the pool's answer to a stock change.
func stockReply(a engine.Answer) StockReply {
	switch a.Outcome {
	case engine.StockChanged:
		return StockReply{Stock: a.Stock}
	case engine.Insufficient:
		return StockReply{Err: ErrInsufficient, Available: a.Available}
	case engine.BadStock:
		return StockReply{Err: engine.ErrBadStock}
	}
	return StockReply{Err: ErrUnavailable}
}

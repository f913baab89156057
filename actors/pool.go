package actors

import (
	"slices"
	"time"

	"github.com/asynkron/protoactor-go/actor"
	"github.com/seckill/seckill/engine"
	"github.com/seckill/seckill/persistence"
)

// Messages the pool actor receives.
type (
	// refillReq: a shard wants units. An urgent one has buyers waiting and
	// may make the pool take units from the richest sibling.
	refillReq struct {
		shard  int
		want   int64
		urgent bool
	}
	// returnedMsg carries a shard's cumulative Returned after a give-back
	// or release is durable; total -1 means the give-back gave nothing.
	returnedMsg struct {
		shard int
		total int64
		// answer: this answers the pool's giveBackMsg (a release or a
		// shard's own return is not one, and must not end a steal).
		answer bool
	}
	// retryMsg makes the pool look again for units for waiting shards.
	retryMsg struct{}
	// syncMsg: a shard reloaded; resend the pool's side of its refills.
	syncMsg struct{ shard int }
	// stockCall changes the item's stock by delta.
	stockCall struct {
		delta int64
		done  chan StockReply
	}
)

// poolActor owns an item's engine.Pool: it grants refills, arbitrates
// steals between shards and applies stock changes. Its ledger is made
// durable before any shard hears of a grant.
type poolActor struct {
	node *Node
	item *Item
	lane *lane
	pool *engine.Pool
	gen  uint64
	c    *committer
	// wants: shards waiting for units, in arrival order, and how many.
	wants    []int
	wantQty  map[int]int64
	urgent   map[int]bool
	stealing map[int]bool // shards asked to give back, not yet answered
	reclaims []*stockCall // reductions waiting for shards to give back
	retrying bool         // a retryMsg is scheduled
}

func (p *poolActor) Receive(ctx actor.Context) {
	switch m := ctx.Message().(type) {
	case refillReq:
		if _, ok := p.wantQty[m.shard]; !ok {
			p.wants = append(p.wants, m.shard)
		}
		p.wantQty[m.shard] = max(p.wantQty[m.shard], m.want)
		p.urgent[m.shard] = p.urgent[m.shard] || m.urgent
		p.serve()
	case returnedMsg:
		if m.answer {
			delete(p.stealing, m.shard)
		}
		if m.total >= 0 && p.pool.Receive(m.shard, m.total) > 0 {
			p.item.publishPool(p.pool)
			p.commit(nil)
		}
		p.retryReclaims()
		p.serve()
	case retryMsg:
		p.retrying = false
		p.serve()
	case syncMsg:
		p.node.sys.Root.Send(p.item.shards[m.shard].pid, refillMsg{sentTotal: p.pool.SentTo(m.shard)})
	case *stockCall:
		p.changeStock(m)
	case reloadMsg:
		if m.gen >= p.gen {
			p.reload()
		}
	case *actor.Started:
		p.gen = 1
		p.wantQty, p.urgent, p.stealing = map[int]int64{}, map[int]bool{}, map[int]bool{}
	case *actor.Stopped:
		for _, r := range p.reclaims {
			r.done <- StockReply{Err: ErrUnavailable}
		}
		close(p.lane.stopped)
	}
}

// commit queues the pool's ledger; after it is durable, then runs.
func (p *poolActor) commit(then func()) {
	p.c.in <- commitReq{lane: p.lane, gen: p.gen,
		rec: persistence.Record{Kind: persistence.KindPool, Item: engine.ItemConfig{Item: p.item.Config.Item}, Pool: p.pool.State()},
		after: func(err error) {
			if err == nil && then != nil {
				then()
			}
		}}
}

// serve grants what the pool holds to waiting shards in arrival order. When
// the pool runs dry with buyers waiting, it asks the richest sibling for
// half of what it holds; when nothing is left anywhere, the waiting shards
// hear "no stock".
func (p *poolActor) serve() {
	type grant struct {
		shard int
		total int64
	}
	var grants []grant
	for len(p.wants) > 0 && p.pool.Available() > 0 {
		s := p.wants[0]
		if n, total := p.pool.Grant(s, p.wantQty[s]); n > 0 {
			grants = append(grants, grant{s, total})
		}
		p.dropWant(s)
	}
	if len(grants) > 0 {
		p.item.publishPool(p.pool)
		root := p.node.sys.Root
		pids := make([]*actor.PID, len(grants))
		for i, g := range grants {
			pids[i] = p.item.shards[g.shard].pid
		}
		p.commit(func() {
			for i, g := range grants {
				root.Send(pids[i], refillMsg{sentTotal: g.total})
			}
		})
	}
	if len(p.wants) == 0 {
		return
	}
	// The pool is empty. Top-ups wait for nothing: drop them.
	for _, s := range slices.Clone(p.wants) {
		if !p.urgent[s] {
			p.node.sys.Root.Send(p.item.shards[s].pid, refillMsg{sentTotal: p.pool.SentTo(s)})
			p.dropWant(s)
		}
	}
	if len(p.wants) == 0 || len(p.stealing) > 0 {
		return // a give-back is on its way
	}
	except := map[int]bool{}
	for _, s := range p.wants {
		except[s] = true
	}
	if r, most := p.item.richest(except); r >= 0 {
		p.stealing[r] = true
		p.node.sys.Root.Send(p.item.shards[r].pid, giveBackMsg{want: (most + 1) / 2})
		return
	}
	if p.item.Balance().InTransit > 0 {
		// Units are moving: back to the pool (a returnedMsg will come) or
		// to a sibling (it can be asked once they land). Look again soon.
		if !p.retrying {
			p.retrying = true
			pid, root := p.lane.pid, p.node.sys.Root
			time.AfterFunc(StealRetry, func() { root.Send(pid, retryMsg{}) })
		}
		return
	}
	for _, s := range p.wants {
		p.node.sys.Root.Send(p.item.shards[s].pid, noStockMsg{})
	}
	for len(p.wants) > 0 {
		p.dropWant(p.wants[0])
	}
}

func (p *poolActor) dropWant(s int) {
	p.wants = slices.DeleteFunc(p.wants, func(x int) bool { return x == s })
	delete(p.wantQty, s)
	delete(p.urgent, s)
}

// changeStock adds units to the pool, or takes unsold units out of it. A
// reduction larger than the pool first reclaims every shard's unsold units
// and waits for them.
func (p *poolActor) changeStock(m *stockCall) {
	if m.delta >= 0 || -m.delta <= p.pool.Available() {
		if err := p.pool.ChangeStock(m.delta); err != nil {
			m.done <- StockReply{Err: err, Available: p.item.Remaining()}
			return
		}
		p.item.publishPool(p.pool)
		stock := p.pool.Stock()
		p.c.in <- commitReq{lane: p.lane, gen: p.gen,
			rec: persistence.Record{Kind: persistence.KindPool, Item: engine.ItemConfig{Item: p.item.Config.Item}, Pool: p.pool.State()},
			after: func(err error) {
				if err != nil {
					m.done <- StockReply{Err: ErrUnavailable}
					return
				}
				m.done <- StockReply{Stock: stock}
			}}
		if m.delta > 0 {
			p.serve()
		}
		return
	}
	if avail := p.item.Remaining(); -m.delta > avail {
		m.done <- StockReply{Err: ErrInsufficient, Available: avail}
		return
	}
	p.reclaims = append(p.reclaims, m)
	for i, r := range p.item.shards {
		if a, s := r.load(); a > s && !p.stealing[i] {
			p.stealing[i] = true
			p.node.sys.Root.Send(r.pid, giveBackMsg{want: a - s})
		}
	}
	p.retryReclaims()
}

// retryReclaims finishes reductions once the give-backs they wait for are in.
func (p *poolActor) retryReclaims() {
	if len(p.reclaims) == 0 || len(p.stealing) > 0 {
		return
	}
	pending := p.reclaims
	p.reclaims = nil
	for _, m := range pending {
		if -m.delta <= p.pool.Available() {
			p.changeStock(m)
		} else {
			m.done <- StockReply{Err: ErrInsufficient, Available: p.item.Remaining()}
		}
	}
}

func (p *poolActor) reload() {
	p.gen = max(p.gen, p.lane.failedGen.Load()) + 1
	st, err := p.node.store.Pool(p.item.Config.Item)
	if err == nil {
		var pool *engine.Pool
		if pool, err = engine.RestorePool(p.item.Config, st); err == nil {
			p.pool = pool
			p.item.publishPool(pool)
			// Grants lost with the memory were never sent; tell every shard
			// the durable totals so none waits for them.
			for i, r := range p.item.shards {
				p.node.sys.Root.Send(r.pid, refillMsg{sentTotal: pool.SentTo(i)})
			}
			return
		}
	}
	p.node.opts.Logger.Error("reload pool", "item", p.item.Config.Item, "err", err)
}

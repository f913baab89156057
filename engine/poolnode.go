package engine

// PoolNode is an item's pool side of the sale protocol: it grants units to
// shards that ask, takes units back, steals half of the richest sibling's
// units for a shard whose buyers wait, applies stock changes, and decides
// when the item is truly sold out. It knows the shards only from their
// messages (each carries the sender's counters), never by reading them.
type PoolNode struct {
	cfg  ItemConfig
	pool *Pool
	self Addr
	view []shardView
	// wants: shards waiting for units, in arrival order; want[i] > 0 while
	// shard i is in wants.
	wants   []int
	want    []int64
	urgent  []bool
	askSeq  []uint64 // the newest ask of each shard
	askAtMs []int64  // when shard i last asked
	stealAt []int64  // when shard i was asked to give back; 0: not asked
	// resentAt: when a grant was last sent again to shard i (chase).
	resentAt []int64
	// reclaims: stock reductions waiting for shards to give back.
	reclaims  []reclaim
	retryAtMs int64
	soldOut   bool
	// statusN numbers the MsgStatus sent, so a front keeps the newest
	// whatever order they arrive in.
	statusN uint64
	rd      Ready
}

// shardView is what the pool last heard of a shard.
type shardView struct {
	gen uint64
	c   Counters
}

type reclaim struct {
	t     Ticket
	delta int64
}

// NewPoolNode runs p's protocol; shards are the shards' counters as loaded,
// the pool's first knowledge of them. Times passed to it are Unix
// milliseconds, never 0: 0 marks a timer that is not set.
func NewPoolNode(p *Pool, shards []Counters) *PoolNode {
	s := len(shards)
	n := &PoolNode{cfg: p.cfg, pool: p, self: PoolAddr(p.cfg.Item), view: make([]shardView, s),
		want: make([]int64, s), urgent: make([]bool, s), askSeq: make([]uint64, s), askAtMs: make([]int64, s), stealAt: make([]int64, s), resentAt: make([]int64, s)}
	for i, c := range shards {
		n.view[i].c = c
	}
	n.soldOut = n.remaining() == 0
	return n
}

// Pool is the pool the node runs.
func (n *PoolNode) Pool() *Pool { return n.pool }

// SoldOut reports whether no unit is left anywhere, as the pool knows.
func (n *PoolNode) SoldOut() bool { return n.soldOut }

// Ready returns what the steps since the last Advance ask for.
func (n *PoolNode) Ready() *Ready {
	n.rd.WakeAtMs = n.wakeAt()
	return &n.rd
}

// Advance tells the node the host has taken its Ready.
func (n *PoolNode) Advance() { n.rd.reset() }

// Step takes a message from a shard.
func (n *PoolNode) Step(m Msg, nowMs int64) {
	i := m.From.Shard
	if i < 0 || i >= len(n.view) || m.From.Item != n.cfg.Item {
		return
	}
	n.learn(i, m)
	switch m.Kind {
	case MsgAsk:
		if n.want[i] == 0 {
			n.wants = append(n.wants, i)
		}
		n.want[i] = max(n.want[i], m.Want, 1)
		n.urgent[i] = n.urgent[i] || m.Urgent
		n.askSeq[i] = max(n.askSeq[i], m.Seq)
		n.askAtMs[i] = nowMs
	case MsgReturned:
		if m.Answer {
			n.stealAt[i] = 0
		}
		if n.pool.Receive(i, m.Total) > 0 {
			n.recordPool()
		}
		n.retryReclaims(nowMs)
	case MsgSync:
		// Its memory was lost: resend the durable total, after any grant
		// still on its way to disk. A Sync's counters were just loaded from
		// disk: what they say was returned is durable, and the pool takes it
		// (the MsgReturned that carried it may be lost with either side's
		// memory).
		if n.pool.Receive(i, m.Counters.Returned) > 0 {
			n.recordPool()
		}
		n.rd.Msgs = append(n.rd.Msgs, n.grant(i))
	}
	n.serve(nowMs)
	n.status()
}

// learn keeps the newest counters a shard reported. A shard's Received,
// Returned and NextSeq never fall within one incarnation, so a message
// delayed behind a newer one is recognised and ignored; a new incarnation
// replaces what was known. A Sync is no exception: the host restarts a
// shard with a higher gen, so a Sync of the gen known is a repeated or
// delayed copy, older than what was heard since.
func (n *PoolNode) learn(i int, m Msg) {
	v, c := &n.view[i], m.Counters
	switch {
	case m.Gen > v.gen:
		v.gen, v.c = m.Gen, c
	case m.Gen == v.gen && c.Received >= v.c.Received && c.Returned >= v.c.Returned && c.NextSeq >= v.c.NextSeq:
		v.c = c
	}
}

func (n *PoolNode) grant(i int) Msg {
	return Msg{Kind: MsgGrant, From: n.self, To: ShardAddr(n.cfg.Item, i), Total: n.pool.SentTo(i), PoolEmpty: n.pool.Available() == 0}
}

func (n *PoolNode) recordPool() {
	n.rd.Records = append(n.rd.Records, Record{Kind: RecPool, Item: n.cfg.Item, Shard: PoolShard, Pool: n.pool.State()})
}

// holding is what shard i may hold as far as the pool knows: its unsold
// units plus what is on its way to it.
func (n *PoolNode) holding(i int) int64 {
	c := n.view[i].c
	return c.Remaining() + n.pool.SentTo(i) - c.Received
}

// remaining is every unsold unit as far as the pool knows: the pool, what
// shards hold or are sent, and what they are returning. It never counts
// fewer than there are: a shard's unsold units only grow by grants (which
// the pool counts at once), and a release is reported before its units move.
func (n *PoolNode) remaining() int64 {
	r := n.pool.Available()
	for i := range n.view {
		r += n.holding(i) + n.view[i].c.Returned - n.pool.GotFrom(i)
	}
	return r
}

// serve grants what the pool holds to waiting shards in arrival order. When
// it runs dry with buyers waiting, it asks the richest sibling for half of
// what it holds; when nothing is left anywhere, the waiting shards hear "no
// stock".
func (n *PoolNode) serve(nowMs int64) {
	first := len(n.rd.Msgs)
	for len(n.wants) > 0 && n.pool.Available() > 0 {
		s := n.wants[0]
		if k, _ := n.pool.Grant(s, n.want[s]); k > 0 {
			n.rd.Msgs = append(n.rd.Msgs, n.grant(s))
		}
		n.dropWant(s)
	}
	if len(n.rd.Msgs) > first {
		n.recordPool()
		empty := n.pool.Available() == 0
		for j := first; j < len(n.rd.Msgs); j++ {
			n.rd.Msgs[j].PoolEmpty = empty
		}
	}
	if len(n.wants) == 0 {
		return
	}
	// The pool is empty. Top-ups wait for nothing: answer them with what
	// was sent (after any grant still on its way to disk). So are urgent
	// asks not renewed for RefillWaitMs: their buyers were told to retry or
	// served from a release (a shard with buyers waiting asks again every
	// AskRetryMs), and a want would keep its shard's units from the steals
	// other shards' buyers wait for.
	for j := 0; j < len(n.wants); {
		if s := n.wants[j]; !n.urgent[s] || nowMs-n.askAtMs[s] >= RefillWaitMs {
			n.rd.Msgs = append(n.rd.Msgs, n.grant(s))
			n.dropWant(s)
			continue
		}
		j++
	}
	if len(n.wants) == 0 || n.stealing() {
		return // a give-back is on its way
	}
	best, most := -1, int64(0)
	for i := range n.view {
		if h := n.holding(i); n.want[i] == 0 && h > most {
			best, most = i, h
		}
	}
	if best >= 0 {
		n.stealAt[best] = nowMs
		n.giveBack(best, (most+1)/2)
		return
	}
	if n.remaining() > 0 {
		// Units are moving back to the pool (a MsgReturned will come) or
		// sit with a shard that wants them itself. Look again soon.
		n.chase(nowMs)
		if n.retryAtMs == 0 {
			n.retryAtMs = nowMs + StealRetryMs
		}
		return
	}
	for _, s := range n.wants {
		n.rd.NowMsgs = append(n.rd.NowMsgs, Msg{Kind: MsgNoStock, From: n.self, To: ShardAddr(n.cfg.Item, s), Seq: n.askSeq[s]})
	}
	for len(n.wants) > 0 {
		n.dropWant(n.wants[0])
	}
}

// chase recovers what a message lost between processes would strand (sends
// are at most once): a shard whose returns the pool has not got is asked
// for its total (a give-back of nothing, answered with its cumulative
// Returned once durable), and a wanting shard that has not taken a grant
// gets it again (cumulative totals make a repeat harmless). In one process
// nothing is lost and this only repeats what is on its way.
func (n *PoolNode) chase(nowMs int64) {
	for i := range n.view {
		c := n.view[i].c
		if c.Returned > n.pool.GotFrom(i) && n.stealAt[i] == 0 {
			n.stealAt[i] = nowMs
			n.giveBack(i, 0)
		}
		if n.want[i] > 0 && n.pool.SentTo(i) > c.Received && nowMs-n.resentAt[i] >= AskRetryMs {
			n.resentAt[i] = nowMs
			n.rd.Msgs = append(n.rd.Msgs, n.grant(i))
		}
	}
}

// giveBack asks shard i for up to want units back. The message carries the
// pool's sent total too, so a shard whose grant was lost takes it first
// (units counted as on their way to it can then be given back), and it
// leaves after the pool's pending commits, so that total is durable.
func (n *PoolNode) giveBack(i int, want int64) {
	n.rd.Msgs = append(n.rd.Msgs, Msg{Kind: MsgGiveBack, From: n.self, To: ShardAddr(n.cfg.Item, i), Want: want, Total: n.pool.SentTo(i)})
}

func (n *PoolNode) stealing() bool {
	for _, at := range n.stealAt {
		if at != 0 {
			return true
		}
	}
	return false
}

func (n *PoolNode) dropWant(s int) {
	for j, x := range n.wants {
		if x == s {
			n.wants = append(n.wants[:j], n.wants[j+1:]...)
			break
		}
	}
	n.want[s], n.urgent[s] = 0, false
}

// status tells the fronts when the item's sold-out state changes.
func (n *PoolNode) status() {
	if so := n.remaining() == 0; so != n.soldOut {
		n.soldOut = so
		n.statusN++
		n.rd.NowMsgs = append(n.rd.NowMsgs, Msg{Kind: MsgStatus, From: n.self, To: Addr{Item: n.cfg.Item, Shard: FrontShard}, SoldOut: so, Seq: n.statusN})
	}
}

// ChangeStock adds delta units to the pool, or takes unsold units out of
// the item (delta < 0). A reduction larger than the pool first asks every
// shard for its unsold units and waits for them.
func (n *PoolNode) ChangeStock(t Ticket, delta, nowMs int64) {
	n.changeStock(t, delta, nowMs)
	n.status()
}

func (n *PoolNode) changeStock(t Ticket, delta, nowMs int64) {
	if delta >= 0 || -delta <= n.pool.Available() {
		switch err := n.pool.ChangeStock(delta); err {
		case nil:
		case ErrBadStock:
			n.rd.NowAnswers = append(n.rd.NowAnswers, Answer{Ticket: t, Outcome: BadStock})
			return
		default:
			n.rd.NowAnswers = append(n.rd.NowAnswers, Answer{Ticket: t, Outcome: Broken})
			return
		}
		n.recordPool()
		n.rd.Answers = append(n.rd.Answers, Answer{Ticket: t, Outcome: StockChanged, Stock: n.pool.Stock()})
		if delta > 0 {
			n.serve(nowMs)
		}
		return
	}
	if avail := n.remaining(); -delta > avail {
		n.rd.NowAnswers = append(n.rd.NowAnswers, Answer{Ticket: t, Outcome: Insufficient, Available: avail})
		return
	}
	n.reclaims = append(n.reclaims, reclaim{t: t, delta: delta})
	n.reclaimFromShards(nowMs)
	n.retryReclaims(nowMs)
}

// reclaimFromShards asks every shard that may hold units for all of them.
func (n *PoolNode) reclaimFromShards(nowMs int64) {
	for i := range n.view {
		if h := n.holding(i); h > 0 && n.stealAt[i] == 0 {
			n.stealAt[i] = nowMs
			n.giveBack(i, h)
		}
	}
}

// retryReclaims finishes reductions once the give-backs they wait for are in.
func (n *PoolNode) retryReclaims(nowMs int64) {
	if len(n.reclaims) == 0 || n.stealing() {
		return
	}
	pending := n.reclaims
	n.reclaims = nil
	for _, r := range pending {
		switch avail := n.remaining(); {
		case -r.delta <= n.pool.Available():
			n.changeStock(r.t, r.delta, nowMs)
		case -r.delta > avail:
			n.rd.NowAnswers = append(n.rd.NowAnswers, Answer{Ticket: r.t, Outcome: Insufficient, Available: avail})
		default:
			// Enough is unsold, but not in the pool: units given back were
			// granted again to shards whose buyers wait, or a shard did
			// not answer in time. Insufficient would be untrue.
			n.rd.NowAnswers = append(n.rd.NowAnswers, Answer{Ticket: r.t, Outcome: Retry})
		}
	}
}

// Tick looks again for units for waiting shards, and stops waiting for
// give-backs unanswered for StealTimeoutMs.
func (n *PoolNode) Tick(nowMs int64) {
	for i, at := range n.stealAt {
		if at != 0 && nowMs-at >= StealTimeoutMs {
			n.stealAt[i] = 0
		}
	}
	if n.retryAtMs != 0 && nowMs >= n.retryAtMs {
		n.retryAtMs = 0
	}
	n.retryReclaims(nowMs)
	n.serve(nowMs)
	n.status()
}

func (n *PoolNode) wakeAt() int64 {
	at := n.retryAtMs
	for _, s := range n.stealAt {
		if s != 0 && (at == 0 || s+StealTimeoutMs < at) {
			at = s + StealTimeoutMs
		}
	}
	return at
}

// Restart replaces the pool's memory with p, its durable ledger, after a
// commit failed. Grants lost with the memory were never sent: every shard
// hears the durable totals, so none waits for them. Returns received on the
// lost memory were taken from their messages: a shard the pool heard
// return more than it durably got is asked for its total again (a
// give-back of nothing), or those units would stay in transit.
func (n *PoolNode) Restart(p *Pool, nowMs int64) {
	n.pool = p
	clear(n.stealAt)
	for i := range n.view {
		n.rd.NowMsgs = append(n.rd.NowMsgs, n.grant(i))
		if n.view[i].c.Returned > p.GotFrom(i) {
			n.giveBack(i, 0)
		}
	}
	// The give-backs reductions wait for were lost with the failed commit.
	if len(n.reclaims) > 0 {
		n.reclaimFromShards(nowMs)
	}
	n.serve(nowMs)
	n.status()
}

// Stop answers every stock change still waiting: the pool is going away.
func (n *PoolNode) Stop() {
	for _, r := range n.reclaims {
		n.rd.NowAnswers = append(n.rd.NowAnswers, Answer{Ticket: r.t, Outcome: Retry})
	}
	n.reclaims = nil
}

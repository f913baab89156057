package engine

// ShardNode is one shard's side of the sale protocol: it decides grabs and
// releases, asks the pool for units, parks buyers while units move, gives
// units back when asked, and tells waiting buyers when they must give up.
// Each step takes an input (a request, a message, the time) and leaves in
// Ready what to make durable, which messages to send and what to answer.
// It does no I/O and reads no clock: the host passes the time in.
type ShardNode struct {
	sh         *Shard
	self, pool Addr
	// gen is the shard's incarnation: it rises each time the host reloads
	// the shard from disk, so the pool can tell a report made on lost
	// memory from one made after.
	gen uint64
	// askN numbers the asks sent; asked: the last is unanswered.
	askN      uint64
	asked     bool
	askedAtMs int64
	// poolEmpty: the pool said it has nothing for top-ups; only buyers
	// waiting make the shard ask again.
	poolEmpty bool
	waiting   []waiter // oldest first
	// For operators: refills taken, give-backs made since start.
	refills, steals int64
	rd              Ready
}

// waiter is a buyer waiting for units to reach the shard.
type waiter struct {
	t          Ticket
	in         GrabInput
	deadlineMs int64
	// needAsk: only an answer to this ask or a later one may tell this
	// buyer the item is sold out (an older one was decided before it came).
	needAsk uint64
}

// NewShardNode runs sh's protocol as incarnation gen.
func NewShardNode(sh *Shard, gen uint64) *ShardNode {
	item := sh.Config().Item
	return &ShardNode{sh: sh, gen: gen, self: ShardAddr(item, sh.Index()), pool: PoolAddr(item)}
}

// Shard is the shard the node runs.
func (n *ShardNode) Shard() *Shard { return n.sh }

// Gen is the shard's incarnation.
func (n *ShardNode) Gen() uint64 { return n.gen }

// Refills and Steals count units received and given back since start.
func (n *ShardNode) Refills() int64 { return n.refills }
func (n *ShardNode) Steals() int64  { return n.steals }

// Waiting is how many buyers wait for units.
func (n *ShardNode) Waiting() int { return len(n.waiting) }

// Ready returns what the steps since the last Advance ask for. It is valid
// until the next Advance.
func (n *ShardNode) Ready() *Ready {
	n.rd.WakeAtMs = n.wakeAt()
	return &n.rd
}

// Advance tells the node the host has taken its Ready.
func (n *ShardNode) Advance() { n.rd.reset() }

// Grab decides a buyer's request (in.NowMs is the time).
func (n *ShardNode) Grab(t Ticket, in GrabInput) {
	if !n.decide(t, in) {
		n.park(t, in)
	}
	n.topUp(in.NowMs)
}

// decide tries a grab; false means the shard has no units for it now.
func (n *ShardNode) decide(t Ticket, in GrabInput) bool {
	d := n.sh.Grab(in)
	switch d.Outcome {
	case Confirmed:
		n.rd.Records = append(n.rd.Records, Record{Kind: RecGrab, Item: n.self.Item, Shard: n.self.Shard, Grab: d.Grab, Counters: d.Counters})
		n.rd.Answers = append(n.rd.Answers, Answer{Ticket: t, Outcome: Confirmed, Grab: d.Grab})
		if d.Counters.Remaining() == 0 {
			// The pool decides sold out from what shards told it.
			n.rd.NowMsgs = append(n.rd.NowMsgs, n.msg(MsgReport))
		}
	case Replayed, Released:
		// The grab (or its release) may not be durable yet: answer after
		// the commits queued ahead.
		n.rd.Answers = append(n.rd.Answers, Answer{Ticket: t, Outcome: d.Outcome, Grab: d.Grab})
	case NeedStock:
		return false
	default:
		n.rd.NowAnswers = append(n.rd.NowAnswers, Answer{Ticket: t, Outcome: d.Outcome})
	}
	return true
}

func (n *ShardNode) park(t Ticket, in GrabInput) {
	if len(n.waiting) >= MaxWaitingPerShard {
		n.rd.NowAnswers = append(n.rd.NowAnswers, Answer{Ticket: t, Outcome: Busy})
		return
	}
	n.waiting = append(n.waiting, waiter{t: t, in: in, deadlineMs: in.NowMs + RefillWaitMs, needAsk: n.askN + 1})
	n.ask(max(n.sh.Config().RefillChunk(), in.Qty), true, in.NowMs)
}

// topUp asks for a chunk before the shard runs dry, while the pool has
// units for top-ups.
func (n *ShardNode) topUp(nowMs int64) {
	if want := n.sh.RefillWant(); want > 0 && !n.poolEmpty {
		n.ask(want, false, nowMs)
	}
}

func (n *ShardNode) ask(want int64, urgent bool, nowMs int64) {
	if n.asked {
		return
	}
	n.askN++
	n.asked, n.askedAtMs = true, nowMs
	m := n.msg(MsgAsk)
	m.Want, m.Urgent, m.Seq = want, urgent, n.askN
	n.rd.NowMsgs = append(n.rd.NowMsgs, m)
}

// msg is a message to the pool carrying what it must know of this shard.
func (n *ShardNode) msg(k MsgKind) Msg {
	return Msg{Kind: k, From: n.self, To: n.pool, Gen: n.gen, Counters: n.sh.Counters()}
}

// Step takes a message from the pool.
func (n *ShardNode) Step(m Msg, nowMs int64) {
	switch m.Kind {
	case MsgGrant:
		n.asked = false
		n.poolEmpty = m.PoolEmpty
		if !n.takeGrant(m.Total) {
			return
		}
		n.serveWaiting(nowMs, 0)
		n.topUp(nowMs)
	case MsgNoStock:
		if m.Seq == n.askN {
			n.asked = false
		}
		n.serveWaiting(nowMs, m.Seq)
	case MsgGiveBack:
		// A grant the shard has not taken (lost on the way) comes first.
		if !n.takeGrant(m.Total) {
			return
		}
		k, c := n.sh.GiveBack(m.Want)
		if k > 0 {
			n.steals++
			n.recordCounters(c)
		}
		// The answer carries the cumulative Returned, even when nothing
		// moved now, and leaves once every record before it is durable: a
		// pool that lost returns with its memory (a restart) asks for them
		// with a give-back of nothing.
		r := n.msg(MsgReturned)
		r.Answer, r.Total = true, c.Returned
		n.rd.Msgs = append(n.rd.Msgs, r)
		// Units that arrived with it may serve buyers waiting here.
		n.serveWaiting(nowMs, 0)
	}
}

// takeGrant applies the pool's cumulative sent total; false when the
// counters would break (refused: a bug).
func (n *ShardNode) takeGrant(total int64) bool {
	k, c, err := n.sh.ApplyRefill(total)
	if err != nil {
		n.sh.broken(err)
		return false
	}
	if k > 0 {
		n.refills++
		// Ahead of the grabs it enables, in the same order on disk.
		n.recordCounters(c)
	}
	return true
}

// recordCounters asks for the shard's counters after a transfer.
func (n *ShardNode) recordCounters(c Counters) {
	n.rd.Records = append(n.rd.Records, Record{Kind: RecCounters, Item: n.self.Item, Shard: n.self.Shard, Counters: c})
}

// serveWaiting retries parked buyers, oldest first, until one still finds
// no units. A buyer the pool has answered for (needAsk <= soldOutAsk) and
// who still finds none is told the item is sold out; for the others the
// shard asks again.
func (n *ShardNode) serveWaiting(nowMs int64, soldOutAsk uint64) {
	for len(n.waiting) > 0 {
		w := n.waiting[0]
		in := w.in
		in.NowMs = nowMs
		if !n.decide(w.t, in) {
			if w.needAsk > soldOutAsk {
				n.ask(max(n.sh.Config().RefillChunk(), in.Qty), true, nowMs)
				return
			}
			n.rd.NowAnswers = append(n.rd.NowAnswers, Answer{Ticket: w.t, Outcome: SoldOut})
		}
		n.waiting[0] = waiter{}
		n.waiting = n.waiting[1:]
	}
}

// Release returns grab seq to stock.
func (n *ShardNode) Release(t Ticket, seq uint64) {
	d := n.sh.Release(seq)
	switch d.Outcome {
	case Released:
		n.rd.Records = append(n.rd.Records, Record{Kind: RecRelease, Item: n.self.Item, Shard: n.self.Shard, Grab: d.Grab, Counters: d.Counters})
		// The pool hears at once that units are on their way back, so it
		// never says sold out meanwhile; the units move once durable.
		n.rd.NowMsgs = append(n.rd.NowMsgs, n.msg(MsgReport))
		r := n.msg(MsgReturned)
		r.Total = d.Counters.Returned
		n.rd.Msgs = append(n.rd.Msgs, r)
		n.rd.Answers = append(n.rd.Answers, Answer{Ticket: t, Outcome: Released, Grab: d.Grab})
	case AlreadyReleased:
		// The first release may still be on its way to disk.
		n.rd.Answers = append(n.rd.Answers, Answer{Ticket: t, Outcome: d.Outcome, Grab: d.Grab})
	default:
		n.rd.NowAnswers = append(n.rd.NowAnswers, Answer{Ticket: t, Outcome: d.Outcome})
	}
}

// Tick tells waiting buyers who waited RefillWaitMs to retry, and asks
// again when an ask went unanswered for AskRetryMs.
func (n *ShardNode) Tick(nowMs int64) {
	i := 0
	for ; i < len(n.waiting) && n.waiting[i].deadlineMs <= nowMs; i++ {
		n.rd.NowAnswers = append(n.rd.NowAnswers, Answer{Ticket: n.waiting[i].t, Outcome: Retry})
		n.waiting[i] = waiter{}
	}
	n.waiting = n.waiting[i:]
	if n.asked && nowMs-n.askedAtMs >= AskRetryMs && len(n.waiting) > 0 {
		n.asked = false
		n.ask(max(n.sh.Config().RefillChunk(), n.waiting[0].in.Qty), true, nowMs)
	}
}

func (n *ShardNode) wakeAt() int64 {
	if len(n.waiting) == 0 {
		return 0
	}
	at := n.waiting[0].deadlineMs
	if n.asked {
		at = min(at, n.askedAtMs+AskRetryMs)
	}
	return at
}

// Restart replaces the shard's memory with sh, its durable state, after a
// commit failed: decisions made on the lost memory were never confirmed.
// The buyers waiting stay; the pool is told, so it resends its side.
func (n *ShardNode) Restart(sh *Shard, gen uint64) {
	n.sh, n.gen = sh, gen
	n.asked, n.poolEmpty = false, false
	n.rd.NowMsgs = append(n.rd.NowMsgs, n.msg(MsgSync))
}

// Stop answers every waiting buyer "retry": the shard is going away.
func (n *ShardNode) Stop() {
	for _, w := range n.waiting {
		n.rd.NowAnswers = append(n.rd.NowAnswers, Answer{Ticket: w.t, Outcome: Retry})
	}
	clear(n.waiting)
	n.waiting = n.waiting[:0]
}

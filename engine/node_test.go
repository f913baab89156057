package engine

import (
	"slices"
	"testing"
)

// nodeItem: 30 units over 3 shards, 5 each at creation, 15 in the pool.
var nodeItem = ItemConfig{Item: "it", Stock: 30, Shards: 3, PerUserLimit: 1}

// emptyShard is shard 0 of an item whose whole stock waits in the pool.
func emptyShard() *ShardNode {
	return NewShardNode(NewShard(ItemConfig{Item: "it", Stock: 1, Shards: 1, PerUserLimit: 1}, 0), 1)
}

func msgsOf(ms []Msg, k MsgKind) []Msg {
	var out []Msg
	for _, m := range ms {
		if m.Kind == k {
			out = append(out, m)
		}
	}
	return out
}

func outcomes(as []Answer) map[Ticket]Outcome {
	out := map[Ticket]Outcome{}
	for _, a := range as {
		out[a.Ticket] = a.Outcome
	}
	return out
}

func TestShardNodeParksAndAsks(t *testing.T) {
	n := emptyShard()
	n.Grab(1, GrabInput{User: "u", Qty: 1, NowMs: 100})
	rd := n.Ready()
	asks := msgsOf(rd.NowMsgs, MsgAsk)
	if n.Waiting() != 1 || len(rd.Answers)+len(rd.NowAnswers) != 0 || len(asks) != 1 {
		t.Fatalf("waiting %d, ready %+v", n.Waiting(), rd)
	}
	if a := asks[0]; !a.Urgent || a.Seq != 1 || a.Want < 1 || a.To != PoolAddr("it") || a.Gen != 1 {
		t.Fatalf("ask %+v", a)
	}
	if rd.WakeAtMs != 100+AskRetryMs {
		t.Fatalf("wake at %d, want the ask's retry at %d", rd.WakeAtMs, 100+AskRetryMs)
	}
	n.Advance()
	// A second buyer waits behind the first; the ask is not repeated.
	n.Grab(2, GrabInput{User: "v", Qty: 1, NowMs: 101})
	if rd := n.Ready(); n.Waiting() != 2 || len(msgsOf(rd.NowMsgs, MsgAsk)) != 0 {
		t.Fatalf("waiting %d, ready %+v", n.Waiting(), rd)
	}
}

func TestShardNodeGrantServesWaiting(t *testing.T) {
	n := emptyShard()
	n.Grab(1, GrabInput{User: "u", Qty: 1, NowMs: 100})
	n.Advance()
	n.Step(Msg{Kind: MsgGrant, From: PoolAddr("it"), To: ShardAddr("it", 0), Total: 1, PoolEmpty: true}, 110)
	rd := n.Ready()
	kinds := []RecordKind{}
	for _, r := range rd.Records {
		kinds = append(kinds, r.Kind)
	}
	// The refill is durable ahead of the grab it enables.
	if !slices.Equal(kinds, []RecordKind{RecCounters, RecGrab}) {
		t.Fatalf("records %v", kinds)
	}
	if got := outcomes(rd.Answers); got[1] != Confirmed || n.Waiting() != 0 {
		t.Fatalf("answers %v, waiting %d", got, n.Waiting())
	}
	// Sold out on the shard: the pool hears at once.
	if len(msgsOf(rd.NowMsgs, MsgReport)) != 1 {
		t.Fatalf("now msgs %+v", rd.NowMsgs)
	}
}

func TestShardNodeNoStockForOlderAsk(t *testing.T) {
	n := emptyShard()
	n.Grab(1, GrabInput{User: "u", Qty: 1, NowMs: 100}) // ask 1
	n.Advance()
	n.Grab(2, GrabInput{User: "v", Qty: 1, NowMs: 101}) // waits behind ask 1: needs ask 2
	n.Advance()
	n.Step(Msg{Kind: MsgNoStock, From: PoolAddr("it"), To: ShardAddr("it", 0), Seq: 1}, 105)
	rd := n.Ready()
	got := outcomes(rd.NowAnswers)
	if got[1] != SoldOut {
		t.Fatalf("first buyer: %v", got[1])
	}
	if _, ok := got[2]; ok || n.Waiting() != 1 {
		t.Fatalf("later buyer answered %v by an older ask's no-stock (waiting %d)", got[2], n.Waiting())
	}
	if asks := msgsOf(rd.NowMsgs, MsgAsk); len(asks) != 1 || asks[0].Seq != 2 || !asks[0].Urgent {
		t.Fatalf("asks %+v, want ask 2 for the later buyer", asks)
	}
	n.Advance()
	n.Step(Msg{Kind: MsgNoStock, From: PoolAddr("it"), To: ShardAddr("it", 0), Seq: 2}, 106)
	if got := outcomes(n.Ready().NowAnswers); got[2] != SoldOut {
		t.Fatalf("later buyer after its own ask's no-stock: %v", got[2])
	}
}

func TestShardNodeTickRetry(t *testing.T) {
	for _, c := range []struct {
		name   string
		tickAt int64
		want   Outcome // 0: still waiting
		asks   int
	}{
		{"before the ask retry", 100 + AskRetryMs - 1, 0, 0},
		{"at the ask retry", 100 + AskRetryMs, 0, 1},
		{"at the deadline", 100 + RefillWaitMs, Retry, 0},
	} {
		t.Run(c.name, func(t *testing.T) {
			n := emptyShard()
			n.Grab(1, GrabInput{User: "u", Qty: 1, NowMs: 100})
			n.Advance()
			n.Tick(c.tickAt)
			rd := n.Ready()
			if got := outcomes(rd.NowAnswers)[1]; got != c.want {
				t.Fatalf("answer %v, want %v", got, c.want)
			}
			if asks := len(msgsOf(rd.NowMsgs, MsgAsk)); asks != c.asks {
				t.Fatalf("%d asks, want %d", asks, c.asks)
			}
		})
	}
}

// poolWith runs a pool holding avail units, the shards' counters given by
// (sold, received) each (nothing returned): the ledger is made to balance.
func poolWith(t *testing.T, avail int64, shards [][2]int64) (*PoolNode, []Counters) {
	t.Helper()
	st := PoolState{Stock: nodeItem.Stock, Pool: avail, Sent: make([]int64, 3), Got: make([]int64, 3)}
	cs := make([]Counters, 3)
	for i, s := range shards {
		st.Sent[i] = s[1]
		cs[i] = Counters{Allocated: nodeItem.InitialAllocation(i) + s[1], Sold: s[0], NextSeq: uint64(s[0]) + 1, Received: s[1]}
	}
	p, err := RestorePool(nodeItem, st)
	if err != nil {
		t.Fatal(err)
	}
	return NewPoolNode(p, cs), cs
}

func ask(i int, c Counters, seq uint64, urgent bool) Msg {
	return Msg{Kind: MsgAsk, From: ShardAddr("it", i), To: PoolAddr("it"), Want: 3, Seq: seq, Gen: 1, Counters: c, Urgent: urgent}
}

func TestPoolNodeSteals(t *testing.T) {
	for _, c := range []struct {
		name    string
		wanting []int // shards that asked first, urgently
		from    int
		want    int64
	}{
		// Shard 1 holds 15, shard 2 holds 10: half of the richest, rounded up.
		{"richest", nil, 1, 8},
		// A shard that wants units itself is not stolen from.
		{"richest non-wanting", []int{1}, 2, 5},
	} {
		t.Run(c.name, func(t *testing.T) {
			// 15 granted: pool empty; shard 0 sold its 5.
			n, cs := poolWith(t, 0, [][2]int64{{5, 0}, {0, 10}, {0, 5}})
			cs[1].Sold = cs[1].Allocated - 1 // wanting shards hold less than their buyers want
			for _, w := range c.wanting {
				n.Step(ask(w, cs[w], 1, true), 100)
			}
			n.Step(ask(0, cs[0], 1, true), 100)
			// One give-back at a time, whoever asked first.
			gb := msgsOf(n.Ready().Msgs, MsgGiveBack)
			if len(gb) != 1 || gb[0].To.Shard != c.from || gb[0].Want != c.want {
				t.Fatalf("give-backs %+v, want %d from shard %d", gb, c.want, c.from)
			}
		})
	}
}

func TestPoolNodeNoStockOnlyWhenNothingLeft(t *testing.T) {
	for _, c := range []struct {
		name    string
		shards  [][2]int64 // (sold, received)
		noStock bool
	}{
		{"all sold", [][2]int64{{5, 0}, {15, 10}, {10, 5}}, true},
		{"a unit unsold on a shard", [][2]int64{{5, 0}, {14, 10}, {10, 5}}, false},
	} {
		t.Run(c.name, func(t *testing.T) {
			n, cs := poolWith(t, 0, c.shards)
			n.Step(ask(0, cs[0], 4, true), 100)
			rd := n.Ready()
			ns := msgsOf(rd.NowMsgs, MsgNoStock)
			if (len(ns) == 1) != c.noStock || c.noStock && (ns[0].Seq != 4 || ns[0].To.Shard != 0) {
				t.Fatalf("no-stock %+v, want %v", ns, c.noStock)
			}
			if n.SoldOut() != c.noStock {
				t.Fatalf("sold out %v", n.SoldOut())
			}
		})
	}
	// A unit on its way to a shard (granted, not yet received) is unsold:
	// the pool looks again soon instead.
	n, cs := poolWith(t, 0, [][2]int64{{5, 0}, {15, 10}, {10, 5}})
	cs2 := cs[2]
	cs2.Received, cs2.Allocated = 4, cs2.Allocated-1
	n.Step(Msg{Kind: MsgReport, From: ShardAddr("it", 2), To: PoolAddr("it"), Gen: 1, Counters: Counters{Allocated: 9, Sold: 9, NextSeq: 10, Received: 4}}, 99)
	n.Advance()
	n.Step(ask(0, cs[0], 1, true), 100)
	rd := n.Ready()
	if len(msgsOf(rd.NowMsgs, MsgNoStock)) != 0 || n.SoldOut() || rd.WakeAtMs == 0 {
		t.Fatalf("in transit: ready %+v, sold out %v", rd, n.SoldOut())
	}
}

func TestPoolNodeReductionReclaimsFromShards(t *testing.T) {
	// Pool 2; shards hold 5, 13 and 10 unsold.
	n, cs := poolWith(t, 2, [][2]int64{{0, 0}, {0, 8}, {0, 5}})
	n.ChangeStock(1, -31, 1000)
	if got := outcomes(n.Ready().NowAnswers); got[1] != Insufficient {
		t.Fatalf("more than unsold: %v", got)
	}
	n.Advance()
	n.ChangeStock(2, -6, 1000)
	rd := n.Ready()
	gb := msgsOf(rd.Msgs, MsgGiveBack)
	if len(gb) != 3 || len(rd.Answers)+len(rd.NowAnswers) != 0 {
		t.Fatalf("give-backs %+v, answers %+v", gb, rd.NowAnswers)
	}
	for _, m := range gb {
		if m.Want != cs[m.To.Shard].Remaining() {
			t.Fatalf("give-back %+v, shard holds %d", m, cs[m.To.Shard].Remaining())
		}
	}
	n.Advance()
	// Shard 1 gives everything, the others nothing: the change waits for
	// every answer, then applies.
	for i, gave := range []int64{0, 13, 0} {
		c := cs[i]
		c.Allocated -= gave
		c.Returned = gave
		n.Step(Msg{Kind: MsgReturned, From: ShardAddr("it", i), To: PoolAddr("it"), Gen: 1, Counters: c, Total: gave, Answer: true}, 1010)
		rd := n.Ready()
		if last := i == 2; (len(rd.Answers) == 1) != last {
			t.Fatalf("after shard %d answered: %+v", i, rd.Answers)
		}
	}
	rd = n.Ready()
	if a := rd.Answers[0]; a.Ticket != 2 || a.Outcome != StockChanged || a.Stock != 24 || n.Pool().Available() != 9 {
		t.Fatalf("answer %+v, pool %d", a, n.Pool().Available())
	}
	if rd.Records[len(rd.Records)-1].Kind != RecPool {
		t.Fatalf("records %+v", rd.Records)
	}
}

// Sends between processes are at most once; the pool recovers what a lost
// message would strand.
func TestPoolNodeChasesLostMessages(t *testing.T) {
	for _, c := range []struct {
		name  string
		other Counters // what shard 2 last reported
		kind  MsgKind  // what the pool sends it, after the commit it waits for
		total int64
	}{
		// Shard 2 returned 2 units (released, durable) whose MsgReturned was
		// lost: the pool asks it for its total with a give-back of nothing.
		{"lost return", Counters{Allocated: 8, Sold: 8, NextSeq: 9, Received: 5, Returned: 2}, MsgGiveBack, 5},
	} {
		t.Run(c.name, func(t *testing.T) {
			n, cs := poolWith(t, 0, [][2]int64{{5, 0}, {15, 10}, {8, 5}})
			n.Step(Msg{Kind: MsgReport, From: ShardAddr("it", 2), To: PoolAddr("it"), Gen: 1, Counters: c.other}, 99)
			n.Advance()
			n.Step(ask(0, cs[0], 1, true), 100)
			rd := n.Ready()
			ms := msgsOf(rd.Msgs, c.kind)
			if len(ms) != 1 || ms[0].To.Shard != 2 || ms[0].Want != 0 || ms[0].Total != c.total {
				t.Fatalf("%v to shard 2: %+v; ready %+v", c.kind, ms, rd)
			}
			if n.SoldOut() {
				t.Fatal("sold out with units on their way back")
			}
		})
	}
}

func TestShardNodeTakesALostGrantBeforeGivingBack(t *testing.T) {
	// Shard 0 of nodeItem holds 5 at creation; the pool sent it 4 more,
	// whose grant was lost.
	n := NewShardNode(NewShard(nodeItem, 0), 1)
	n.Step(Msg{Kind: MsgGiveBack, From: PoolAddr("it"), To: ShardAddr("it", 0), Want: 9, Total: 4}, 100)
	rd := n.Ready()
	ret := msgsOf(rd.Msgs, MsgReturned)
	if len(ret) != 1 || ret[0].Total != 9 || !ret[0].Answer {
		t.Fatalf("returned %+v", ret)
	}
	if c := n.Shard().Counters(); c.Received != 4 || c.Returned != 9 || c.Remaining() != 0 {
		t.Fatalf("counters %v", c)
	}
	if len(rd.Records) != 2 {
		t.Fatalf("records %+v, want the grant's counters then the give-back's", rd.Records)
	}
}

func TestStatusesAreNumbered(t *testing.T) {
	n, cs := poolWith(t, 0, [][2]int64{{5, 0}, {15, 10}, {9, 5}})
	n.Step(Msg{Kind: MsgReport, From: ShardAddr("it", 2), To: PoolAddr("it"), Gen: 1, Counters: Counters{Allocated: 10, Sold: 10, NextSeq: 11, Received: 5}}, 100)
	first := msgsOf(n.Ready().NowMsgs, MsgStatus)
	n.Advance()
	n.ChangeStock(7, 1, 101)
	second := msgsOf(n.Ready().NowMsgs, MsgStatus)
	if len(first) != 1 || !first[0].SoldOut || len(second) != 1 || second[0].SoldOut || second[0].Seq <= first[0].Seq {
		t.Fatalf("statuses %+v then %+v (counters %v)", first, second, cs)
	}
}

func TestPoolNodeResendsALostGrant(t *testing.T) {
	// The pool sent shard 0 three units whose grant was lost: its ask still
	// says received 0. Nothing else is left, so only the lost grant serves.
	n, _ := poolWith(t, 0, [][2]int64{{5, 3}, {12, 7}, {10, 5}})
	n.Step(ask(0, Counters{Allocated: 5, Sold: 5, NextSeq: 6}, 1, true), 100)
	rd := n.Ready()
	g := msgsOf(rd.Msgs, MsgGrant)
	if len(g) != 1 || g[0].To.Shard != 0 || g[0].Total != 3 || len(msgsOf(rd.NowMsgs, MsgNoStock)) != 0 || n.SoldOut() {
		t.Fatalf("ready %+v, sold out %v", rd, n.SoldOut())
	}
}

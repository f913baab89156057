package actors

import (
	"sync"
	"time"

	"github.com/seckill/seckill/engine"
)

// call carries one grab to a shard actor and its answer back. The front
// waits on done instead of a protoactor future: no future allocation and no
// future race (upstream issue #1145).
type call struct {
	in engine.GrabInput
	// release: return grab seq to stock instead of grabbing.
	release bool
	seq     uint64
	done    chan Reply // buffered 1: whoever answers never blocks
	// timer bounds the front's wait; it goes back to the pool with the
	// call (stopped), so a grab neither allocates nor creates a timer.
	timer *time.Timer
}

var calls = sync.Pool{New: func() any {
	t := time.NewTimer(time.Hour)
	t.Stop()
	return &call{done: make(chan Reply, 1), timer: t}
}}

func (c *call) finish(r Reply) { c.done <- r }

// Grab asks the item's shard for user to decide a grab and waits for the
// answer. Once the item is sold out, or outside its sale window, a request
// is answered here without an actor hop unless its user ever held a grab of
// the item: only then can its key replay an earlier grab, which the shard
// decides.
func (n *Node) Grab(item, user string, qty int64, key string) Reply {
	it, ok := n.Item(item)
	if !ok {
		return Reply{Err: ErrUnknownItem}
	}
	return n.GrabIn(it, user, qty, key)
}

// GrabIn is Grab for an item the caller has already looked up.
func (n *Node) GrabIn(it *Item, user string, qty int64, key string) Reply {
	item := it.Config.Item
	ref := it.shards[engine.ShardFor(item, user, len(it.shards))]
	if key != "" && n.opts.Cluster != nil && ref.pid() == nil && !ref.isHolder(user) {
		// A clustered shard not active here (moving in or out) may have
		// holders this node does not know yet, such as those of the
		// snapshot it is about to adopt: only the shard can answer a key
		// it does not know, not the sold-out flag or the window.
		return Reply{Err: ErrUnavailable}
	}
	if key == "" || !ref.isHolder(user) {
		// In the engine's order: the window, then stock.
		if w := it.Config.Window(n.opts.Clock()); w != 0 {
			return Reply{Outcome: w}
		}
		if it.SoldOut() {
			return Reply{Outcome: engine.SoldOut}
		}
	}
	if !n.writable() {
		return Reply{Err: ErrUnavailable}
	}
	if ref.inflight.Add(1) > MaxInflightPerShard {
		ref.inflight.Add(-1)
		return Reply{Err: ErrOverloaded}
	}
	defer ref.inflight.Add(-1)
	c := calls.Get().(*call)
	c.in = engine.GrabInput{User: user, Qty: qty, Key: key}
	if !n.tell(&ref.lane, c) {
		calls.Put(c)
		return Reply{Err: ErrUnavailable} // not active here (clustered)
	}
	// Since Go 1.23 a timer's channel holds no stale tick after Stop or
	// Reset, so a pooled timer is as good as a new one.
	c.timer.Reset(n.opts.RequestTimeout)
	select {
	case r := <-c.done:
		c.timer.Stop()
		c.in = engine.GrabInput{}
		calls.Put(c)
		return r
	case <-c.timer.C:
		// The call may still be answered later; it is not reused.
		return Reply{Err: ErrUnavailable}
	}
}

// Release returns a confirmed grab to stock by its id: the units go to the
// item's pool and the user's limit slot is freed. A second release of the
// same grab answers AlreadyReleased and changes nothing.
func (n *Node) Release(item, grabID string) Reply {
	it, ok := n.Item(item)
	if !ok {
		return Reply{Err: ErrUnknownItem}
	}
	gi, shard, seq, ok := engine.ParseGrabID(grabID)
	if !ok || gi != item || shard >= len(it.shards) {
		return Reply{Err: ErrUnknownGrab}
	}
	if !n.writable() {
		return Reply{Err: ErrUnavailable}
	}
	m := &call{release: true, seq: seq, done: make(chan Reply, 1)}
	if !n.tell(&it.shards[shard].lane, m) {
		return Reply{Err: ErrUnavailable}
	}
	t := time.NewTimer(n.opts.RequestTimeout)
	defer t.Stop()
	select {
	case r := <-m.done:
		return r
	case <-t.C:
		return Reply{Err: ErrUnavailable}
	}
}

// ChangeStock adds delta units to an item (delta > 0) or takes unsold units
// away (delta < 0, never more than are unsold).
func (n *Node) ChangeStock(item string, delta int64) StockReply {
	it, ok := n.Item(item)
	if !ok {
		return StockReply{Err: ErrUnknownItem}
	}
	if !n.writable() {
		return StockReply{Err: ErrUnavailable}
	}
	m := &stockCall{delta: delta, done: make(chan StockReply, 1)}
	if !n.tell(it.pool, m) {
		return StockReply{Err: ErrUnavailable}
	}
	t := time.NewTimer(n.opts.RequestTimeout)
	defer t.Stop()
	select {
	case r := <-m.done:
		return r
	case <-t.C:
		return StockReply{Err: ErrUnavailable}
	}
}

// send delivers a protocol message to its addressee: on one node, a shard
// or pool actor here, or the item's front (the sold-out flag); on a
// clustered node, wherever the cluster places the addressee.
func (n *Node) send(m engine.Msg) {
	if n.opts.Cluster != nil {
		n.opts.Cluster.Send(m)
		return
	}
	n.Deliver(m)
}

// writable reports whether the store takes writes (Options.Writable).
func (n *Node) writable() bool { return n.opts.Writable == nil || n.opts.Writable() == nil }

// ReloadAllWait bounds ReloadAll's wait for one actor.
const ReloadAllWait = 10 * time.Second

// ReloadAll makes every shard and pool running here drop its memory and
// load its durable state again, dropping every decision not yet written,
// and returns once each has (or ReloadAllWait passed): the store was
// reopened after a failure and their memory may hold what the failed
// database showed but never wrote. It reports how many did not answer.
func (n *Node) ReloadAll() int {
	var waits []chan struct{}
	for _, it := range n.Items() {
		lanes := []*lane{it.pool}
		for _, sh := range it.shards {
			lanes = append(lanes, &sh.lane)
		}
		for _, l := range lanes {
			done := make(chan struct{})
			if n.tell(l, reloadMsg{gen: ^uint64(0), done: done}) {
				waits = append(waits, done)
			}
		}
	}
	late := 0
	deadline := time.After(ReloadAllWait)
	for _, w := range waits {
		select {
		case <-w:
		case <-deadline:
			late++
		}
	}
	return late
}

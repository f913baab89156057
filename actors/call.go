package actors

import (
	"sync"
	"time"

	"github.com/seckill/seckill/engine"
)

// Reply is a shard's answer to one grab.
type Reply struct {
	Outcome engine.Outcome // set when Err is nil
	Grab    engine.Grab    // for Confirmed and Replayed
	Err     error          // ErrUnavailable, ErrOverloaded, ErrUnknownItem
}

// call carries one grab to a shard actor and its answer back. The front
// waits on done instead of a protoactor future: no future allocation and no
// future race (upstream issue #1145).
type call struct {
	in   engine.GrabInput
	done chan Reply // buffered 1: whoever answers never blocks
}

var calls = sync.Pool{New: func() any { return &call{done: make(chan Reply, 1)} }}

func (c *call) finish(r Reply) { c.done <- r }

// Grab asks the item's shard for user to decide a grab and waits for the
// answer. Requests without an idempotency key are answered from the
// sold-out flag and the sale window without an actor hop; a keyed request
// always reaches its shard, which may hold an earlier grab to replay.
func (n *Node) Grab(item, user string, qty int64, key string) Reply {
	it, ok := n.Item(item)
	if !ok {
		return Reply{Err: ErrUnknownItem}
	}
	if key == "" {
		if it.soldOut.Load() {
			return Reply{Outcome: engine.SoldOut}
		}
		if w := it.Config.Window(n.opts.Clock()); w != 0 {
			return Reply{Outcome: w}
		}
	}
	ref := it.shards[engine.ShardFor(item, user, len(it.shards))]
	if ref.inflight.Add(1) > MaxInflightPerShard {
		ref.inflight.Add(-1)
		return Reply{Err: ErrOverloaded}
	}
	defer ref.inflight.Add(-1)
	c := calls.Get().(*call)
	c.in = engine.GrabInput{User: user, Qty: qty, Key: key}
	n.sys.Root.Send(ref.pid, c)
	t := time.NewTimer(n.opts.RequestTimeout)
	select {
	case r := <-c.done:
		t.Stop()
		c.in = engine.GrabInput{}
		calls.Put(c)
		return r
	case <-t.C:
		// The call may still be answered later; it is not reused.
		return Reply{Err: ErrUnavailable}
	}
}

package actors

import (
	"github.com/seckill/seckill/engine"
	"github.com/seckill/seckill/persistence"
)

// commitReq is a decision waiting to be durable before anyone hears of it.
type commitReq struct {
	lane *lane
	gen  uint64
	// rec is the record to write; Kind 0 writes nothing and only waits
	// for the commits queued before it (a replay of a grab in flight).
	rec persistence.Record
	// c, when set, is answered with reply after the commit, or with
	// ErrUnavailable if it fails.
	c     *call
	reply Reply
	// durable, when set, is raised to the grab's sequence after the commit.
	durable *shardRef
	// after, when set, runs on the committer after the commit with its
	// result; it only sends messages.
	after func(error)
}

// committer turns the decisions queued by its lanes into one Pebble batch
// per round: while one commit waits on fdatasync the next round's decisions
// queue up, so the batch grows with the load (group commit). A lane always
// uses the same committer, so its records land in the order decided.
type committer struct {
	node  *Node
	in    chan commitReq
	batch persistence.Batch
	reqs  []commitReq
}

func newCommitter(n *Node) *committer {
	return &committer{node: n, in: make(chan commitReq, CommitQueueLen)}
}

func (c *committer) run() {
	for first := range c.in {
		c.reqs = append(c.reqs[:0], first)
	drain:
		for len(c.reqs) < MaxCommitBatch {
			select {
			case r, ok := <-c.in:
				if !ok {
					break drain
				}
				c.reqs = append(c.reqs, r)
			default:
				break drain
			}
		}
		c.round()
	}
}

func (c *committer) round() {
	c.batch.Reset()
	for i := range c.reqs {
		r := &c.reqs[i]
		if r.gen <= r.lane.failedGen.Load() {
			// Decided on memory a failed commit made wrong: never confirm.
			c.finish(r, errDropped)
			r.lane = nil
			continue
		}
		if r.rec.Kind != 0 {
			c.batch.Records = append(c.batch.Records, r.rec)
		}
	}
	var err error
	if c.batch.Len() > 0 {
		err = c.node.store.Apply(&c.batch)
	}
	if err != nil {
		c.node.opts.Logger.Error("group commit failed", "records", c.batch.Len(), "err", err)
	} else if c.batch.Len() > 0 {
		select {
		case c.node.relayKick <- struct{}{}:
		default:
		}
	}
	for i := range c.reqs {
		r := &c.reqs[i]
		if r.lane == nil {
			continue
		}
		if err != nil && r.lane.failedGen.Load() < r.gen {
			r.lane.failedGen.Store(r.gen)
			c.node.sys.Root.Send(r.lane.pid, reloadMsg{gen: r.gen})
		}
		if err == nil && r.durable != nil && r.rec.Grab.Seq > r.durable.durableSeq.Load() {
			r.durable.durableSeq.Store(r.rec.Grab.Seq)
		}
		c.finish(r, err)
	}
	clear(c.reqs)
}

func (c *committer) finish(r *commitReq, err error) {
	if r.c != nil {
		if err != nil {
			r.c.finish(Reply{Err: ErrUnavailable})
		} else {
			r.c.finish(r.reply)
		}
	}
	if r.after != nil {
		r.after(err)
	}
}

// grabReq is the commit request of a grab decision.
func grabReq(ref *shardRef, gen uint64, d engine.Decision, c *call) commitReq {
	r := commitReq{lane: &ref.lane, gen: gen, c: c, reply: Reply{Outcome: d.Outcome, Grab: d.Grab}}
	if d.Outcome == engine.Confirmed {
		r.rec = persistence.Record{Kind: persistence.KindGrab, Grab: d.Grab, Counters: d.Counters}
		r.durable = ref
	}
	return r
}

package actors

import (
	"github.com/seckill/seckill/engine"
	"github.com/seckill/seckill/persistence"
)

// commitReq is a decision waiting to be durable before its reply.
type commitReq struct {
	ref *shardRef
	gen uint64
	d   engine.Decision // Confirmed (has a record) or Replayed (waits only)
	c   *call
}

// committer turns the decisions queued by its shards into one Pebble batch
// per round: while one commit waits on fdatasync the next round's decisions
// queue up, so the batch grows with the load (group commit).
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
		if r.gen <= r.ref.failedGen.Load() {
			// Decided on memory a failed commit made wrong: never confirm.
			r.c.finish(Reply{Err: ErrUnavailable})
			r.c = nil
			continue
		}
		if r.d.Outcome == engine.Confirmed {
			c.batch.PutGrab(r.d.Grab, r.d.Counters)
		}
	}
	var err error
	if c.batch.Len() > 0 {
		err = c.node.store.Apply(&c.batch)
	}
	if err != nil {
		c.node.opts.Logger.Error("group commit failed", "records", c.batch.Len(), "err", err)
	}
	for i := range c.reqs {
		r := &c.reqs[i]
		if r.c == nil {
			continue
		}
		if err != nil {
			if r.ref.failedGen.Load() < r.gen {
				r.ref.failedGen.Store(r.gen)
				c.node.sys.Root.Send(r.ref.pid, reloadMsg{gen: r.gen})
			}
			r.c.finish(Reply{Err: ErrUnavailable})
			continue
		}
		if r.d.Outcome == engine.Confirmed && r.d.Grab.Seq > r.ref.durableSeq.Load() {
			r.ref.durableSeq.Store(r.d.Grab.Seq)
		}
		r.c.finish(Reply{Outcome: r.d.Outcome, Grab: r.d.Grab})
	}
	clear(c.reqs)
}

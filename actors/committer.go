package actors

import (
	"time"

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
	// answers and msgs are given and sent after the commit (a failed one
	// answers unavailable and sends nothing): a step's Ready.
	answers []pending
	msgs    []engine.Msg
	// dropped: decided on memory a failed commit made wrong; never written.
	dropped bool
	// shard is the shard whose decision this is (nil: the pool's).
	shard *shardRef
}

// committer turns the decisions queued by its lanes into one Pebble batch
// per round (group commit) and never waits for the disk itself: it submits
// a round and goes on gathering the next while Pebble syncs, and its syncer
// answers each round, in order, once its fdatasync has returned. A decision
// thus waits for the sync under way and the one that holds it, never for a
// whole earlier round's. A lane always uses the same committer, so its
// records land in the order decided.
type committer struct {
	node *Node
	in   chan commitReq
	// submitted carries rounds to the syncer in submission order; free
	// brings them back for reuse.
	submitted chan *round
	free      chan *round
	done      chan struct{} // closed when the syncer has answered everything
	// idle, with a replicated journal: a token the syncer gives back once
	// it has answered a round. The committer gathers the next round only
	// then, so that a round holds everything decided while the one before
	// it was appended and synced (see run).
	idle chan struct{}
}

// round is one group commit.
type round struct {
	batch persistence.Batch
	reqs  []commitReq
	wait  func() error // nil when the round wrote nothing
	err   error        // the submission failed
	// fenced: the node's lease was not valid before the submission or
	// after the sync. The records are durable all the same; only the
	// answers say 503 (see finish).
	fenced bool
	// submittedAt is when the round went to the store (Options.Rounds).
	submittedAt time.Time
	// lost, with a replicated journal: the shards whose entry the journal
	// did not take (or whose outcome is unknown). Their records were not
	// written here; their requests answer 503 and the shards stop.
	lost map[*shardRef]error
}

func newCommitter(n *Node) *committer {
	c := &committer{node: n, in: make(chan commitReq, CommitQueueLen),
		submitted: make(chan *round, MaxRoundsInFlight), free: make(chan *round, MaxRoundsInFlight),
		done: make(chan struct{})}
	if n.journal() != nil {
		c.idle = make(chan struct{}, 1)
		c.idle <- struct{}{}
	}
	return c
}

// run gathers and submits rounds until in is closed, then lets the syncer
// answer what is left.
func (c *committer) run() {
	go c.sync()
	defer func() {
		close(c.submitted)
		<-c.done
	}()
	for {
		if c.idle != nil {
			// With a replicated journal the syncer does the whole commit
			// (an R3 append, then the local sync), so a round gathered
			// ahead of it would only split what arrives into small rounds,
			// and every round costs the journal's servers a proposal per
			// shard in it, however few grabs it holds. Gathered once the
			// syncer is free, a round holds all that waited.
			<-c.idle
		}
		first, ok := <-c.in
		if !ok {
			return
		}
		var r *round
		select {
		case r = <-c.free:
		default:
			r = &round{}
		}
		r.reqs = append(r.reqs[:0], first)
	drain:
		for len(r.reqs) < MaxCommitBatch {
			select {
			case q, ok := <-c.in:
				if !ok {
					break drain
				}
				r.reqs = append(r.reqs, q)
			default:
				break drain
			}
		}
		c.submit(r)
		c.submitted <- r
	}
}

// submit hands r's records to the store. A decision made on memory that a
// failed commit made wrong is dropped, never written.
func (c *committer) submit(r *round) {
	r.batch.Reset()
	r.wait, r.err = nil, nil
	clear(r.lost)
	// The round is submitted even when fenced: its decisions are already in
	// memory, and writing them keeps memory and disk one (no reload).
	r.fenced = !c.node.fenceValid()
	for i := range r.reqs {
		q := &r.reqs[i]
		if q.gen <= q.lane.failedGen.Load() {
			q.dropped = true
			continue
		}
		if q.rec.Kind != 0 {
			r.batch.Records = append(r.batch.Records, q.rec)
		}
	}
	if r.batch.Len() == 0 {
		return
	}
	if c.node.opts.Rounds != nil {
		r.submittedAt = time.Now()
	}
	if c.node.journal() != nil {
		// The journal first, then the local store, both in the syncer:
		// the local store never holds a record the journal refused, so
		// what it holds is always a prefix of the shard's journal.
		r.wait = func() error { return c.journalThenStore(r) }
		return
	}
	r.wait, r.err = c.node.store.Submit(&r.batch)
	if r.err != nil {
		// Poison the lanes now, before the next round is submitted: their
		// later decisions were made on memory holding this round's.
		c.poison(r)
	}
}

// poison marks every lane of a failed round so that its later decisions are
// dropped, and makes each reload its durable state. The committer (a failed
// submission) and the syncer (a failed sync) may both poison a lane, so the
// mark only ever rises.
func (c *committer) poison(r *round) {
	for i := range r.reqs {
		q := &r.reqs[i]
		if q.dropped {
			continue
		}
		for {
			cur := q.lane.failedGen.Load()
			if cur >= q.gen {
				break
			}
			if q.lane.failedGen.CompareAndSwap(cur, q.gen) {
				c.node.tell(q.lane, reloadMsg{gen: q.gen})
				break
			}
		}
	}
}

// sync answers each submitted round once its records are durable.
func (c *committer) sync() {
	defer close(c.done)
	for r := range c.submitted {
		err := r.err
		if err == nil && r.wait != nil {
			if err = r.wait(); err != nil {
				c.poison(r)
			}
		}
		if err == nil && !r.fenced && !c.node.fenceValid() {
			// Checked again after the fsync: the lease may have run out
			// while the disk synced.
			r.fenced = true
		}
		if err != nil {
			c.node.commitFailing.Store(true)
			c.node.opts.Logger.Error("group commit failed", "records", r.batch.Len(), "err", err)
		} else if r.batch.Len() > 0 {
			if c.node.commitFailing.Load() {
				c.node.commitFailing.Store(false)
			}
			if o := c.node.opts.Rounds; o != nil {
				o.ObserveRound(r.batch.Len(), time.Since(r.submittedAt))
			}
			select {
			case c.node.relayKick <- struct{}{}:
			default:
			}
		}
		grabs := 0
		for i := range r.reqs {
			q := &r.reqs[i]
			if !q.dropped && q.rec.Kind == 0 && q.gen <= q.lane.failedGen.Load() {
				// A wait for the commits queued before it (a replay of a
				// grab in flight) whose lane an earlier round's failure
				// poisoned meanwhile: the grab it would confirm may not be
				// written. A round of such waits alone writes nothing, so
				// nothing checked it since it was submitted.
				q.dropped = true
			}
			if q.dropped {
				c.finish(q, errDropped, false)
				continue
			}
			if lerr, ok := r.lost[q.shard]; ok && q.shard != nil {
				c.finish(q, lerr, false)
				continue
			}
			if err == nil && q.durable != nil {
				grabs++
				// Handed to the relay before durableSeq says so: the relay
				// never looks for a durable grab that is not there yet.
				q.durable.addFresh(q.rec.Grab)
				if q.rec.Grab.Seq > q.durable.durableSeq.Load() {
					q.durable.durableSeq.Store(q.rec.Grab.Seq)
				}
			}
			c.finish(q, err, r.fenced)
		}
		c.node.durableGrabs.Add(int64(grabs))
		clear(r.reqs)
		r.reqs = r.reqs[:0]
		select {
		case c.free <- r:
		default:
		}
		if c.idle != nil {
			c.idle <- struct{}{}
		}
	}
}

// finish answers a request of a round. A failed commit (err) answers
// unavailable and sends nothing: its records may be lost. A fenced round
// answers unavailable too, because a node past its lease may not confirm,
// but its records are durable: the grab stays decided (a retry with the
// same key replays it, 201 once the lease is back; the relay publishes it
// as any other), and the step's msgs (grants, give-backs) are sent, since
// the pool's and shards' totals count what is on disk.
func (c *committer) finish(r *commitReq, err error, fenced bool) {
	if err == nil && fenced {
		c.answerFenced(r)
		return
	}
	if r.c != nil {
		if err != nil {
			r.c.finish(Reply{Err: ErrUnavailable})
		} else {
			r.c.finish(r.reply)
		}
	}
	for _, p := range r.answers {
		switch {
		case p.c != nil && err != nil:
			p.c.finish(Reply{Err: ErrUnavailable})
		case p.c != nil:
			p.c.finish(reply(p.a))
		case err != nil:
			p.s.done <- StockReply{Err: ErrUnavailable}
		default:
			p.s.done <- stockReply(p.a)
		}
	}
	if err == nil {
		for _, m := range r.msgs {
			c.node.send(m)
		}
	}
}

// answerFenced answers every call of a durable request unavailable and
// sends its msgs.
func (c *committer) answerFenced(r *commitReq) {
	if r.c != nil {
		r.c.finish(Reply{Err: ErrUnavailable})
	}
	for _, p := range r.answers {
		if p.c != nil {
			p.c.finish(Reply{Err: ErrUnavailable})
		} else {
			p.s.done <- StockReply{Err: ErrUnavailable}
		}
	}
	for _, m := range r.msgs {
		c.node.send(m)
	}
}

// pending is an answer waiting for a commit: to a grab or release (c) or
// to a stock change (s).
type pending struct {
	c *call
	s *stockCall
	a engine.Answer
}

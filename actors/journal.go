package actors

import (
	"context"
	"errors"
	"fmt"
	"time"

	"github.com/seckill/seckill/engine"
	"github.com/seckill/seckill/persistence"
)

// The replicated journal (ClusterHooks.Journal). On a clustered node with a
// journal, a commit round goes to the journal first, one entry per shard,
// all at once, each expecting the shard's last entry as this incarnation
// knows it; then what the journal took goes to the local store, synced;
// only then is anyone answered. So the local store holds a prefix of each
// shard's journal, and a confirmed grab is in the journal (which outlives
// this machine) before its 201.
//
// A shard whose entry the journal did not take is lost here: refused (a
// takeover fenced this incarnation), or of unknown outcome (a timeout: the
// entry may be in). Its records are not written locally, its requests
// answer 503, its queued decisions are dropped and it stops. If etcd still
// places it here, the grid activates it again through a takeover, which
// folds the journal: a round that did land is found, and its buyers'
// retries replay it.

// JournalTimeout bounds one round's appends: an R3 append on loopback acks
// in milliseconds, so past this the journal is down or cut off, and the
// round's buyers hear 503 after about what a shard's own wait allows.
const JournalTimeout = DefaultRequestTimeout - 500*time.Millisecond

// errJournal answers the requests of a shard whose entry was not taken.
var errJournal = errors.New("the replicated journal did not take the round")

func (n *Node) journal() persistence.ReplicatedJournal {
	if h := n.opts.Cluster; h != nil {
		return h.Journal
	}
	return nil
}

// journalThenStore appends each shard's part of r to the journal, then
// writes what the journal took to the local store.
func (c *committer) journalThenStore(r *round) error {
	type part struct {
		ref  *shardRef
		recs []engine.Record
	}
	var parts []part
	at := map[*shardRef]int{}
	r.batch.Reset()
	for i := range r.reqs {
		q := &r.reqs[i]
		if !q.dropped && q.gen <= q.lane.failedGen.Load() {
			// Decided on memory an earlier round's failure made wrong
			// (that round was submitted after this one was gathered).
			q.dropped = true
		}
		if q.dropped || q.rec.Kind == 0 {
			continue
		}
		if q.shard == nil {
			r.batch.Records = append(r.batch.Records, q.rec)
			continue
		}
		k, ok := at[q.shard]
		if !ok {
			k = len(parts)
			at[q.shard] = k
			parts = append(parts, part{ref: q.shard})
		}
		parts[k].recs = append(parts[k].recs, persistence.ToEngine(q.rec))
	}
	apps := make([]persistence.JournalAppend, len(parts))
	node := c.node.opts.Cluster.Node
	for k, p := range parts {
		expect := p.ref.journalSeq.Load()
		apps[k] = persistence.JournalAppend{Item: p.ref.item.Config.Item, Shard: p.ref.index, Expect: expect,
			Data: engine.AppendEntry(nil, engine.JournalEntry{Kind: engine.EntryRound, Prev: expect, Epoch: p.ref.journalEpoch.Load(), Node: node, Records: p.recs})}
		if p.ref.journalEpoch.Load() == 0 {
			apps[k].Err = errors.New("shard not taken over in the journal")
		}
	}
	if len(apps) > 0 {
		ctx, cancel := context.WithTimeout(context.Background(), JournalTimeout)
		c.node.journal().AppendAll(ctx, apps)
		cancel()
	}
	for k, a := range apps {
		ref := parts[k].ref
		if a.Err != nil {
			c.lose(r, ref, a.Err)
			continue
		}
		ref.journalSeq.Store(a.Seq)
	}
	for i := range r.reqs {
		q := &r.reqs[i]
		if q.dropped || q.rec.Kind == 0 || q.shard == nil {
			continue
		}
		if _, lost := r.lost[q.shard]; !lost {
			r.batch.Records = append(r.batch.Records, q.rec)
		}
	}
	if r.batch.Len() == 0 {
		return nil
	}
	if err := c.node.store.Apply(&r.batch); err != nil {
		// The journal holds these rounds and the local store may not:
		// memory must not go on from the local store. Each shard stops and
		// is taken over again from the journal.
		for _, p := range parts {
			c.lose(r, p.ref, err)
		}
		return err
	}
	return nil
}

// lose marks ref lost in round r: its decisions still queued are dropped,
// and the shard stops (the grid takes it over again if it is still placed
// here).
func (c *committer) lose(r *round, ref *shardRef, err error) {
	if _, ok := r.lost[ref]; ok {
		return
	}
	if r.lost == nil {
		r.lost = map[*shardRef]error{}
	}
	r.lost[ref] = fmt.Errorf("%w: %v", errJournal, err)
	var gen uint64
	for i := range r.reqs {
		if r.reqs[i].shard == ref {
			gen = max(gen, r.reqs[i].gen)
		}
	}
	raiseGen(&ref.failedGen, gen)
	n := c.node
	n.opts.Logger.Warn("journal: shard lost here: stopping it", "item", ref.item.Config.Item, "shard", ref.index,
		"epoch", ref.journalEpoch.Load(), "err", err)
	// The grid hears of it once the shard has stopped, so that the refresh
	// it runs sees the shard inactive and takes it over again (told
	// before, it may find the shard still running and leave it lost).
	go func() {
		n.StopShard(ref.item.Config.Item, ref.index)
		if h := n.opts.Cluster; h.Lost != nil {
			h.Lost(ref.item.Config.Item, ref.index)
		}
	}()
}

// InCluster reports whether this node may act as a member of its cluster
// now: without a replicated journal always; with one, while its lease is
// valid and it has read etcd under it (Options.Fence). The relay and the
// order writers wait while it may not: a failover may have given some of
// their work to another node.
func (n *Node) InCluster() bool { return n.journal() == nil || n.fenceValid() }

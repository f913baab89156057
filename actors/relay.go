package actors

import (
	"context"
	"time"

	"github.com/seckill/seckill/engine"
	"github.com/seckill/seckill/persistence"
)

const (
	// MaxRelayBatch bounds the grabs in one publish round: one async
	// publish window's worth, acknowledged together.
	MaxRelayBatch = 1024
	// RelayLinger is how long the relay lets grabs gather after a kick, so
	// that a busy sale publishes in large batches rather than one publish
	// round per group commit. It adds at most this much to the order lag.
	RelayLinger = 2 * time.Millisecond
	// RelayBusyInterval: while grabs keep coming, a publish round starts
	// at most this often, so that the first second of a flash sale spends
	// its CPU on grabs, not on many small messages (a round's grabs go out
	// in one message per shard, up to bus.MaxGrabsPerMsg). Measured on the
	// flash workload (33 k buyers/s, 10 000 units): 2 ms rounds sold out
	// after 0.46-0.52 s, 20 ms rounds after 0.39-0.44 s, and the sale
	// without any order pipeline after 0.36-0.41 s. An idle relay still
	// publishes RelayLinger after a kick; a busy one adds at most this much
	// to the order lag.
	RelayBusyInterval = 20 * time.Millisecond
	// MaxFreshGrabs bounds the grabs a shard keeps in memory for the relay
	// (a few milliseconds of a busy shard's sale); past it, the relay reads
	// them from Pebble.
	MaxFreshGrabs = 512
	// RelayIdle is how often the relay looks for work without a kick.
	RelayIdle = 200 * time.Millisecond
	// RelayHoldPoll is how often a held relay asks again whether it may
	// publish (see RunRelayHeld).
	RelayHoldPoll = 20 * time.Millisecond
	// RelayRetryMin and RelayRetryMax bound the backoff while the stream
	// is unreachable; the sale goes on and the backlog waits on disk.
	RelayRetryMin = 100 * time.Millisecond
	RelayRetryMax = 5 * time.Second
)

// Publisher sends grabs to the stream and returns nil only once the server
// has acknowledged every one. Publishing a grab twice must be harmless.
type Publisher interface {
	Publish(ctx context.Context, grabs []engine.Grab) error
}

// relayCursor is the relay's memory of one shard.
type relayCursor struct {
	ref    *shardRef
	cursor uint64 // grabs up to here are acknowledged by the stream
	loaded bool
}

// RunRelay publishes every durable grab, in order per shard, and advances
// each shard's durable cursor only after the stream acknowledged. The grab
// records in Pebble are the outbox: nothing is lost if the process dies
// between a commit and a publish, since the relay starts again from the
// cursor. It returns when ctx is done.
func (n *Node) RunRelay(ctx context.Context, pub Publisher) error {
	return n.RunRelayHeld(ctx, pub, nil)
}

// RunRelayHeld is RunRelay that publishes nothing while hold reports true,
// asking again every RelayHoldPoll: in a flash sale's first moments the
// node's CPU goes to confirming grabs, and the stream and orders catch up
// once hold lets go (the grabs wait durable in Pebble meanwhile, so a hold
// only delays orders). nil never holds.
func (n *Node) RunRelayHeld(ctx context.Context, pub Publisher, hold func() bool) error {
	cursors := map[*shardRef]*relayCursor{}
	backoff := RelayRetryMin
	idle := time.NewTicker(RelayIdle)
	defer idle.Stop()
	var batch, gaps []engine.Grab
	var moved []*relayCursor
	var lastRound time.Time // when the last publish round began
	for {
		select {
		case <-ctx.Done():
			return ctx.Err()
		case <-n.relayKick:
			select {
			case <-ctx.Done():
				return ctx.Err()
			case <-time.After(max(RelayLinger, RelayBusyInterval-time.Since(lastRound))):
			}
		case <-idle.C:
		}
		// A journaled node past its lease, or that has not read etcd under
		// its new one, waits: a failover may have taken a shard whose grabs
		// it must not publish any more (fence.Forced.Journaled), and it
		// learns that only from etcd.
		for hold != nil && hold() || !n.InCluster() {
			select {
			case <-ctx.Done():
				return ctx.Err()
			case <-time.After(RelayHoldPoll):
			}
		}
		lastRound = time.Now()
		for {
			var err error
			batch, moved, err = n.collect(cursors, batch[:0], moved[:0])
			if err == nil && len(batch) == 0 {
				break
			}
			out := batch
			if err == nil {
				out, gaps = publishable(batch, gaps[:0])
				if len(out) > 0 {
					err = pub.Publish(ctx, out)
				}
			}
			if err == nil {
				err = n.saveCursors(batch, moved)
			}
			if err != nil {
				if ctx.Err() != nil {
					return ctx.Err()
				}
				n.opts.Logger.Warn("relay: will retry", "grabs", len(batch), "backoff", backoff, "err", err)
				select {
				case <-ctx.Done():
					return ctx.Err()
				case <-time.After(backoff):
				}
				backoff = min(backoff*2, RelayRetryMax)
				continue
			}
			backoff = RelayRetryMin
			n.relayed.Add(int64(len(out)))
		}
	}
}

// collect gathers up to MaxRelayBatch durable grabs past the cursors: from
// the run the committer handed over in memory when it starts at the cursor,
// else from Pebble.
func (n *Node) collect(cursors map[*shardRef]*relayCursor, batch []engine.Grab, moved []*relayCursor) ([]engine.Grab, []*relayCursor, error) {
	for _, it := range n.Items() {
		for _, ref := range it.shards {
			rc := cursors[ref]
			if rc == nil {
				rc = &relayCursor{ref: ref}
				cursors[ref] = rc
			}
			if !rc.loaded {
				c, err := n.store.RelayCursor(it.Config.Item, ref.index)
				if err != nil {
					return batch, moved, err
				}
				rc.cursor, rc.loaded = c, true
			}
			if f := ref.relayFloor.Load(); f > rc.cursor {
				rc.cursor = f
			}
			ref.relayedSeq.Store(rc.cursor)
			durable := ref.durableSeq.Load()
			if c := ref.relayCeiling.Load(); c > 0 && durable >= c {
				durable = c - 1
			}
			room := MaxRelayBatch - len(batch)
			if durable <= rc.cursor || room <= 0 {
				continue
			}
			before := len(batch)
			want := min(room, int(durable-rc.cursor))
			var ok bool
			if batch, ok = ref.takeFresh(batch, rc.cursor, want); !ok {
				err := n.store.GrabsAfter(it.Config.Item, ref.index, rc.cursor, want, func(g engine.Grab) error {
					batch = append(batch, g)
					return nil
				})
				if err != nil {
					return batch, moved, err
				}
			}
			if len(batch) > before {
				moved = append(moved, rc)
			}
		}
	}
	return batch, moved, nil
}

// publishable is batch without its gap grabs (engine.Grab.IsGap: no buyer,
// no order), copied into buf only when there are some; the cursors still
// move past them.
func publishable(batch, buf []engine.Grab) (out, bufOut []engine.Grab) {
	for i, g := range batch {
		if g.IsGap() {
			buf = append(buf, batch[:i]...)
			for _, g := range batch[i+1:] {
				if !g.IsGap() {
					buf = append(buf, g)
				}
			}
			return buf, buf
		}
	}
	return batch, buf
}

// saveCursors advances the cursors of the shards in an acknowledged batch.
func (n *Node) saveCursors(batch []engine.Grab, moved []*relayCursor) error {
	last := map[*shardRef]uint64{}
	for _, rc := range moved {
		for _, g := range batch {
			if g.Item == rc.ref.item.Config.Item && g.Shard == rc.ref.index && g.Seq > last[rc.ref] {
				last[rc.ref] = g.Seq
			}
		}
	}
	b := persistence.Batch{Lazy: true} // a lost advance only republishes
	for _, rc := range moved {
		b.PutCursor(rc.ref.item.Config.Item, rc.ref.index, last[rc.ref])
	}
	if err := n.store.Apply(&b); err != nil {
		return err
	}
	for _, rc := range moved {
		rc.cursor = last[rc.ref]
		rc.ref.relayedSeq.Store(rc.cursor)
	}
	return nil
}

// SetRelayCeiling stops the relay publishing grabs of shard i of item from
// sequence seq on: a forced move gave those sequences to another
// incarnation (fence.Forced).
func (n *Node) SetRelayCeiling(item string, i int, seq uint64) {
	if it, ok := n.Item(item); ok && i >= 0 && i < len(it.shards) {
		it.shards[i].relayCeiling.Store(seq)
	}
}

// RelayLag is how many durable grabs the stream has not acknowledged yet
// (counted by sequence: a grab of several units counts once).
func (n *Node) RelayLag() int64 {
	var lag int64
	for _, it := range n.Items() {
		for _, ref := range it.shards {
			d, r := ref.durableSeq.Load(), max(ref.relayedSeq.Load(), ref.relayFloor.Load())
			if c := ref.relayCeiling.Load(); c > 0 && d >= c {
				d = c - 1
			}
			if d > r {
				lag += int64(d - r)
			}
		}
	}
	return lag
}

// Relayed counts grabs the relay has had acknowledged since start.
func (n *Node) Relayed() int64 { return n.relayed.Load() }

// DurableGrabs counts the grabs made durable here since start.
func (n *Node) DurableGrabs() int64 { return n.durableGrabs.Load() }

// Package persistence owns what seckill keeps on disk: items, their pool
// ledgers, shard counters, confirmed grabs and releases. It hides Pebble
// behind a few small role interfaces (in the manner of hashicorp/raft's
// LogStore and StableStore): the Journal that batches of records are
// appended to and grabs read back from, the State of items, pools, counters
// and relay cursors, and the Viewer of consistent read views. Store is all
// of them at once; Mem implements it in memory for actor tests and
// simulations. Beside them, the SnapshotStore keeps each shard's latest
// snapshot so that a shard can move between nodes: RedisSnapshots in
// Redis, MemSnapshots in memory.
package persistence

import (
	"encoding/binary"
	"errors"
	"fmt"

	"github.com/seckill/seckill/engine"
)

// GrabLog reads a shard's confirmed grabs and releases back, in sequence
// order.
type GrabLog interface {
	// ShardGrabs feeds fn each grab of a shard in sequence order.
	ShardGrabs(item string, shard int, fn func(engine.Grab) error) error
	// ShardReleases feeds fn the sequence of each released grab of a shard.
	ShardReleases(item string, shard int, fn func(seq uint64) error) error
	// GrabsAfter feeds fn up to max grabs of a shard with seq > after, in
	// order: the outbox the relay publishes from.
	GrabsAfter(item string, shard int, after uint64, max int, fn func(engine.Grab) error) error
}

// Journal appends batches of records durably, in order, and reads the
// grabs among them back. It is the only write path: a Batch also carries
// the records State reads, so that a grab and its shard's counters land
// together.
type Journal interface {
	GrabLog
	// Apply makes every record of b durable, all or none, in order, before
	// it returns. An error means none of them may be reported as durable.
	Apply(b *Batch) error
	// Submit starts making b durable and returns without waiting for the
	// disk, so that a caller can hand over the next batch while this one's
	// fdatasync runs; b may be reused once Submit returns. err means b was
	// not written. Otherwise wait blocks
	// until every record of b is durable (nil) or none may be reported
	// durable (an error); it must be called exactly once. Batches land in
	// the order submitted, and a failed sync fails every later one too
	// (Pebble's WAL errors are sticky), so waiting in submission order
	// never reports a batch durable after an earlier one failed. Readers
	// may see b's records before wait returns, as they may during Apply.
	Submit(b *Batch) (wait func() error, err error)
}

// State reads the latest value of each item, pool ledger, shard's counters
// and relay cursor: what a node starts from, not a history.
type State interface {
	// Items lists every item created, in id order.
	Items() ([]engine.ItemConfig, error)
	// Pool returns an item's pool ledger.
	Pool(item string) (engine.PoolState, error)
	// ShardCounters returns a shard's durable counters.
	ShardCounters(item string, shard int) (engine.Counters, error)
	// RelayCursor is the highest seq of a shard the relay has had
	// acknowledged by the stream (0 for none).
	RelayCursor(item string, shard int) (uint64, error)
}

// Reader reads everything back: what a read view offers.
type Reader interface {
	GrabLog
	State
}

// Viewer takes consistent read-only views.
type Viewer interface {
	// ReadView is a consistent read-only view as of now, for readers that
	// must not see half of what is written meanwhile (reconciliation);
	// release frees it. (Not a shard snapshot: nothing is copied out.)
	ReadView() (view Reader, release func())
}

// Store is every role at once: what a node runs on.
type Store interface {
	Journal
	State
	Viewer
	Close() error
}

// ErrClosed is returned by a store used after Close.
var ErrClosed = errors.New("store closed")

// ErrNoShard: the store holds no state of that shard (a clustered node
// that never ran it).
var ErrNoShard = errors.New("no state of that shard here")

// Kind names a record.
type Kind uint8

const (
	KindItem     Kind = iota + 1 // Item
	KindPool                     // Item, Pool
	KindCounters                 // Item, Shard, Counters
	KindGrab                     // Grab, Counters (the shard's, after it)
	KindRelease                  // Grab (item, shard, seq), Counters
	KindCursor                   // Item, Shard, Cursor
)

// Record is one durable fact. Which fields are set depends on Kind.
type Record struct {
	Kind     Kind
	Item     engine.ItemConfig
	Pool     engine.PoolState
	Shard    int
	Counters engine.Counters
	Grab     engine.Grab
	Cursor   uint64
}

// Batch collects records for one Apply, in decision order: when two
// records of one shard meet in a batch, the later one's counters win. A
// Batch is reused: Reset clears it without freeing its memory.
type Batch struct {
	Records []Record
	// Lazy lets Apply return before the records reach the disk: for
	// records whose loss in a crash is harmless (the relay cursor: a lost
	// advance only republishes, and writers dedupe by grab id). They are
	// still written in order with everything else.
	Lazy bool
}

// Len counts the records in the batch.
func (b *Batch) Len() int { return len(b.Records) }

// Reset empties the batch for reuse.
func (b *Batch) Reset() {
	clear(b.Records)
	b.Records, b.Lazy = b.Records[:0], false
}

// PutItem records a new item, its pool and every shard's initial counters.
func (b *Batch) PutItem(cfg engine.ItemConfig) {
	b.Records = append(b.Records, Record{Kind: KindItem, Item: cfg})
	b.PutPool(cfg.Item, engine.NewPool(cfg).State())
	for i := 0; i < cfg.Shards; i++ {
		b.PutCounters(cfg.Item, i, engine.Counters{Allocated: cfg.InitialAllocation(i), NextSeq: 1})
	}
}

// PutItemConfig records a clustered item's configuration alone: its pool
// lives in etcd, and a shard's counters are written where it first runs.
func (b *Batch) PutItemConfig(cfg engine.ItemConfig) {
	b.Records = append(b.Records, Record{Kind: KindItem, Item: cfg})
}

// PutPool records an item's pool ledger.
func (b *Batch) PutPool(item string, st engine.PoolState) {
	b.Records = append(b.Records, Record{Kind: KindPool, Item: engine.ItemConfig{Item: item}, Pool: st})
}

// PutCounters records a shard's counters on their own (refills, steals).
func (b *Batch) PutCounters(item string, shard int, c engine.Counters) {
	b.Records = append(b.Records, Record{Kind: KindCounters, Item: engine.ItemConfig{Item: item}, Shard: shard, Counters: c})
}

// PutGrab records a confirmed grab with its shard's counters.
func (b *Batch) PutGrab(g engine.Grab, c engine.Counters) {
	b.Records = append(b.Records, Record{Kind: KindGrab, Grab: g, Counters: c})
}

// PutRelease records that grab g was returned to stock, with its shard's
// counters after the release.
func (b *Batch) PutRelease(g engine.Grab, c engine.Counters) {
	b.Records = append(b.Records, Record{Kind: KindRelease, Grab: g, Counters: c})
}

// PutCursor records how far the relay has published a shard's grabs.
func (b *Batch) PutCursor(item string, shard int, seq uint64) {
	b.Records = append(b.Records, Record{Kind: KindCursor, Item: engine.ItemConfig{Item: item}, Shard: shard, Cursor: seq})
}

// encode calls set with the key and value of every record, in order. The
// slices passed to set are valid only during the call (set copies them).
//
// A shard's counters are written once per batch, from its last record that
// carries them: the batch is applied atomically, so the earlier ones would
// be overwritten before anyone could read them. That halves the writes of
// a batch of grabs.
func (b *Batch) encode(buf []byte, set func(k, v []byte) error) ([]byte, error) {
	type shardKey struct {
		item  string
		shard int
	}
	last := make(map[shardKey]int, 16)
	for i := range b.Records {
		switch r := &b.Records[i]; r.Kind {
		case KindCounters:
			last[shardKey{r.Item.Item, r.Shard}] = i
		case KindGrab, KindRelease:
			last[shardKey{r.Grab.Item, r.Grab.Shard}] = i
		}
	}
	var err error
	emit := func(start, keyEnd int) {
		if err == nil {
			err = set(buf[start:keyEnd], buf[keyEnd:])
		}
	}
	for i := range b.Records {
		r := &b.Records[i]
		s := len(buf)
		switch r.Kind {
		case KindItem:
			buf = itemKey(buf, r.Item.Item)
			k := len(buf)
			buf = encodeItem(buf, r.Item)
			emit(s, k)
		case KindPool:
			buf = poolKey(buf, r.Item.Item)
			k := len(buf)
			buf = encodePool(buf, r.Pool)
			emit(s, k)
		case KindCounters:
			if last[shardKey{r.Item.Item, r.Shard}] != i {
				continue
			}
			buf = countersKey(buf, r.Item.Item, r.Shard)
			k := len(buf)
			buf = encodeCounters(buf, r.Counters)
			emit(s, k)
		case KindCursor:
			buf = shardPrefix(buf, prefixCursor, r.Item.Item, r.Shard)
			k := len(buf)
			buf = binary.AppendUvarint(append(buf, valueVersion), r.Cursor)
			emit(s, k)
		case KindGrab, KindRelease:
			if r.Kind == KindGrab {
				buf = grabKey(buf, r.Grab.Item, r.Grab.Shard, r.Grab.Seq)
				k := len(buf)
				buf = encodeGrab(buf, r.Grab)
				emit(s, k)
			} else {
				buf = releaseKey(buf, r.Grab.Item, r.Grab.Shard, r.Grab.Seq)
				k := len(buf)
				buf = append(buf, valueVersion)
				emit(s, k)
			}
			if last[shardKey{r.Grab.Item, r.Grab.Shard}] == i {
				s = len(buf)
				buf = countersKey(buf, r.Grab.Item, r.Grab.Shard)
				k := len(buf)
				buf = encodeCounters(buf, r.Counters)
				emit(s, k)
			}
		default:
			return buf, fmt.Errorf("record %d: unknown kind %d", i, r.Kind)
		}
		if err != nil {
			return buf, err
		}
	}
	return buf, nil
}

package persistence

import (
	"bytes"
	"context"
	"errors"
	"fmt"
	"sync"
	"time"

	"github.com/seckill/seckill/engine"
)

// SnapshotStore keeps the latest snapshot of each shard, so that a shard
// can move: the old owner saves one in the background, on SIGTERM and as
// the last step of a move, and the new owner loads it (Akka Persistence's
// snapshot store; the Pebble journal stays each node's log). It is never
// the authority on stock: the ledger in etcd is.
//
// A save is ordered by (epoch, seq) (engine.ShardSnapshot.Newer): an older
// snapshot never overwrites a newer one, whatever order the writes arrive
// in.
type SnapshotStore interface {
	// SaveSnapshot stores s unless the stored snapshot of its shard is
	// newer (ErrStaleSnapshot) or has the same (epoch, seq) and other
	// contents (ErrSnapshotConflict). Saving the very snapshot stored
	// already succeeds and changes nothing, so a retry after a lost answer
	// is harmless.
	SaveSnapshot(ctx context.Context, s engine.ShardSnapshot) error
	// LoadSnapshot returns a shard's stored snapshot; ok is false when
	// there is none.
	LoadSnapshot(ctx context.Context, item string, shard int) (s engine.ShardSnapshot, ok bool, err error)
	// SnapshotMeta describes a shard's stored snapshot without reading it
	// (for the admin API); ok is false when there is none.
	SnapshotMeta(ctx context.Context, item string, shard int) (m SnapshotMeta, ok bool, err error)
}

// SnapshotMeta is what an operator sees of a stored snapshot.
type SnapshotMeta struct {
	Epoch uint64
	Seq   uint64 // engine.ShardSnapshot.Seq
	// SavedAtMs is when the store accepted it, by the store's clock (Redis
	// TIME), so that every node's saves are timed by one clock.
	SavedAtMs int64
	Bytes     int64 // encoded size
}

var (
	// ErrStaleSnapshot: the store holds a newer snapshot of the shard. A
	// background save racing a move's final one expects it; nothing is lost.
	ErrStaleSnapshot = errors.New("a newer snapshot of the shard is stored")
	// ErrSnapshotConflict: the store holds another snapshot with the same
	// (epoch, seq). Two incarnations diverged, or one snapshotted state
	// that was not durable: a bug, never a race to ignore.
	ErrSnapshotConflict = errors.New("another snapshot with the same epoch and seq is stored")
)

// snapshotVerdict is what a save finds, decided the same way by
// MemSnapshots and by the Lua script of RedisSnapshots.
type snapshotVerdict int

const (
	snapStale    snapshotVerdict = 0
	snapSaved    snapshotVerdict = 1
	snapSame     snapshotVerdict = 2
	snapConflict snapshotVerdict = 3
)

func snapshotSaveError(s engine.ShardSnapshot, v snapshotVerdict, storedEpoch, storedSeq uint64) error {
	switch v {
	case snapSaved, snapSame:
		return nil
	case snapStale:
		return fmt.Errorf("save snapshot %s.%d at (%d, %d): stored (%d, %d): %w",
			s.Item, s.Shard, s.Epoch, s.Seq(), storedEpoch, storedSeq, ErrStaleSnapshot)
	case snapConflict:
		return fmt.Errorf("save snapshot %s.%d at (%d, %d): %w", s.Item, s.Shard, s.Epoch, s.Seq(), ErrSnapshotConflict)
	}
	return fmt.Errorf("save snapshot %s.%d: unknown verdict %d", s.Item, s.Shard, v)
}

// MemSnapshots is a SnapshotStore in memory, with RedisSnapshots'
// semantics, for tests of the layers above. It keeps snapshots encoded so
// the codec runs in those tests too.
type MemSnapshots struct {
	mu sync.Mutex
	m  map[snapshotKey]memSnapshot
	// Now is the clock for SavedAtMs; nil means the wall clock.
	Now func() int64
}

type snapshotKey struct {
	item  string
	shard int
}

type memSnapshot struct {
	meta SnapshotMeta
	data []byte
}

// NewMemSnapshots returns an empty in-memory snapshot store (the zero
// MemSnapshots is one too).
func NewMemSnapshots() *MemSnapshots { return &MemSnapshots{m: make(map[snapshotKey]memSnapshot)} }

// SaveSnapshot stores s unless a newer or conflicting one is stored.
func (m *MemSnapshots) SaveSnapshot(ctx context.Context, s engine.ShardSnapshot) error {
	if err := ctx.Err(); err != nil {
		return err
	}
	if err := CheckShardSnapshot(s); err != nil {
		return fmt.Errorf("save: %w", err)
	}
	data := AppendShardSnapshot(nil, s)
	m.mu.Lock()
	defer m.mu.Unlock()
	if m.m == nil {
		m.m = make(map[snapshotKey]memSnapshot)
	}
	k := snapshotKey{s.Item, s.Shard}
	cur, ok := m.m[k]
	v := snapSaved
	switch {
	case !ok:
	case s.Epoch != cur.meta.Epoch:
		if s.Epoch < cur.meta.Epoch {
			v = snapStale
		}
	case s.Seq() < cur.meta.Seq:
		v = snapStale
	case s.Seq() == cur.meta.Seq && bytes.Equal(data, cur.data):
		v = snapSame
	case s.Seq() == cur.meta.Seq:
		v = snapConflict
	}
	if v == snapSaved {
		now := time.Now().UnixMilli()
		if m.Now != nil {
			now = m.Now()
		}
		m.m[k] = memSnapshot{meta: SnapshotMeta{Epoch: s.Epoch, Seq: s.Seq(), SavedAtMs: now, Bytes: int64(len(data))}, data: data}
	}
	return snapshotSaveError(s, v, cur.meta.Epoch, cur.meta.Seq)
}

// LoadSnapshot returns the stored snapshot of a shard.
func (m *MemSnapshots) LoadSnapshot(ctx context.Context, item string, shard int) (engine.ShardSnapshot, bool, error) {
	if err := ctx.Err(); err != nil {
		return engine.ShardSnapshot{}, false, err
	}
	m.mu.Lock()
	cur, ok := m.m[snapshotKey{item, shard}]
	m.mu.Unlock()
	if !ok {
		return engine.ShardSnapshot{}, false, nil
	}
	s, err := DecodeShardSnapshot(cur.data)
	if err != nil {
		return engine.ShardSnapshot{}, false, fmt.Errorf("load snapshot %s.%d: %w", item, shard, err)
	}
	return s, true, nil
}

// SnapshotMeta describes the stored snapshot of a shard.
func (m *MemSnapshots) SnapshotMeta(ctx context.Context, item string, shard int) (SnapshotMeta, bool, error) {
	if err := ctx.Err(); err != nil {
		return SnapshotMeta{}, false, err
	}
	m.mu.Lock()
	defer m.mu.Unlock()
	cur, ok := m.m[snapshotKey{item, shard}]
	return cur.meta, ok, nil
}

var (
	_ SnapshotStore = (*MemSnapshots)(nil)
	_ SnapshotStore = (*RedisSnapshots)(nil)
)

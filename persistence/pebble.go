package persistence

import (
	"errors"
	"fmt"
	"io"
	"sync"
	"sync/atomic"

	"github.com/cockroachdb/pebble/v2"
	"github.com/seckill/seckill/engine"
)

const (
	// pebbleMemTable is large enough that a sale's burst of grab records is
	// flushed in a few big memtables rather than many small ones.
	pebbleMemTable = 64 << 20
	// pebbleCache holds the working set of a few million grab records.
	pebbleCache = 128 << 20
)

// Pebble is the Store on local disk. The database handle stays inside: the
// key layout is this package's business.
type Pebble struct {
	pebbleReader
	db *pebble.DB

	// mu is held for reading from every Submit until its wait returns and
	// for writing by Close, so concurrent batches share fdatasyncs (Pebble's
	// group commit) and none runs on a closed database.
	mu     sync.RWMutex
	closed bool
	// fail is set once Pebble failed a write; guard refuses writes while
	// the disk is low (see disk.go).
	fail  *failure
	guard atomic.Pointer[DiskGuard]
}

var (
	_ Store = (*Pebble)(nil)
	_ Store = (*Mem)(nil)
)

// scratch holds encoded keys and values while a batch is built.
var scratch = sync.Pool{New: func() any { b := make([]byte, 0, 64<<10); return &b }}

// OpenPebble opens (creating if needed) the store in dir.
func OpenPebble(dir string) (*Pebble, error) {
	cache := pebble.NewCache(pebbleCache)
	defer cache.Unref()
	fail := &failure{name: "grabs"}
	db, err := pebble.Open(dir, &pebble.Options{
		FormatMajorVersion: pebble.FormatNewest,
		MemTableSize:       pebbleMemTable,
		Cache:              cache,
		Logger:             failLogger{fail},
	})
	if err != nil {
		return nil, fmt.Errorf("open pebble %s: %w", dir, err)
	}
	return &Pebble{pebbleReader: pebbleReader{db}, db: db, fail: fail}, nil
}

// Guard makes the store refuse writes while g says the disk is low.
func (p *Pebble) Guard(g *DiskGuard) { p.guard.Store(g) }

// Health is nil while the store takes writes, else why it does not: the
// disk below its reserve, or a write Pebble failed (until a restart).
func (p *Pebble) Health() error {
	if err := p.fail.get(); err != nil {
		return err
	}
	if err := p.guard.Load().Err(); err != nil {
		return fmt.Errorf("grabs: %w", err)
	}
	return nil
}

// Apply writes b in one batch and returns after Commit(pebble.Sync): the
// records are on disk (fdatasync) when it returns nil.
func (p *Pebble) Apply(b *Batch) error {
	wait, err := p.Submit(b)
	if err != nil {
		return err
	}
	return wait()
}

// Submit writes b to the WAL and memtable (pebble.DB.ApplyNoSyncWait) and
// returns a wait for its fdatasync. Pebble syncs every batch queued while
// one sync runs in the next, so a committer that keeps submitting while
// earlier batches sync pays about one and a half fdatasyncs per decision
// rather than two or more. Close waits for every outstanding wait.
func (p *Pebble) Submit(b *Batch) (wait func() error, err error) {
	if err := p.Health(); err != nil {
		return nil, err
	}
	p.mu.RLock()
	if p.closed {
		p.mu.RUnlock()
		return nil, ErrClosed
	}
	wb := p.db.NewBatch()
	fail := func(err error) (func() error, error) {
		wb.Close()
		p.mu.RUnlock()
		return nil, err
	}
	defer func() {
		if r := recover(); r != nil {
			p.fail.set(fmt.Errorf("pebble panicked: %v", r))
			wait, err = nil, p.fail.get()
			p.mu.RUnlock()
		}
	}()
	bp := scratch.Get().(*[]byte)
	buf, err := b.encode((*bp)[:0], func(k, v []byte) error { return wb.Set(k, v, nil) })
	*bp = buf[:0]
	scratch.Put(bp)
	if err != nil {
		return fail(err)
	}
	if b.Lazy {
		if err := wb.Commit(pebble.NoSync); err != nil {
			p.fail.set(err)
			return fail(fmt.Errorf("commit %d records: %w", b.Len(), err))
		}
		if err := p.fail.get(); err != nil { // Fatalf, then nil
			return fail(err)
		}
		wb.Close()
		p.mu.RUnlock()
		return func() error { return nil }, nil
	}
	n := b.Len()
	if err := p.db.ApplyNoSyncWait(wb, pebble.Sync); err != nil {
		p.fail.set(err)
		return fail(fmt.Errorf("commit %d records: %w", n, err))
	}
	if err := p.fail.get(); err != nil { // Fatalf, then nil: not written
		return fail(err)
	}
	return func() error {
		err := wb.SyncWait()
		wb.Close()
		p.mu.RUnlock()
		if err != nil {
			p.fail.set(err)
			return fmt.Errorf("sync %d records: %w", n, err)
		}
		return nil
	}, nil
}

// Items lists every item.
func (p pebbleReader) Items() ([]engine.ItemConfig, error) {
	lo := []byte{prefixItem}
	it, err := p.r.NewIter(&pebble.IterOptions{LowerBound: lo, UpperBound: prefixEnd(lo)})
	if err != nil {
		return nil, err
	}
	defer it.Close()
	var out []engine.ItemConfig
	for ok := it.First(); ok; ok = it.Next() {
		c, err := DecodeItem(string(it.Key()[1:]), it.Value())
		if err != nil {
			return nil, err
		}
		out = append(out, c)
	}
	return out, it.Error()
}

// Pool reads an item's pool ledger.
func (p pebbleReader) Pool(item string) (engine.PoolState, error) {
	v, closer, err := p.r.Get(poolKey(nil, item))
	if err != nil {
		return engine.PoolState{}, fmt.Errorf("load pool %s: %w", item, err)
	}
	defer closer.Close()
	st, err := DecodePool(v)
	if err != nil {
		return engine.PoolState{}, fmt.Errorf("load pool %s: %w", item, err)
	}
	return st, nil
}

// ShardReleases reads which grabs of a shard were released.
func (p pebbleReader) ShardReleases(item string, shard int, fn func(uint64) error) error {
	return p.scanShard(prefixRelease, item, shard, func(seq uint64, _ []byte) error { return fn(seq) })
}

// GrabsAfter reads up to max grabs of a shard after seq.
func (p pebbleReader) GrabsAfter(item string, shard int, after uint64, max int, fn func(engine.Grab) error) error {
	lo := grabKey(nil, item, shard, after+1)
	it, err := p.r.NewIter(&pebble.IterOptions{LowerBound: lo, UpperBound: prefixEnd(grabShardPrefix(nil, item, shard))})
	if err != nil {
		return err
	}
	defer it.Close()
	for ok, n := it.First(), 0; ok && n < max; ok, n = it.Next(), n+1 {
		_, _, seq, err := ParseGrabKey(it.Key())
		if err != nil {
			return err
		}
		g, err := DecodeGrab(item, shard, seq, it.Value())
		if err != nil {
			return err
		}
		if err := fn(g); err != nil {
			return err
		}
	}
	return it.Error()
}

// RelayCursor reads how far the relay has published a shard.
func (p pebbleReader) RelayCursor(item string, shard int) (uint64, error) {
	v, closer, err := p.r.Get(shardPrefix(nil, prefixCursor, item, shard))
	if errors.Is(err, pebble.ErrNotFound) {
		return 0, nil
	}
	if err != nil {
		return 0, err
	}
	defer closer.Close()
	return DecodeCursor(v)
}

// scanShard calls fn with the sequence and value of every key of one
// shard under prefix, in sequence order.
func (p pebbleReader) scanShard(prefix byte, item string, shard int, fn func(seq uint64, v []byte) error) error {
	lo := shardPrefix(nil, prefix, item, shard)
	it, err := p.r.NewIter(&pebble.IterOptions{LowerBound: lo, UpperBound: prefixEnd(lo)})
	if err != nil {
		return err
	}
	defer it.Close()
	for ok := it.First(); ok; ok = it.Next() {
		_, _, seq, err := ParseGrabKey(it.Key())
		if err != nil {
			return err
		}
		if err := fn(seq, it.Value()); err != nil {
			return err
		}
	}
	return it.Error()
}

// ShardCounters reads a shard's counters.
func (p pebbleReader) ShardCounters(item string, shard int) (engine.Counters, error) {
	v, closer, err := p.r.Get(countersKey(nil, item, shard))
	if errors.Is(err, pebble.ErrNotFound) {
		err = ErrNoShard
	}
	if err != nil {
		return engine.Counters{}, fmt.Errorf("load counters %s.%d: %w", item, shard, err)
	}
	defer closer.Close()
	c, err := DecodeCounters(v)
	if err != nil {
		return engine.Counters{}, fmt.Errorf("load counters %s.%d: %w", item, shard, err)
	}
	return c, nil
}

// ShardGrabs reads a shard's grabs in sequence order.
func (p pebbleReader) ShardGrabs(item string, shard int, fn func(engine.Grab) error) error {
	return p.scanShard(prefixGrab, item, shard, func(seq uint64, v []byte) error {
		g, err := DecodeGrab(item, shard, seq, v)
		if err != nil {
			return err
		}
		return fn(g)
	})
}

// Close flushes and closes the database. Apply after Close returns ErrClosed.
func (p *Pebble) Close() error {
	p.mu.Lock()
	defer p.mu.Unlock()
	if p.closed {
		return nil
	}
	p.closed = true
	return p.db.Close()
}

// pebbleGetIter is what both a database and a snapshot offer to readers.
type pebbleGetIter interface {
	Get(key []byte) ([]byte, io.Closer, error)
	NewIter(o *pebble.IterOptions) (*pebble.Iterator, error)
}

// pebbleReader reads records from a database or from one of its snapshots.
type pebbleReader struct{ r pebbleGetIter }

// ReadView returns a consistent view of the store as it is now (a Pebble
// snapshot), and the function that releases it.
func (p *Pebble) ReadView() (Reader, func()) {
	snap := p.db.NewSnapshot()
	return pebbleReader{snap}, func() { snap.Close() }
}

package persistence

import (
	"encoding/binary"
	"errors"
	"fmt"
	"io"
	"sync"
	"sync/atomic"

	"github.com/cockroachdb/pebble/v2"
	"github.com/cockroachdb/pebble/v2/vfs"
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
	dir string

	// mu is held for reading from every Submit until its wait returns, by
	// every read, and for writing by Close and a reopen, so concurrent
	// batches share fdatasyncs (Pebble's group commit) and none runs on a
	// closed database.
	mu     sync.RWMutex
	db     *pebble.DB // nil while a failed store could not be opened again
	closed bool
	writeHealth
	onReopen atomic.Pointer[func()]
	stop     chan struct{} // closed by Close: ends a reopen loop
}

var (
	_ Store = (*Pebble)(nil)
	_ Store = (*Mem)(nil)
)

// scratch holds encoded keys and values while a batch is built.
var scratch = sync.Pool{New: func() any { b := make([]byte, 0, 64<<10); return &b }}

// OpenPebble opens (creating if needed) the store in dir.
func OpenPebble(dir string) (*Pebble, error) {
	p := &Pebble{dir: dir, stop: make(chan struct{}), writeHealth: writeHealth{name: "grabs"}}
	f := p.newFailure()
	db, err := openGrabsDB(dir, f)
	if err != nil {
		return nil, err
	}
	p.db = db
	p.fail.Store(f)
	return p, nil
}

func openGrabsDB(dir string, f *failure) (*pebble.DB, error) {
	cache := pebble.NewCache(pebbleCache)
	defer cache.Unref()
	db, err := openDB(dir, &pebble.Options{
		FormatMajorVersion: pebble.FormatNewest,
		MemTableSize:       pebbleMemTable,
		Cache:              cache,
		Logger:             failLogger{f},
	})
	if err != nil {
		return nil, fmt.Errorf("open pebble %s: %w", dir, err)
	}
	return db, nil
}

// openDB opens a Pebble database of this package (the grab store, the
// order store): its WAL zero-filled ahead of its records (walFillFS) and
// warmed before anything is written (warmWAL).
func openDB(dir string, opts *pebble.Options) (*pebble.DB, error) {
	opts.FS = walFillFS{vfs.Default}
	db, err := pebble.Open(dir, opts)
	if err != nil {
		return nil, err
	}
	if err := warmWAL(db); err != nil {
		db.Close()
		return nil, err
	}
	return db, nil
}

// walWarmRecords is how many empty synced records warmWAL writes: Pebble
// preallocates a new WAL (110 % of the memtable) on the write after its
// first.
const walWarmRecords = 2

// warmWAL writes walWarmRecords empty records (LogData: WAL only, ignored
// on replay) with a sync each, so that the new WAL's preallocation and the
// fdatasync that makes it durable (3 ms here, against 0.2-0.4 ms for the
// syncs after it) happen at open, not under a sale's first grabs.
func warmWAL(db *pebble.DB) error {
	for range walWarmRecords {
		if err := db.LogData(nil, pebble.Sync); err != nil {
			return fmt.Errorf("warm the WAL: %w", err)
		}
	}
	return nil
}

// newFailure is the failure record of one opening of the database: its
// first failure starts the reopen loop.
func (p *Pebble) newFailure() *failure {
	return &failure{name: "grabs", onFail: func() { go reopenLoop(pebbleReopener{p}) }}
}

// OnReopen sets what runs once a failed store is open again, before it
// takes writes: the node reloads every shard and pool from disk there,
// since their memory may hold what the failed database showed but never
// wrote.
func (p *Pebble) OnReopen(fn func()) { p.onReopen.Store(&fn) }

// writeHealth is whether a store takes writes, for both Pebble stores:
// fail is set once Pebble failed a write, until the store is reopened;
// guard refuses writes while the disk is low (see disk.go).
type writeHealth struct {
	name  string // the store's name in Health's answer
	fail  atomic.Pointer[failure]
	guard atomic.Pointer[DiskGuard]
}

// Guard makes the store refuse writes while g says the disk is low.
func (w *writeHealth) Guard(g *DiskGuard) { w.guard.Store(g) }

// Health is nil while the store takes writes, else why it does not: the
// disk below its reserve, or a write Pebble failed (until a restart).
func (w *writeHealth) Health() error {
	if err := w.fail.Load().get(); err != nil {
		return err
	}
	if err := w.guard.Load().Err(); err != nil {
		return fmt.Errorf("%s: %w", w.name, err)
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
	fl := p.fail.Load()
	if err := fl.get(); err != nil || p.db == nil { // failed meanwhile, or being reopened
		p.mu.RUnlock()
		return nil, errors.Join(err, ErrStoreFailed)
	}
	wb := p.db.NewBatch()
	fail := func(err error) (func() error, error) {
		wb.Close()
		p.mu.RUnlock()
		return nil, err
	}
	defer func() {
		if r := recover(); r != nil {
			fl.set(fmt.Errorf("pebble panicked: %v", r))
			wait, err = nil, fl.get()
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
			fl.set(err)
			return fail(fmt.Errorf("commit %d records: %w", b.Len(), err))
		}
		if err := fl.get(); err != nil { // Fatalf, then nil
			return fail(err)
		}
		wb.Close()
		p.mu.RUnlock()
		return func() error { return nil }, nil
	}
	n := b.Len()
	if err := p.db.ApplyNoSyncWait(wb, pebble.Sync); err != nil {
		fl.set(err)
		return fail(fmt.Errorf("commit %d records: %w", n, err))
	}
	if err := fl.get(); err != nil { // Fatalf, then nil: not written
		return fail(err)
	}
	return func() error {
		err := wb.SyncWait()
		wb.Close()
		p.mu.RUnlock()
		if err != nil {
			fl.set(err)
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
		// Within the bounds every key is lo and a sequence: read it in
		// place (ParseGrabKey would copy the item out of every key).
		k := it.Key()
		var seq uint64
		if len(k) == len(lo)+8 {
			seq = binary.BigEndian.Uint64(k[len(lo):])
		}
		if seq == 0 {
			return fmt.Errorf("grab key %q: %w", k, errCorrupt)
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
	// A shard's grabs are read to be kept (a load, a reconcile): their
	// strings share a few large allocations instead of two each.
	var a strArena
	return p.scanShard(prefixGrab, item, shard, func(seq uint64, v []byte) error {
		g, err := decodeGrab(item, shard, seq, v, &a)
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
	close(p.stop)
	if p.db == nil {
		return nil
	}
	return p.db.Close()
}

// read runs fn on the database under the read lock.
func (p *Pebble) read(fn func(r pebbleReader) error) error {
	p.mu.RLock()
	defer p.mu.RUnlock()
	if p.closed {
		return ErrClosed
	}
	if p.db == nil {
		return errors.Join(p.fail.Load().get(), ErrStoreFailed)
	}
	return fn(pebbleReader{p.db})
}

// Items lists every item.
func (p *Pebble) Items() (out []engine.ItemConfig, err error) {
	err = p.read(func(r pebbleReader) (err error) { out, err = r.Items(); return err })
	return out, err
}

// Pool reads an item's pool ledger.
func (p *Pebble) Pool(item string) (st engine.PoolState, err error) {
	err = p.read(func(r pebbleReader) (err error) { st, err = r.Pool(item); return err })
	return st, err
}

// ShardCounters reads a shard's counters.
func (p *Pebble) ShardCounters(item string, shard int) (c engine.Counters, err error) {
	err = p.read(func(r pebbleReader) (err error) { c, err = r.ShardCounters(item, shard); return err })
	return c, err
}

// RelayCursor reads how far the relay has published a shard.
func (p *Pebble) RelayCursor(item string, shard int) (seq uint64, err error) {
	err = p.read(func(r pebbleReader) (err error) { seq, err = r.RelayCursor(item, shard); return err })
	return seq, err
}

// ShardGrabs reads a shard's grabs in sequence order.
func (p *Pebble) ShardGrabs(item string, shard int, fn func(engine.Grab) error) error {
	return p.read(func(r pebbleReader) error { return r.ShardGrabs(item, shard, fn) })
}

// ShardReleases reads which grabs of a shard were released.
func (p *Pebble) ShardReleases(item string, shard int, fn func(uint64) error) error {
	return p.read(func(r pebbleReader) error { return r.ShardReleases(item, shard, fn) })
}

// GrabsAfter reads up to max grabs of a shard after seq.
func (p *Pebble) GrabsAfter(item string, shard int, after uint64, max int, fn func(engine.Grab) error) error {
	return p.read(func(r pebbleReader) error { return r.GrabsAfter(item, shard, after, max, fn) })
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
// A reopen waits until every view is released.
func (p *Pebble) ReadView() (Reader, func()) {
	p.mu.RLock()
	if p.closed || p.db == nil {
		err := ErrClosed
		if !p.closed {
			err = errors.Join(p.fail.Load().get(), ErrStoreFailed)
		}
		p.mu.RUnlock()
		return errReader{err}, func() {}
	}
	snap := p.db.NewSnapshot()
	return pebbleReader{snap}, func() { snap.Close(); p.mu.RUnlock() }
}

// errReader is the view of a store that cannot be read: every read fails.
type errReader struct{ err error }

func (e errReader) Items() ([]engine.ItemConfig, error)   { return nil, e.err }
func (e errReader) Pool(string) (engine.PoolState, error) { return engine.PoolState{}, e.err }
func (e errReader) ShardCounters(string, int) (engine.Counters, error) {
	return engine.Counters{}, e.err
}
func (e errReader) RelayCursor(string, int) (uint64, error)                            { return 0, e.err }
func (e errReader) ShardGrabs(string, int, func(engine.Grab) error) error              { return e.err }
func (e errReader) ShardReleases(string, int, func(uint64) error) error                { return e.err }
func (e errReader) GrabsAfter(string, int, uint64, int, func(engine.Grab) error) error { return e.err }

// pebbleReopener is the grabs store as reopenLoop sees it.
type pebbleReopener struct{ p *Pebble }

func (r pebbleReopener) name() string             { return "grabs" }
func (r pebbleReopener) stopped() <-chan struct{} { return r.p.stop }
func (r pebbleReopener) guardErr() error          { return spaceErr(r.p.dir, r.p.guard.Load()) }
func (r pebbleReopener) tryLock() bool            { return r.p.mu.TryLock() }
func (r pebbleReopener) unlock()                  { r.p.mu.Unlock() }
func (r pebbleReopener) closeDB() error {
	db := r.p.db
	if db == nil {
		return nil
	}
	return db.Close()
}
func (r pebbleReopener) abandon() { r.p.db = nil }
func (r pebbleReopener) openDB() (func(), error) {
	if r.p.closed {
		return nil, ErrClosed
	}
	f := r.p.newFailure()
	db, err := openGrabsDB(r.p.dir, f)
	r.p.db = db // nil on error: reads fail until the next try
	if err != nil {
		return nil, err
	}
	return func() {
		if fn := r.p.onReopen.Load(); fn != nil {
			(*fn)()
		}
		r.p.fail.Store(f)
	}, nil
}

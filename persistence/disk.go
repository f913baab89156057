package persistence

import (
	"errors"
	"fmt"
	"log/slog"
	"sync"
	"sync/atomic"
	"syscall"
	"time"
)

// A full disk stops writes, never the node.
//
// Pebble v2.1.7 cannot be brought back in-process once its WAL failed to
// write: the WAL's error is sticky; the next commit that meets it panics
// inside the commit pipeline while holding its mutex (db.go commitWrite),
// after which Close deadlocks; a failed WAL rotation leaves the batch in the
// pipeline's pending queue, so every later commit waits forever to be
// published; and a failed synced Commit calls Logger.Fatalf ("fatal commit
// error") and then returns nil. So the stores keep Pebble from ever meeting
// a full disk: a DiskGuard watches the free space of the data directory's
// file system and, below a reserve (what the stores' next WAL rotation and
// memtable flush need, and the stream's share), writes are refused before
// they reach Pebble: grabs answer 503, order writers wait. When space is
// back the guard clears and writes go on; nothing was reopened because
// nothing failed. If Pebble fails all the same (the disk filled faster
// than the guard looks, an I/O error), the store is marked failed (its
// Fatalf no longer exits, a panic is recovered at the boundary), refuses
// writes and says why in Health; reads go on; a restart brings it back,
// losing nothing acknowledged (only synced records were).
const (
	// DiskCheckEvery is how often a guard reads the free space: at the
	// fastest sale measured here (about 10 MB/s of WAL) the disk fills at
	// most 1 MB between two looks, well inside the reserve.
	DiskCheckEvery = 100 * time.Millisecond
	// StoreReserveBytes is what one Pebble store needs free to go on
	// writing safely: its next WAL, which Pebble preallocates at 110% of
	// the memtable, and a flush of a full memtable, plus 8 MiB for the
	// MANIFEST and table-stat files.
	StoreReserveBytes = pebbleMemTable*11/10 + pebbleMemTable + 8<<20
)

// ErrDiskLow wraps every refusal of a write for want of disk space.
var ErrDiskLow = errors.New("disk space below the reserve")

// ErrStoreFailed wraps every refusal of a write by a store Pebble failed.
var ErrStoreFailed = errors.New("store failed")

// DiskGuard watches a directory's file system and says when its free
// space is below a reserve.
type DiskGuard struct {
	dir     string
	reserve uint64
	low     atomic.Pointer[error] // nil while space is enough
	stop    chan struct{}
	done    chan struct{}
	once    sync.Once
	log     *slog.Logger
}

// NewDiskGuard checks dir's free space at once and then every
// DiskCheckEvery until Close.
func NewDiskGuard(dir string, reserve uint64, log *slog.Logger) *DiskGuard {
	if log == nil {
		log = slog.Default()
	}
	g := &DiskGuard{dir: dir, reserve: reserve, stop: make(chan struct{}), done: make(chan struct{}), log: log}
	g.check()
	go g.run()
	return g
}

func (g *DiskGuard) run() {
	defer close(g.done)
	t := time.NewTicker(DiskCheckEvery)
	defer t.Stop()
	for {
		select {
		case <-g.stop:
			return
		case <-t.C:
			g.check()
		}
	}
}

func (g *DiskGuard) check() {
	avail, total, err := FreeBytes(g.dir)
	var low error
	switch {
	case err != nil:
		low = fmt.Errorf("%w: %s: %v", ErrDiskLow, g.dir, err)
	case avail < g.reserve:
		low = fmt.Errorf("%w: %s has %d MiB free of %d MiB, writes need %d MiB", ErrDiskLow, g.dir, avail>>20, total>>20, g.reserve>>20)
	}
	was := g.low.Load()
	switch {
	case low != nil && was == nil:
		g.log.Error("disk low: writes stop (grabs answer 503) until space is freed", "err", low)
	case low == nil && was != nil:
		g.log.Info("disk space back: writes go on", "dir", g.dir, "free_mib", avail>>20)
	}
	if low == nil {
		g.low.Store(nil)
	} else {
		g.low.Store(&low)
	}
}

// Err is nil while writes may go on, else why not.
func (g *DiskGuard) Err() error {
	if g == nil {
		return nil
	}
	if p := g.low.Load(); p != nil {
		return *p
	}
	return nil
}

// Close stops the guard.
func (g *DiskGuard) Close() {
	if g == nil {
		return
	}
	g.once.Do(func() { close(g.stop); <-g.done })
}

// FreeBytes is what an unprivileged writer may still use of dir's file
// system, and its size.
func FreeBytes(dir string) (avail, total uint64, err error) {
	var st syscall.Statfs_t
	if err := syscall.Statfs(dir, &st); err != nil {
		return 0, 0, err
	}
	return uint64(st.Bavail) * uint64(st.Bsize), uint64(st.Blocks) * uint64(st.Bsize), nil
}

// failure records the first error that made a Pebble store unusable for
// writes: a failed commit or sync, its Logger's Fatalf, or a panic.
type failure struct {
	name string
	err  atomic.Pointer[error]
	// onFail runs once, at the first failure.
	onFail func()
}

func (f *failure) set(err error) {
	e := fmt.Errorf("%w: %s: %v", ErrStoreFailed, f.name, err)
	if f.err.CompareAndSwap(nil, &e) {
		slog.Error("pebble store failed: writes refused until it is reopened", "store", f.name, "err", err)
		if f.onFail != nil {
			f.onFail()
		}
	}
}

func (f *failure) get() error {
	if f == nil {
		return nil
	}
	if p := f.err.Load(); p != nil {
		return *p
	}
	return nil
}

// recoverInto turns a panic from Pebble into the store's failure and the
// caller's error.
func (f *failure) recoverInto(errp *error) {
	if r := recover(); r != nil {
		err := fmt.Errorf("pebble panicked: %v", r)
		f.set(err)
		*errp = f.get()
	}
}

// Reopening a failed store.
const (
	// ReopenEvery is how often a failed store looks whether it can be
	// reopened (the guard says the disk has its reserve again).
	ReopenEvery = time.Second
	// StoreCloseWait bounds Close of a failed database before a reopen: a
	// commit pipeline Pebble left stuck (see above) never closes, and then
	// only a restart brings the store back.
	StoreCloseWait = 10 * time.Second
	// reopenLockPoll is how often a reopen tries to take the store's lock:
	// it never waits on it, so that readers are not held behind it.
	reopenLockPoll = 10 * time.Millisecond
)

// spaceErr is nil when a store in dir may be reopened: its guard says the
// disk has the reserve, or, without a guard, StoreReserveBytes are free.
func spaceErr(dir string, g *DiskGuard) error {
	if g != nil {
		return g.Err()
	}
	avail, _, err := FreeBytes(dir)
	if err != nil {
		return err
	}
	if avail < StoreReserveBytes {
		return ErrDiskLow
	}
	return nil
}

// reopener is a failed store as reopenLoop drives it.
type reopener interface {
	name() string
	stopped() <-chan struct{}
	guardErr() error
	tryLock() bool
	unlock()
	closeDB() error // under the lock
	abandon()       // under the lock: the database did not close
	// openDB opens the database again (under the lock) and returns what
	// makes it take writes, run after the lock is released.
	openDB() (activate func(), err error)
}

// reopenLoop brings a failed store back once the disk has its reserve: it
// closes the failed database and opens it again from disk, which holds
// every acknowledged write (only synced records were acknowledged) and
// maybe some that failed after reaching the file. Writes stay refused
// until activate: the caller's hook (the node reloading its shards) runs
// first.
func reopenLoop(r reopener) {
	log := slog.Default().With("store", r.name())
	for {
		select {
		case <-r.stopped():
			return
		case <-time.After(ReopenEvery):
		}
		if r.guardErr() != nil {
			continue
		}
		for !r.tryLock() {
			select {
			case <-r.stopped():
				return
			case <-time.After(reopenLockPoll):
			}
		}
		closed := make(chan error, 1)
		go func() { closed <- r.closeDB() }()
		select {
		case err := <-closed:
			log.Info("failed store closed, reopening", "close_err", err)
		case <-time.After(StoreCloseWait):
			r.abandon()
			r.unlock()
			log.Error("failed store does not close: restart the node to take writes again", "waited", StoreCloseWait)
			return
		}
		activate, err := r.openDB()
		r.unlock()
		if err != nil {
			log.Error("reopen failed, retrying", "err", err)
			select {
			case <-r.stopped():
				return
			default:
			}
			continue
		}
		activate()
		log.Info("store reopened: writes go on")
		return
	}
}

// failLogger is Pebble's Logger: info dropped, errors to slog, and Fatalf
// marks the store failed instead of exiting (Pebble's default) or
// panicking on a goroutine nobody can recover.
type failLogger struct{ f *failure }

func (failLogger) Infof(string, ...any) {}
func (failLogger) Errorf(format string, args ...any) {
	slog.Error("pebble", "msg", fmt.Sprintf(format, args...))
}
func (l failLogger) Fatalf(format string, args ...any) {
	l.f.set(fmt.Errorf(format, args...))
}

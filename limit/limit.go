// Package limit holds the front's token buckets: one per client address
// and one per buyer, each a golang.org/x/time/rate limiter, kept in a
// bounded table (a fixed number of tracked keys, the least recently seen
// evicted) so that a flood from many addresses costs a bounded amount of
// memory. The table is split in shards, each under its own lock, so that
// the front's connections rarely wait on each other.
package limit

import (
	"hash/maphash"
	"math"
	"sync"
	"time"

	"golang.org/x/time/rate"
)

const (
	// Shards splits a table: 64 locks keep two connections on the same
	// lock rare on a machine of many cores. On the 2-core build machine
	// one lock and 64 measure the same in BenchmarkAllow (100-150 ns a
	// call with 2 or 8 goroutines: the rate.Limiter's own lock and
	// arithmetic are the cost), so the split costs nothing there.
	Shards = 64
	// DefaultMaxTracked is how many keys a table tracks at most (per
	// table: addresses, buyers): about 160 bytes each, 10 MiB in all. An
	// evicted key starts again with a full bucket, so the bound must be
	// above the number of clients active within one refill of a bucket;
	// 65 536 is many times a sale's concurrent connections here.
	DefaultMaxTracked = 1 << 16
)

// Limiter is a bounded table of token buckets, one per key.
type Limiter[K comparable] struct {
	every rate.Limit
	burst int
	max   int // keys per shard
	seed  maphash.Seed
	sh    []shard[K]
}

type shard[K comparable] struct {
	mu   sync.Mutex
	m    map[K]*entry[K]
	head entry[K] // sentinel of the recency list: head.next is the newest
	_    [64]byte // keeps shards' locks on separate cache lines
}

type entry[K comparable] struct {
	key        K
	lim        *rate.Limiter
	prev, next *entry[K]
}

// New returns a table allowing perSec requests a second per key with
// bursts of burst, tracking at most maxTracked keys (rounded up to a
// multiple of Shards). perSec <= 0 allows everything.
func New[K comparable](perSec float64, burst, maxTracked int) *Limiter[K] {
	return newSharded[K](perSec, burst, maxTracked, Shards)
}

// newSharded is New with n shards (BenchmarkAllow compares).
func newSharded[K comparable](perSec float64, burst, maxTracked, n int) *Limiter[K] {
	if burst < 1 {
		burst = 1
	}
	per := (maxTracked + n - 1) / n
	if per < 1 {
		per = 1
	}
	l := &Limiter[K]{every: rate.Limit(perSec), burst: burst, max: per, seed: maphash.MakeSeed(), sh: make([]shard[K], n)}
	if perSec <= 0 {
		l.every = rate.Inf
	}
	for i := range l.sh {
		s := &l.sh[i]
		s.m = make(map[K]*entry[K])
		s.head.next, s.head.prev = &s.head, &s.head
	}
	return l
}

// Off reports whether the table allows everything (no limit set).
func (l *Limiter[K]) Off() bool { return l == nil || l.every == rate.Inf }

// Allow takes one token of k's bucket at now; when none is left it
// returns false and how long until one is.
func (l *Limiter[K]) Allow(k K, now time.Time) (bool, time.Duration) {
	if l.Off() {
		return true, 0
	}
	s := &l.sh[maphash.Comparable(l.seed, k)%uint64(len(l.sh))]
	s.mu.Lock()
	e, ok := s.m[k]
	if ok {
		s.unlink(e)
	} else {
		if len(s.m) >= l.max {
			old := s.head.prev
			s.unlink(old)
			delete(s.m, old.key)
		}
		e = &entry[K]{key: k, lim: rate.NewLimiter(l.every, l.burst)}
		s.m[k] = e
	}
	s.pushFront(e)
	lim := e.lim
	s.mu.Unlock()
	if lim.AllowN(now, 1) {
		return true, 0
	}
	// The time until one token is back at the bucket's rate.
	missing := 1 - lim.TokensAt(now)
	wait := time.Duration(math.Ceil(missing / float64(l.every) * float64(time.Second)))
	return false, max(wait, 0)
}

// Len is how many keys the table tracks now.
func (l *Limiter[K]) Len() int {
	n := 0
	for i := range l.sh {
		s := &l.sh[i]
		s.mu.Lock()
		n += len(s.m)
		s.mu.Unlock()
	}
	return n
}

// Cap is the most keys the table tracks.
func (l *Limiter[K]) Cap() int { return l.max * len(l.sh) }

func (s *shard[K]) unlink(e *entry[K]) {
	e.prev.next, e.next.prev = e.next, e.prev
	e.prev, e.next = nil, nil
}

func (s *shard[K]) pushFront(e *entry[K]) {
	e.next, e.prev = s.head.next, &s.head
	s.head.next.prev = e
	s.head.next = e
}

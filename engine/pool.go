package engine

import (
	"errors"
	"slices"
)

// PoolState is an item's durable pool record. Sent and Got are cumulative
// per shard, the pool's side of every transfer: the shard's side is its
// Received and Returned. A transfer is in flight while the two differ.
type PoolState struct {
	Stock int64   // the item's stock now (creation plus every change)
	Pool  int64   // units held by no shard
	Sent  []int64 // units sent to shard i, ever
	Got   []int64 // units received from shard i, ever
}

// ErrInsufficient is returned when a stock reduction asks for more than
// the pool holds.
var ErrInsufficient = errors.New("not enough unsold units")

// Pool is an item's stock that no shard holds yet, and the ledger of every
// transfer between it and the shards.
type Pool struct {
	cfg ItemConfig
	st  PoolState
}

// NewPool creates the pool of a new item: what the initial quota left.
func NewPool(cfg ItemConfig) *Pool {
	return &Pool{cfg: cfg, st: PoolState{
		Stock: cfg.Stock, Pool: cfg.InitialPool(),
		Sent: make([]int64, cfg.Shards), Got: make([]int64, cfg.Shards),
	}}
}

// RestorePool recreates a pool from its durable record.
func RestorePool(cfg ItemConfig, st PoolState) (*Pool, error) {
	if len(st.Sent) != cfg.Shards || len(st.Got) != cfg.Shards {
		return nil, errf("pool %s: %d/%d shard entries for %d shards", cfg.Item, len(st.Sent), len(st.Got), cfg.Shards)
	}
	p := &Pool{cfg: cfg, st: st}
	if err := p.Verify(); err != nil {
		return nil, err
	}
	return p, nil
}

// State returns a copy of the pool's record.
func (p *Pool) State() PoolState {
	st := p.st
	st.Sent = append([]int64(nil), p.st.Sent...)
	st.Got = append([]int64(nil), p.st.Got...)
	return st
}

// Available is the units in the pool.
func (p *Pool) Available() int64 { return p.st.Pool }

// Stock is the item's stock now.
func (p *Pool) Stock() int64 { return p.st.Stock }

// SentTo is the pool's cumulative count sent to shard i.
func (p *Pool) SentTo(i int) int64 { return p.st.Sent[i] }

// GotFrom is the pool's cumulative count received from shard i.
func (p *Pool) GotFrom(i int) int64 { return p.st.Got[i] }

// Grant sends up to want units to shard i. It returns the units granted
// and the cumulative total the shard must reach (its refill message). A
// grant that would break the ledger is refused (nothing granted).
func (p *Pool) Grant(i int, want int64) (granted, sentTotal int64) {
	n := min(want, p.st.Pool)
	if n <= 0 || i < 0 || i >= len(p.st.Sent) {
		return 0, p.sentTo(i)
	}
	next := p.st
	next.Pool -= n
	if !p.apply(next, i, n, 0) {
		return 0, p.st.Sent[i]
	}
	return n, p.st.Sent[i]
}

func (p *Pool) sentTo(i int) int64 {
	if i < 0 || i >= len(p.st.Sent) {
		return 0
	}
	return p.st.Sent[i]
}

// Receive takes units shard i gave back; returnedTotal is the shard's
// cumulative Returned. It returns how many units are new (zero for a return
// seen before, or one the ledger refuses).
func (p *Pool) Receive(i int, returnedTotal int64) int64 {
	if i < 0 || i >= len(p.st.Got) {
		return 0
	}
	diff := returnedTotal - p.st.Got[i]
	if diff <= 0 {
		return 0
	}
	next := p.st
	next.Pool += diff
	if !p.apply(next, i, 0, diff) {
		return 0
	}
	return diff
}

// ChangeStock adds units (delta > 0) to the pool, or takes unsold units
// (delta < 0) out of it; never more than the pool holds.
func (p *Pool) ChangeStock(delta int64) error {
	if p.st.Stock+delta > MaxStock || p.st.Stock+delta < 0 {
		return ErrBadStock
	}
	if delta < 0 && -delta > p.st.Pool {
		return ErrInsufficient
	}
	next := p.st
	next.Stock += delta
	next.Pool += delta
	if !p.apply(next, -1, 0, 0) {
		return ErrBroken
	}
	return nil
}

// ErrBroken: the step would break an invariant; it was refused and the
// state is unchanged. It is a bug: tests panic instead.
var ErrBroken = errors.New("refused: the step would break an invariant")

// apply checks next (the pool's scalars, with sent and got of shard i
// raised by dSent and dGot) against the ledger's invariants and only then
// makes it the pool's state: a step that would break one is refused,
// leaving the state as it was (the shard does the same).
func (p *Pool) apply(next PoolState, i int, dSent, dGot int64) bool {
	next.Sent, next.Got = p.st.Sent, p.st.Got
	if i >= 0 {
		next.Sent, next.Got = slices.Clone(p.st.Sent), slices.Clone(p.st.Got)
		next.Sent[i] += dSent
		next.Got[i] += dGot
	}
	if err := verifyPool(p.cfg, next); err != nil {
		if PanicOnBroken {
			panic(err)
		}
		return false
	}
	if i >= 0 {
		// Write in place: the clone was only for the check.
		p.st.Sent[i], p.st.Got[i] = next.Sent[i], next.Got[i]
		next.Sent, next.Got = p.st.Sent, p.st.Got
	}
	p.st = next
	return true
}

// Verify checks the pool's own ledger:
// Stock == Pool + initial quota + Σ Sent - Σ Got, and nothing negative.
func (p *Pool) Verify() error { return verifyPool(p.cfg, p.st) }

func verifyPool(cfg ItemConfig, st PoolState) error {
	sum := st.Pool + cfg.InitialQuota()
	for i := range st.Sent {
		if st.Sent[i] < 0 || st.Got[i] < 0 {
			return errf("pool %s: shard %d sent %d got %d", cfg.Item, i, st.Sent[i], st.Got[i])
		}
		sum += st.Sent[i] - st.Got[i]
	}
	if st.Pool < 0 || st.Stock < 0 || st.Stock > MaxStock || sum != st.Stock {
		return errf("pool %s ledger broken: stock %d, pool %d, accounted %d", cfg.Item, st.Stock, st.Pool, sum)
	}
	return nil
}

// InTransit is the units on their way between the pool and shard c's
// counters: sent and not yet received, or returned and not yet got.
func (p *Pool) InTransit(i int, c Counters) int64 {
	return p.st.Sent[i] - c.Received + c.Returned - p.st.Got[i]
}

// Balance is an item's whole stock, counted once.
type Balance struct {
	Stock, Pool, InTransit, ShardRemaining, Sold int64
}

// Remaining is every unsold unit: in shards, in the pool and in transit.
func (b Balance) Remaining() int64 { return b.ShardRemaining + b.Pool + b.InTransit }

// Check asserts conservation:
// Σ shard remaining + pool + in transit + sold == stock.
func (b Balance) Check() error {
	if b.InTransit < 0 || b.Remaining()+b.Sold != b.Stock {
		return errf("conservation broken: %+v", b)
	}
	return nil
}

// Account sums an item from its pool and its shards' counters.
func Account(p *Pool, shards []Counters) Balance {
	b := Balance{Stock: p.st.Stock, Pool: p.st.Pool}
	for i, c := range shards {
		b.InTransit += p.InTransit(i, c)
		b.ShardRemaining += c.Remaining()
		b.Sold += c.Sold
	}
	return b
}

// Recover completes every transfer that was in flight when the process
// stopped: sent units are received by their shard, returned units by the
// pool. Both sides are cumulative, so this is exact and idempotent. It
// reports which shards changed (their counters must be made durable,
// together with the pool).
func Recover(p *Pool, shards []*Shard) (changed []int, err error) {
	for i, s := range shards {
		c := s.Counters()
		if p.st.Sent[i] < c.Received || c.Returned < p.st.Got[i] {
			return nil, errf("item %s shard %d: received %d of %d sent, pool got %d of %d returned",
				p.cfg.Item, i, c.Received, p.st.Sent[i], p.st.Got[i], c.Returned)
		}
		if n, _, err := s.ApplyRefill(p.st.Sent[i]); err != nil {
			return nil, err
		} else if n > 0 {
			changed = append(changed, i)
		}
		p.Receive(i, c.Returned)
	}
	cs := make([]Counters, len(shards))
	for i, s := range shards {
		cs[i] = s.Counters()
	}
	b := Account(p, cs)
	if b.InTransit != 0 {
		return nil, errf("item %s: %d units still in transit after recovery", p.cfg.Item, b.InTransit)
	}
	return changed, b.Check()
}

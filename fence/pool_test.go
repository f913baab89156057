package fence

import (
	"encoding/json"
	"errors"
	"reflect"
	"slices"
	"sync"
	"sync/atomic"
	"testing"
	"time"

	clientv3 "go.etcd.io/etcd/client/v3"

	"github.com/seckill/seckill/engine"
)

// TestPoolLedgerVerify: the ledger's rules, without etcd. Each case
// changes a fresh ledger of a 1000-unit, 4-shard item (500 in the pool,
// 125 initially on each shard).
func TestPoolLedgerVerify(t *testing.T) {
	cfg := item("it", 1000, 4)
	for _, c := range []struct {
		name   string
		change func(l *PoolLedger)
		ok     bool
	}{
		{name: "fresh", change: func(*PoolLedger) {}, ok: true},
		{name: "a grant", change: func(l *PoolLedger) { l.Pool -= 30; l.Sent[1] += 30 }, ok: true},
		{name: "a give-back beyond the grants (the initial allocation)", change: func(l *PoolLedger) { l.Pool += 100; l.Got[2] += 100 }, ok: true},
		{name: "frozen units are part of the stock", change: func(l *PoolLedger) { l.Stock += 40; l.Frozen += 40 }, ok: true},
		{name: "frozen units taken from the pool's account", change: func(l *PoolLedger) { l.Pool -= 40; l.Frozen += 40 }, ok: true},
		{name: "a unit out of thin air", change: func(l *PoolLedger) { l.Pool++ }},
		{name: "a grant not taken from the pool", change: func(l *PoolLedger) { l.Sent[0] += 5 }},
		{name: "frozen units not accounted", change: func(l *PoolLedger) { l.Frozen += 5 }},
		{name: "negative frozen, conserved", change: func(l *PoolLedger) { l.Frozen = -5; l.Pool += 5 }},
		{name: "more frozen than stock", change: func(l *PoolLedger) { l.Frozen = l.Stock + 1 }},
		{name: "negative pool, conserved", change: func(l *PoolLedger) { l.Pool -= 501; l.Sent[0] += 501 }},
		{name: "negative got, conserved", change: func(l *PoolLedger) { l.Got[3] = -1; l.Pool-- }},
		{name: "stock above the limit, conserved", change: func(l *PoolLedger) { l.Stock += engine.MaxStock; l.Pool += engine.MaxStock }},
		{name: "a shard missing", change: func(l *PoolLedger) { l.Sent = l.Sent[:3]; l.Got = l.Got[:3] }},
		{name: "another item's ledger", change: func(l *PoolLedger) { l.Item = "other" }},
	} {
		l := newPoolLedger(cfg)
		c.change(&l)
		err := l.Verify(cfg)
		if c.ok && err != nil || !c.ok && err == nil {
			t.Fatalf("%s: %+v: %v", c.name, l, err)
		}
		if !c.ok {
			wantErr(t, c.name, err, ErrRefused)
		}
	}
}

// TestPoolLedgerState: the engine's view leaves the frozen units out and
// shares no slice with the ledger.
func TestPoolLedgerState(t *testing.T) {
	cfg := item("it", 1000, 4)
	l := newPoolLedger(cfg)
	l.Pool -= 40
	l.Frozen += 40
	st := l.State()
	if st.Stock != 960 || st.Pool != 460 || !slices.Equal(st.Sent, l.Sent) || !slices.Equal(st.Got, l.Got) {
		t.Fatalf("state %+v of %+v", st, l)
	}
	st.Sent[0]++
	if l.Sent[0] != 0 {
		t.Fatal("State shares Sent with the ledger")
	}
	if _, err := engine.RestorePool(cfg, st); err == nil {
		t.Fatal("a changed state still verifies")
	}
}

// created starts an etcd, joins nodes and creates cfg spread over them;
// it returns the nodes' leases.
func created(t *testing.T, cfg engine.ItemConfig, nodes ...string) (*Store, *clientv3.Client, map[string]*Lease) {
	t.Helper()
	cli := dial(t, startEtcd(t))
	s := New(cli)
	leases := make(map[string]*Lease)
	for _, n := range nodes {
		leases[n] = join(t, cli, n)
	}
	if _, err := s.CreateItem(ctxFor(t, 10*time.Second), cfg, nodes); err != nil {
		t.Fatal(err)
	}
	return s, cli, leases
}

// enginePool is the engine's pool over a loaded ledger.
func enginePool(t *testing.T, cfg engine.ItemConfig, l PoolLedger) *engine.Pool {
	t.Helper()
	p, err := engine.RestorePool(cfg, l.State())
	if err != nil {
		t.Fatal(err)
	}
	return p
}

// TestCommitPool: each step loads the ledger, lets the engine's pool
// change it, and commits over a revision with guards; afterwards the
// ledger holds the new state (and the frozen units it held), or is
// unchanged.
func TestCommitPool(t *testing.T) {
	t.Parallel() // each test runs its own etcd
	// Shards 0 and 2 on n1, 1 and 3 on n2, all at epoch 1.
	cfg := item("it", 1000, 4)
	s, cli, _ := created(t, cfg, "n1", "n2")
	ctx := ctxFor(t, 30*time.Second)
	var frozen int64 // the ledger's frozen units, carried by every commit
	// freeze does what a forced move would: 40 units leave the engine's view.
	freeze := func() {
		l, err := s.LoadPool(ctx, "it")
		if err != nil {
			t.Fatal(err)
		}
		l.Frozen, l.Stock = l.Frozen+40, l.Stock+40
		b, _ := json.Marshal(l)
		if _, err := cli.Put(ctx, poolKey("it"), string(b)); err != nil {
			t.Fatal(err)
		}
		frozen += 40
	}
	grant := func(i int, n int64) func(*engine.Pool, *engine.PoolState) {
		return func(p *engine.Pool, st *engine.PoolState) { p.Grant(i, n); *st = p.State() }
	}
	for _, c := range []struct {
		name   string
		before func()
		stale  bool // commit over the revision before the current one
		next   func(p *engine.Pool, st *engine.PoolState)
		guards []Guard
		err    error
	}{
		{name: "grant to shard 1, guarded", next: grant(1, 30), guards: []Guard{{1, 1}}},
		{name: "a give-back of shard 0, guarded", next: func(p *engine.Pool, st *engine.PoolState) { p.Receive(0, 20); *st = p.State() },
			guards: []Guard{{0, 1}}},
		{name: "a stock change, unguarded", next: func(p *engine.Pool, st *engine.PoolState) {
			if err := p.ChangeStock(100); err != nil {
				t.Fatal(err)
			}
			*st = p.State()
		}},
		{name: "over a stale revision", stale: true, next: grant(1, 5), guards: []Guard{{1, 1}}, err: ErrStale},
		{name: "guarded by another epoch", next: grant(1, 5), guards: []Guard{{1, 2}}, err: ErrStale},
		{name: "guarded by a moving shard", before: func() {
			if _, err := s.RequestMove(ctx, "it", 2, "n2"); err != nil {
				t.Fatal(err)
			}
		}, next: grant(2, 5), guards: []Guard{{2, 1}}, err: ErrStale},
		{name: "one guard of two stale", next: grant(1, 5), guards: []Guard{{1, 1}, {2, 1}}, err: ErrStale},
		{name: "guard of a shard the item lacks", next: grant(1, 5), guards: []Guard{{4, 1}}, err: errAny},
		{name: "Sent lowered", next: func(_ *engine.Pool, st *engine.PoolState) { st.Sent[1] -= 10; st.Pool += 10 }, err: ErrRefused},
		{name: "Got lowered", next: func(_ *engine.Pool, st *engine.PoolState) { st.Got[0] -= 5; st.Pool -= 5 }, err: ErrRefused},
		{name: "a unit out of thin air", next: func(_ *engine.Pool, st *engine.PoolState) { st.Pool++ }, err: ErrRefused},
		{name: "a shard missing", next: func(_ *engine.Pool, st *engine.PoolState) { st.Sent, st.Got = st.Sent[:3], st.Got[:3] }, err: ErrRefused},
		{name: "stock past the limit", next: func(_ *engine.Pool, st *engine.PoolState) { st.Stock += engine.MaxStock; st.Pool += engine.MaxStock },
			err: ErrRefused},
		{name: "frozen units carried over", before: freeze, next: grant(3, 10), guards: []Guard{{3, 1}}},
		{name: "a stock cut with frozen units", next: func(p *engine.Pool, st *engine.PoolState) {
			if err := p.ChangeStock(-50); err != nil {
				t.Fatal(err)
			}
			*st = p.State()
		}},
		{name: "the same guard twice", next: grant(3, 10), guards: []Guard{{3, 1}, {3, 1}}},
	} {
		if c.before != nil {
			c.before()
		}
		l, err := s.LoadPool(ctx, "it")
		if err != nil {
			t.Fatalf("%s: %v", c.name, err)
		}
		st := l.State()
		c.next(enginePool(t, cfg, l), &st)
		prev := l.Rev
		if c.stale {
			prev--
		}
		rev, err := s.CommitPool(ctx, "it", prev, st, c.guards)
		wantErrOrAny(t, c.name, err, c.err)
		after, lerr := s.LoadPool(ctx, "it")
		if lerr != nil || after.Frozen != frozen {
			t.Fatalf("%s: ledger %+v, %v; want %d frozen", c.name, after, lerr, frozen)
		}
		if err != nil {
			if after.Rev != l.Rev {
				t.Fatalf("%s: refused, yet the ledger changed: %+v", c.name, after)
			}
			continue
		}
		if got := after.State(); after.Rev != rev || rev <= l.Rev || !reflect.DeepEqual(got, st) {
			t.Fatalf("%s: stored %+v at %d, committed %+v at %d", c.name, got, after.Rev, st, rev)
		}
	}
}

// TestCommitPoolOneWinner: commits over the same revision race; exactly
// one is written, the others hear ErrStale.
func TestCommitPoolOneWinner(t *testing.T) {
	t.Parallel() // each test runs its own etcd
	const (
		rounds     = 5
		committers = 8
	)
	cfg := item("it", 10_000, committers)
	s, _, _ := created(t, cfg, "n1")
	ctx := ctxFor(t, 30*time.Second)
	for r := range rounds {
		l, err := s.LoadPool(ctx, "it")
		if err != nil {
			t.Fatal(err)
		}
		var wins, stale atomic.Int32
		var wg sync.WaitGroup
		for i := range committers {
			p := enginePool(t, cfg, l)
			p.Grant(i, 7)
			wg.Go(func() {
				_, err := s.CommitPool(ctx, "it", l.Rev, p.State(), []Guard{{i, 1}})
				switch {
				case err == nil:
					wins.Add(1)
				case errors.Is(err, ErrStale):
					stale.Add(1)
				default:
					t.Errorf("round %d, committer %d: %v", r, i, err)
				}
			})
		}
		wg.Wait()
		if wins.Load() != 1 || stale.Load() != committers-1 {
			t.Fatalf("round %d: %d written, %d stale", r, wins.Load(), stale.Load())
		}
	}
	l, err := s.LoadPool(ctx, "it")
	if err != nil || l.Pool != cfg.Stock-rounds*7 { // every unit starts in the pool (clusterPoolLedger)
		t.Fatalf("after %d rounds: %+v, %v", rounds, l, err)
	}
}

// TestCommitPoolGuardVsMove: a committer grants to shard 0 guarded by its
// epoch, over and over, while the shard moves. No commit is written after
// the move: each written revision is below the move's.
func TestCommitPoolGuardVsMove(t *testing.T) {
	t.Parallel() // each test runs its own etcd
	const moves = 4
	cfg := item("it", 1_000_000, 1)
	s, _, _ := created(t, cfg, "n1", "n2")
	ctx := ctxFor(t, 60*time.Second)
	nodes := [2]string{"n1", "n2"}
	for m := range moves {
		epoch := uint64(m + 1)
		firstWritten := make(chan struct{})
		var written []int64
		done := make(chan error, 1)
		go func() {
			for {
				l, err := s.LoadPool(ctx, "it")
				if err != nil {
					done <- err
					return
				}
				p, err := engine.RestorePool(cfg, l.State())
				if err != nil {
					done <- err
					return
				}
				p.Grant(0, 1)
				rev, err := s.CommitPool(ctx, "it", l.Rev, p.State(), []Guard{{0, epoch}})
				if errors.Is(err, ErrStale) {
					done <- nil // the only committer: only the guard goes stale
					return
				}
				if err != nil {
					done <- err
					return
				}
				if written = append(written, rev); len(written) == 1 {
					close(firstWritten)
				}
			}
		}()
		select {
		case <-firstWritten:
		case err := <-done:
			t.Fatalf("move %d: the committer stopped before its first commit: %v", m, err)
		}
		moved, err := s.Move(ctx, "it", 0, nodes[m%2], nodes[(m+1)%2])
		if err != nil {
			t.Fatal(err)
		}
		if err := <-done; err != nil {
			t.Fatal(err)
		}
		if last := written[len(written)-1]; last >= moved.ModRev || moved.Epoch != epoch+1 {
			t.Fatalf("move %d: a commit guarded by @%d written at %d, the move to @%d at %d", m, epoch, last, moved.Epoch, moved.ModRev)
		}
	}
}

// TestPoolLedgerRebase: what a forced move does to the pool ledger, without
// etcd. The item has 1000 units on 4 shards (125 each at creation); the
// pool sent shard 0 30 units and got 10 back, so it counts 145 there.
func TestPoolLedgerRebase(t *testing.T) {
	cfg := item("it", 1000, 4)
	base := newPoolLedger(cfg)
	base.Sent[0], base.Got[0], base.Pool = 30, 10, base.Pool-20
	for _, c := range []struct {
		name  string
		shard int
		start engine.Counters
		freed int64 // the units frozen
		err   error
	}{
		{name: "a snapshot in step, all sold", start: engine.Counters{Allocated: 145, Sold: 145, Received: 30, Returned: 10}},
		{name: "a refill the snapshot missed, 7 unsold given back",
			start: engine.Counters{Allocated: 128, Sold: 128, Received: 20, Returned: 17}, freed: 17},
		{name: "a refill and a give-back the snapshot missed: Sent and Got go down",
			start: engine.Counters{Allocated: 139, Sold: 139, Received: 20, Returned: 6}, freed: 6},
		{name: "nothing sold", start: engine.Counters{Received: 30, Returned: 155}, freed: 145},
		{name: "another shard, untouched", shard: 3, start: engine.Counters{Allocated: 100, Sold: 100, Returned: 25}, freed: 25},
		{name: "unsold units kept", start: engine.Counters{Allocated: 145, Sold: 140, Received: 30, Returned: 10}, err: ErrRefused},
		{name: "counters against the shard's rule", start: engine.Counters{Allocated: 100, Sold: 100, Received: 30, Returned: 10},
			err: ErrRefused},
		{name: "more than the pool counts at the shard", start: engine.Counters{Allocated: 150, Sold: 150, Received: 30, Returned: 5},
			err: ErrRefused},
		{name: "negative received", start: engine.Counters{Allocated: 115, Sold: 115, Received: -10}, err: ErrRefused},
		{name: "a shard the item lacks", shard: 4, start: engine.Counters{}, err: ErrRefused},
	} {
		l := base
		l.Sent, l.Got = slices.Clone(base.Sent), slices.Clone(base.Got)
		err := l.rebase(cfg, c.shard, c.start)
		wantErr(t, c.name, err, c.err)
		if err != nil {
			continue
		}
		if l.Frozen != c.freed || l.Stock != base.Stock || l.Pool != base.Pool ||
			l.Sent[c.shard] != c.start.Received || l.Got[c.shard] != c.start.Returned {
			t.Fatalf("%s: %+v, want %d frozen and shard %d at %d sent, %d got", c.name, l, c.freed, c.shard, c.start.Received, c.start.Returned)
		}
		// The engine's view verifies, and the new incarnation's counters
		// match the pool's: nothing in transit.
		p := enginePool(t, cfg, l)
		if n := p.InTransit(c.shard, c.start); n != 0 {
			t.Fatalf("%s: %d units in transit", c.name, n)
		}
	}
}

// TestForceMoveRebasesPool: a forced move writes the placement and the
// rebased pool ledger in one transaction, or neither.
func TestForceMoveRebasesPool(t *testing.T) {
	t.Parallel() // each test runs its own etcd
	// 1000 units on 4 shards, all on n1: an initial allocation of 125
	// each, counted as given back at creation (all 1000 in the pool).
	cfg := item("it", 1000, 4)
	s, cli, leases := created(t, cfg, "n1")
	ctx := ctxFor(t, 30*time.Second)
	l, err := s.LoadPool(ctx, "it")
	if err != nil {
		t.Fatal(err)
	}
	p := enginePool(t, cfg, l)
	p.Grant(0, 30)
	p.Receive(0, 135) // 10 back: the pool counts 125+30-135 = 20 at shard 0
	if _, err := s.CommitPool(ctx, "it", l.Rev, p.State(), []Guard{{0, 1}}); err != nil {
		t.Fatal(err)
	}
	if _, err := s.Attach(ctx, "it", 9, "n1"); err != nil { // a placement beyond the item's shards
		t.Fatal(err)
	}
	join(t, cli, "n2")
	expire(t, cli, leases["n1"])
	for _, c := range []struct {
		name  string
		shard int
		start engine.Counters
		err   error
		moved bool
		freed int64 // frozen units afterwards
	}{
		{name: "start with unsold units", start: engine.Counters{Allocated: 20, Sold: 10, Received: 30, Returned: 135}, err: ErrRefused},
		{name: "start holding more than the pool counts", start: engine.Counters{Allocated: 25, Sold: 25, Received: 30, Returned: 130},
			err: ErrRefused},
		{name: "a placement beyond the item's shards", shard: 9, err: ErrRefused},
		{name: "a snapshot that missed a refill: 7 frozen", start: engine.Counters{Allocated: 13, Sold: 13, Received: 20, Returned: 132},
			moved: true, freed: 7},
		{name: "the same shard again: its owner lives", start: engine.Counters{Allocated: 13, Sold: 13, Received: 20, Returned: 132},
			err: ErrOwnerAlive, moved: true, freed: 7},
		{name: "another shard, nothing sold", shard: 1, start: engine.Counters{Returned: 125}, moved: true, freed: 7},
	} {
		before, err := s.LoadPool(ctx, "it")
		if err != nil {
			t.Fatal(err)
		}
		moved, err := s.ForceMove(ctx, "it", c.shard, "n2", c.start)
		wantErr(t, c.name, err, c.err)
		after, lerr := s.LoadPool(ctx, "it")
		ps, perr := s.Placement(ctx, "it")
		if lerr != nil || perr != nil || after.Frozen != c.freed || after.Stock != before.Stock || after.Pool != before.Pool {
			t.Fatalf("%s: ledger %+v (%v, %v), want %d frozen; before %+v", c.name, after, lerr, perr, c.freed, before)
		}
		var placed Placement
		for _, p := range ps {
			if p.Shard == c.shard {
				placed = p
			}
		}
		if want := (Placement{Shard: c.shard, Node: "n1", Epoch: 1, State: Active}); !c.moved && unstamped(placed) != want {
			t.Fatalf("%s: placement %+v, want %+v", c.name, placed, want)
		}
		if err != nil {
			if after.Rev != before.Rev {
				t.Fatalf("%s: refused, yet the ledger changed", c.name)
			}
			continue
		}
		if want := (Placement{Shard: c.shard, Node: "n2", Epoch: 2, State: Active, Forced: true, ModRev: after.Rev}); moved != want || placed != want {
			t.Fatalf("%s: returned %+v, stored %+v, want %+v (one transaction with the ledger)", c.name, moved, placed, want)
		}
		if after.Sent[c.shard] != c.start.Received || after.Got[c.shard] != c.start.Returned {
			t.Fatalf("%s: shard %d sent %d got %d, want %d, %d", c.name, c.shard, after.Sent[c.shard], after.Got[c.shard],
				c.start.Received, c.start.Returned)
		}
		if n := enginePool(t, cfg, after).InTransit(c.shard, c.start); n != 0 {
			t.Fatalf("%s: %d units in transit", c.name, n)
		}
	}
}

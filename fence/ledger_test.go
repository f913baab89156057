package fence

import (
	"errors"
	"math/rand/v2"
	"sync"
	"sync/atomic"
	"testing"
	"time"
)

// placed starts an etcd with node n1 and an item whose shards are all
// attached to n1 at epoch 1.
func placed(t *testing.T, item string, stock int64, shards int) (*Store, string) {
	t.Helper()
	url := startEtcd(t)
	cli := dial(t, url)
	s := New(cli)
	join(t, cli, "n1")
	ctx := ctxFor(t, 10*time.Second)
	if err := s.CreateLedger(ctx, item, stock); err != nil {
		t.Fatal(err)
	}
	for i := range shards {
		if _, err := s.Attach(ctx, item, i, "n1"); err != nil {
			t.Fatal(err)
		}
	}
	return s, url
}

// TestConcurrentGrantsNeverExceedStock: 16 goroutines on 4 shards grant
// and give back until the pool is empty, while a reader checks the ledger
// at every read.
func TestConcurrentGrantsNeverExceedStock(t *testing.T) {
	const (
		stock   = 2000
		shards  = 4
		workers = 16
		rounds  = 30
	)
	s, _ := placed(t, "hot", stock, shards)
	type shardState struct {
		mu             sync.Mutex
		held, returned int64 // what the shard holds, and its cumulative give-backs
	}
	var st [shards]shardState
	var granted, returned atomic.Int64
	ctx := ctxFor(t, 60*time.Second)

	stopReader := make(chan struct{})
	readerDone := make(chan error, 1)
	go func() {
		reads := 0
		for {
			select {
			case <-stopReader:
				if reads == 0 {
					readerDone <- errors.New("no read")
				}
				readerDone <- nil
				return
			default:
			}
			l, err := s.Ledger(ctx, "hot")
			if err == nil && (l.Outstanding() > l.Stock || l.Stock != stock) {
				err = errors.New("outstanding above stock")
			}
			if err != nil {
				readerDone <- err
				return
			}
			reads++
		}
	}()

	grant := func(i int) int64 {
		n, _, err := s.Grant(ctx, "hot", i, 1, 1+rand.Int64N(20))
		if err != nil {
			t.Errorf("grant shard %d: %v", i, err)
		}
		st[i].mu.Lock()
		st[i].held += n
		st[i].mu.Unlock()
		granted.Add(n)
		return n
	}
	giveBack := func(i int) {
		sh := &st[i]
		sh.mu.Lock() // the shard's returns are one sequence of cumulative totals
		defer sh.mu.Unlock()
		n := sh.held / 2
		if n == 0 {
			return
		}
		got, err := s.Return(ctx, "hot", i, 1, sh.returned+n)
		if err != nil || got != n {
			t.Errorf("return %d on shard %d: got %d, %v", n, i, got, err)
			return
		}
		sh.held -= n
		sh.returned += n
		returned.Add(n)
	}
	var wg sync.WaitGroup
	for w := range workers {
		wg.Go(func() {
			i := w % shards
			for r := range rounds {
				grant(i)
				if r%3 == 2 {
					giveBack(i)
				}
			}
			for grant(i) > 0 { // drain: the pool ends empty
			}
		})
	}
	wg.Wait()
	close(stopReader)
	if err := <-readerDone; err != nil {
		t.Fatalf("reader: %v", err)
	}
	l, err := s.Ledger(ctx, "hot")
	if err != nil {
		t.Fatal(err)
	}
	out := granted.Load() - returned.Load()
	if l.Pool != 0 || out != stock || l.Outstanding() != out {
		t.Fatalf("end: pool %d, outstanding %d, callers hold %d, stock %d", l.Pool, l.Outstanding(), out, stock)
	}
	for i := range shards {
		in := l.Incarnation(i, 1)
		if in.Granted-in.Returned != st[i].held || in.Returned != st[i].returned {
			t.Fatalf("shard %d: ledger %+v, shard holds %d returned %d", i, in, st[i].held, st[i].returned)
		}
	}
}

func TestLedgerRules(t *testing.T) {
	t.Parallel() // each test runs its own etcd
	s, url := placed(t, "it", 100, 2)
	cli := dial(t, url)
	join(t, cli, "n2")
	ctx := ctxFor(t, 20*time.Second)
	type op struct {
		name    string
		do      func() (int64, error)
		want    int64
		err     error
		pool    int64 // the ledger's pool afterwards
		granted int64 // shard 0 epoch 1's cumulative grant afterwards
	}
	grant := func(shard int, epoch uint64, want int64) func() (int64, error) {
		return func() (int64, error) { n, _, err := s.Grant(ctx, "it", shard, epoch, want); return n, err }
	}
	ret := func(shard int, epoch uint64, total int64) func() (int64, error) {
		return func() (int64, error) { return s.Return(ctx, "it", shard, epoch, total) }
	}
	none := func(f func() error) func() (int64, error) { return func() (int64, error) { return 0, f() } }
	for _, o := range []op{
		{name: "grant", do: grant(0, 1, 30), want: 30, pool: 70, granted: 30},
		{name: "grant more than the pool holds", do: grant(1, 1, 90), want: 70, pool: 0, granted: 30},
		{name: "grant from an empty pool", do: grant(0, 1, 5), want: 0, pool: 0, granted: 30},
		{name: "return", do: ret(0, 1, 10), want: 10, pool: 10, granted: 30},
		{name: "the same return again", do: ret(0, 1, 10), want: 0, pool: 10, granted: 30},
		{name: "an older return, delayed", do: ret(0, 1, 4), want: 0, pool: 10, granted: 30},
		{name: "return more than was granted", do: ret(0, 1, 31), err: ErrRefused, pool: 10, granted: 30},
		{name: "return by an incarnation never granted", do: ret(0, 7, 1), err: ErrRefused, pool: 10, granted: 30},
		{name: "grant to an epoch never placed", do: grant(0, 2, 5), err: ErrStale, pool: 10, granted: 30},
		{name: "take more stock than the pool holds", do: none(func() error { return s.ChangeStock(ctx, "it", -11) }),
			err: ErrInsufficient, pool: 10, granted: 30},
		{name: "take unsold stock", do: none(func() error { return s.ChangeStock(ctx, "it", -5) }), pool: 5, granted: 30},
		{name: "add stock", do: none(func() error { return s.ChangeStock(ctx, "it", 20) }), pool: 25, granted: 30},
		{name: "move shard 0 to n2", do: none(func() error { _, err := s.Move(ctx, "it", 0, "n1", "n2"); return err }),
			pool: 25, granted: 30},
		{name: "grant to the stale epoch after the move", do: grant(0, 1, 5), err: ErrStale, pool: 25, granted: 30},
		{name: "the stale epoch still gives back", do: ret(0, 1, 30), want: 20, pool: 45, granted: 30},
		{name: "grant to the new epoch", do: grant(0, 2, 5), want: 5, pool: 40, granted: 30},
		{name: "freeze shard 1", do: none(func() error { return s.Freeze(ctx, "it", 1, 1) }), pool: 40, granted: 30},
		{name: "grant to the frozen incarnation", do: grant(1, 1, 5), err: ErrFrozen, pool: 40, granted: 30},
		{name: "the frozen incarnation gives back", do: ret(1, 1, 70), want: 70, pool: 110, granted: 30},
	} {
		n, err := o.do()
		wantErr(t, o.name, err, o.err)
		if n != o.want {
			t.Fatalf("%s: %d units, want %d", o.name, n, o.want)
		}
		l, err := s.Ledger(ctx, "it")
		if err != nil || l.Pool != o.pool || l.Incarnation(0, 1).Granted != o.granted {
			t.Fatalf("%s: ledger %+v, %v; want pool %d, shard 0@1 granted %d", o.name, l, err, o.pool, o.granted)
		}
	}
}

// TestSecondActivation: two clients act as shard 0, one at epoch 1 and
// one at epoch 2, both asking for units all the time; the shard moves
// while they ask. After the move commits, epoch 1 never gets another unit.
func TestSecondActivation(t *testing.T) {
	t.Parallel() // each test runs its own etcd
	s, url := placed(t, "it", 1_000_000, 1)
	cli := dial(t, url)
	join(t, cli, "n2")
	old, next := New(dial(t, url)), New(dial(t, url)) // two processes' clients
	ctx := ctxFor(t, 30*time.Second)

	var stop atomic.Bool
	var oldUnits, nextUnits atomic.Int64
	asker := func(s *Store, epoch uint64, units *atomic.Int64) {
		for !stop.Load() {
			n, _, err := s.Grant(ctx, "it", 0, epoch, 3)
			if err != nil && !errors.Is(err, ErrStale) {
				t.Errorf("grant @%d: %v", epoch, err)
				return
			}
			units.Add(n)
		}
	}
	var wg sync.WaitGroup
	wg.Go(func() { asker(old, 1, &oldUnits) })
	wg.Go(func() { asker(next, 2, &nextUnits) })
	for oldUnits.Load() < 30 { // let epoch 1 sell a little first
		time.Sleep(time.Millisecond)
	}
	if _, err := s.Move(ctx, "it", 0, "n1", "n2"); err != nil {
		t.Fatal(err)
	}
	l, err := s.Ledger(ctx, "it")
	if err != nil {
		t.Fatal(err)
	}
	atMove := l.Incarnation(0, 1).Granted
	for nextUnits.Load() < 30 { // epoch 2 sells while epoch 1 keeps asking
		time.Sleep(time.Millisecond)
	}
	stop.Store(true)
	wg.Wait()
	l, err = s.Ledger(ctx, "it")
	if err != nil {
		t.Fatal(err)
	}
	if got := l.Incarnation(0, 1).Granted; got != atMove || got != oldUnits.Load() {
		t.Fatalf("epoch 1 granted %d, %d at the move, its client counted %d", got, atMove, oldUnits.Load())
	}
	if got := l.Incarnation(0, 2).Granted; got != nextUnits.Load() || got == 0 {
		t.Fatalf("epoch 2 granted %d, its client counted %d", got, nextUnits.Load())
	}
}

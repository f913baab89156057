package fence

import (
	"context"
	"errors"
	"slices"
	"testing"
	"time"

	"github.com/seckill/seckill/engine"
)

// errAny stands in a table for an error that has no sentinel.
var errAny = errors.New("any error")

func wantErrOrAny(t *testing.T, what string, err, want error) {
	t.Helper()
	if want == errAny {
		if err == nil {
			t.Fatalf("%s: no error", what)
		}
		return
	}
	wantErr(t, what, err, want)
}

// item is a valid config with every field set.
func item(id string, stock int64, shards int) engine.ItemConfig {
	return engine.ItemConfig{Item: id, Stock: stock, Shards: shards, PerUserLimit: 2,
		StartsAtMs: 1_000, EndsAtMs: 2_000_000, PaymentWindowMs: 60_000}
}

// TestCreateItem: each case creates (or fails to create) an item and
// checks what etcd holds afterwards: the record, the pool ledger and the
// placements, all written by one transaction or not at all.
func TestCreateItem(t *testing.T) {
	t.Parallel() // each test runs its own etcd
	cli := dial(t, startEtcd(t))
	s := New(cli)
	join(t, cli, "n1")
	ctx := ctxFor(t, 30*time.Second)
	if _, err := s.Attach(ctx, "squatted", 3, "n1"); err != nil { // a placement left by the older API
		t.Fatal(err)
	}
	noItems, _, err := s.Items(ctx)
	if err != nil || len(noItems) != 0 {
		t.Fatalf("items before any: %v, %v", noItems, err)
	}
	for _, c := range []struct {
		name    string
		cfg     engine.ItemConfig
		nodes   []string
		err     error
		created bool // the item exists afterwards, as cfg
	}{
		{name: "spread over two nodes", cfg: item("a", 1001, 5), nodes: []string{"n1", "n2"}, created: true},
		{name: "the same id again", cfg: item("a", 7, 1), nodes: []string{"n1"}, err: ErrItemExists},
		{name: "an id with a placement but no record", cfg: item("squatted", 10, 4), nodes: []string{"n1"}, err: ErrItemExists},
		{name: "defaults: no window, default payment", cfg: engine.ItemConfig{Item: "b", Stock: 0, Shards: 1, PerUserLimit: 1},
			nodes: []string{"n1"}, created: true},
		{name: "the most shards one transaction places", cfg: item("wide", 100_000, MaxShardsPerItemTxn),
			nodes: []string{"n1", "n2", "n3"}, created: true},
		{name: "one shard more", cfg: item("wider", 100_000, MaxShardsPerItemTxn+1), nodes: []string{"n1"}, err: ErrTooManyShards},
		{name: "invalid config", cfg: item("bad", 10, 0), nodes: []string{"n1"}, err: engine.ErrBadShards},
		{name: "invalid id", cfg: item("a/b", 10, 1), nodes: []string{"n1"}, err: engine.ErrBadItemID},
		{name: "no nodes", cfg: item("c", 10, 1), err: errAny},
		{name: "a bad node id", cfg: item("c", 10, 1), nodes: []string{"n/1"}, err: errAny},
	} {
		ps, err := s.CreateItem(ctx, c.cfg, c.nodes)
		wantErrOrAny(t, c.name, err, c.err)
		got, gotErr := s.Item(ctx, c.cfg.Item)
		if !c.created {
			if c.err != ErrItemExists && gotErr == nil { // an existing item is checked below
				t.Fatalf("%s: item written: %+v", c.name, got)
			}
			continue
		}
		if gotErr != nil || got != c.cfg {
			t.Fatalf("%s: stored %+v, %v; want %+v", c.name, got, gotErr, c.cfg)
		}
		l, err := s.LoadPool(ctx, c.cfg.Item)
		if err != nil {
			t.Fatalf("%s: load pool: %v", c.name, err)
		}
		// Every unit in the pool; each shard's initial allocation counted
		// as given back.
		want := engine.NewPool(c.cfg).State()
		for i := range want.Got {
			want.Got[i] = c.cfg.InitialAllocation(i)
		}
		want.Pool = want.Stock
		if l.Frozen != 0 || l.Stock != want.Stock || l.Pool != want.Pool || !slices.Equal(l.Sent, want.Sent) ||
			!slices.Equal(l.Got, want.Got) || l.Item != c.cfg.Item {
			t.Fatalf("%s: pool ledger %+v, want %+v", c.name, l, want)
		}
		stored, err := s.Placement(ctx, c.cfg.Item)
		if err != nil || len(ps) != c.cfg.Shards || len(stored) != c.cfg.Shards {
			t.Fatalf("%s: placements returned %d, stored %d (%v), want %d", c.name, len(ps), len(stored), err, c.cfg.Shards)
		}
		for _, p := range stored { // listed in key order: 0, 1, 10, 100, ...
			w := Placement{Shard: p.Shard, Node: c.nodes[p.Shard%len(c.nodes)], Epoch: 1, State: Active, ModRev: l.Rev}
			if p != w || ps[p.Shard] != w {
				t.Fatalf("%s: shard %d stored %+v, returned %+v, want %+v (one revision for all)", c.name, p.Shard, p, ps[p.Shard], w)
			}
		}
	}
	// Nothing was written by a refused creation.
	if _, err := s.LoadPool(ctx, "squatted"); !errors.Is(err, ErrNoLedger) {
		t.Fatalf("pool of the squatted id: %v", err)
	}
	if l, err := s.LoadPool(ctx, "a"); err != nil || l.Stock != 1001 {
		t.Fatalf("pool of a after the second creation: %+v, %v", l, err)
	}
	cfgs, rev, err := s.Items(ctx)
	if err != nil || rev == 0 {
		t.Fatal(rev, err)
	}
	var ids []string
	for _, c := range cfgs {
		ids = append(ids, c.Item)
	}
	if !slices.Equal(ids, []string{"a", "b", "wide"}) {
		t.Fatalf("items %v", ids)
	}
}

// nextItems receives n items from ch, failing the test after a bound.
func nextItems(t *testing.T, ch <-chan engine.ItemConfig, n int) []engine.ItemConfig {
	t.Helper()
	var got []engine.ItemConfig
	for len(got) < n {
		select {
		case c, ok := <-ch:
			if !ok {
				t.Fatalf("watch closed after %v", got)
			}
			got = append(got, c)
		case <-time.After(5 * time.Second):
			t.Fatalf("watch: %d items of %d: %v", len(got), n, got)
		}
	}
	return got
}

func ids(cfgs []engine.ItemConfig) []string {
	out := make([]string, len(cfgs))
	for i, c := range cfgs {
		out[i] = c.Item
	}
	return out
}

// TestWatchItems: a watch from a listing's revision reports exactly the
// items created after it, in creation order, skips what is not a creation
// by CreateItem, and closes when its context ends.
func TestWatchItems(t *testing.T) {
	t.Parallel() // each test runs its own etcd
	cli := dial(t, startEtcd(t))
	s := New(cli)
	ctx := ctxFor(t, 30*time.Second)
	create := func(id string) engine.ItemConfig {
		t.Helper()
		cfg := item(id, 100, 2)
		if _, err := s.CreateItem(ctx, cfg, []string{"n1"}); err != nil {
			t.Fatal(err)
		}
		return cfg
	}
	create("before")
	listed, rev, err := s.Items(ctx)
	if err != nil || len(listed) != 1 {
		t.Fatal(listed, err)
	}
	wctx, stop := context.WithCancel(ctx)
	ch := s.WatchItems(wctx, rev)
	b, a := create("b"), create("a")
	if got := nextItems(t, ch, 2); got[0] != b || got[1] != a {
		t.Fatalf("watch: %+v, want b then a", got)
	}
	if _, err := s.CreateItem(ctx, item("a", 5, 1), []string{"n1"}); !errors.Is(err, ErrItemExists) {
		t.Fatal(err)
	}
	if _, err := cli.Put(ctx, itemKey("b"), `{"item":"b","stock":1,"shards":1,"per_user_limit":1}`); err != nil {
		t.Fatal(err) // a rewrite: not a creation
	}
	if _, err := cli.Put(ctx, itemKey("junk"), "{"); err != nil {
		t.Fatal(err) // not a record
	}
	c := create("c")
	if got := nextItems(t, ch, 1); got[0] != c {
		t.Fatalf("watch after a refused creation, a rewrite and junk: %+v, want c", got)
	}
	stop()
	select {
	case c, ok := <-ch:
		if ok {
			t.Fatalf("watch reported %+v after its context ended", c)
		}
	case <-time.After(5 * time.Second):
		t.Fatal("watch not closed after its context ended")
	}
}

// TestWatchItemsAfterCompaction: a watch whose revision etcd compacted
// lists the items again and reports those created after its revision,
// then goes on watching.
func TestWatchItemsAfterCompaction(t *testing.T) {
	t.Parallel() // each test runs its own etcd
	cli := dial(t, startEtcd(t))
	s := New(cli)
	ctx := ctxFor(t, 30*time.Second)
	create := func(id string) {
		t.Helper()
		if _, err := s.CreateItem(ctx, item(id, 100, 1), []string{"n1"}); err != nil {
			t.Fatal(err)
		}
	}
	create("old")
	_, rev, err := s.Items(ctx)
	if err != nil {
		t.Fatal(err)
	}
	create("z")
	if _, err := cli.Put(ctx, itemKey("junk"), "{"); err != nil {
		t.Fatal(err) // a listing skips it, and is not retried for ever
	}
	create("m")
	cur, err := cli.Get(ctx, "any")
	if err != nil {
		t.Fatal(err)
	}
	if _, err := cli.Compact(ctx, cur.Header.Revision); err != nil {
		t.Fatal(err)
	}
	ch := s.WatchItems(ctx, rev)
	if got := ids(nextItems(t, ch, 2)); !slices.Equal(got, []string{"z", "m"}) {
		t.Fatalf("after compaction: %v, want z then m", got)
	}
	create("a")
	if got := ids(nextItems(t, ch, 1)); got[0] != "a" {
		t.Fatalf("watch after the listing: %v, want a", got)
	}
}

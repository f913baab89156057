package fence

import (
	"context"
	"sync"
	"testing"
)

// TestFailover: a shard is taken from its owner only once etcd expired the
// owner's lease, to a live node, by exactly one of the nodes that decide to
// at once; the pool ledger is left as it was (nothing frozen), and the lost
// owner's relay record says journaled.
func TestFailover(t *testing.T) {
	t.Parallel() // each test runs its own etcd
	cli := dial(t, startEtcd(t))
	s := New(cli)
	n1 := join(t, cli, "n1")
	join(t, cli, "n2")
	join(t, cli, "n3")
	ctx := context.Background()
	if _, err := s.CreateItem(ctx, item("it", 100, 2), []string{"n1", "n2"}); err != nil {
		t.Fatal(err)
	}
	before, err := s.LoadPool(ctx, "it")
	if err != nil {
		t.Fatal(err)
	}
	_, err = s.Failover(ctx, "it", 0, "n1", "n2")
	wantErr(t, "failover while the owner's lease lives", err, ErrOwnerAlive)
	_, err = s.Failover(ctx, "it", 1, "n1", "n3")
	wantErr(t, "failover of a shard on another node", err, ErrStale)
	expire(t, cli, n1)
	_, err = s.Failover(ctx, "it", 0, "n1", "ghost")
	wantErr(t, "failover to a node without a lease", err, ErrNodeDown)

	// n2 and n3 both decide, each for itself: one wins.
	var wg sync.WaitGroup
	errs := make([]error, 2)
	for i, to := range []string{"n2", "n3"} {
		wg.Go(func() { _, errs[i] = s.Failover(ctx, "it", 0, "n1", to) })
	}
	wg.Wait()
	if (errs[0] == nil) == (errs[1] == nil) {
		t.Fatalf("two deciders: %v and %v, want exactly one winner", errs[0], errs[1])
	}
	ps, err := s.Placement(ctx, "it")
	if err != nil {
		t.Fatal(err)
	}
	p := ps[0]
	if p.Epoch != 2 || !p.Failover || p.State != Active || (p.Node != "n2" && p.Node != "n3") {
		t.Fatalf("placement after failover: %+v", p)
	}
	after, err := s.LoadPool(ctx, "it")
	if err != nil {
		t.Fatal(err)
	}
	if after.Frozen != before.Frozen || after.Pool != before.Pool {
		t.Fatalf("ledger changed by a failover: %+v -> %+v", before, after)
	}
	fs, err := s.ForcedMoves(ctx)
	if err != nil || len(fs) != 1 || !fs[0].Journaled || fs[0].Node != "n1" || fs[0].Seq != 0 {
		t.Fatalf("relay record: %+v err %v", fs, err)
	}
	// The new owner says where it relays from: once.
	for _, tc := range []struct {
		shard     int
		seq, want uint64
		err       error
	}{
		{0, 42, 42, nil},
		{0, 42, 42, nil},
		{0, 50, 42, nil}, // a second try relays from the first one's
		{1, 7, 0, ErrUnplaced},
	} {
		got, err := s.RelayFrom(ctx, "it", tc.shard, "n1", tc.seq)
		wantErr(t, "relay from", err, tc.err)
		if got != tc.want {
			t.Fatalf("relay of shard %d from %d: recorded %d, want %d", tc.shard, tc.seq, got, tc.want)
		}
	}
	if fs, _ = s.ForcedMoves(ctx); fs[0].Seq != 42 {
		t.Fatalf("relay record after RelayFrom: %+v", fs)
	}
}

// TestLaneRebuild: an heir records a lost node's lane only while the node
// holds no lease; the node, back, takes its lane and learns who rebuilt it.
func TestLaneRebuild(t *testing.T) {
	t.Parallel()
	cli := dial(t, startEtcd(t))
	s := New(cli)
	n1 := join(t, cli, "n1")
	ctx := context.Background()
	wantErr(t, "rebuild a live node's lane", s.RebuildLane(ctx, "n1", "n2"), ErrOwnerAlive)
	expire(t, cli, n1)
	wantErr(t, "rebuild a lost node's lane", s.RebuildLane(ctx, "n1", "n2"), nil)
	for _, want := range []string{"n2", ""} {
		heir, err := s.TakeLane(ctx, "n1")
		if err != nil || heir != want {
			t.Fatalf("take lane: %q %v, want %q", heir, err, want)
		}
	}
}

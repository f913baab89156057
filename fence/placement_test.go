package fence

import (
	"context"
	"testing"
	"time"
)

// TestPlacement walks one shard through its life: each step is an
// operation, the error it must give and the placement that must result.
func TestPlacement(t *testing.T) {
	t.Parallel() // each test runs its own etcd
	cli := dial(t, startEtcd(t))
	s := New(cli)
	join(t, cli, "n1")
	n2 := join(t, cli, "n2")
	if err := s.CreateLedger(ctxFor(t, time.Second), "it", 100); err != nil {
		t.Fatal(err)
	}
	wctx, stopWatch := context.WithCancel(context.Background())
	defer stopWatch()
	events := s.WatchPlacement(wctx, "it")

	type step struct {
		name      string
		op        func(ctx context.Context) (Placement, error)
		err       error
		node      string // the placement afterwards
		epoch     uint64
		state     State
		beforeRun func()
	}
	attach := func(node string) func(context.Context) (Placement, error) {
		return func(ctx context.Context) (Placement, error) { return s.Attach(ctx, "it", 0, node) }
	}
	steps := []step{
		{name: "attach to a node without a lease", op: attach("ghost"), err: ErrNodeDown},
		{name: "first attach: epoch 1", op: attach("n1"), node: "n1", epoch: 1, state: Active},
		{name: "re-attach by the owner: same epoch", op: attach("n1"), node: "n1", epoch: 1, state: Active},
		{name: "attach by another node while the owner lives", op: attach("n2"), err: ErrOwnerAlive, node: "n1", epoch: 1, state: Active},
		{name: "move from a node that does not hold it", op: func(ctx context.Context) (Placement, error) {
			return s.Move(ctx, "it", 0, "n2", "n1")
		}, err: ErrNotOwner, node: "n1", epoch: 1, state: Active},
		{name: "owner marks the shard moving", op: func(ctx context.Context) (Placement, error) {
			return s.SetState(ctx, "it", 0, 1, Moving)
		}, node: "n1", epoch: 1, state: Moving},
		{name: "cooperative move bumps the epoch", op: func(ctx context.Context) (Placement, error) {
			return s.Move(ctx, "it", 0, "n1", "n2")
		}, node: "n2", epoch: 2, state: Active},
		{name: "force move while the owner's lease lives", op: func(ctx context.Context) (Placement, error) {
			return s.ForceMove(ctx, "it", 0, "n1")
		}, err: ErrOwnerAlive, node: "n2", epoch: 2, state: Active},
		{name: "attach after the owner's lease expired", beforeRun: func() { expire(t, cli, n2) },
			op: attach("n1"), err: ErrOwnerExpired, node: "n2", epoch: 2, state: Active},
		{name: "force move after the owner's lease expired", op: func(ctx context.Context) (Placement, error) {
			return s.ForceMove(ctx, "it", 0, "n1")
		}, node: "n1", epoch: 3, state: Active},
	}
	for _, st := range steps {
		if st.beforeRun != nil {
			st.beforeRun()
		}
		ctx := ctxFor(t, 5*time.Second)
		p, opErr := st.op(ctx)
		wantErr(t, st.name, opErr, st.err)
		if opErr == nil && (p.Node != st.node || p.Epoch != st.epoch || p.State != st.state) {
			t.Fatalf("%s: returned %+v", st.name, p)
		}
		ps, err := s.Placement(ctx, "it")
		if st.node == "" {
			if err != nil || len(ps) != 0 {
				t.Fatalf("%s: placement %+v, %v", st.name, ps, err)
			}
			continue
		}
		if err != nil || len(ps) != 1 || unstamped(ps[0]) != (Placement{Node: st.node, Epoch: st.epoch, State: st.state}) {
			t.Fatalf("%s: placement %+v, %v; want %s@%d %s", st.name, ps, err, st.node, st.epoch, st.state)
		}
		// What an operation returns carries the mod revision it read or wrote.
		if ps[0].ModRev == 0 || opErr == nil && p != ps[0] {
			t.Fatalf("%s: returned %+v, stored %+v", st.name, p, ps[0])
		}
	}

	// The forced move froze the old incarnation in the same transaction.
	l, err := s.Ledger(ctxFor(t, time.Second), "it")
	if err != nil || !l.Incarnation(0, 2).Frozen || l.Incarnation(0, 3).Frozen {
		t.Fatalf("ledger after force move: %+v, %v", l, err)
	}
	// The watch saw every write, in order, and nothing else; each event
	// carries the revision that wrote it.
	want := []Placement{{Node: "n1", Epoch: 1, State: Active}, {Node: "n1", Epoch: 1, State: Moving},
		{Node: "n2", Epoch: 2, State: Active}, {Node: "n1", Epoch: 3, State: Active}}
	var lastRev int64
	for i, w := range want {
		select {
		case e := <-events:
			if e.Err != nil || unstamped(e.Placement) != w || e.ModRev <= lastRev {
				t.Fatalf("watch event %d: %+v, want %+v after revision %d", i, e, w, lastRev)
			}
			lastRev = e.ModRev
		case <-time.After(5 * time.Second):
			t.Fatalf("watch event %d missing", i)
		}
	}
}

// unstamped is p without its mod revision, for comparing values.
func unstamped(p Placement) Placement {
	p.ModRev = 0
	return p
}

func TestSetStateOfStaleEpoch(t *testing.T) {
	t.Parallel() // each test runs its own etcd
	cli := dial(t, startEtcd(t))
	s := New(cli)
	join(t, cli, "n1")
	ctx := ctxFor(t, 5*time.Second)
	_, err := s.SetState(ctx, "it", 0, 1, Frozen)
	wantErr(t, "set state of an unplaced shard", err, ErrUnplaced)
	if _, err := s.Attach(ctx, "it", 0, "n1"); err != nil {
		t.Fatal(err)
	}
	_, err = s.SetState(ctx, "it", 0, 2, Frozen)
	wantErr(t, "set state of another epoch", err, ErrStale)
}

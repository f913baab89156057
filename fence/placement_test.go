package fence

import (
	"context"
	"testing"
	"time"

	"github.com/seckill/seckill/engine"
)

// TestPlacement walks one shard through its life: each step is an
// operation, the error it must give and the placement that must result.
func TestPlacement(t *testing.T) {
	t.Parallel() // each test runs its own etcd
	cli := dial(t, startEtcd(t))
	s := New(cli)
	join(t, cli, "n1")
	n2 := join(t, cli, "n2")
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
			return s.ForceMove(ctx, "it", 0, "n1", engine.Counters{})
		}, err: ErrOwnerAlive, node: "n2", epoch: 2, state: Active},
		{name: "attach after the owner's lease expired", beforeRun: func() { expire(t, cli, n2) },
			op: attach("n1"), err: ErrOwnerExpired, node: "n2", epoch: 2, state: Active},
		{name: "force move after the owner's lease expired", op: func(ctx context.Context) (Placement, error) {
			return s.ForceMove(ctx, "it", 0, "n1", engine.Counters{NextSeq: 7})
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
		// A forced move marks the incarnation it makes (the new owner then
		// waits for the snapshot written for it).
		forced := st.name == "force move after the owner's lease expired"
		var seqStart uint64
		if forced {
			seqStart = 7 // no sequence was ever granted: the snapshot's next one
		}
		if err != nil || len(ps) != 1 || unstamped(ps[0]) != (Placement{Node: st.node, Epoch: st.epoch, State: st.state, Forced: forced, SeqStart: seqStart}) {
			t.Fatalf("%s: placement %+v, %v; want %s@%d %s", st.name, ps, err, st.node, st.epoch, st.state)
		}
		// What an operation returns carries the mod revision it read or wrote.
		if ps[0].ModRev == 0 || opErr == nil && p != ps[0] {
			t.Fatalf("%s: returned %+v, stored %+v", st.name, p, ps[0])
		}
	}

	// The forced move recorded, in the same transaction, whom it took the
	// shard from and from which sequence on that node's grabs are not the
	// shard's; the refused one recorded nothing.
	fs, err := s.ForcedMoves(ctxFor(t, time.Second))
	if want := (Forced{Item: "it", Shard: 0, Node: "n2", Epoch: 2, Seq: 7}); err != nil || len(fs) != 1 || fs[0] != want {
		t.Fatalf("forced moves %+v, %v; want [%+v]", fs, err, want)
	}
	// The watch saw every write, in order, and nothing else; each event
	// carries the revision that wrote it.
	want := []Placement{{Node: "n1", Epoch: 1, State: Active}, {Node: "n1", Epoch: 1, State: Moving},
		{Node: "n2", Epoch: 2, State: Active}, {Node: "n1", Epoch: 3, State: Active, Forced: true, SeqStart: 7}}
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

// TestCooperativeMove walks a shard through requested, cancelled and
// completed moves: each step is an operation, the error it must give and
// the placement stored afterwards.
func TestCooperativeMove(t *testing.T) {
	t.Parallel() // each test runs its own etcd
	cli := dial(t, startEtcd(t))
	s := New(cli)
	for _, n := range []string{"n1", "n2", "n3"} {
		join(t, cli, n)
	}
	ctx := ctxFor(t, 20*time.Second)
	request := func(to string) func() (Placement, error) {
		return func() (Placement, error) { return s.RequestMove(ctx, "it", 0, to) }
	}
	cancel := func(epoch uint64) func() (Placement, error) {
		return func() (Placement, error) { return s.CancelMove(ctx, "it", 0, epoch) }
	}
	move := func(from, to string) func() (Placement, error) {
		return func() (Placement, error) { return s.Move(ctx, "it", 0, from, to) }
	}
	setState := func(epoch uint64, st State) func() (Placement, error) {
		return func() (Placement, error) { return s.SetState(ctx, "it", 0, epoch, st) }
	}
	n1at1 := Placement{Node: "n1", Epoch: 1, State: Active}
	n1to2 := Placement{Node: "n1", Epoch: 1, State: Moving, To: "n2"}
	n2at2 := Placement{Node: "n2", Epoch: 2, State: Active}
	n2frozen := Placement{Node: "n2", Epoch: 2, State: Frozen}
	for _, st := range []struct {
		name    string
		op      func() (Placement, error)
		err     error
		want    Placement // stored afterwards
		written bool      // the operation wrote a new revision
	}{
		{name: "request a move of an unplaced shard", op: request("n2"), err: ErrUnplaced},
		{name: "attach", op: func() (Placement, error) { return s.Attach(ctx, "it", 0, "n1") }, want: n1at1, written: true},
		{name: "request a move to a node without a lease", op: request("ghost"), err: ErrNodeDown, want: n1at1},
		{name: "request a move to the owner", op: request("n1"), err: ErrSameNode, want: n1at1},
		{name: "request a move", op: request("n2"), want: n1to2, written: true},
		{name: "the same request again changes nothing", op: request("n2"), want: n1to2},
		{name: "request another move while moving", op: request("n3"), err: ErrNotActive, want: n1to2},
		{name: "complete a move to another node than requested", op: move("n1", "n3"), err: ErrNotActive, want: n1to2},
		{name: "cancel the move of another epoch", op: cancel(2), err: ErrStale, want: n1to2},
		{name: "cancel the move", op: cancel(1), want: n1at1, written: true},
		{name: "cancel again changes nothing", op: cancel(1), want: n1at1},
		{name: "request the move again", op: request("n2"), want: n1to2, written: true},
		{name: "the owner resumes by SetState: To is cleared", op: setState(1, Active), want: n1at1, written: true},
		{name: "request it once more", op: request("n2"), want: n1to2, written: true},
		{name: "complete the move: epoch+1, active, To cleared", op: move("n1", "n2"), want: n2at2, written: true},
		{name: "freeze", op: setState(2, Frozen), want: n2frozen, written: true},
		{name: "request a move of a frozen shard", op: request("n1"), err: ErrNotActive, want: n2frozen},
		{name: "move a frozen shard", op: move("n2", "n1"), err: ErrNotActive, want: n2frozen},
		{name: "cancel on a frozen shard", op: cancel(2), err: ErrNotActive, want: n2frozen},
		{name: "unfreeze", op: setState(2, Active), want: n2at2, written: true},
		{name: "move an active shard without a request, as before", op: move("n2", "n1"),
			want: Placement{Node: "n1", Epoch: 3, State: Active}, written: true},
	} {
		before, err := s.Placement(ctx, "it")
		if err != nil {
			t.Fatal(err)
		}
		p, opErr := st.op()
		wantErr(t, st.name, opErr, st.err)
		ps, err := s.Placement(ctx, "it")
		if st.want == (Placement{}) {
			if err != nil || len(ps) != 0 {
				t.Fatalf("%s: placement %+v, %v", st.name, ps, err)
			}
			continue
		}
		if err != nil || len(ps) != 1 || unstamped(ps[0]) != st.want {
			t.Fatalf("%s: placement %+v, %v; want %+v", st.name, ps, err, st.want)
		}
		if opErr == nil && p != ps[0] {
			t.Fatalf("%s: returned %+v, stored %+v", st.name, p, ps[0])
		}
		if wrote := len(before) == 0 || ps[0].ModRev != before[0].ModRev; wrote != st.written {
			t.Fatalf("%s: wrote %v, want %v", st.name, wrote, st.written)
		}
	}
}

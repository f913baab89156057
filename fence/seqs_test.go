package fence

import (
	"context"
	"testing"
	"time"

	"github.com/seckill/seckill/engine"
)

// TestSeqGrants: only the placed incarnation is granted sequences, a
// grant never falls, and a forced move starts the new incarnation past
// everything granted to the lost one, whatever its snapshot says.
func TestSeqGrants(t *testing.T) {
	t.Parallel() // each test runs its own etcd
	cli := dial(t, startEtcd(t))
	s := New(cli)
	join(t, cli, "n1")
	n2 := join(t, cli, "n2")
	ctx := ctxFor(t, 10*time.Second)
	if _, err := s.Attach(ctx, "it", 0, "n1"); err != nil {
		t.Fatal(err)
	}
	extend := func(node string, epoch, atLeast uint64) func() (uint64, error) {
		return func() (uint64, error) { return s.ExtendSeqs(ctx, "it", 0, node, epoch, atLeast) }
	}
	steps := []struct {
		name  string
		op    func() (uint64, error)
		want  uint64 // the limit returned
		err   error
		grant SeqGrant // recorded afterwards
	}{
		{name: "first grant", op: extend("n1", 1, 0), want: SeqBlock, grant: SeqGrant{"n1", 1, SeqBlock}},
		{name: "a grant from at least a floor", op: extend("n1", 1, 10_000), want: 10_000 + SeqBlock, grant: SeqGrant{"n1", 1, 10_000 + SeqBlock}},
		{name: "a floor below the limit", op: extend("n1", 1, 5), want: 10_000 + 2*SeqBlock, grant: SeqGrant{"n1", 1, 10_000 + 2*SeqBlock}},
		{name: "another node", op: extend("n2", 1, 0), err: ErrStale, grant: SeqGrant{"n1", 1, 10_000 + 2*SeqBlock}},
		{name: "another epoch", op: extend("n1", 2, 0), err: ErrStale, grant: SeqGrant{"n1", 1, 10_000 + 2*SeqBlock}},
		{name: "cooperative move", op: func() (uint64, error) {
			if _, err := s.SetState(ctx, "it", 0, 1, Moving); err != nil {
				return 0, err
			}
			p, err := s.Move(ctx, "it", 0, "n1", "n2")
			return p.Epoch, err
		}, want: 2, grant: SeqGrant{"n1", 1, 10_000 + 2*SeqBlock}},
		{name: "the old owner after the move", op: extend("n1", 1, 0), err: ErrStale, grant: SeqGrant{"n1", 1, 10_000 + 2*SeqBlock}},
		{name: "the new owner goes on from the old one's limit", op: extend("n2", 2, 3), want: 10_000 + 3*SeqBlock, grant: SeqGrant{"n2", 2, 10_000 + 3*SeqBlock}},
		{name: "forced move starts past the lost owner's grant", op: func() (uint64, error) {
			expire(t, cli, n2)
			p, err := s.ForceMove(ctx, "it", 0, "n1", engine.Counters{NextSeq: 100})
			return p.SeqStart, err
		}, want: 10_000 + 3*SeqBlock, grant: SeqGrant{"n1", 3, 10_000 + 3*SeqBlock}},
		{name: "the lost owner after the forced move", op: extend("n2", 2, 0), err: ErrStale, grant: SeqGrant{"n1", 3, 10_000 + 3*SeqBlock}},
		{name: "the forced incarnation", op: extend("n1", 3, 0), want: 10_000 + 4*SeqBlock, grant: SeqGrant{"n1", 3, 10_000 + 4*SeqBlock}},
	}
	for _, st := range steps {
		got, err := st.op()
		wantErr(t, st.name, err, st.err)
		if err == nil && got != st.want {
			t.Fatalf("%s: %d, want %d", st.name, got, st.want)
		}
		g, err := s.SeqLimit(ctx, "it", 0)
		if err != nil || g != st.grant {
			t.Fatalf("%s: recorded %+v, %v; want %+v", st.name, g, err, st.grant)
		}
	}
	if _, err := s.ExtendSeqs(context.Background(), "it", 1, "n1", 1, 0); err == nil {
		t.Fatal("an unplaced shard was granted sequences")
	}
}

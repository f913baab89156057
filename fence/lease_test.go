package fence

import (
	"context"
	"slices"
	"testing"
	"time"
)

func TestJoinRefusesShortTTLAndBadIDs(t *testing.T) {
	t.Parallel() // each test runs its own etcd
	cli := dial(t, startEtcd(t))
	for _, tc := range []struct {
		name string
		node NodeInfo
		ttl  time.Duration
	}{
		{"ttl below the minimum", NodeInfo{ID: "n1"}, MinLeaseTTL - time.Second},
		{"empty id", NodeInfo{}, LeaseTTL},
		{"id with a slash", NodeInfo{ID: "a/b"}, LeaseTTL},
	} {
		t.Run(tc.name, func(t *testing.T) {
			if l, err := Join(ctxFor(t, time.Second), cli, tc.node, tc.ttl); err == nil {
				l.Close()
				t.Fatal("joined")
			}
		})
	}
}

func TestLeaseValidityAndExpiry(t *testing.T) {
	t.Parallel() // each test runs its own etcd
	cli := dial(t, startEtcd(t))
	s := New(cli)
	l := join(t, cli, "n1")

	vu := l.ValidUntil()
	if !l.Valid(time.Now()) || !l.Valid(vu.Add(-time.Nanosecond)) || l.Valid(vu) {
		t.Fatalf("validity at the edges of %v wrong", vu)
	}
	members, err := s.Members(ctxFor(t, time.Second))
	if err != nil || !slices.Contains(members, l.Node()) {
		t.Fatalf("members %v, %v: n1 missing", members, err)
	}
	// Keep-alives move the validity forward.
	deadline := time.Now().Add(3 * KeepAliveInterval)
	for !l.ValidUntil().After(vu) {
		if time.Now().After(deadline) {
			t.Fatalf("no keep-alive renewed the lease within %v", 3*KeepAliveInterval)
		}
		time.Sleep(50 * time.Millisecond) // polling a value with no change notification
	}

	// The process stops its keep-alives without revoking (a crash, a
	// pause). A second incarnation of n1 joining meanwhile waits for etcd to
	// expire the first lease.
	resp, err := cli.Get(ctxFor(t, time.Second), nodeKey("n1"))
	if err != nil {
		t.Fatal(err)
	}
	l.Close()
	last := l.ValidUntil()
	type joined struct {
		l   *Lease
		err error
	}
	rejoin := make(chan joined, 1)
	go func() {
		l2, err := Join(ctxFor(t, 3*MinLeaseTTL), cli, NodeInfo{ID: "n1"}, MinLeaseTTL)
		rejoin <- joined{l2, err}
	}()
	waitKeyDeleted(t, cli, nodeKey("n1"), resp.Header.Revision+1, MinLeaseTTL+5*time.Second)
	// etcd expired the lease: the node must have stopped confirming already.
	if now := time.Now(); l.Valid(now) {
		t.Fatalf("node valid at %v after etcd expired its lease (valid until %v)", now, l.ValidUntil())
	}
	if !l.ValidUntil().Equal(last) {
		t.Fatalf("validity moved after the keep-alives stopped: %v, then %v", last, l.ValidUntil())
	}
	j := <-rejoin
	if j.err != nil {
		t.Fatalf("rejoin: %v", j.err)
	}
	defer j.l.Leave(context.Background())
	if j.l.ID() == l.ID() || !j.l.Valid(time.Now()) {
		t.Fatalf("rejoined with lease %x (old %x), valid %v", j.l.ID(), l.ID(), j.l.Valid(time.Now()))
	}
}

func TestLeaveRevokes(t *testing.T) {
	t.Parallel() // each test runs its own etcd
	cli := dial(t, startEtcd(t))
	s := New(cli)
	l := join(t, cli, "n1")
	other := join(t, cli, "n2")
	if err := l.Leave(ctxFor(t, time.Second)); err != nil {
		t.Fatal(err)
	}
	if l.Valid(time.Now()) {
		t.Fatal("valid after leaving")
	}
	members, err := s.Members(ctxFor(t, time.Second))
	if err != nil || !slices.Equal(members, []NodeInfo{other.Node()}) {
		t.Fatalf("members after n1 left: %v, %v", members, err)
	}
	ms, err := s.MemberLeases(ctxFor(t, time.Second))
	if err != nil || len(ms) != 1 || ms[0].NodeInfo != other.Node() || ms[0].LeaseLeft <= 0 || ms[0].LeaseLeft > MinLeaseTTL {
		t.Fatalf("member leases after n1 left: %+v, %v", ms, err)
	}
	select {
	case <-l.Done():
	default:
		t.Fatal("keep-alives still running after Leave")
	}
}

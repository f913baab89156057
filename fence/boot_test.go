package fence

import (
	"testing"
	"time"
)

// TestNextBoot: a node's starts are counted in etcd, above what its data
// directory kept, so a node back on an empty disk (its local count 1
// again) still counts above every start before.
func TestNextBoot(t *testing.T) {
	t.Parallel() // each test runs its own etcd
	s := New(dial(t, startEtcd(t)))
	ctx := ctxFor(t, 10*time.Second)
	for _, tc := range []struct {
		name        string
		node        string
		local, want uint64
	}{
		{"first start", "n1", 1, 1},
		{"restart on its disk", "n1", 2, 2},
		{"restart on an empty disk", "n1", 1, 3},
		{"a disk that counted further (etcd restored from a backup)", "n1", 9, 9},
		{"another node counts on its own", "n2", 1, 1},
	} {
		got, err := s.NextBoot(ctx, tc.node, tc.local)
		if err != nil || got != tc.want {
			t.Fatalf("%s: NextBoot(%s, %d) = %d, %v; want %d", tc.name, tc.node, tc.local, got, err, tc.want)
		}
	}
	if _, err := s.NextBoot(ctx, "n/1", 1); err == nil {
		t.Fatal("a node id that breaks the key layout was counted")
	}
}

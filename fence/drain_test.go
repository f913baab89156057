package fence

import (
	"maps"
	"testing"
	"time"
)

// TestDraining: each step sets or clears a mark; afterwards Draining
// lists exactly the marked nodes.
func TestDraining(t *testing.T) {
	t.Parallel() // each test runs its own etcd
	s := New(dial(t, startEtcd(t)))
	ctx := ctxFor(t, 10*time.Second)
	for _, c := range []struct {
		name string
		node string
		on   bool
		err  error
		want map[string]bool
	}{
		{name: "mark a node", node: "n1", on: true, want: map[string]bool{"n1": true}},
		{name: "mark it again", node: "n1", on: true, want: map[string]bool{"n1": true}},
		{name: "mark a node with no lease", node: "n2", on: true, want: map[string]bool{"n1": true, "n2": true}},
		{name: "clear a mark", node: "n1", want: map[string]bool{"n2": true}},
		{name: "clear it again", node: "n1", want: map[string]bool{"n2": true}},
		{name: "a bad node id", node: "n/3", on: true, err: errAny, want: map[string]bool{"n2": true}},
		{name: "clear the last", node: "n2", want: map[string]bool{}},
	} {
		wantErrOrAny(t, c.name, s.SetDraining(ctx, c.node, c.on), c.err)
		got, err := s.Draining(ctx)
		if err != nil || !maps.Equal(got, c.want) {
			t.Fatalf("%s: draining %v, %v; want %v", c.name, got, err, c.want)
		}
	}
}

package bus

import (
	"context"
	"testing"
)

// TestLanesKeepAGrabOnItsNode: on a cluster each node's relay publishes on
// its own lane and each node's writers read only theirs, so every copy of
// a grab's message (a redelivery, a republish cut into other runs) reaches
// the writers of the node that made it, and its order lands in one store.
// A scan of the item still sees every lane.
func TestLanesKeepAGrabOnItsNode(t *testing.T) {
	e := startServer(t, t.TempDir(), "")
	js := inProcess(t, e, Config{Node: "n1"})
	if err := Ensure(context.Background(), js, Config{Node: "n2"}); err != nil {
		t.Fatal(err)
	}
	ctx := context.Background()
	fromN1, fromN2 := grabs("it.x", 1, 40), grabs("it.x", 101, 40)
	if err := NewPublisher(js, 16).From("n1").PublishBatch(ctx, fromN1); err != nil {
		t.Fatal(err)
	}
	// n2's relay publishes its grabs twice, cut into other runs the
	// second time (another Msg-Id: the dedupe window does not catch it).
	p2 := NewPublisher(js, 16).From("n2")
	if err := p2.PublishBatch(ctx, fromN2); err != nil {
		t.Fatal(err)
	}
	if err := p2.PublishBatch(ctx, fromN2[3:]); err != nil {
		t.Fatal(err)
	}
	o1, o2 := newOrders(), newOrders()
	run(t, func(ctx context.Context) error { return RunWriterFor(ctx, js, "n1", 8, o1.handle) })
	run(t, func(ctx context.Context) error { return RunWriterFor(ctx, js, "n2", 8, o2.handle) })
	eventually(t, "n1 wrote its grabs", func() bool { return o1.hasAll(fromN1) })
	eventually(t, "n2 wrote its grabs", func() bool { return o2.hasAll(fromN2) })
	for _, g := range fromN2 {
		if o1.deliveries(g.GrabID) != 0 {
			t.Fatalf("%s, made on n2, reached n1's writers", g.GrabID)
		}
	}
	for _, g := range fromN1 {
		if o2.deliveries(g.GrabID) != 0 {
			t.Fatalf("%s, made on n1, reached n2's writers", g.GrabID)
		}
	}
	seen := map[string]bool{}
	if err := GrabsInStream(ctx, js, "it.x", func(g GrabMsg) error { seen[g.GrabID] = true; return nil }); err != nil {
		t.Fatal(err)
	}
	if len(seen) != len(fromN1)+len(fromN2) {
		t.Fatalf("a scan of the item saw %d grabs, want %d", len(seen), len(fromN1)+len(fromN2))
	}
	for _, c := range []struct{ node, subj, item string }{
		{"", "seckill.grabs.it~x", "it.x"},
		{"n1", "seckill.grabs.it~x.n1", "it.x"},
		{"n.2", "seckill.grabs.it~x.n~2", "it.x"},
	} {
		if s := GrabSubjectFrom(c.node, c.item); s != c.subj {
			t.Fatalf("GrabSubjectFrom(%q, %q) = %q, want %q", c.node, c.item, s, c.subj)
		}
		if item, ok := itemFromSubject(SubjectPrefix, c.subj); !ok || item != c.item {
			t.Fatalf("itemFromSubject(%q) = %q %v", c.subj, item, ok)
		}
	}
}

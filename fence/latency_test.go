package fence

import (
	"flag"
	"slices"
	"testing"
	"time"
)

var latency = flag.Bool("fence.latency", false, "measure one pool commit's latency against a local etcd (not part of the suite)")

// TestCommitPoolLatency reports (never asserts) the p50 and p99 of 200
// sequential pool commits that each grant one unit to a shard: one read
// and one compare-and-swap guarded by the shard's placement, as a pool's
// ledger write.
func TestCommitPoolLatency(t *testing.T) {
	if !*latency {
		t.Skip("a measurement: run with -fence.latency")
	}
	const n = 200
	cfg := item("lat", 1_000_000, 1)
	s, _, _ := created(t, cfg, "n1")
	ctx := ctxFor(t, time.Minute)
	l, err := s.LoadPool(ctx, cfg.Item)
	if err != nil {
		t.Fatal(err)
	}
	st, rev := l.State(), l.Rev
	ds := make([]time.Duration, n)
	for i := range ds {
		st.Pool--
		st.Sent[0]++
		start := time.Now()
		if rev, err = s.CommitPool(ctx, cfg.Item, rev, st, []Guard{{0, 1}}); err != nil {
			t.Fatal(err)
		}
		ds[i] = time.Since(start)
	}
	slices.Sort(ds)
	t.Logf("CommitPool over %d sequential calls: p50 %v, p99 %v, max %v", n, ds[n/2], ds[n*99/100], ds[n-1])
}

// TestExtendSeqsLatency reports (never asserts) the p50 and p99 of 200
// sequential grants of grab sequences: what a shard waits for once at
// activation, and in the background once per SeqBlock grabs.
func TestExtendSeqsLatency(t *testing.T) {
	if !*latency {
		t.Skip("a measurement: run with -fence.latency")
	}
	const n = 200
	cfg := item("lat", 1_000_000, 1)
	s, _, _ := created(t, cfg, "n1")
	ctx := ctxFor(t, time.Minute)
	ds := make([]time.Duration, n)
	for i := range ds {
		start := time.Now()
		if _, err := s.ExtendSeqs(ctx, cfg.Item, 0, "n1", 1, 0); err != nil {
			t.Fatal(err)
		}
		ds[i] = time.Since(start)
	}
	slices.Sort(ds)
	t.Logf("ExtendSeqs over %d sequential calls: p50 %v, p99 %v, max %v", n, ds[n/2], ds[n*99/100], ds[n-1])
}

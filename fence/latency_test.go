package fence

import (
	"flag"
	"slices"
	"testing"
	"time"
)

var latency = flag.Bool("fence.latency", false, "measure one Grant's latency against a local etcd (not part of the suite)")

// TestGrantLatency reports (never asserts) the p50 and p99 of 200
// sequential grants: one read and one CAS transaction each.
func TestGrantLatency(t *testing.T) {
	if !*latency {
		t.Skip("a measurement: run with -fence.latency")
	}
	const n = 200
	s, _ := placed(t, "lat", 1_000_000, 1)
	ctx := ctxFor(t, time.Minute)
	ds := make([]time.Duration, n)
	for i := range ds {
		start := time.Now()
		if _, _, err := s.Grant(ctx, "lat", 0, 1, 1); err != nil {
			t.Fatal(err)
		}
		ds[i] = time.Since(start)
	}
	slices.Sort(ds)
	t.Logf("Grant over %d sequential calls: p50 %v, p99 %v, max %v", n, ds[n/2], ds[n*99/100], ds[n-1])
}

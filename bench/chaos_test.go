package bench

import (
	"testing"
)

// TestChaosSchedule: a schedule is its seed's, any five seeds in a row put
// in every kind of fault, and each starts within the flash's window.
func TestChaosSchedule(t *testing.T) {
	for _, first := range []uint64{0, 1, 7, 1 << 40} {
		seen := map[FaultKind]bool{}
		for seed := first; seed < first+uint64(faultKinds); seed++ {
			f := ChaosSchedule(seed)
			if f != ChaosSchedule(seed) {
				t.Fatalf("seed %d: two schedules %v and %v", seed, f, ChaosSchedule(seed))
			}
			if f.At < chaosFaultFrom || f.At >= chaosFaultFrom+chaosFaultSpan || f.Victim < 0 || f.Victim >= len(ClusterIPs) {
				t.Fatalf("seed %d: %+v out of range", seed, f)
			}
			seen[f.Kind] = true
		}
		if len(seen) != len(FaultKinds()) {
			t.Fatalf("seeds %d..%d put in %v, want all %d kinds", first, first+uint64(faultKinds)-1, seen, len(FaultKinds()))
		}
	}
}

func TestChaosConfigNeedsMoreBuyersThanUnits(t *testing.T) {
	for _, tc := range []struct {
		buyers int
		stock  int64
		ok     bool
	}{{10, 10, false}, {11, 10, true}, {0, 0, true}} {
		c := ChaosConfig{Buyers: tc.buyers, Stock: tc.stock}
		if err := c.defaults(); (err == nil) != tc.ok {
			t.Errorf("%d buyers for %d units: %v, want ok %v", tc.buyers, tc.stock, err, tc.ok)
		}
	}
}

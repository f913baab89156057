package bench

import (
	"testing"
	"time"
)

// TestOpeningSlices: merge puts each answer of the first second in its
// OpeningSlice by the time it came, counts the 201s, takes quantiles within
// the slice, and keeps slices only up to the last one with an answer.
func TestOpeningSlices(t *testing.T) {
	a, b := newTally(), newTally()
	a.samples = []sample{{atMs: 0, latUs: 100, status: 201}, {atMs: 49, latUs: 300, status: 201}, {atMs: 120, latUs: 5000, status: 409}}
	b.samples = []sample{{atMs: 10, latUs: 200, status: 503}, {atMs: 1500, latUs: 7, status: 409}}
	r := merge([]tally{a, b}, 2*time.Second)
	if len(r.Opening) != 3 {
		t.Fatalf("%d slices, want 3 (0-50, 50-100 empty, 100-150 ms): %+v", len(r.Opening), r.Opening)
	}
	want := []Slice{
		{Answers: 3, Confirmed: 2, P50: 200 * time.Microsecond, P99: 300 * time.Microsecond, Max: 300 * time.Microsecond},
		{},
		{Answers: 1, Confirmed: 0, P50: 5 * time.Millisecond, P99: 5 * time.Millisecond, Max: 5 * time.Millisecond},
	}
	for i, w := range want {
		g := r.Opening[i]
		if g.Answers != w.Answers || g.Confirmed != w.Confirmed || !near(g.P50, w.P50) || !near(g.P99, w.P99) || !near(g.Max, w.Max) {
			t.Errorf("slice %d: %+v, want %+v", i, g, w)
		}
	}
	if len(r.Timeline) != 2 || r.Timeline[0].Answers != 4 || r.Timeline[1].Answers != 1 {
		t.Errorf("seconds: %+v", r.Timeline)
	}
}

// near allows the histogram's 3 significant digits.
func near(got, want time.Duration) bool {
	d := got - want
	return d >= -want/500 && d <= want/500
}

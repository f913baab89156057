package system

import (
	"errors"
	"testing"
	"time"

	"github.com/seckill/seckill/bus"
)

// TestWriterHold walks the writers' hold through a hot stretch: held while
// grabs become durable at HoldRate or more, let go after MaxWriterHold of
// it (and kept going while it lasts), free again once the rate falls, held
// again by the next hot stretch.
func TestWriterHold(t *testing.T) {
	var (
		clock   = time.Unix(1000, 0)
		durable int64
	)
	h := &hotHold{durable: func() int64 { return durable }, now: func() time.Time { return clock }}
	perSample := int64(HoldRate * holdSample.Seconds())
	steps := []struct {
		name  string
		grabs int64 // made durable during this sample
		hold  bool
	}{
		{"first sample: no rate yet", 0, false},
		{"cold", perSample / 2, false},
		{"hot", perSample, true},
		{"still hot", 2 * perSample, true},
	}
	step := func(name string, grabs int64, hold bool) {
		t.Helper()
		clock = clock.Add(holdSample)
		durable += grabs
		if err := h.check(); hold != errors.Is(err, bus.ErrHold) || !hold && err != nil {
			t.Fatalf("%s: %v, want hold %v", name, err, hold)
		}
	}
	for _, st := range steps {
		step(st.name, st.grabs, st.hold)
	}
	for held := 2 * holdSample; held <= MaxWriterHold; held += holdSample {
		step("within MaxWriterHold", perSample, true)
	}
	step("past MaxWriterHold: let go", perSample, false)
	step("still hot: still let go", perSample, false)
	step("cold again", 0, false)
	step("the next hot stretch holds again", perSample, true)
	if err := h.check(); !errors.Is(err, bus.ErrHold) {
		t.Fatalf("a second check within the sample: %v", err)
	}
}

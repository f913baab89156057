package system

import (
	"sync"
	"time"

	"github.com/seckill/seckill/bus"
)

// The in-process order writers and the relay step aside while the node
// confirms grabs fast: in a flash sale's first moments the writers took
// about an eighth of the CPU from the grabs (13 % of the server's CPU on
// the durable workload) and the relay with the embedded NATS server about
// as much again, and orders are asynchronous anyway: the grabs wait
// durable in Pebble. Measured on the flash workload
// (33 k buyers/s, 10 000 units, 2 cores), writers started only after the
// sale sold out after 0.38-0.39 s against 0.44-0.48 s, first-second p99
// 72-88 ms against 135-176 ms, in alternating runs. Holding the relay too
// (60 000 buyers over 1.8 s, five alternating runs each): sold out after a
// median 0.344 s against 0.375 s, first-second p99 median 40 against 73 ms.
const (
	// HoldRate: at this many durable grabs a second or more the node is
	// hot and its writers wait (bus.ErrHold).
	HoldRate = 5000
	// MaxWriterHold bounds one hot stretch's hold: past it the writers go
	// on until the rate falls below HoldRate again, so a sustained load
	// never starves them (the order lag grows by at most this much).
	MaxWriterHold = time.Second
	// holdSample is how often the rate is measured.
	holdSample = 20 * time.Millisecond
)

// hotHold decides, for the order writers and the relay, whether to hold
// (see HoldRate).
type hotHold struct {
	durable func() int64     // grabs made durable so far
	now     func() time.Time // nil: time.Now
	mu      sync.Mutex
	at      time.Time // last sample
	count   int64     // durable grabs at the last sample
	hot     bool      // the last sample's rate was at least HoldRate
	since   time.Time // start of this hot stretch (zero: not hot)
	spent   bool      // this hot stretch used up MaxWriterHold
}

// check returns bus.ErrHold while the writers and the relay should wait.
func (h *hotHold) check() error {
	now := time.Now()
	if h.now != nil {
		now = h.now()
	}
	h.mu.Lock()
	defer h.mu.Unlock()
	if d := now.Sub(h.at); d >= holdSample {
		c := h.durable()
		h.hot = !h.at.IsZero() && float64(c-h.count)/d.Seconds() >= HoldRate
		h.at, h.count = now, c
	}
	switch {
	case !h.hot:
		h.since, h.spent = time.Time{}, false
		return nil
	case h.spent:
		return nil
	case h.since.IsZero():
		h.since = now
	case now.Sub(h.since) > MaxWriterHold:
		h.spent = true
		return nil
	}
	return bus.ErrHold
}

package metrics

import (
	"errors"
	"sync"
	"sync/atomic"

	"github.com/prometheus/client_golang/prometheus"
	"github.com/seckill/seckill/engine"
	"github.com/seckill/seckill/sale"
)

// MaxItemSeries bounds the items that get series of their own in
// seckill_grabs_total; grabs of items past it are counted under item
// OtherItem. Items are created by the operator, so this is only a guard
// against a sale of unusual shape blowing up Prometheus's memory.
const MaxItemSeries = 10_000

// OtherItem is the item label of grabs of items past MaxItemSeries.
const OtherItem = "_other"

// Outcome kinds of a grab, as labels of seckill_grabs_total.
const (
	KindConfirmed = iota
	KindReplayed
	KindSoldOut
	KindLimitReached
	KindNotStarted
	KindEnded
	KindReleased
	KindKeyReused
	KindBadQty
	KindUnavailable
	KindOverloaded
	KindBroken
	numKinds
)

// KindNames are the outcome labels, indexed by kind.
var KindNames = [numKinds]string{"confirmed", "replayed", "sold_out", "limit_reached", "not_started", "ended",
	"released", "key_reused", "bad_qty", "unavailable", "overloaded", "broken"}

type outcomeCounts [numKinds]atomic.Uint64

// Grabs is a sale.Service that counts each grab's outcome by item. Its Grab
// costs one map read of an immutable map and one atomic add; the map is
// copied only when an item is first seen.
type Grabs struct {
	sale.Service
	items atomic.Pointer[map[string]*outcomeCounts]
	mu    sync.Mutex // serialises copies of items
	other outcomeCounts
}

// CountGrabs wraps svc.
func CountGrabs(svc sale.Service) *Grabs {
	g := &Grabs{Service: svc}
	m := map[string]*outcomeCounts{}
	g.items.Store(&m)
	return g
}

// Grab decides the grab and counts its outcome. An unknown item is not
// counted here (its id is the client's choice); the HTTP metrics count it
// as a 404.
func (g *Grabs) Grab(item, user string, qty int64, key string) sale.Reply {
	r := g.Service.Grab(item, user, qty, key)
	k, ok := kindOf(r)
	if ok {
		g.counts(item)[k].Add(1)
	}
	return r
}

func (g *Grabs) counts(item string) *outcomeCounts {
	if c := (*g.items.Load())[item]; c != nil {
		return c
	}
	g.mu.Lock()
	defer g.mu.Unlock()
	old := *g.items.Load()
	if c := old[item]; c != nil {
		return c
	}
	if len(old) >= MaxItemSeries {
		return &g.other
	}
	m := make(map[string]*outcomeCounts, len(old)+1)
	for k, v := range old {
		m[k] = v
	}
	c := new(outcomeCounts)
	m[item] = c
	g.items.Store(&m)
	return c
}

func kindOf(r sale.Reply) (int, bool) {
	if r.Err != nil {
		var qty *sale.QtyError
		switch {
		case errors.Is(r.Err, sale.ErrUnknownItem):
			return 0, false
		case errors.As(r.Err, &qty):
			return KindBadQty, true
		case errors.Is(r.Err, sale.ErrOverloaded):
			return KindOverloaded, true
		default:
			return KindUnavailable, true
		}
	}
	switch r.Outcome {
	case engine.Confirmed:
		return KindConfirmed, true
	case engine.Replayed:
		return KindReplayed, true
	case engine.SoldOut:
		return KindSoldOut, true
	case engine.LimitReached:
		return KindLimitReached, true
	case engine.NotStarted:
		return KindNotStarted, true
	case engine.Ended:
		return KindEnded, true
	case engine.Released:
		return KindReleased, true
	case engine.KeyReused:
		return KindKeyReused, true
	case engine.BadQty:
		return KindBadQty, true
	}
	return KindBroken, true
}

// Totals returns the outcome counts summed over every item (the
// dashboard's answers by kind).
func (g *Grabs) Totals() [numKinds]uint64 {
	var t [numKinds]uint64
	add := func(c *outcomeCounts) {
		for k := range c {
			t[k] += c[k].Load()
		}
	}
	for _, c := range *g.items.Load() {
		add(c)
	}
	add(&g.other)
	return t
}

// Confirmed returns item's confirmed grabs counted here (0 if none).
func (g *Grabs) Confirmed(item string) uint64 {
	if c := (*g.items.Load())[item]; c != nil {
		return c[KindConfirmed].Load()
	}
	return 0
}

var grabsDesc = desc("grabs_total", "Grab requests decided through this node, by item and outcome.", "item", "outcome")

// Describe implements prometheus.Collector.
func (g *Grabs) Describe(ch chan<- *prometheus.Desc) { ch <- grabsDesc }

// Collect implements prometheus.Collector.
func (g *Grabs) Collect(ch chan<- prometheus.Metric) {
	emit := func(item string, c *outcomeCounts) {
		for k := range c {
			if v := c[k].Load(); v > 0 {
				ch <- prometheus.MustNewConstMetric(grabsDesc, prometheus.CounterValue, float64(v), item, KindNames[k])
			}
		}
	}
	for item, c := range *g.items.Load() {
		emit(item, c)
	}
	emit(OtherItem, &g.other)
}

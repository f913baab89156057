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

// grabStripes splits each item's counters so that grabs of one hot item
// served on different cores rarely add to the same cache line. A grab's
// stripe comes from its user id's length and last byte (no hashing on the
// hot path): ids of a crowd differ there.
const grabStripes = 8

type outcomeCounts [grabStripes]struct {
	c [numKinds]atomic.Uint64
	_ [128 - numKinds*8%128]byte // a stripe to itself on 64- and 128-byte lines
}

func stripeOf(user string) int {
	if user == "" {
		return 0
	}
	return (len(user) + int(user[len(user)-1])) & (grabStripes - 1)
}

// load sums kind k over the stripes.
func (c *outcomeCounts) load(k int) uint64 {
	var v uint64
	for i := range c {
		v += c[i].c[k].Load()
	}
	return v
}

// Grabs is a sale.Service that counts each grab's outcome by item. Its Grab
// costs one sync.Map read (read-mostly: items are added only when first
// seen) and one atomic add.
type Grabs struct {
	sale.Service
	items sync.Map   // item -> *outcomeCounts
	mu    sync.Mutex // serialises adding items
	n     int        // items added, under mu
	other outcomeCounts
}

// CountGrabs wraps svc.
func CountGrabs(svc sale.Service) *Grabs {
	return &Grabs{Service: svc}
}

// Grab decides the grab and counts its outcome. An unknown item is not
// counted here (its id is the client's choice); the HTTP metrics count it
// as a 404.
func (g *Grabs) Grab(item, user string, qty int64, key string) sale.Reply {
	r := g.Service.Grab(item, user, qty, key)
	k, ok := kindOf(r)
	if ok {
		g.counts(item)[stripeOf(user)].c[k].Add(1)
	}
	return r
}

func (g *Grabs) counts(item string) *outcomeCounts {
	if c, ok := g.items.Load(item); ok {
		return c.(*outcomeCounts)
	}
	g.mu.Lock()
	defer g.mu.Unlock()
	if c, ok := g.items.Load(item); ok {
		return c.(*outcomeCounts)
	}
	if g.n >= MaxItemSeries {
		return &g.other
	}
	c := new(outcomeCounts)
	g.items.Store(item, c)
	g.n++
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
		for k := range t {
			t[k] += c.load(k)
		}
	}
	g.items.Range(func(_, c any) bool {
		add(c.(*outcomeCounts))
		return true
	})
	add(&g.other)
	return t
}

// Confirmed returns item's confirmed grabs counted here (0 if none).
func (g *Grabs) Confirmed(item string) uint64 {
	if c, ok := g.items.Load(item); ok {
		return c.(*outcomeCounts).load(KindConfirmed)
	}
	return 0
}

var grabsDesc = desc("grabs_total", "Grab requests decided through this node, by item and outcome.", "item", "outcome")

// Describe implements prometheus.Collector.
func (g *Grabs) Describe(ch chan<- *prometheus.Desc) { ch <- grabsDesc }

// Collect implements prometheus.Collector.
func (g *Grabs) Collect(ch chan<- prometheus.Metric) {
	emit := func(item string, c *outcomeCounts) {
		for k := range numKinds {
			if v := c.load(k); v > 0 {
				ch <- prometheus.MustNewConstMetric(grabsDesc, prometheus.CounterValue, float64(v), item, KindNames[k])
			}
		}
	}
	g.items.Range(func(item, c any) bool {
		emit(item.(string), c.(*outcomeCounts))
		return true
	})
	emit(OtherItem, &g.other)
}

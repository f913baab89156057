package metrics

import (
	"fmt"
	"testing"

	"github.com/prometheus/client_golang/prometheus"
	"github.com/prometheus/client_golang/prometheus/testutil"
	dto "github.com/prometheus/client_model/go"
	"github.com/seckill/seckill/engine"
	"github.com/seckill/seckill/sale"
)

// replies is a sale.Service whose Grab answers what the test says.
type replies struct {
	sale.Service
	next sale.Reply
}

func (r *replies) Grab(item, user string, qty int64, key string) sale.Reply { return r.next }

// TestGrabsCounts: every outcome lands under its kind and item; unknown
// items make no series; past MaxItemSeries items share OtherItem.
func TestGrabsCounts(t *testing.T) {
	svc := &replies{}
	g := CountGrabs(svc)
	cases := []struct {
		reply sale.Reply
		kind  string
	}{
		{sale.Reply{Outcome: engine.Confirmed}, "confirmed"},
		{sale.Reply{Outcome: engine.SoldOut}, "sold_out"},
		{sale.Reply{Outcome: engine.LimitReached}, "limit_reached"},
		{sale.Reply{Outcome: engine.Broken}, "broken"},
		{sale.Reply{Err: sale.ErrOverloaded}, "overloaded"},
		{sale.Reply{Err: sale.ErrUnavailable}, "unavailable"},
		{sale.Reply{Err: &sale.QtyError{Limit: 1}}, "bad_qty"},
	}
	for i, c := range cases {
		svc.next = c.reply
		for range i + 1 {
			g.Grab("a", fmt.Sprintf("user-%d", i), 1, "")
		}
	}
	svc.next = sale.Reply{Err: sale.ErrUnknownItem}
	g.Grab("nope", "u", 1, "")
	for i, c := range cases {
		if got := testutil.ToFloat64(onlyLabels(g, "a", c.kind)); got != float64(i+1) {
			t.Errorf("%s: %v, want %d", c.kind, got, i+1)
		}
	}
	if n := testutil.CollectAndCount(g); n != len(cases) {
		t.Errorf("%d series, want %d (no unknown item, no zero series)", n, len(cases))
	}
	svc.next = sale.Reply{Outcome: engine.Confirmed}
	for i := range MaxItemSeries + 5 {
		g.Grab(fmt.Sprint("item-", i), "u", 1, "")
	}
	if got := testutil.ToFloat64(onlyLabels(g, OtherItem, "confirmed")); got != 6 {
		t.Errorf("other items: %v confirmed, want 6 (the items past the bound)", got)
	}
	if g.Totals()[KindConfirmed] != uint64(MaxItemSeries+5+1) {
		t.Errorf("totals %v", g.Totals())
	}
}

// onlyLabels is the one series of g with these labels, as a collector.
type filtered struct {
	g          *Grabs
	item, kind string
}

func onlyLabels(g *Grabs, item, kind string) prometheus.Collector { return filtered{g, item, kind} }

func (f filtered) Describe(ch chan<- *prometheus.Desc) { f.g.Describe(ch) }
func (f filtered) Collect(ch chan<- prometheus.Metric) {
	all := make(chan prometheus.Metric, 64)
	go func() { f.g.Collect(all); close(all) }()
	for m := range all {
		if m.Desc() == grabsDesc && hasLabels(m, f.item, f.kind) {
			ch <- m
		}
	}
}

func hasLabels(m prometheus.Metric, item, kind string) bool {
	var d dtoMetric
	if err := m.Write(&d); err != nil {
		return false
	}
	var gotItem, gotKind string
	for _, l := range d.GetLabel() {
		switch l.GetName() {
		case "item":
			gotItem = l.GetValue()
		case "outcome":
			gotKind = l.GetValue()
		}
	}
	return gotItem == item && gotKind == kind
}

type dtoMetric = dto.Metric

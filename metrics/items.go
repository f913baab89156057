package metrics

import (
	"github.com/prometheus/client_golang/prometheus"
	"github.com/seckill/seckill/sale"
)

// Items reads every item's view at scrape time: stock, units remaining,
// sold, in the pool and in transit, refills, steals and buyers waiting.
// The numbers are the admin API's (GET /admin/v1/items/{item}), so a
// dashboard and the API never disagree; on a cluster node they are the
// cluster's sums, the same on every node (aggregate with max, not sum).
type Items struct {
	svc sale.Service
}

// NewItems returns the collector over svc.
func NewItems(svc sale.Service) *Items { return &Items{svc: svc} }

var (
	itemStock     = desc("item_stock_units", "Units the item was created with, plus stock added, minus stock taken back.", "item")
	itemRemaining = desc("item_remaining_units", "Unsold units of the item: in shards, in the pool and in transit.", "item")
	itemSold      = desc("item_sold_units", "Units of confirmed grabs not released.", "item")
	itemPool      = desc("item_pool_units", "Unsold units held by the item's pool.", "item")
	itemTransit   = desc("item_in_transit_units", "Unsold units on their way between the pool and a shard.", "item")
	itemSoldOut   = desc("item_sold_out", "1 once the item is sold out, else 0.", "item")
	itemShards    = desc("item_shards", "Shards the item is split into.", "item")
	itemRefills   = desc("item_refills_total", "Refills the item's shards received from its pool.", "item")
	itemSteals    = desc("item_steals_total", "Times a shard gave units back to the pool for a sibling.", "item")
	itemWaiting   = desc("item_waiting_buyers", "Buyers held at an empty shard waiting for a refill (shards running on this node).", "item")
)

// Describe implements prometheus.Collector.
func (c *Items) Describe(ch chan<- *prometheus.Desc) {
	for _, d := range []*prometheus.Desc{itemStock, itemRemaining, itemSold, itemPool, itemTransit, itemSoldOut,
		itemShards, itemRefills, itemSteals, itemWaiting} {
		ch <- d
	}
}

// Collect implements prometheus.Collector.
func (c *Items) Collect(ch chan<- prometheus.Metric) {
	gauge := func(d *prometheus.Desc, v int64, item string) {
		ch <- prometheus.MustNewConstMetric(d, prometheus.GaugeValue, float64(v), item)
	}
	for n, it := range c.svc.Items() {
		if n >= MaxItemSeries {
			break
		}
		id, b := it.Config.Item, it.Balance
		gauge(itemStock, b.Stock, id)
		gauge(itemRemaining, b.Remaining(), id)
		gauge(itemSold, b.Sold, id)
		gauge(itemPool, b.Pool, id)
		gauge(itemTransit, b.InTransit, id)
		gauge(itemShards, int64(it.Config.Shards), id)
		var so int64
		if it.SoldOut {
			so = 1
		}
		gauge(itemSoldOut, so, id)
		v, ok := c.svc.Item(id)
		if !ok {
			continue
		}
		var refills, steals, waiting int64
		for _, s := range v.Shards {
			refills, steals, waiting = refills+s.Refills, steals+s.Steals, waiting+s.Waiting
		}
		ch <- prometheus.MustNewConstMetric(itemRefills, prometheus.CounterValue, float64(refills), id)
		ch <- prometheus.MustNewConstMetric(itemSteals, prometheus.CounterValue, float64(steals), id)
		gauge(itemWaiting, waiting, id)
	}
}

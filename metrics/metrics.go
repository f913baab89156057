// Package metrics is what a running node tells Prometheus: the sale's
// numbers per item (read at scrape time from the same views the admin API
// answers with, never counted on the hot path), grab outcomes per item,
// group commits, Pebble's own metrics, the order pipeline's lag and dead
// letters, and the Go runtime. Every name starts with seckill_; no label
// ever holds a buyer or any other value a client chooses: items are created
// by the operator, and even they are capped (MaxItemSeries).
package metrics

import (
	"github.com/prometheus/client_golang/prometheus"
	"github.com/prometheus/client_golang/prometheus/collectors"
)

// Namespace prefixes every metric of seckill.
const Namespace = "seckill"

// NewRegistry returns a registry holding the Go runtime and process
// collectors; the node registers its own collectors on it.
func NewRegistry() *prometheus.Registry {
	r := prometheus.NewRegistry()
	r.MustRegister(collectors.NewGoCollector(), collectors.NewProcessCollector(collectors.ProcessCollectorOpts{}))
	return r
}

func desc(name, help string, labels ...string) *prometheus.Desc {
	return prometheus.NewDesc(Namespace+"_"+name, help, labels, nil)
}

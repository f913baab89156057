package persistence

import "github.com/cockroachdb/pebble/v2"

// Metrics returns Pebble's own metrics (WAL, fsync latency, compactions,
// memtables, disk usage) for the operator's dashboards. It is a snapshot
// read under Pebble's lock: call it at scrape time, not per request.
func (p *Pebble) Metrics() *pebble.Metrics { return p.db.Metrics() }

// Metrics returns the order store's Pebble metrics (see Pebble.Metrics).
func (p *PebbleOrders) Metrics() *pebble.Metrics { return p.db.Metrics() }

package metrics

import "github.com/prometheus/client_golang/prometheus"

var peerRefused = desc("peer_refused_total", "What a node's peer port refused, by reason: handshake (no certificate of the cluster's CA, or not TLS), envelope (a protoactor envelope or call no node sends), payload (not a seckill envelope, or no proven sender), reply (from a node other than the one asked), sender (a protocol message its sender may not say: not placed to run the pool or shard it speaks for), not_owner (a request for a shard not placed here).", "reason")

var grabsForwarded = desc("grabs_forwarded_total", "Grabs this front sent to the node that owns their shard, each a remote request and its reply. Buyers routed to their shard's owner (engine.ShardFor over GET /admin/v1/cluster/placement) take none.")

// Peer reads a clustered node's peer-port refusals and forwarded grabs at
// scrape time.
type Peer struct {
	// Refused counts by reason since the node started.
	Refused func() map[string]uint64
	// Forwarded counts the grabs sent to another node since it started.
	Forwarded func() uint64
}

// Describe implements prometheus.Collector.
func (p *Peer) Describe(ch chan<- *prometheus.Desc) { ch <- peerRefused; ch <- grabsForwarded }

// Collect implements prometheus.Collector.
func (p *Peer) Collect(ch chan<- prometheus.Metric) {
	for reason, n := range p.Refused() {
		ch <- prometheus.MustNewConstMetric(peerRefused, prometheus.CounterValue, float64(n), reason)
	}
	ch <- prometheus.MustNewConstMetric(grabsForwarded, prometheus.CounterValue, float64(p.Forwarded()))
}

package metrics

import (
	"context"
	"sync/atomic"
	"time"

	"github.com/prometheus/client_golang/prometheus"
)

// ScrapeTimeout bounds each question a scrape asks the stream (order
// backlog, dead letters): a NATS server that does not answer must not hold
// the scrape past Prometheus's own timeout (10 s by default).
const ScrapeTimeout = 2 * time.Second

// Pipeline reads the order side at scrape time. Any field may be nil: a
// node without an order side (--no-orders) has none of it.
type Pipeline struct {
	// RelayLag: durable grabs the stream has not acknowledged yet.
	RelayLag func() int64
	// Relayed: grabs the stream acknowledged since start.
	Relayed func() int64
	// Backlog: messages in the stream this node's writers have not turned
	// into orders yet.
	Backlog func(ctx context.Context) (int64, error)
	// Dead: dead letters in GRABS_DLQ.
	Dead func(ctx context.Context) (int64, error)
	// Written: orders this node's writers wrote (new ones only).
	Written func() int64
	// PublishErrors counts failed publishes of the relay (the caller adds).
	PublishErrors prometheus.Counter

	backlogErrs, deadErrs atomic.Uint64
}

// NewPublishErrors returns the counter for Pipeline.PublishErrors.
func NewPublishErrors() prometheus.Counter {
	return prometheus.NewCounter(prometheus.CounterOpts{Namespace: Namespace, Name: "nats_publish_errors_total",
		Help: "Relay publishes to NATS JetStream that failed (the relay retries them)."})
}

var (
	relayLag     = desc("relay_lag_grabs", "Confirmed grabs on disk that the stream has not acknowledged yet.")
	relayed      = desc("relayed_grabs_total", "Grabs the stream acknowledged since the node started.")
	orderBacklog = desc("order_backlog_messages", "Messages in the stream not yet written as orders by this node's writers (up to 64 grabs each).")
	deadLetters  = desc("dead_letters", "Grabs no order writer could write after every retry (GRABS_DLQ).")
	written      = desc("orders_written_total", "Orders this node's writers wrote (each grab once).")
	sourceErrors = desc("scrape_source_errors_total", "Scrapes in which a source did not answer (its metric is left out).", "source")
)

// Describe implements prometheus.Collector.
func (p *Pipeline) Describe(ch chan<- *prometheus.Desc) {
	for _, d := range []*prometheus.Desc{relayLag, relayed, orderBacklog, deadLetters, written, sourceErrors} {
		ch <- d
	}
	if p.PublishErrors != nil {
		p.PublishErrors.Describe(ch)
	}
}

// Collect implements prometheus.Collector.
func (p *Pipeline) Collect(ch chan<- prometheus.Metric) {
	if p.RelayLag != nil {
		ch <- prometheus.MustNewConstMetric(relayLag, prometheus.GaugeValue, float64(p.RelayLag()))
	}
	if p.Relayed != nil {
		ch <- prometheus.MustNewConstMetric(relayed, prometheus.CounterValue, float64(p.Relayed()))
	}
	if p.Written != nil {
		ch <- prometheus.MustNewConstMetric(written, prometheus.CounterValue, float64(p.Written()))
	}
	if p.PublishErrors != nil {
		p.PublishErrors.Collect(ch)
	}
	ask := func(d *prometheus.Desc, f func(context.Context) (int64, error)) {
		if f == nil {
			return
		}
		ctx, cancel := context.WithTimeout(context.Background(), ScrapeTimeout)
		defer cancel()
		v, err := f(ctx)
		if err != nil {
			if d == orderBacklog {
				p.backlogErrs.Add(1)
			} else {
				p.deadErrs.Add(1)
			}
			return
		}
		ch <- prometheus.MustNewConstMetric(d, prometheus.GaugeValue, float64(v))
	}
	ask(orderBacklog, p.Backlog)
	ask(deadLetters, p.Dead)
	ch <- prometheus.MustNewConstMetric(sourceErrors, prometheus.CounterValue, float64(p.backlogErrs.Load()), "order_backlog")
	ch <- prometheus.MustNewConstMetric(sourceErrors, prometheus.CounterValue, float64(p.deadErrs.Load()), "dead_letters")
}

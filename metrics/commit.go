package metrics

import (
	"time"

	"github.com/prometheus/client_golang/prometheus"
)

// Rounds observes group commits (actors.RoundObserver): records per round
// and the time from a round's submission to the end of its fdatasync.
type Rounds struct {
	Records prometheus.Histogram
	Durable prometheus.Histogram
}

// NewRounds returns the two histograms, to register.
func NewRounds() *Rounds {
	return &Rounds{
		Records: prometheus.NewHistogram(prometheus.HistogramOpts{Namespace: Namespace, Name: "commit_round_records",
			Help:    "Records written per group commit (one Pebble batch, one fdatasync).",
			Buckets: prometheus.ExponentialBuckets(1, 2, 12)}),
		Durable: prometheus.NewHistogram(prometheus.HistogramOpts{Namespace: Namespace, Name: "commit_durable_seconds",
			Help:    "Time from a group commit's submission to Pebble until its records are durable.",
			Buckets: LatencyBuckets}),
	}
}

// LatencyBuckets (seconds) span a fast fdatasync (100 µs) to a request
// held for the longest timeout a buyer can see (10 s).
var LatencyBuckets = []float64{0.0001, 0.00025, 0.0005, 0.001, 0.0025, 0.005, 0.01, 0.025, 0.05, 0.1, 0.25, 0.5, 1, 2.5, 5, 10}

// ObserveRound implements actors.RoundObserver.
func (r *Rounds) ObserveRound(records int, durable time.Duration) {
	r.Records.Observe(float64(records))
	r.Durable.Observe(durable.Seconds())
}

// Collectors returns what to register.
func (r *Rounds) Collectors() []prometheus.Collector {
	return []prometheus.Collector{r.Records, r.Durable}
}

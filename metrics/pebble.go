package metrics

import (
	"math"

	"github.com/cockroachdb/pebble/v2"
	"github.com/prometheus/client_golang/prometheus"
	dto "github.com/prometheus/client_model/go"
)

// Pebble reads a Pebble database's own metrics at scrape time. Stores are
// named by the caller ("grabs" for the journal, "orders" for the order
// store): a fixed, small label.
type Pebble struct {
	stores map[string]func() *pebble.Metrics
}

// NewPebble returns a collector over the named stores' Metrics functions.
func NewPebble(stores map[string]func() *pebble.Metrics) *Pebble { return &Pebble{stores: stores} }

var (
	pebbleFsync       = desc("pebble_wal_fsync_seconds", "Latency of Pebble's WAL fdatasync.", "store")
	pebbleWALBytes    = desc("pebble_wal_written_bytes_total", "Bytes written to Pebble's WAL.", "store")
	pebbleWALSize     = desc("pebble_wal_size_bytes", "Physical size of Pebble's live WAL files.", "store")
	pebbleCompactions = desc("pebble_compactions_total", "Compactions Pebble ran.", "store")
	pebbleCompacting  = desc("pebble_compactions_in_progress", "Compactions running now.", "store")
	pebbleDebt        = desc("pebble_compaction_debt_bytes", "Estimated bytes to compact for the LSM to be stable.", "store")
	pebbleFlushes     = desc("pebble_flushes_total", "Memtable flushes Pebble ran.", "store")
	pebbleMemBytes    = desc("pebble_memtable_bytes", "Bytes allocated by memtables.", "store")
	pebbleMemCount    = desc("pebble_memtables", "Memtables in use.", "store")
	pebbleDisk        = desc("pebble_disk_usage_bytes", "Disk space used by the store (tables, WAL, manifests).", "store")
)

// fsyncBounds are the bucket bounds (seconds) kept from Pebble's own fsync
// histogram (100 buckets in nanoseconds, linear to 5 ms then exponential
// to 10 s): below 5 ms these, above it every fsyncStride-th of Pebble's.
// Each is a bound Pebble has, so the cumulative counts carried are exact.
var fsyncBounds = []float64{0.0001, 0.0002, 0.0003, 0.0005, 0.0007, 0.001, 0.0015, 0.002, 0.003, 0.004}

const fsyncStride = 5

// Describe implements prometheus.Collector.
func (p *Pebble) Describe(ch chan<- *prometheus.Desc) {
	for _, d := range []*prometheus.Desc{pebbleFsync, pebbleWALBytes, pebbleWALSize, pebbleCompactions, pebbleCompacting,
		pebbleDebt, pebbleFlushes, pebbleMemBytes, pebbleMemCount, pebbleDisk} {
		ch <- d
	}
}

// Collect implements prometheus.Collector.
func (p *Pebble) Collect(ch chan<- prometheus.Metric) {
	for name, read := range p.stores {
		m := read()
		if m == nil {
			continue
		}
		c := func(d *prometheus.Desc, t prometheus.ValueType, v float64) {
			ch <- prometheus.MustNewConstMetric(d, t, v, name)
		}
		c(pebbleWALBytes, prometheus.CounterValue, float64(m.WAL.BytesWritten))
		c(pebbleWALSize, prometheus.GaugeValue, float64(m.WAL.PhysicalSize))
		c(pebbleCompactions, prometheus.CounterValue, float64(m.Compact.Count))
		c(pebbleCompacting, prometheus.GaugeValue, float64(m.Compact.NumInProgress))
		c(pebbleDebt, prometheus.GaugeValue, float64(m.Compact.EstimatedDebt))
		c(pebbleFlushes, prometheus.CounterValue, float64(m.Flush.Count))
		c(pebbleMemBytes, prometheus.GaugeValue, float64(m.MemTable.Size))
		c(pebbleMemCount, prometheus.GaugeValue, float64(m.MemTable.Count))
		c(pebbleDisk, prometheus.GaugeValue, float64(m.DiskSpaceUsage()))
		if h := m.LogWriter.FsyncLatency; h != nil {
			if ch2, ok := fsyncHistogram(h, name); ok {
				ch <- ch2
			}
		}
	}
}

// fsyncHistogram converts Pebble's nanosecond histogram to seconds on
// fsyncBounds.
func fsyncHistogram(h prometheus.Histogram, store string) (prometheus.Metric, bool) {
	var m dto.Metric
	if h.Write(&m) != nil || m.Histogram == nil {
		return nil, false
	}
	buckets := map[float64]uint64{}
	var exp int
	for _, sb := range m.Histogram.GetBucket() {
		ub := sb.GetUpperBound() / 1e9
		if ub < 0.005*(1-1e-9) {
			for _, b := range fsyncBounds {
				if math.Abs(ub-b) < b*1e-6 {
					buckets[b] = sb.GetCumulativeCount()
				}
			}
			continue
		}
		if exp%fsyncStride == 0 {
			buckets[ub] = sb.GetCumulativeCount()
		}
		exp++
	}
	return prometheus.MustNewConstHistogram(pebbleFsync, m.Histogram.GetSampleCount(), m.Histogram.GetSampleSum()/1e9,
		buckets, store), true
}

package main

import (
	"slices"
	"strconv"
	"sync"
	"sync/atomic"
	"testing"
	"time"

	"github.com/seckill/seckill/engine"
	"github.com/seckill/seckill/persistence"
)

// stampStore records when each order became durable.
type stampStore struct {
	persistence.OrderStore
	mu      sync.Mutex
	written map[string]time.Time
	n       atomic.Int64
	all     chan struct{}
	want    int64
}

func (s *stampStore) WriteNew(orders []engine.Order) (int, error) {
	k, err := s.OrderStore.WriteNew(orders)
	if err != nil {
		return k, err
	}
	now := time.Now()
	s.mu.Lock()
	for _, o := range orders {
		if _, ok := s.written[o.GrabID]; !ok {
			s.written[o.GrabID] = now
		}
	}
	n := int64(len(s.written))
	s.mu.Unlock()
	if n >= s.want {
		select {
		case s.all <- struct{}{}:
		default:
		}
	}
	return k, nil
}

// BenchmarkGrabsToOrders runs a sale at full speed (64 buyers in flight,
// every grab durable) through the whole in-process pipeline: shard actors
// and Pebble, the relay to embedded NATS JetStream, one order writer and
// its Pebble order store. It reports grabs turned into orders per second
// (first grab to last order written) and the lag from each 201 to its
// order being written.
func BenchmarkGrabsToOrders(b *testing.B) {
	const inflight = 64
	stamps := &stampStore{written: map[string]time.Time{}, all: make(chan struct{}, 1), want: int64(b.N)}
	n := startInProcessB(b, func(s persistence.OrderStore) persistence.OrderStore { stamps.OrderStore = s; return stamps })
	if err := n.node.CreateItem(engine.ItemConfig{Item: "e2e", Stock: engine.MaxStock, Shards: 16, PerUserLimit: 1}); err != nil {
		b.Fatal(err)
	}
	confirmedAt := make([]time.Time, b.N)
	ids := make([]string, b.N)
	var next atomic.Int64
	var wg sync.WaitGroup
	b.ResetTimer()
	start := time.Now()
	for range inflight {
		wg.Go(func() {
			for {
				i := next.Add(1) - 1
				if i >= int64(b.N) {
					return
				}
				r := n.node.Grab("e2e", "u"+strconv.FormatInt(i, 10), 1, "")
				if r.Err != nil || r.Outcome != engine.Confirmed {
					b.Errorf("grab: %v %v", r.Outcome, r.Err)
					return
				}
				confirmedAt[i], ids[i] = time.Now(), r.Grab.ID()
			}
		})
	}
	wg.Wait()
	<-stamps.all
	elapsed := time.Since(start)
	b.StopTimer()
	lags := make([]time.Duration, 0, b.N)
	stamps.mu.Lock()
	for i, id := range ids {
		lags = append(lags, max(0, stamps.written[id].Sub(confirmedAt[i])))
	}
	stamps.mu.Unlock()
	slices.Sort(lags)
	b.ReportMetric(float64(b.N)/elapsed.Seconds(), "orders/s")
	b.ReportMetric(float64(lags[len(lags)/2].Microseconds())/1000, "lag-p50-ms")
	b.ReportMetric(float64(lags[len(lags)*99/100].Microseconds())/1000, "lag-p99-ms")
}

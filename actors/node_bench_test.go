package actors

import (
	"fmt"
	"strconv"
	"sync"
	"sync/atomic"
	"testing"

	"github.com/seckill/seckill/engine"
	"github.com/seckill/seckill/persistence"
)

// BenchmarkDurableGrab measures confirmed grabs through shard actors and
// Pebble group commits (fdatasync before every reply) with 1, 64 and 256
// requests in flight. Each op is one durable grab by a new user.
func BenchmarkDurableGrab(b *testing.B) {
	for _, inflight := range []int{1, 64, 256} {
		b.Run(fmt.Sprintf("inflight=%d", inflight), func(b *testing.B) {
			n := benchNode(b, engine.ItemConfig{Item: "bench", Stock: engine.MaxStock, Shards: 16, PerUserLimit: 1})
			var next atomic.Int64
			var wg sync.WaitGroup
			b.ResetTimer()
			for range inflight {
				wg.Go(func() {
					for {
						i := next.Add(1)
						if i > int64(b.N) {
							return
						}
						r := n.Grab("bench", "user-"+strconv.FormatInt(i, 10), 1, "")
						if r.Err != nil || r.Outcome != engine.Confirmed {
							b.Errorf("grab %d: %v %v", i, r.Outcome, r.Err)
							return
						}
					}
				})
			}
			wg.Wait()
			b.ReportMetric(float64(b.N)/b.Elapsed().Seconds(), "grabs/s")
		})
	}
}

// BenchmarkSoldOutThroughActor measures a refusal that reaches its shard
// (keyed requests cannot be answered from the sold-out flag).
func BenchmarkSoldOutThroughActor(b *testing.B) {
	n, err := Start(persistence.NewMem(), Options{})
	if err != nil {
		b.Fatal(err)
	}
	defer n.Close()
	if err := n.CreateItem(engine.ItemConfig{Item: "gone", Stock: 0, Shards: 16, PerUserLimit: 1}); err != nil {
		b.Fatal(err)
	}
	b.RunParallel(func(pb *testing.PB) {
		for pb.Next() {
			if r := n.Grab("gone", "u", 1, "k"); r.Outcome != engine.SoldOut {
				b.Errorf("%v %v", r.Outcome, r.Err)
				return
			}
		}
	})
}

// benchNode starts a node over a fresh Pebble directory with one item,
// closed when b ends.
func benchNode(b *testing.B, cfg engine.ItemConfig) *Node {
	store, err := persistence.OpenPebble(b.TempDir())
	if err != nil {
		b.Fatal(err)
	}
	n, err := Start(store, Options{})
	if err != nil {
		b.Fatal(err)
	}
	b.Cleanup(func() { n.Close() })
	if cfg.Item != "" {
		if err := n.CreateItem(cfg); err != nil {
			b.Fatal(err)
		}
	}
	return n
}

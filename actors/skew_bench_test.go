package actors

import (
	"slices"
	"strconv"
	"sync"
	"sync/atomic"
	"testing"
	"time"

	"github.com/seckill/seckill/engine"
)

// BenchmarkSkewedGrabs sends durable grabs whose users all hash to 4 of 64
// shards (a skewed crowd), 64 in flight, over Pebble. It reports grabs/s,
// p99 and how many buyers were told sold_out while stock remained. It uses
// only the Node API that predates the stock pool, so the same file measures
// the version before it.
func BenchmarkSkewedGrabs(b *testing.B) {
	const shards, hot, inflight = 64, 4, 64
	stock := int64(b.N) + 1000 // never really runs out
	n := benchNode(b, engine.ItemConfig{Item: "skew", Stock: stock, Shards: shards, PerUserLimit: 1})
	users := make([]string, 0, b.N)
	for i := 0; len(users) < b.N; i++ {
		u := "user-" + strconv.Itoa(i)
		if engine.ShardFor("skew", u, shards) < hot {
			users = append(users, u)
		}
	}
	lat := make([]time.Duration, b.N)
	var next, confirmed, soldOut, other atomic.Int64
	var wg sync.WaitGroup
	b.ResetTimer()
	for range inflight {
		wg.Go(func() {
			for {
				i := next.Add(1) - 1
				if i >= int64(b.N) {
					return
				}
				t0 := time.Now()
				r := n.Grab("skew", users[i], 1, "")
				lat[i] = time.Since(t0)
				switch {
				case r.Err == nil && r.Outcome == engine.Confirmed:
					confirmed.Add(1)
				case r.Err == nil && r.Outcome == engine.SoldOut:
					soldOut.Add(1)
				default:
					other.Add(1)
				}
			}
		})
	}
	wg.Wait()
	b.StopTimer()
	slices.Sort(lat)
	b.ReportMetric(float64(confirmed.Load())/b.Elapsed().Seconds(), "grabs/s")
	b.ReportMetric(float64(lat[len(lat)*99/100].Microseconds()), "p99-µs")
	b.ReportMetric(100*float64(soldOut.Load())/float64(b.N), "%false-soldout")
	b.ReportMetric(100*float64(other.Load())/float64(b.N), "%other")
}

// BenchmarkTransferRoundTrip measures, through actors and Pebble, a grab
// that meets an empty shard and waits: for a refill from the pool, or for a
// steal from a sibling (give-back commit, pool commit, refill commit).
func BenchmarkTransferRoundTrip(b *testing.B) {
	for _, kind := range []string{"refill", "steal"} {
		b.Run(kind, func(b *testing.B) {
			n := benchNode(b, engine.ItemConfig{})
			// Stock 2 over 2 shards: shard 0 holds 1, shard 1 holds 0, the
			// pool 1. A buyer on shard 1 waits for a refill; once the pool is
			// empty, the next one waits for a steal from shard 0.
			for i := 0; b.Loop(); i++ {
				b.StopTimer()
				item := "x" + strconv.Itoa(i)
				if err := n.CreateItem(engine.ItemConfig{Item: item, Stock: 2, Shards: 2, PerUserLimit: 1}); err != nil {
					b.Fatal(err)
				}
				a, c := pickShardUsers(item)
				if kind == "steal" {
					if r := n.Grab(item, a, 1, ""); r.Outcome != engine.Confirmed {
						b.Fatalf("refill grab: %v %v", r.Outcome, r.Err)
					}
					a = c
				}
				b.StartTimer()
				if r := n.Grab(item, a, 1, ""); r.Outcome != engine.Confirmed {
					b.Fatalf("%s grab: %v %v", kind, r.Outcome, r.Err)
				}
			}
		})
	}
}

func pickShardUsers(item string) (string, string) {
	var found []string
	for i := 0; len(found) < 2; i++ {
		if u := "u" + strconv.Itoa(i); engine.ShardFor(item, u, 2) == 1 {
			found = append(found, u)
		}
	}
	return found[0], found[1]
}

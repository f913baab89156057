package persistence

import (
	"strconv"
	"testing"

	"github.com/seckill/seckill/engine"
)

// BenchmarkStartup1M measures a restart: open Pebble and rebuild every shard
// of an item with one million confirmed grabs on disk (stock 4 M, so that
// the half spread over the shards at creation covers the uneven hashing) (16 shards, each grab
// with an idempotency key). The target is under 2 s per op.
func BenchmarkStartup1M(b *testing.B) {
	const grabs = 1_000_000
	dir := b.TempDir()
	cfg := engine.ItemConfig{Item: "startup-item", Stock: 4 * grabs, Shards: 16, PerUserLimit: 1}
	s, err := OpenPebble(dir)
	if err != nil {
		b.Fatal(err)
	}
	var batch Batch
	batch.PutItem(cfg)
	shards := make([]*engine.Shard, cfg.Shards)
	for i := range shards {
		shards[i] = engine.NewShard(cfg, i)
	}
	for u := 0; u < grabs; u++ {
		user := "user-" + strconv.Itoa(u)
		d := shards[engine.ShardFor(cfg.Item, user, cfg.Shards)].Grab(engine.GrabInput{User: user, Qty: 1, Key: "key-" + strconv.Itoa(u), NowMs: 1})
		if !d.MustPersist() {
			b.Fatalf("fixture grab %d: %v", u, d.Outcome)
		}
		batch.PutGrab(d.Grab, d.Counters)
		if batch.Len() >= 20000 {
			if err := s.Apply(&batch); err != nil {
				b.Fatal(err)
			}
			batch.Reset()
		}
	}
	if err := s.Apply(&batch); err != nil {
		b.Fatal(err)
	}
	if err := s.Close(); err != nil {
		b.Fatal(err)
	}
	b.ResetTimer()
	for b.Loop() {
		s, err := OpenPebble(dir)
		if err != nil {
			b.Fatal(err)
		}
		items, err := s.Items()
		if err != nil {
			b.Fatal(err)
		}
		var sold int64
		for _, c := range items {
			loaded, err := LoadItem(s, c)
			if err != nil {
				b.Fatal(err)
			}
			for _, sh := range loaded.Shards {
				sold += sh.Counters().Sold
			}
		}
		if sold != grabs {
			b.Fatalf("loaded %d sold, want %d", sold, grabs)
		}
		b.StopTimer()
		s.Close()
		b.StartTimer()
	}
}

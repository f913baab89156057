package persistence

import (
	"fmt"
	"runtime"
	"sync"

	"github.com/seckill/seckill/engine"
)

// LoadShard rebuilds one engine shard from its counters and its grab log
// and checks it.
func LoadShard(s Reader, cfg engine.ItemConfig, index int) (*engine.Shard, error) {
	c, err := s.ShardCounters(cfg.Item, index)
	if err != nil {
		return nil, err
	}
	sh := engine.RestoreShard(cfg, index, c)
	if err := s.ShardGrabs(cfg.Item, index, sh.Restore); err != nil {
		return nil, fmt.Errorf("load %s.%d: %w", cfg.Item, index, err)
	}
	if err := s.ShardReleases(cfg.Item, index, sh.RestoreRelease); err != nil {
		return nil, fmt.Errorf("load %s.%d: %w", cfg.Item, index, err)
	}
	if err := sh.Verify(); err != nil {
		return nil, fmt.Errorf("load %s.%d: %w", cfg.Item, index, err)
	}
	return sh, nil
}

// LoadedItem is an item rebuilt from disk.
type LoadedItem struct {
	Pool   *engine.Pool
	Shards []*engine.Shard
}

// LoadItem rebuilds an item's pool and every shard (several at once), then
// completes the transfers that were in flight when the process stopped and
// makes that durable before returning: a loaded item has nothing in
// transit and its conservation checked. It reads the State and the grab
// log and appends the recovery to the Journal.
func LoadItem(s interface {
	Journal
	State
}, cfg engine.ItemConfig) (*LoadedItem, error) {
	st, err := s.Pool(cfg.Item)
	if err != nil {
		return nil, err
	}
	pool, err := engine.RestorePool(cfg, st)
	if err != nil {
		return nil, err
	}
	shards := make([]*engine.Shard, cfg.Shards)
	errs := make([]error, cfg.Shards)
	work := make(chan int, cfg.Shards)
	for i := range cfg.Shards {
		work <- i
	}
	close(work)
	var wg sync.WaitGroup
	for range min(runtime.GOMAXPROCS(0), cfg.Shards) {
		wg.Go(func() {
			for i := range work {
				shards[i], errs[i] = LoadShard(s, cfg, i)
			}
		})
	}
	wg.Wait()
	for _, err := range errs {
		if err != nil {
			return nil, err
		}
	}
	before := pool.State()
	changed, err := engine.Recover(pool, shards)
	if err != nil {
		return nil, err
	}
	var b Batch
	for _, i := range changed {
		b.PutCounters(cfg.Item, i, shards[i].Counters())
	}
	if len(changed) > 0 || pool.Available() != before.Pool {
		b.PutPool(cfg.Item, pool.State())
	}
	if b.Len() > 0 {
		if err := s.Apply(&b); err != nil {
			return nil, fmt.Errorf("recover %s: %w", cfg.Item, err)
		}
	}
	return &LoadedItem{Pool: pool, Shards: shards}, nil
}

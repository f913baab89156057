package persistence

import (
	"fmt"
	"runtime"
	"sync"

	"github.com/seckill/seckill/engine"
)

// LoadShard rebuilds one engine shard from the store and checks it.
func LoadShard(s Store, cfg engine.ItemConfig, index int) (*engine.Shard, error) {
	c, err := s.ShardCounters(cfg.Item, index)
	if err != nil {
		return nil, err
	}
	sh := engine.RestoreShard(cfg, index, c)
	if err := s.ShardGrabs(cfg.Item, index, sh.Restore); err != nil {
		return nil, fmt.Errorf("load %s.%d: %w", cfg.Item, index, err)
	}
	if err := sh.Verify(); err != nil {
		return nil, fmt.Errorf("load %s.%d: %w", cfg.Item, index, err)
	}
	return sh, nil
}

// LoadItem rebuilds every shard of an item, several at once.
func LoadItem(s Store, cfg engine.ItemConfig) ([]*engine.Shard, error) {
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
	return shards, nil
}

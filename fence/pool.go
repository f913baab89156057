package fence

import (
	"context"
	"encoding/json"
	"fmt"
	"slices"

	"go.etcd.io/etcd/api/v3/mvccpb"
	clientv3 "go.etcd.io/etcd/client/v3"

	"github.com/seckill/seckill/engine"
)

// PoolLedger is an item's pool record in etcd: the engine's PoolState, per
// shard and not per incarnation, plus the units forced moves took out of
// play. Conservation, the engine's own rule with the frozen units added:
//
//	Stock == Frozen + Pool + cfg.InitialQuota() + Σ (Sent[i] - Got[i])
//
// Frozen units are those a dead owner held when its shard was forced away
// (ForceMove): possibly sold after its last snapshot, so never sold again.
// The engine sees Stock - Frozen as the item's stock (State).
type PoolLedger struct {
	Item   string  `json:"-"`      // from the key
	Stock  int64   `json:"stock"`  // creation plus every change, frozen units included
	Pool   int64   `json:"pool"`   // units held by no shard
	Frozen int64   `json:"frozen"` // units out of play since forced moves
	Sent   []int64 `json:"sent"`   // units sent to shard i, ever (since its last forced move)
	Got    []int64 `json:"got"`    // units received from shard i, ever (idem)
	// Rev is the key's mod revision when read; it is not stored.
	// CommitPool writes only over this revision.
	Rev int64 `json:"-"`
}

// newPoolLedger is the ledger of a new item: engine.NewPool's record,
// nothing frozen.
func newPoolLedger(cfg engine.ItemConfig) PoolLedger {
	st := engine.NewPool(cfg).State()
	return PoolLedger{Item: cfg.Item, Stock: st.Stock, Pool: st.Pool, Sent: st.Sent, Got: st.Got}
}

// State is the engine's view of the ledger: the frozen units are out of
// play, so the engine's stock is Stock - Frozen.
func (l PoolLedger) State() engine.PoolState {
	return engine.PoolState{Stock: l.Stock - l.Frozen, Pool: l.Pool, Sent: slices.Clone(l.Sent), Got: slices.Clone(l.Got)}
}

// Verify checks the ledger against the item's config: one Sent and one
// Got per shard, nothing negative, no more frozen than stock, and the
// engine's conservation rule (engine.RestorePool) on State. A broken
// ledger is ErrRefused.
func (l PoolLedger) Verify(cfg engine.ItemConfig) error {
	if l.Item != "" && l.Item != cfg.Item {
		return fmt.Errorf("pool ledger of %s checked against item %s: %w", l.Item, cfg.Item, ErrRefused)
	}
	if len(l.Sent) != cfg.Shards || len(l.Got) != cfg.Shards {
		return fmt.Errorf("pool %s: %d sent and %d got for %d shards: %w", cfg.Item, len(l.Sent), len(l.Got), cfg.Shards, ErrRefused)
	}
	if l.Stock < 0 || l.Stock > engine.MaxStock || l.Pool < 0 || l.Frozen < 0 || l.Frozen > l.Stock {
		return fmt.Errorf("pool %s: stock %d pool %d frozen %d: %w", cfg.Item, l.Stock, l.Pool, l.Frozen, ErrRefused)
	}
	if _, err := engine.RestorePool(cfg, l.State()); err != nil {
		return fmt.Errorf("%w (%d frozen): %w", err, l.Frozen, ErrRefused)
	}
	return nil
}

// put verifies the ledger and returns its write: nothing that breaks
// conservation is ever written.
func (l PoolLedger) put(cfg engine.ItemConfig) (clientv3.Op, error) {
	if err := l.Verify(cfg); err != nil {
		return clientv3.Op{}, err
	}
	b, err := json.Marshal(l)
	if err != nil {
		return clientv3.Op{}, fmt.Errorf("pool %s: %w", cfg.Item, err)
	}
	return clientv3.OpPut(poolKey(cfg.Item), string(b)), nil
}

// decodePoolLedger reads a pool ledger and refuses one that is already
// broken.
func decodePoolLedger(cfg engine.ItemConfig, kv *mvccpb.KeyValue) (PoolLedger, error) {
	var l PoolLedger
	if err := json.Unmarshal(kv.Value, &l); err != nil {
		return l, fmt.Errorf("pool %s: %w", cfg.Item, err)
	}
	l.Item, l.Rev = cfg.Item, kv.ModRevision
	if err := l.Verify(cfg); err != nil {
		return l, fmt.Errorf("pool %s as stored: %w", cfg.Item, err)
	}
	return l, nil
}

// LoadPool reads an item's pool ledger (ErrNoLedger when it has none), with
// the mod revision CommitPool will compare.
func (s *Store) LoadPool(ctx context.Context, item string) (PoolLedger, error) {
	if err := checkID("item", item); err != nil {
		return PoolLedger{}, err
	}
	resp, err := s.cli.Txn(ctx).Then(clientv3.OpGet(poolKey(item)), clientv3.OpGet(itemKey(item))).Commit()
	if err != nil {
		return PoolLedger{}, fmt.Errorf("load pool %s: %w", item, err)
	}
	kvs := kvsOf(resp)
	if kvs[0] == nil {
		return PoolLedger{}, fmt.Errorf("load pool %s: %w", item, ErrNoLedger)
	}
	if kvs[1] == nil {
		return PoolLedger{}, fmt.Errorf("load pool %s: a pool ledger without its item: %w", item, ErrNoItem)
	}
	cfg, err := decodeItem(kvs[1])
	if err != nil {
		return PoolLedger{}, err
	}
	return decodePoolLedger(cfg, kvs[0])
}

package fence

import (
	"cmp"
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

// newPoolLedger is engine.NewPool's record, nothing frozen.
func newPoolLedger(cfg engine.ItemConfig) PoolLedger {
	st := engine.NewPool(cfg).State()
	return PoolLedger{Item: cfg.Item, Stock: st.Stock, Pool: st.Pool, Sent: st.Sent, Got: st.Got}
}

// clusterPoolLedger is the ledger CreateItem writes for a new item: every
// unit in the pool. The engine spreads an initial quota over the shards at
// creation; here each shard is born having given its part back (Got[i] is
// its initial allocation, and its first counters say Returned the same),
// so that no shard incarnation holds a unit the ledger did not grant to it
// by compare-and-swap: an activation etcd did not place sells nothing. The
// shards ask for units with their first buyers.
func clusterPoolLedger(cfg engine.ItemConfig) PoolLedger {
	st := engine.NewPool(cfg).State()
	pool := st.Pool
	for i := range st.Got {
		st.Got[i] = cfg.InitialAllocation(i)
		pool += st.Got[i]
	}
	return PoolLedger{Item: cfg.Item, Stock: st.Stock, Pool: pool, Sent: st.Sent, Got: st.Got}
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

// Guard names a shard incarnation a pool commit depends on: the commit is
// written only while the shard's placement is still that epoch, Active. A
// commit that records a transfer with a shard (a grant, a give-back)
// guards that shard's incarnation, so a transfer with an incarnation that
// moved away is never recorded.
type Guard struct {
	Shard int
	Epoch uint64
}

func cmpGuard(a, b Guard) int {
	return cmp.Or(cmp.Compare(a.Shard, b.Shard), cmp.Compare(a.Epoch, b.Epoch))
}

// CommitPool writes the engine's pool state next as the item's ledger,
// over the ledger of revision prevRev (LoadPool's Rev, or the revision the
// last commit returned), and returns the new revision. The frozen units
// are carried over unchanged: the ledger's Stock is next.Stock + Frozen.
//
// The pool ledger is read with every guarded placement; the write is one
// transaction that compares the ledger's mod revision with prevRev and
// each guarded placement's mod revision with the one read, which was that
// epoch and Active. An unchanged mod revision is an unchanged placement:
// the values are not compared. Any change since is ErrStale, and so is a
// guard that no longer holds at the read: the caller reloads and
// recomputes; there is no retry here. A next that lowers any shard's Sent
// or Got, or breaks conservation, is ErrRefused; nothing is written.
func (s *Store) CommitPool(ctx context.Context, item string, prevRev int64, next engine.PoolState, guards []Guard) (int64, error) {
	what := fmt.Sprintf("commit pool %s over revision %d", item, prevRev)
	if err := checkID("item", item); err != nil {
		return 0, err
	}
	guards = slices.Clone(guards)
	slices.SortFunc(guards, cmpGuard)
	guards = slices.Compact(guards)
	if len(guards) > MaxGuards {
		return 0, fmt.Errorf("%s: %d guards, at most %d fit one etcd transaction", what, len(guards), MaxGuards)
	}
	gets := []clientv3.Op{clientv3.OpGet(poolKey(item)), clientv3.OpGet(itemKey(item))}
	for _, g := range guards {
		if err := checkShard(item, g.Shard); err != nil {
			return 0, fmt.Errorf("%s: %w", what, err)
		}
		gets = append(gets, clientv3.OpGet(placementKey(item, g.Shard)))
	}
	resp, err := s.cli.Txn(ctx).Then(gets...).Commit()
	if err != nil {
		return 0, fmt.Errorf("%s: read: %w", what, err)
	}
	kvs := kvsOf(resp)
	switch {
	case kvs[0] == nil:
		return 0, fmt.Errorf("%s: %w", what, ErrNoLedger)
	case kvs[1] == nil:
		return 0, fmt.Errorf("%s: a pool ledger without its item: %w", what, ErrNoItem)
	case kvs[0].ModRevision != prevRev:
		return 0, fmt.Errorf("%s: now at %d: %w", what, kvs[0].ModRevision, ErrStale)
	}
	cfg, err := decodeItem(kvs[1])
	if err != nil {
		return 0, err
	}
	cur, err := decodePoolLedger(cfg, kvs[0])
	if err != nil {
		return 0, err
	}
	cmps := []clientv3.Cmp{clientv3.Compare(clientv3.ModRevision(poolKey(item)), "=", prevRev)}
	for i, g := range guards {
		kv := kvs[2+i]
		if g.Shard >= cfg.Shards {
			return 0, fmt.Errorf("%s: guard of shard %d, the item has %d", what, g.Shard, cfg.Shards)
		}
		if kv == nil {
			return 0, fmt.Errorf("%s: guard %d@%d: %w", what, g.Shard, g.Epoch, ErrUnplaced)
		}
		p, err := decodePlacement(kv, g.Shard)
		if err != nil {
			return 0, err
		}
		if p.Epoch != g.Epoch || p.State != Active {
			return 0, fmt.Errorf("%s: guard %d@%d: placement @%d %s: %w", what, g.Shard, g.Epoch, p.Epoch, p.State, ErrStale)
		}
		cmps = append(cmps, clientv3.Compare(clientv3.ModRevision(string(kv.Key)), "=", kv.ModRevision))
	}
	put, err := cur.successor(cfg, next)
	if err != nil {
		return 0, fmt.Errorf("%s: %w", what, err)
	}
	resp, err = s.cli.Txn(ctx).If(cmps...).Then(put).Commit()
	if err != nil {
		return 0, fmt.Errorf("%s: %w", what, err)
	}
	if !resp.Succeeded {
		return 0, fmt.Errorf("%s: the ledger or a guarded placement changed: %w", what, ErrStale)
	}
	return resp.Header.Revision, nil
}

// successor is the write of the engine's state next over ledger l: frozen
// units carried over, no shard's Sent or Got lowered, conservation kept.
func (l PoolLedger) successor(cfg engine.ItemConfig, next engine.PoolState) (clientv3.Op, error) {
	if len(next.Sent) != len(l.Sent) || len(next.Got) != len(l.Got) {
		return clientv3.Op{}, fmt.Errorf("%d sent and %d got for %d shards: %w", len(next.Sent), len(next.Got), len(l.Sent), ErrRefused)
	}
	for i := range l.Sent {
		if next.Sent[i] < l.Sent[i] || next.Got[i] < l.Got[i] {
			return clientv3.Op{}, fmt.Errorf("shard %d: sent %d -> %d, got %d -> %d: %w",
				i, l.Sent[i], next.Sent[i], l.Got[i], next.Got[i], ErrRefused)
		}
	}
	if next.Stock < 0 || next.Stock > engine.MaxStock {
		return clientv3.Op{}, fmt.Errorf("stock %d: %w", next.Stock, ErrRefused)
	}
	n := PoolLedger{Item: l.Item, Stock: next.Stock + l.Frozen, Pool: next.Pool, Frozen: l.Frozen,
		Sent: slices.Clone(next.Sent), Got: slices.Clone(next.Got)}
	return n.put(cfg)
}

// rebase hands shard's account to a new incarnation that starts with
// counters start: a dead owner's last snapshot with its unsold units given
// back (start.Allocated == start.Sold), so that the new incarnation holds
// only what the snapshot saw sold. Sent[shard] and Got[shard] become
// start.Received and start.Returned: the new incarnation's cumulative
// counters and the pool's match again, nothing in transit. The units the
// pool counted at the shard beyond what the new incarnation holds
// (possibly sold by the old owner after its snapshot, or in transit to or
// from it) are frozen:
//
//	Frozen += (InitialAllocation(shard) + Sent[shard] - Got[shard]) - start.Allocated
//
// Stock and Pool do not change, so Stock == Frozen + Pool + InitialQuota +
// Σ (Sent - Got) still holds. A start the shard's own rule refuses
// (Allocated == InitialAllocation + Received - Returned), or one holding
// more than the pool counted at the shard (a snapshot older than a
// give-back the pool already took), is ErrRefused.
func (l *PoolLedger) rebase(cfg engine.ItemConfig, shard int, start engine.Counters) error {
	if shard < 0 || shard >= len(l.Sent) {
		return fmt.Errorf("pool %s: shard %d of %d: %w", cfg.Item, shard, len(l.Sent), ErrRefused)
	}
	if err := checkStart(start); err != nil {
		return err
	}
	initial := cfg.InitialAllocation(shard)
	if start.Allocated != initial+start.Received-start.Returned {
		return fmt.Errorf("pool %s shard %d: start %+v does not hold initial %d + received - returned: %w",
			cfg.Item, shard, start, initial, ErrRefused)
	}
	freed := initial + l.Sent[shard] - l.Got[shard] - start.Allocated
	if freed < 0 {
		return fmt.Errorf("pool %s shard %d: start holds %d, the pool counts %d at the shard: %w",
			cfg.Item, shard, start.Allocated, start.Allocated+freed, ErrRefused)
	}
	l.Frozen += freed
	l.Sent[shard], l.Got[shard] = start.Received, start.Returned
	return l.Verify(cfg)
}

// checkStart refuses starting counters that still hold unsold units or
// are negative.
func checkStart(c engine.Counters) error {
	if c.Allocated != c.Sold || c.Sold < 0 || c.Received < 0 || c.Returned < 0 || c.Allocated > engine.MaxStock {
		return fmt.Errorf("start counters %+v: allocated must equal sold, nothing negative: %w", c, ErrRefused)
	}
	return nil
}

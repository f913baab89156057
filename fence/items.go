package fence

import (
	"cmp"
	"context"
	"encoding/json"
	"fmt"
	"slices"
	"strings"
	"time"

	"go.etcd.io/etcd/api/v3/mvccpb"
	clientv3 "go.etcd.io/etcd/client/v3"

	"github.com/seckill/seckill/engine"
)

// itemRecord is the stored form of an engine.ItemConfig, every field named
// so that the record does not change when the Go struct does. It is
// written once, by CreateItem, and never changed: Stock is the stock at
// creation, which fixes the initial quota and every shard's initial
// allocation for good; the stock now is the pool ledger's.
type itemRecord struct {
	Item            string `json:"item"`
	Stock           int64  `json:"stock"`
	Shards          int    `json:"shards"`
	PerUserLimit    int64  `json:"per_user_limit"`
	StartsAtMs      int64  `json:"starts_at_ms"`
	EndsAtMs        int64  `json:"ends_at_ms"`
	PaymentWindowMs int64  `json:"payment_window_ms"`
}

func recordOf(c engine.ItemConfig) itemRecord {
	return itemRecord{Item: c.Item, Stock: c.Stock, Shards: c.Shards, PerUserLimit: c.PerUserLimit,
		StartsAtMs: c.StartsAtMs, EndsAtMs: c.EndsAtMs, PaymentWindowMs: c.PaymentWindowMs}
}

func (r itemRecord) config() engine.ItemConfig {
	return engine.ItemConfig{Item: r.Item, Stock: r.Stock, Shards: r.Shards, PerUserLimit: r.PerUserLimit,
		StartsAtMs: r.StartsAtMs, EndsAtMs: r.EndsAtMs, PaymentWindowMs: r.PaymentWindowMs}
}

// decodeItem reads an item record; it must name the item of its key and
// pass Validate.
func decodeItem(kv *mvccpb.KeyValue) (engine.ItemConfig, error) {
	var r itemRecord
	if err := json.Unmarshal(kv.Value, &r); err != nil {
		return engine.ItemConfig{}, fmt.Errorf("item %s: %w", kv.Key, err)
	}
	if id, _ := strings.CutPrefix(string(kv.Key), itemsPrefix); id != r.Item {
		return engine.ItemConfig{}, fmt.Errorf("item %s: record names %q", kv.Key, r.Item)
	}
	cfg := r.config()
	if err := cfg.Validate(); err != nil {
		return engine.ItemConfig{}, fmt.Errorf("item %s: %w", kv.Key, err)
	}
	return cfg, nil
}

// CreateItem creates an item in one transaction: its record, its pool
// ledger (engine.NewPool's record, nothing frozen) and the placement of
// every shard s on nodes[s % len(nodes)] at epoch 1, Active. The caller
// chooses the nodes (live, not draining); they are not checked here.
// Nothing is written if the item's record exists, or if keys of an item by
// that id do (a pool ledger, placements): ErrItemExists. An item with more
// than MaxShardsPerItemTxn shards is refused (ErrTooManyShards).
func (s *Store) CreateItem(ctx context.Context, cfg engine.ItemConfig, nodes []string) ([]Placement, error) {
	what := "create item " + cfg.Item
	if err := cfg.Validate(); err != nil {
		return nil, fmt.Errorf("%s: %w", what, err)
	}
	if cfg.Shards > MaxShardsPerItemTxn {
		return nil, fmt.Errorf("%s: %d shards, one transaction places at most %d (etcd --max-txn-ops %d): %w",
			what, cfg.Shards, MaxShardsPerItemTxn, EtcdMaxTxnOps, ErrTooManyShards)
	}
	if len(nodes) == 0 {
		return nil, fmt.Errorf("%s: no node to place its shards on", what)
	}
	for _, n := range nodes {
		if err := CheckNodeID(n); err != nil {
			return nil, fmt.Errorf("%s: %w", what, err)
		}
	}
	rec, err := json.Marshal(recordOf(cfg))
	if err != nil {
		return nil, fmt.Errorf("%s: %w", what, err)
	}
	pool, err := clusterPoolLedger(cfg).put(cfg)
	if err != nil {
		return nil, fmt.Errorf("%s: %w", what, err)
	}
	ops := make([]clientv3.Op, 0, cfg.Shards+2)
	ops = append(ops, clientv3.OpPut(itemKey(cfg.Item), string(rec)), pool)
	ps := make([]Placement, cfg.Shards)
	for i := range ps {
		ps[i] = Placement{Shard: i, Node: nodes[i%len(nodes)], Epoch: 1, State: Active}
		ops = append(ops, ps[i].put(cfg.Item))
	}
	resp, err := s.cli.Txn(ctx).If(
		clientv3.Compare(clientv3.CreateRevision(itemKey(cfg.Item)), "=", 0),
		clientv3.Compare(clientv3.CreateRevision(poolKey(cfg.Item)), "=", 0),
		// A range compare: true when no key under the prefix exists.
		clientv3.Compare(clientv3.CreateRevision(itemPlacementPrefix(cfg.Item)), "=", 0).WithPrefix(),
	).Then(ops...).Else(clientv3.OpGet(itemKey(cfg.Item), clientv3.WithCountOnly())).Commit()
	if err != nil {
		return nil, fmt.Errorf("%s: %w", what, err)
	}
	if !resp.Succeeded {
		if resp.Responses[0].GetResponseRange().Count == 0 {
			return nil, fmt.Errorf("%s: no record, but a pool ledger or placements of that id exist: %w", what, ErrItemExists)
		}
		return nil, fmt.Errorf("%s: %w", what, ErrItemExists)
	}
	for i := range ps {
		ps[i].ModRev = resp.Header.Revision
	}
	return ps, nil
}

// Item reads an item's config (ErrNoItem when it has no record).
func (s *Store) Item(ctx context.Context, item string) (engine.ItemConfig, error) {
	if err := checkID("item", item); err != nil {
		return engine.ItemConfig{}, err
	}
	kv, err := s.get(ctx, itemKey(item))
	if err != nil {
		return engine.ItemConfig{}, err
	}
	if kv == nil {
		return engine.ItemConfig{}, fmt.Errorf("item %s: %w", item, ErrNoItem)
	}
	return decodeItem(kv)
}

// Items lists every item's config, sorted by item id, and the etcd
// revision of the listing: WatchItems from that revision reports the
// items created after it.
func (s *Store) Items(ctx context.Context) ([]engine.ItemConfig, int64, error) {
	created, rev, err := s.listItems(ctx, true)
	if err != nil {
		return nil, 0, err
	}
	cfgs := make([]engine.ItemConfig, len(created))
	for i, c := range created {
		cfgs[i] = c.cfg
	}
	slices.SortFunc(cfgs, func(a, b engine.ItemConfig) int { return cmp.Compare(a.Item, b.Item) })
	return cfgs, rev, nil
}

// createdItem is an item's config and the revision that created it.
type createdItem struct {
	cfg engine.ItemConfig
	rev int64
}

// listItems reads every item record (in key order) and the listing's
// revision. A record that does not decode is an error when strict, else
// it is skipped.
func (s *Store) listItems(ctx context.Context, strict bool) ([]createdItem, int64, error) {
	resp, err := s.cli.Get(ctx, itemsPrefix, clientv3.WithPrefix())
	if err != nil {
		return nil, 0, fmt.Errorf("items: %w", err)
	}
	out := make([]createdItem, 0, len(resp.Kvs))
	for _, kv := range resp.Kvs {
		cfg, err := decodeItem(kv)
		if err != nil && strict {
			return nil, 0, fmt.Errorf("items: %w", err)
		}
		if err == nil {
			out = append(out, createdItem{cfg: cfg, rev: kv.CreateRevision})
		}
	}
	return out, resp.Header.Revision, nil
}

// WatchItems reports every item created after revision afterRev (0: every
// item), in the order of creation, until ctx ends; then it closes the
// channel. Pass the revision of an Items listing to hear of the items that
// listing did not hold.
//
// Items are never deleted or rewritten, so a record's creation is its only
// event and "created after" is exact. When the watch fails (its revision
// was compacted, etcd cancelled it), WatchItems lists the items again and
// reports those created after the last one it reported, then watches from
// the listing's revision: no item is lost or reported twice. A listing that
// fails is retried every itemsRelistPause. A record that does not decode
// or validate (not written by CreateItem) is skipped; Items reports it as
// an error.
func (s *Store) WatchItems(ctx context.Context, afterRev int64) <-chan engine.ItemConfig {
	out := make(chan engine.ItemConfig, watchBuffer)
	go func() {
		defer close(out)
		seen := afterRev // every item created at or before seen was reported, or predates the watch
		for {
			seen = s.watchItems(ctx, seen, out)
			for ctx.Err() == nil && s.cli.Ctx().Err() == nil { // until ctx ends or the client closes
				created, rev, err := s.listItems(ctx, false)
				if err == nil {
					if seen = s.reportItems(ctx, created, seen, out); seen < rev {
						seen = rev
					}
					break
				}
				select {
				case <-time.After(itemsRelistPause):
				case <-ctx.Done():
				}
			}
			if ctx.Err() != nil || s.cli.Ctx().Err() != nil {
				return
			}
		}
	}()
	return out
}

// watchItems reports the items created after seen until the watch fails
// or ctx ends; it returns the creation revision of the last one reported
// (seen if none).
func (s *Store) watchItems(ctx context.Context, seen int64, out chan<- engine.ItemConfig) int64 {
	wctx, cancel := context.WithCancel(ctx) // ends the watch when a send is abandoned
	defer cancel()
	for wr := range s.cli.Watch(wctx, itemsPrefix, clientv3.WithPrefix(), clientv3.WithRev(seen+1)) {
		if wr.Err() != nil {
			return seen
		}
		for _, ev := range wr.Events {
			if ev.Type != mvccpb.PUT || ev.Kv.Version != 1 {
				continue // not a creation
			}
			if cfg, err := decodeItem(ev.Kv); err == nil && !sendItem(ctx, out, cfg) {
				return seen
			}
			seen = ev.Kv.ModRevision
		}
	}
	return seen
}

// reportItems reports the items of a listing created after seen, oldest
// first, and returns the creation revision of the last one reported.
func (s *Store) reportItems(ctx context.Context, created []createdItem, seen int64, out chan<- engine.ItemConfig) int64 {
	slices.SortFunc(created, func(a, b createdItem) int { return cmp.Compare(a.rev, b.rev) })
	for _, c := range created {
		if c.rev <= seen {
			continue
		}
		if !sendItem(ctx, out, c.cfg) {
			return seen
		}
		seen = c.rev
	}
	return seen
}

func sendItem(ctx context.Context, out chan<- engine.ItemConfig, cfg engine.ItemConfig) bool {
	select {
	case out <- cfg:
		return true
	case <-ctx.Done():
		return false
	}
}

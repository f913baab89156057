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

// Ledger is an item's stock in etcd: the units no shard holds (Pool) and,
// per shard incarnation, the cumulative units granted to it and returned
// by it. Conservation: Stock == Pool + Σ (Granted - Returned), nothing
// negative, Returned never above Granted. It is the cluster's version of
// engine.PoolState, keyed by incarnation instead of by shard, so that two
// activations of one shard can never draw on one account.
type Ledger struct {
	Stock        int64         `json:"stock"`
	Pool         int64         `json:"pool"`
	Incarnations []Incarnation `json:"incarnations"` // sorted by (Shard, Epoch)
}

// Incarnation is one shard incarnation's account.
type Incarnation struct {
	Shard    int    `json:"shard"`
	Epoch    uint64 `json:"epoch"`
	Granted  int64  `json:"granted"`  // units granted to it, ever
	Returned int64  `json:"returned"` // units it gave back, ever
	// Frozen: a forced move ended it. It gets no more units; what it holds
	// (Granted - Returned) counts as possibly sold until it gives them back.
	Frozen bool `json:"frozen,omitempty"`
}

// Outstanding is the units the incarnations hold (or sold).
func (l *Ledger) Outstanding() int64 {
	var n int64
	for _, in := range l.Incarnations {
		n += in.Granted - in.Returned
	}
	return n
}

// Incarnation returns the account of (shard, epoch), zero if none.
func (l *Ledger) Incarnation(shard int, epoch uint64) Incarnation {
	if i, ok := l.find(shard, epoch); ok {
		return l.Incarnations[i]
	}
	return Incarnation{Shard: shard, Epoch: epoch}
}

// Verify checks conservation and bounds.
func (l *Ledger) Verify() error {
	if l.Stock < 0 || l.Stock > engine.MaxStock || l.Pool < 0 {
		return fmt.Errorf("stock %d pool %d: %w", l.Stock, l.Pool, ErrRefused)
	}
	if len(l.Incarnations) > MaxIncarnations {
		return fmt.Errorf("%d incarnations: %w", len(l.Incarnations), ErrRefused)
	}
	sum := l.Pool
	for i, in := range l.Incarnations {
		if in.Granted < 0 || in.Returned < 0 || in.Returned > in.Granted || in.Epoch == 0 || in.Epoch > MaxEpoch {
			return fmt.Errorf("incarnation %+v: %w", in, ErrRefused)
		}
		if i > 0 && cmpInc(l.Incarnations[i-1], in) >= 0 {
			return fmt.Errorf("incarnations out of order at %+v: %w", in, ErrRefused)
		}
		sum += in.Granted - in.Returned
	}
	if sum != l.Stock {
		return fmt.Errorf("stock %d, accounted %d: %w", l.Stock, sum, ErrRefused)
	}
	return nil
}

func cmpInc(a, b Incarnation) int {
	return cmp.Or(cmp.Compare(a.Shard, b.Shard), cmp.Compare(a.Epoch, b.Epoch))
}

func (l *Ledger) find(shard int, epoch uint64) (int, bool) {
	return slices.BinarySearchFunc(l.Incarnations, Incarnation{Shard: shard, Epoch: epoch}, cmpInc)
}

// inc returns the account of (shard, epoch), adding it if new.
func (l *Ledger) inc(shard int, epoch uint64) *Incarnation {
	i, ok := l.find(shard, epoch)
	if !ok {
		l.Incarnations = slices.Insert(l.Incarnations, i, Incarnation{Shard: shard, Epoch: epoch})
	}
	return &l.Incarnations[i]
}

// put verifies the ledger and returns its write: nothing that breaks
// conservation is ever written.
func (l *Ledger) put(item string) (clientv3.Op, error) {
	if err := l.Verify(); err != nil {
		return clientv3.Op{}, fmt.Errorf("ledger %s: %w", item, err)
	}
	b, err := json.Marshal(l)
	if err != nil {
		return clientv3.Op{}, err
	}
	return clientv3.OpPut(ledgerKey(item), string(b)), nil
}

// decodeLedger reads a ledger and refuses one that is already broken.
func decodeLedger(item string, kv *mvccpb.KeyValue) (Ledger, error) {
	var l Ledger
	if err := json.Unmarshal(kv.Value, &l); err != nil {
		return l, fmt.Errorf("ledger %s: %w", item, err)
	}
	if err := l.Verify(); err != nil {
		return l, fmt.Errorf("ledger %s as stored: %w", item, err)
	}
	return l, nil
}

// SeqBase is the first grab sequence of incarnation epoch: incarnation e
// numbers its grabs in [e<<32, (e+1)<<32), so a grab id never repeats
// across incarnations of a shard and order dedupe by grab id can never drop
// a confirmed grab (cluster.md, rule 2). MaxEpoch keeps e<<32 in a uint64.
func SeqBase(epoch uint64) uint64 { return epoch << 32 }

// CreateLedger creates an item's ledger with all of stock in the pool.
func (s *Store) CreateLedger(ctx context.Context, item string, stock int64) error {
	if err := checkID("item", item); err != nil {
		return err
	}
	keys := []string{ledgerKey(item)}
	_, err := s.casLoop(ctx, "create ledger "+item, keys, func(kvs []*mvccpb.KeyValue) ([]clientv3.Op, error) {
		if kvs[0] != nil {
			return nil, fmt.Errorf("create ledger %s: %w", item, ErrLedgerExists)
		}
		l := Ledger{Stock: stock, Pool: stock}
		op, err := l.put(item)
		return []clientv3.Op{op}, err
	})
	return err
}

// Ledger reads an item's ledger.
func (s *Store) Ledger(ctx context.Context, item string) (Ledger, error) {
	if err := checkID("item", item); err != nil {
		return Ledger{}, err
	}
	kv, err := s.get(ctx, ledgerKey(item))
	if err != nil {
		return Ledger{}, err
	}
	if kv == nil {
		return Ledger{}, fmt.Errorf("ledger %s: %w", item, ErrNoLedger)
	}
	return decodeLedger(item, kv)
}

// change runs a CAS loop over the item's ledger and the extra keys; edit
// changes a copy of the ledger read (extra keys' values alongside) and
// returns whether there is anything to write.
func (s *Store) change(ctx context.Context, what, item string, extra []string,
	edit func(l *Ledger, kvs []*mvccpb.KeyValue) (bool, error)) error {
	keys := append([]string{ledgerKey(item)}, extra...)
	_, err := s.casLoop(ctx, what, keys, func(kvs []*mvccpb.KeyValue) ([]clientv3.Op, error) {
		if kvs[0] == nil {
			return nil, fmt.Errorf("%s: %w", what, ErrNoLedger)
		}
		l, err := decodeLedger(item, kvs[0])
		if err != nil {
			return nil, err
		}
		write, err := edit(&l, kvs[1:])
		if err != nil || !write {
			return nil, err
		}
		op, err := l.put(item)
		if err != nil {
			return nil, fmt.Errorf("%s: %w", what, err)
		}
		return []clientv3.Op{op}, nil
	})
	return err
}

// Grant gives up to want units from the pool to incarnation (shard,
// epoch), only while the shard's placement is that epoch and active: the
// placement key is compared in the same transaction, so a stale incarnation
// is never granted a unit. It returns the units granted (0 when the pool is
// empty) and the incarnation's cumulative total granted.
func (s *Store) Grant(ctx context.Context, item string, shard int, epoch uint64, want int64) (granted, total int64, err error) {
	if err := checkShard(item, shard); err != nil {
		return 0, 0, err
	}
	want = min(want, engine.MaxRefillChunk)
	what := fmt.Sprintf("grant %s/%d@%d", item, shard, epoch)
	err = s.change(ctx, what, item, []string{placementKey(item, shard)}, func(l *Ledger, kvs []*mvccpb.KeyValue) (bool, error) {
		granted, total = 0, l.Incarnation(shard, epoch).Granted
		if l.Incarnation(shard, epoch).Frozen {
			return false, fmt.Errorf("%s: %w", what, ErrFrozen)
		}
		if kvs[0] == nil {
			return false, fmt.Errorf("%s: %w", what, ErrUnplaced)
		}
		p, err := decodePlacement(kvs[0], shard)
		if err != nil {
			return false, err
		}
		if p.Epoch != epoch || p.State != Active {
			return false, fmt.Errorf("%s: placement @%d %s: %w", what, p.Epoch, p.State, ErrStale)
		}
		n := min(want, l.Pool)
		if n <= 0 {
			return false, nil
		}
		in := l.inc(shard, epoch)
		in.Granted += n
		l.Pool -= n
		granted, total = n, in.Granted
		return true, nil
	})
	if err != nil {
		return 0, 0, err
	}
	return granted, total, nil
}

// Return takes back units an incarnation gave back; returnedTotal is its
// cumulative count, so a repeated or delayed Return changes nothing. It
// returns the units new to the ledger. Any incarnation may return, stale or
// frozen: giving back never oversells. More than was granted is refused.
func (s *Store) Return(ctx context.Context, item string, shard int, epoch uint64, returnedTotal int64) (int64, error) {
	if err := checkShard(item, shard); err != nil {
		return 0, err
	}
	var n int64
	what := fmt.Sprintf("return %s/%d@%d", item, shard, epoch)
	err := s.change(ctx, what, item, nil, func(l *Ledger, _ []*mvccpb.KeyValue) (bool, error) {
		cur := l.Incarnation(shard, epoch)
		n = returnedTotal - cur.Returned
		if n <= 0 {
			n = 0
			return false, nil
		}
		if returnedTotal > cur.Granted {
			return false, fmt.Errorf("%s: %d returned of %d granted: %w", what, returnedTotal, cur.Granted, ErrRefused)
		}
		l.inc(shard, epoch).Returned = returnedTotal
		l.Pool += n
		return true, nil
	})
	if err != nil {
		return 0, err
	}
	return n, nil
}

// ChangeStock adds units to the pool (delta > 0) or takes unsold units out
// of it (delta < 0; never more than the pool holds: ErrInsufficient).
func (s *Store) ChangeStock(ctx context.Context, item string, delta int64) error {
	what := fmt.Sprintf("change stock %s by %d", item, delta)
	return s.change(ctx, what, item, nil, func(l *Ledger, _ []*mvccpb.KeyValue) (bool, error) {
		if delta < 0 && -delta > l.Pool {
			return false, fmt.Errorf("%s: pool %d: %w", what, l.Pool, ErrInsufficient)
		}
		l.Stock += delta
		l.Pool += delta
		return delta != 0, nil
	})
}

// Freeze ends incarnation (shard, epoch)'s right to units: it gets no more,
// and what it holds counts as possibly sold until given back. ForceMove
// freezes the old incarnation itself, in its own transaction.
func (s *Store) Freeze(ctx context.Context, item string, shard int, epoch uint64) error {
	if err := checkShard(item, shard); err != nil {
		return err
	}
	what := fmt.Sprintf("freeze %s/%d@%d", item, shard, epoch)
	return s.change(ctx, what, item, nil, func(l *Ledger, _ []*mvccpb.KeyValue) (bool, error) {
		if l.Incarnation(shard, epoch).Frozen {
			return false, nil
		}
		l.inc(shard, epoch).Frozen = true
		return true, nil
	})
}

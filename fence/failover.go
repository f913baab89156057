package fence

import (
	"context"
	"encoding/json"
	"fmt"

	"go.etcd.io/etcd/api/v3/mvccpb"
	clientv3 "go.etcd.io/etcd/client/v3"
)

// Failover takes shard of item from node from, whose lease etcd expired
// (its node key is gone), and gives it to node to (which must hold a live
// lease) at epoch+1, marked Failover, in one compare-and-swap: of every
// node that decides to at once, exactly one wins and the others get
// ErrStale (the shard is no longer on from). Nothing else changes: with a
// replicated journal the new incarnation folds the journal, so it holds
// every unit, grab, buyer and key the old one confirmed, and the pool
// ledger stays as it is (no unit is frozen). The move is recorded under
// /seckill/forced/ (Forced.Journaled) so that from, if it comes back,
// publishes none of the shard's grabs: the new owner relays them.
//
// A Moving shard is taken too: its owner died handing it over.
func (s *Store) Failover(ctx context.Context, item string, shard int, from, to string) (Placement, error) {
	if err := checkPlacement(item, shard, to); err != nil {
		return Placement{}, err
	}
	if err := CheckNodeID(from); err != nil {
		return Placement{}, err
	}
	what := fmt.Sprintf("failover of %s/%d from %s to %s", item, shard, from, to)
	var out Placement
	keys := []string{placementKey(item, shard), nodeKey(from), nodeKey(to)}
	rev, err := s.casLoop(ctx, what, keys, func(kvs []*mvccpb.KeyValue) ([]clientv3.Op, error) {
		if kvs[0] == nil {
			return nil, fmt.Errorf("%s: %w", what, ErrUnplaced)
		}
		p, err := decodePlacement(kvs[0], shard)
		if err != nil {
			return nil, err
		}
		switch {
		case p.Node != from:
			return nil, fmt.Errorf("%s: on %s at %d: %w", what, p.Node, p.Epoch, ErrStale)
		case kvs[1] != nil:
			return nil, fmt.Errorf("%s: %w", what, ErrOwnerAlive)
		case kvs[2] == nil:
			return nil, fmt.Errorf("%s: %w", what, ErrNodeDown)
		case p.State == Frozen:
			return nil, fmt.Errorf("%s: %w", what, ErrNotActive)
		}
		if out, err = p.next(to); err != nil {
			return nil, err
		}
		out.Failover = true
		rec, _ := json.Marshal(Forced{Item: item, Shard: shard, Node: from, Epoch: p.Epoch, Seq: 1, Journaled: true})
		return []clientv3.Op{out.put(item), clientv3.OpPut(forcedKey(item, shard, from), string(rec))}, nil
	})
	return out.written(rev), err
}

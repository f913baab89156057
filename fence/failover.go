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
// /seckill/forced/ (Forced.Journaled), with Seq 0 until the new owner has
// read what from published (RelayFrom): until then from, if it comes back,
// publishes none of the shard's grabs.
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
		rec, _ := json.Marshal(Forced{Item: item, Shard: shard, Node: from, Epoch: p.Epoch, Journaled: true})
		return []clientv3.Op{out.put(item), clientv3.OpPut(forcedKey(item, shard, from), string(rec))}, nil
	})
	return out.written(rev), err
}

// RelayFrom records, for the failover that took shard of item from node,
// that the new owner relays the shard's grabs from seq on: node publishes
// none of them, and no writer writes an order of one from node's lane
// (an order's grab published late by node, while the new owner relays it
// too). Only a failover's record (Forced.Journaled) takes it, and only
// once: it returns the sequence recorded, seq or the one an earlier call
// recorded (a new owner that tries again relays from there).
func (s *Store) RelayFrom(ctx context.Context, item string, shard int, node string, seq uint64) (uint64, error) {
	if err := checkPlacement(item, shard, node); err != nil {
		return 0, err
	}
	what := fmt.Sprintf("relay of %s/%d from %d", item, shard, seq)
	recorded := seq
	_, err := s.casLoop(ctx, what, []string{forcedKey(item, shard, node)}, func(kvs []*mvccpb.KeyValue) ([]clientv3.Op, error) {
		if kvs[0] == nil {
			return nil, fmt.Errorf("%s: no failover from %s: %w", what, node, ErrUnplaced)
		}
		var f Forced
		if err := json.Unmarshal(kvs[0].Value, &f); err != nil {
			return nil, fmt.Errorf("%s: %w", what, err)
		}
		if !f.Journaled {
			return nil, fmt.Errorf("%s: a forced move, not a failover: %w", what, ErrRefused)
		}
		if f.Seq != 0 {
			recorded = f.Seq
			return nil, nil
		}
		f.Seq = seq
		rec, _ := json.Marshal(f)
		return []clientv3.Op{clientv3.OpPut(forcedKey(item, shard, node), string(rec))}, nil
	})
	if err != nil {
		return 0, err
	}
	return recorded, nil
}

func laneKey(node string) string { return lanesPrefix + node }

// RebuildLane records that heir rewrites the orders of node's lane of the
// order stream (node was lost with its disk, as far as anyone can tell),
// only while node holds no lease (ErrOwnerAlive otherwise), in one
// compare-and-swap: a node that comes back empty later finds the record and
// leaves its old orders to the heir; one that came back first is not
// rebuilt behind its back.
func (s *Store) RebuildLane(ctx context.Context, node, heir string) error {
	if err := CheckNodeID(node); err != nil {
		return err
	}
	what := "rebuild lane of " + node
	_, err := s.casLoop(ctx, what, []string{nodeKey(node), laneKey(node)}, func(kvs []*mvccpb.KeyValue) ([]clientv3.Op, error) {
		if kvs[0] != nil {
			return nil, fmt.Errorf("%s: %w", what, ErrOwnerAlive)
		}
		if kvs[1] != nil && string(kvs[1].Value) == heir {
			return nil, nil
		}
		return []clientv3.Op{clientv3.OpPut(laneKey(node), heir)}, nil
	})
	return err
}

// TakeLane is what node does with its own lane when it starts: it returns
// the heir that rewrote the lane's orders while node was gone ("" for
// none) and clears the record, so that node's lane is its own again.
func (s *Store) TakeLane(ctx context.Context, node string) (string, error) {
	if err := CheckNodeID(node); err != nil {
		return "", err
	}
	resp, err := s.cli.Txn(ctx).Then(clientv3.OpGet(laneKey(node)), clientv3.OpDelete(laneKey(node))).Commit()
	if err != nil {
		return "", fmt.Errorf("take lane of %s: %w", node, err)
	}
	if kvs := resp.Responses[0].GetResponseRange().Kvs; len(kvs) > 0 {
		return string(kvs[0].Value), nil
	}
	return "", nil
}

// ClearFailover forgets the failover that took shard of item from node,
// once node runs the shard again (a later incarnation): its lane carries
// the shard's new grabs, and its relay publishes them.
func (s *Store) ClearFailover(ctx context.Context, item string, shard int, node string) error {
	if err := checkPlacement(item, shard, node); err != nil {
		return err
	}
	if _, err := s.cli.Delete(ctx, forcedKey(item, shard, node)); err != nil {
		return fmt.Errorf("clear failover of %s/%d from %s: %w", item, shard, node, err)
	}
	return nil
}

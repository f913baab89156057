package fence

import (
	"context"
	"encoding/json"
	"fmt"

	"go.etcd.io/etcd/api/v3/mvccpb"
	clientv3 "go.etcd.io/etcd/client/v3"

	"github.com/seckill/seckill/engine"
)

// State is what a placed shard may do.
type State string

const (
	// Active: the incarnation sells and may be granted units.
	Active State = "active"
	// Moving: the owner is handing the shard over (it answers 503, finishes
	// its commits, gives back unsold units); no grants.
	Moving State = "moving"
	// Frozen: an operator stopped the shard where it is; no grants.
	Frozen State = "frozen"
)

// Placement is which node runs a shard and as which incarnation (epoch).
// An epoch only grows: every move, cooperative or forced, adds one.
type Placement struct {
	Shard int    `json:"-"`
	Node  string `json:"node"`
	Epoch uint64 `json:"epoch"`
	State State  `json:"state"`
	// To is the node a requested cooperative move hands the shard to
	// (RequestMove); set only while State is Moving.
	To string `json:"to,omitempty"`
	// Forced: this incarnation was made by ForceMove, from a snapshot
	// written for it at this epoch (a cooperative move starts from the
	// old owner's final snapshot, one epoch lower).
	Forced bool `json:"forced,omitempty"`
	// SeqStart, of a forced incarnation: its first grab sequence, past
	// every sequence the lost one may have used (SeqGrant). The snapshot
	// it starts from skips to it (engine.ShardSnapshot.SkipTo).
	SeqStart uint64 `json:"seq_start,omitempty"`
	// Failover: this incarnation was made by Failover, from the shard's
	// replicated journal, after its owner's lease expired.
	Failover bool `json:"failover,omitempty"`
	// ModRev is the placement key's mod revision when this value was read
	// or written; it is not stored. Every read and every write of this
	// package fills it. An unchanged mod revision means an unchanged
	// placement: CommitPool's guards compare it, not the value.
	ModRev int64 `json:"-"`
}

func decodePlacement(kv *mvccpb.KeyValue, shard int) (Placement, error) {
	var p Placement
	if err := json.Unmarshal(kv.Value, &p); err != nil {
		return p, fmt.Errorf("placement %s: %w", kv.Key, err)
	}
	p.Shard = shard
	p.ModRev = kv.ModRevision
	return p, nil
}

// written stamps a placement put by the transaction of revision rev (0:
// nothing was written, the placement keeps the mod revision it was read at).
func (p Placement) written(rev int64) Placement {
	if rev != 0 {
		p.ModRev = rev
	}
	return p
}

func (p Placement) put(item string) clientv3.Op {
	b, _ := json.Marshal(p) // a struct of a string, a number and a string
	return clientv3.OpPut(placementKey(item, p.Shard), string(b))
}

// Attach places a shard on node, which must hold a live lease. Unplaced: the
// node gets epoch 1. Already on node: the placement is returned unchanged (a
// restarted node re-attaches its shards; nothing moves). On another node
// whose lease lives: ErrOwnerAlive; whose lease expired: ErrOwnerExpired
// (only ForceMove may take it).
func (s *Store) Attach(ctx context.Context, item string, shard int, node string) (Placement, error) {
	if err := checkPlacement(item, shard, node); err != nil {
		return Placement{}, err
	}
	var out Placement
	keys := []string{placementKey(item, shard), nodeKey(node)}
	rev, err := s.casLoop(ctx, "attach "+keys[0], keys, func(kvs []*mvccpb.KeyValue) ([]clientv3.Op, error) {
		if kvs[1] == nil {
			return nil, fmt.Errorf("attach %s/%d to %s: %w", item, shard, node, ErrNodeDown)
		}
		if kvs[0] == nil {
			out = Placement{Shard: shard, Node: node, Epoch: 1, State: Active}
			return []clientv3.Op{out.put(item)}, nil
		}
		p, err := decodePlacement(kvs[0], shard)
		if err != nil {
			return nil, err
		}
		if p.Node == node {
			out = p
			return nil, nil
		}
		alive, err := s.nodeAlive(ctx, p.Node)
		if err != nil {
			return nil, err
		}
		if alive {
			return nil, fmt.Errorf("attach %s/%d to %s: on %s: %w", item, shard, node, p.Node, ErrOwnerAlive)
		}
		return nil, fmt.Errorf("attach %s/%d to %s: on %s: %w", item, shard, node, p.Node, ErrOwnerExpired)
	})
	return out.written(rev), err
}

// SetState changes the state of the shard's incarnation epoch (the owner
// marks it Moving before handing over; an operator freezes or resumes it).
func (s *Store) SetState(ctx context.Context, item string, shard int, epoch uint64, st State) (Placement, error) {
	if err := checkShard(item, shard); err != nil {
		return Placement{}, err
	}
	if st != Active && st != Moving && st != Frozen {
		return Placement{}, fmt.Errorf("fence: bad state %q", st)
	}
	var out Placement
	keys := []string{placementKey(item, shard)}
	rev, err := s.casLoop(ctx, "set state "+keys[0], keys, func(kvs []*mvccpb.KeyValue) ([]clientv3.Op, error) {
		if kvs[0] == nil {
			return nil, fmt.Errorf("set state %s/%d: %w", item, shard, ErrUnplaced)
		}
		p, err := decodePlacement(kvs[0], shard)
		if err != nil {
			return nil, err
		}
		if p.Epoch != epoch {
			return nil, fmt.Errorf("set state %s/%d@%d: now @%d: %w", item, shard, epoch, p.Epoch, ErrStale)
		}
		out = p
		if p.State == st {
			return nil, nil
		}
		out.State = st
		if st != Moving {
			out.To = ""
		}
		return []clientv3.Op{out.put(item)}, nil
	})
	return out.written(rev), err
}

// RequestMove starts a cooperative move of an active shard to node to,
// which must hold a live lease (ErrNodeDown) and must not be the owner
// (ErrSameNode): the placement turns Moving with To set, at the same epoch.
// The owner then stops granting, finishes its commits and gives back, and
// Move completes the hand-over (or CancelMove ends it). A repeated request
// for the same move returns the placement unchanged; a shard that is frozen
// or moving elsewhere is refused (ErrNotActive).
func (s *Store) RequestMove(ctx context.Context, item string, shard int, to string) (Placement, error) {
	if err := checkPlacement(item, shard, to); err != nil {
		return Placement{}, err
	}
	var out Placement
	what := fmt.Sprintf("request move %s/%d to %s", item, shard, to)
	keys := []string{placementKey(item, shard), nodeKey(to)}
	rev, err := s.casLoop(ctx, what, keys, func(kvs []*mvccpb.KeyValue) ([]clientv3.Op, error) {
		if kvs[0] == nil {
			return nil, fmt.Errorf("%s: %w", what, ErrUnplaced)
		}
		if kvs[1] == nil {
			return nil, fmt.Errorf("%s: %w", what, ErrNodeDown)
		}
		p, err := decodePlacement(kvs[0], shard)
		if err != nil {
			return nil, err
		}
		switch {
		case p.Node == to:
			return nil, fmt.Errorf("%s: %w", what, ErrSameNode)
		case p.State == Moving && p.To == to:
			out = p
			return nil, nil
		case p.State != Active:
			return nil, fmt.Errorf("%s: %s to %q: %w", what, p.State, p.To, ErrNotActive)
		}
		out = p
		out.State, out.To = Moving, to
		return []clientv3.Op{out.put(item)}, nil
	})
	return out.written(rev), err
}

// CancelMove ends a requested move of incarnation epoch: Moving turns
// Active again on the same node, To cleared. An active placement is
// returned unchanged; another epoch is ErrStale, a frozen one ErrNotActive.
func (s *Store) CancelMove(ctx context.Context, item string, shard int, epoch uint64) (Placement, error) {
	if err := checkShard(item, shard); err != nil {
		return Placement{}, err
	}
	var out Placement
	what := fmt.Sprintf("cancel move %s/%d@%d", item, shard, epoch)
	keys := []string{placementKey(item, shard)}
	rev, err := s.casLoop(ctx, what, keys, func(kvs []*mvccpb.KeyValue) ([]clientv3.Op, error) {
		if kvs[0] == nil {
			return nil, fmt.Errorf("%s: %w", what, ErrUnplaced)
		}
		p, err := decodePlacement(kvs[0], shard)
		if err != nil {
			return nil, err
		}
		switch {
		case p.Epoch != epoch:
			return nil, fmt.Errorf("%s: now @%d: %w", what, p.Epoch, ErrStale)
		case p.State == Active:
			out = p
			return nil, nil
		case p.State != Moving:
			return nil, fmt.Errorf("%s: %s: %w", what, p.State, ErrNotActive)
		}
		out = p
		out.State, out.To = Active, ""
		return []clientv3.Op{out.put(item)}, nil
	})
	return out.written(rev), err
}

// Move hands a shard over cooperatively: only if it is placed on from, to
// a node with a live lease, at epoch+1, Active, To cleared. The placement
// must be Active, or Moving to to (RequestMove) or to no node named
// (SetState); frozen or moving to another node it is ErrNotActive. The new
// incarnation starts with no units; from's unsold units come back by Return.
func (s *Store) Move(ctx context.Context, item string, shard int, from, to string) (Placement, error) {
	if err := checkPlacement(item, shard, to); err != nil {
		return Placement{}, err
	}
	var out Placement
	keys := []string{placementKey(item, shard), nodeKey(to)}
	rev, err := s.casLoop(ctx, "move "+keys[0], keys, func(kvs []*mvccpb.KeyValue) ([]clientv3.Op, error) {
		if kvs[0] == nil {
			return nil, fmt.Errorf("move %s/%d: %w", item, shard, ErrUnplaced)
		}
		if kvs[1] == nil {
			return nil, fmt.Errorf("move %s/%d to %s: %w", item, shard, to, ErrNodeDown)
		}
		p, err := decodePlacement(kvs[0], shard)
		if err != nil {
			return nil, err
		}
		if p.Node != from {
			return nil, fmt.Errorf("move %s/%d from %s: on %s: %w", item, shard, from, p.Node, ErrNotOwner)
		}
		if p.State == Frozen || p.State == Moving && p.To != "" && p.To != to {
			return nil, fmt.Errorf("move %s/%d to %s: %s to %q: %w", item, shard, to, p.State, p.To, ErrNotActive)
		}
		if out, err = p.next(to); err != nil {
			return nil, err
		}
		return []clientv3.Op{out.put(item)}, nil
	})
	return out.written(rev), err
}

// ForceMove takes a shard from an owner whose lease etcd expired (its node
// key is gone: the taker waits for etcd, never for its own clock) and gives
// it to to at epoch+1, marked Forced. The new incarnation starts with
// counters start: the old owner's last snapshot with its unsold units
// given back, so start.Allocated == start.Sold (else ErrRefused). In the
// same transaction the item's pool ledger, if it has one, is rebased
// (PoolLedger.rebase): the shard's Sent and Got become start.Received and
// start.Returned, and the units the pool counted at the shard beyond
// start.Allocated are frozen, out of play for good; and the move is
// recorded (Forced, under /seckill/forced/).
//
// Buyers the old owner confirmed after its last snapshot may later show
// over their limit; reconcile lists them. Their grab ids stay theirs: the
// new incarnation numbers its grabs from Placement.SeqStart, past every
// sequence the old one was granted (ExtendSeqs).
func (s *Store) ForceMove(ctx context.Context, item string, shard int, to string, start engine.Counters) (Placement, error) {
	if err := checkPlacement(item, shard, to); err != nil {
		return Placement{}, err
	}
	if err := checkStart(start); err != nil {
		return Placement{}, fmt.Errorf("force move %s/%d: %w", item, shard, err)
	}
	for range MaxCASAttempts {
		cur, err := s.get(ctx, placementKey(item, shard))
		if err != nil {
			return Placement{}, err
		}
		if cur == nil {
			return Placement{}, fmt.Errorf("force move %s/%d: %w", item, shard, ErrUnplaced)
		}
		owner, err := decodePlacement(cur, shard)
		if err != nil {
			return Placement{}, err
		}
		out, err := s.forceMove(ctx, item, owner, to, start)
		if err != errAgain {
			return out, err
		}
	}
	return Placement{}, fmt.Errorf("force move %s/%d: %w", item, shard, ErrContended)
}

// forceMove is ForceMove for the owner read; errAgain if the owner changed.
func (s *Store) forceMove(ctx context.Context, item string, owner Placement, to string, start engine.Counters) (Placement, error) {
	var out Placement
	what := fmt.Sprintf("force move %s/%d", item, owner.Shard)
	keys := []string{placementKey(item, owner.Shard), nodeKey(owner.Node), nodeKey(to), itemKey(item), poolKey(item), seqsKey(item, owner.Shard)}
	rev, err := s.casLoop(ctx, what, keys, func(kvs []*mvccpb.KeyValue) ([]clientv3.Op, error) {
		if kvs[0] == nil {
			return nil, errAgain
		}
		p, err := decodePlacement(kvs[0], owner.Shard)
		if err != nil {
			return nil, err
		}
		if p.Node != owner.Node {
			return nil, errAgain
		}
		if kvs[1] != nil {
			return nil, fmt.Errorf("%s from %s: %w", what, p.Node, ErrOwnerAlive)
		}
		if kvs[2] == nil {
			return nil, fmt.Errorf("%s to %s: %w", what, to, ErrNodeDown)
		}
		if out, err = p.next(to); err != nil {
			return nil, err
		}
		grant, err := decodeSeqGrant(kvs[5])
		if err != nil {
			return nil, err
		}
		out.Forced = true
		// The new incarnation numbers its grabs from past every sequence
		// the lost one was granted; it is granted nothing beyond yet.
		out.SeqStart = max(grant.Limit, start.NextSeq)
		rec, _ := json.Marshal(Forced{Item: item, Shard: p.Shard, Node: p.Node, Epoch: p.Epoch, Seq: start.NextSeq})
		ops := []clientv3.Op{out.put(item), clientv3.OpPut(forcedKey(item, p.Shard, p.Node), string(rec)),
			SeqGrant{Node: to, Epoch: out.Epoch, Limit: out.SeqStart}.put(item, p.Shard)}
		if kvs[4] != nil {
			if kvs[3] == nil {
				return nil, fmt.Errorf("%s: a pool ledger without its item: %w", what, ErrNoItem)
			}
			cfg, err := decodeItem(kvs[3])
			if err != nil {
				return nil, err
			}
			l, err := decodePoolLedger(cfg, kvs[4])
			if err != nil {
				return nil, err
			}
			if err := l.rebase(cfg, p.Shard, start); err != nil {
				return nil, fmt.Errorf("%s: %w", what, err)
			}
			op, err := l.put(cfg)
			if err != nil {
				return nil, fmt.Errorf("%s: %w", what, err)
			}
			ops = append(ops, op)
		}
		return ops, nil
	})
	return out.written(rev), err
}

// next is the placement of the following incarnation, on node.
func (p Placement) next(node string) (Placement, error) {
	if p.Epoch >= MaxEpoch {
		return p, fmt.Errorf("fence: shard %d at epoch %d: no epoch left", p.Shard, p.Epoch)
	}
	return Placement{Shard: p.Shard, Node: node, Epoch: p.Epoch + 1, State: Active}, nil
}

// Placement lists an item's placed shards, in key order.
func (s *Store) Placement(ctx context.Context, item string) ([]Placement, error) {
	if err := checkID("item", item); err != nil {
		return nil, err
	}
	resp, err := s.cli.Get(ctx, itemPlacementPrefix(item), clientv3.WithPrefix())
	if err != nil {
		return nil, fmt.Errorf("placement %s: %w", item, err)
	}
	ps := make([]Placement, 0, len(resp.Kvs))
	for _, kv := range resp.Kvs {
		shard, err := shardOfKey(item, kv.Key)
		if err != nil {
			return nil, err
		}
		p, err := decodePlacement(kv, shard)
		if err != nil {
			return nil, err
		}
		ps = append(ps, p)
	}
	return ps, nil
}

// PlacementEvent is one change of a shard's placement.
type PlacementEvent struct {
	Placement
	Err error // a watch error or an undecodable value; the channel closes after it
}

// WatchPlacement reports every placement change of item until ctx ends,
// then closes the channel. Placements are never deleted, so every event is
// a put.
func (s *Store) WatchPlacement(ctx context.Context, item string) <-chan PlacementEvent {
	out := make(chan PlacementEvent, watchBuffer)
	go func() {
		defer close(out)
		for wr := range s.cli.Watch(ctx, itemPlacementPrefix(item), clientv3.WithPrefix()) {
			if err := wr.Err(); err != nil {
				send(ctx, out, PlacementEvent{Err: err})
				return
			}
			for _, ev := range wr.Events {
				if ev.Type != mvccpb.PUT {
					continue
				}
				var e PlacementEvent
				shard, err := shardOfKey(item, ev.Kv.Key)
				if err == nil {
					e.Placement, err = decodePlacement(ev.Kv, shard)
				}
				e.Err = err
				if !send(ctx, out, e) || err != nil {
					return
				}
			}
		}
	}()
	return out
}

func send(ctx context.Context, out chan<- PlacementEvent, e PlacementEvent) bool {
	select {
	case out <- e:
		return true
	case <-ctx.Done():
		return false
	}
}

func (s *Store) get(ctx context.Context, key string) (*mvccpb.KeyValue, error) {
	resp, err := s.cli.Get(ctx, key)
	if err != nil {
		return nil, fmt.Errorf("get %s: %w", key, err)
	}
	if len(resp.Kvs) == 0 {
		return nil, nil
	}
	return resp.Kvs[0], nil
}

func (s *Store) nodeAlive(ctx context.Context, node string) (bool, error) {
	kv, err := s.get(ctx, nodeKey(node))
	return kv != nil, err
}

func checkPlacement(item string, shard int, node string) error {
	if err := checkShard(item, shard); err != nil {
		return err
	}
	return CheckNodeID(node)
}

package fence

import (
	"context"
	"encoding/json"
	"fmt"
	"math"
	"strconv"

	"go.etcd.io/etcd/api/v3/mvccpb"
	clientv3 "go.etcd.io/etcd/client/v3"
)

// SeqBlock is how many grab sequences one ExtendSeqs grants: at a shard's
// rate of a few thousand grabs a second, an extension every second or so,
// asked for while half of the last block is left. It is also about what a
// forced move skips beyond its predecessor's last snapshot.
const SeqBlock = 4096

// SeqGrant is how far a shard's grabs may number: every incarnation uses
// only sequences below a Limit that etcd recorded for it (Node, Epoch),
// and Limit never falls. A forced move reads it in the transaction that
// takes the shard, so it knows every sequence the lost incarnation may
// have used, and starts the new one past them: grab ids never repeat
// across incarnations, even when the lost one confirmed grabs its last
// snapshot does not hold.
type SeqGrant struct {
	Node  string `json:"node"`
	Epoch uint64 `json:"epoch"`
	Limit uint64 `json:"limit"`
}

func seqsKey(item string, shard int) string {
	return seqsPrefix + item + "/" + strconv.Itoa(shard)
}

func decodeSeqGrant(kv *mvccpb.KeyValue) (SeqGrant, error) {
	var g SeqGrant
	if kv == nil {
		return g, nil
	}
	if err := json.Unmarshal(kv.Value, &g); err != nil {
		return g, fmt.Errorf("sequence grant %s: %w", kv.Key, err)
	}
	return g, nil
}

func (g SeqGrant) put(item string, shard int) clientv3.Op {
	b, _ := json.Marshal(g)
	return clientv3.OpPut(seqsKey(item, shard), string(b))
}

// ExtendSeqs grants the incarnation (node, epoch) of shard the sequences
// below the limit it returns: the recorded limit, raised to atLeast if
// lower, plus SeqBlock. Only the placement's current incarnation is
// granted (ErrStale otherwise): once a move took the shard, its old owner
// gets no sequence the new one may use.
func (s *Store) ExtendSeqs(ctx context.Context, item string, shard int, node string, epoch, atLeast uint64) (uint64, error) {
	if err := checkPlacement(item, shard, node); err != nil {
		return 0, err
	}
	what := fmt.Sprintf("extend sequences of %s/%d", item, shard)
	var limit uint64
	_, err := s.casLoop(ctx, what, []string{placementKey(item, shard), seqsKey(item, shard)}, func(kvs []*mvccpb.KeyValue) ([]clientv3.Op, error) {
		if kvs[0] == nil {
			return nil, fmt.Errorf("%s: %w", what, ErrUnplaced)
		}
		p, err := decodePlacement(kvs[0], shard)
		if err != nil {
			return nil, err
		}
		if p.Node != node || p.Epoch != epoch {
			return nil, fmt.Errorf("%s: %s at epoch %d, placed on %s at %d: %w", what, node, epoch, p.Node, p.Epoch, ErrStale)
		}
		g, err := decodeSeqGrant(kvs[1])
		if err != nil {
			return nil, err
		}
		base := max(g.Limit, atLeast)
		if base > math.MaxUint64-SeqBlock {
			return nil, fmt.Errorf("%s: limit %d: %w", what, base, ErrRefused)
		}
		limit = base + SeqBlock
		return []clientv3.Op{SeqGrant{Node: node, Epoch: epoch, Limit: limit}.put(item, shard)}, nil
	})
	if err != nil {
		return 0, err
	}
	return limit, nil
}

// SeqLimit returns shard's recorded grant (zero: none yet).
func (s *Store) SeqLimit(ctx context.Context, item string, shard int) (SeqGrant, error) {
	if err := checkShard(item, shard); err != nil {
		return SeqGrant{}, err
	}
	kv, err := s.get(ctx, seqsKey(item, shard))
	if err != nil {
		return SeqGrant{}, err
	}
	return decodeSeqGrant(kv)
}

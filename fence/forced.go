package fence

import (
	"context"
	"encoding/json"
	"fmt"

	clientv3 "go.etcd.io/etcd/client/v3"
)

// Forced records a forced move: shard of item was taken from node, whose
// incarnation at epoch is over. Grabs that node made of the shard from
// sequence Seq on are not the shard's any more (the new incarnation
// started from a snapshot ending before Seq, and skipped the sequences the
// node may have used): if the node comes back, it must not publish them, and the
// shard must never be given back to it (its copy diverges). Kept for
// good: an operator deletes it once the node's data is gone.
type Forced struct {
	Item  string `json:"item"`
	Shard int    `json:"shard"`
	Node  string `json:"node"`
	Epoch uint64 `json:"epoch"`
	Seq   uint64 `json:"seq"`
	// Journaled: an automatic failover from the shard's replicated journal
	// (Failover), not a forced move: the new incarnation holds everything
	// the lost one confirmed, so nothing diverges and the shard may come
	// back to the node; only the node's relay stops for the shard at Seq
	// (0: not yet known, so at once), since the new owner relays the grabs
	// from there (Store.RelayFrom).
	Journaled bool `json:"journaled,omitempty"`
}

// ForcedMoves lists every forced move recorded.
func (s *Store) ForcedMoves(ctx context.Context) ([]Forced, error) {
	resp, err := s.cli.Get(ctx, forcedPrefix, clientv3.WithPrefix())
	if err != nil {
		return nil, fmt.Errorf("forced moves: %w", err)
	}
	out := make([]Forced, 0, len(resp.Kvs))
	for _, kv := range resp.Kvs {
		var f Forced
		if err := json.Unmarshal(kv.Value, &f); err != nil {
			return nil, fmt.Errorf("forced move %s: %w", kv.Key, err)
		}
		out = append(out, f)
	}
	return out, nil
}

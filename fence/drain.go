package fence

import (
	"context"
	"fmt"
	"strings"

	clientv3 "go.etcd.io/etcd/client/v3"
)

// drainValue is what a drain mark holds: the key's presence is the mark.
const drainValue = "draining"

// SetDraining marks node draining (on) or clears its mark. A draining node
// keeps its lease and its shards until they are moved; placers put no new
// shard on it and move its shards away. The mark is an operator's, not
// attached to the node's lease: it outlives a restart or an expiry of the
// node, and a node that is down may be marked. Setting a mark that is
// already set, or clearing one that is not, changes nothing.
func (s *Store) SetDraining(ctx context.Context, node string, on bool) error {
	if err := CheckNodeID(node); err != nil {
		return err
	}
	var err error
	if on {
		_, err = s.cli.Put(ctx, drainKey(node), drainValue)
	} else {
		_, err = s.cli.Delete(ctx, drainKey(node))
	}
	if err != nil {
		return fmt.Errorf("set draining %s to %v: %w", node, on, err)
	}
	return nil
}

// Draining returns the nodes marked draining (each true).
func (s *Store) Draining(ctx context.Context) (map[string]bool, error) {
	resp, err := s.cli.Get(ctx, drainPrefix, clientv3.WithPrefix(), clientv3.WithKeysOnly())
	if err != nil {
		return nil, fmt.Errorf("draining: %w", err)
	}
	out := make(map[string]bool, len(resp.Kvs))
	for _, kv := range resp.Kvs {
		out[strings.TrimPrefix(string(kv.Key), drainPrefix)] = true
	}
	return out, nil
}

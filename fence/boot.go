package fence

import (
	"context"
	"fmt"
	"strconv"
	"strings"

	"go.etcd.io/etcd/api/v3/mvccpb"
	clientv3 "go.etcd.io/etcd/client/v3"
)

// bootKey counts node's process starts: /seckill/boot/<node> holds the
// count as a decimal number, no lease.
func bootKey(node string) string { return prefix + "boot/" + node }

// NextBoot counts a start of node and returns the count: one above the
// last it counted, and at least atLeast (this start as the node's data
// directory counts it). The count is in etcd
// so that a node restarted on an empty disk (its machine replaced, its
// directory lost) still counts above every start before: a clustered
// shard's incarnation includes it, and the pool takes nothing from an
// incarnation below one it heard from.
func (s *Store) NextBoot(ctx context.Context, node string, atLeast uint64) (uint64, error) {
	if err := CheckNodeID(node); err != nil {
		return 0, err
	}
	what := "count the start of " + node
	var n uint64
	_, err := s.casLoop(ctx, what, []string{bootKey(node)}, func(kvs []*mvccpb.KeyValue) ([]clientv3.Op, error) {
		var cur uint64
		if kvs[0] != nil {
			v, err := strconv.ParseUint(strings.TrimSpace(string(kvs[0].Value)), 10, 64)
			if err != nil {
				return nil, fmt.Errorf("%s: %q in etcd: %w", what, kvs[0].Value, err)
			}
			cur = v
		}
		n = max(cur+1, atLeast)
		return []clientv3.Op{clientv3.OpPut(bootKey(node), strconv.FormatUint(n, 10))}, nil
	})
	if err != nil {
		return 0, err
	}
	return n, nil
}

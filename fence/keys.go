package fence

import (
	"fmt"
	"strconv"
	"strings"

	"github.com/seckill/seckill/engine"
)

// Key layout. Every key lives under one prefix so that a shared etcd can
// host other things; ids never contain '/', so a prefix of one item never
// matches another's keys.
//
//	/seckill/nodes/<node>              NodeInfo JSON, attached to the node's lease
//	/seckill/items/<item>              item config JSON {item, stock, shards, per_user_limit,
//	                                   starts_at_ms, ends_at_ms, payment_window_ms}; written once
//	/seckill/pool/<item>               PoolLedger JSON {stock, pool, frozen, sent[], got[]}
//	/seckill/placement/<item>/<shard>  Placement JSON {node, epoch, state, to}
//	/seckill/drain/<node>              "draining" while an operator drains the node; no lease
//	/seckill/forced/<item>/<shard>/<node>  Forced JSON: a forced move took the shard from node
//	/seckill/seqs/<item>/<shard>       SeqGrant JSON {node, epoch, limit}: grab sequences granted
//	/seckill/lanes/<node>              the node that rewrote node's order lane while it was lost
//	/seckill/boot/<node>               the node's process starts, counted (NextBoot); no lease
const (
	prefix          = "/seckill/"
	nodesPrefix     = prefix + "nodes/"
	itemsPrefix     = prefix + "items/"
	poolPrefix      = prefix + "pool/"
	placementPrefix = prefix + "placement/"
	drainPrefix     = prefix + "drain/"
	forcedPrefix    = prefix + "forced/"
	seqsPrefix      = prefix + "seqs/"
	lanesPrefix     = prefix + "lanes/"
)

func nodeKey(node string) string { return nodesPrefix + node }

func placementKey(item string, shard int) string {
	return placementPrefix + item + "/" + strconv.Itoa(shard)
}

func itemPlacementPrefix(item string) string { return placementPrefix + item + "/" }

func itemKey(item string) string { return itemsPrefix + item }

func poolKey(item string) string { return poolPrefix + item }

func drainKey(node string) string { return drainPrefix + node }

// forcedKey records that a forced move took shard of item from node.
func forcedKey(item string, shard int, node string) string {
	return forcedPrefix + item + "/" + strconv.Itoa(shard) + "/" + node
}

// CheckNodeID refuses a node id that would break the key layout: the
// check Join makes, for callers that take a name before they reach etcd.
// A node id is an id as items and users have them (letters, digits and
// "-_.:"): it names the node's lane of the order stream too.
func CheckNodeID(id string) error {
	if !engine.ValidID(id) {
		return fmt.Errorf("fence: bad node id %q: 1-%d letters, digits or -_.:", id, engine.MaxIDLen)
	}
	return nil
}

// checkID refuses ids that would break the key layout.
func checkID(kind, id string) error {
	if id == "" || len(id) > engine.MaxIDLen || strings.ContainsAny(id, "/\x00") {
		return fmt.Errorf("fence: bad %s id %q", kind, id)
	}
	return nil
}

func checkShard(item string, shard int) error {
	if err := checkID("item", item); err != nil {
		return err
	}
	if shard < 0 || shard >= engine.MaxShards {
		return fmt.Errorf("fence: item %s: bad shard %d", item, shard)
	}
	return nil
}

// shardOfKey parses the shard number at the end of a placement key.
func shardOfKey(item string, key []byte) (int, error) {
	s, ok := strings.CutPrefix(string(key), itemPlacementPrefix(item))
	if !ok {
		return 0, fmt.Errorf("fence: key %q is not a placement of %s", key, item)
	}
	return strconv.Atoi(s)
}

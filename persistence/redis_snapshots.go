package persistence

import (
	"context"
	"errors"
	"fmt"
	"strconv"

	"github.com/redis/go-redis/v9"
	"github.com/seckill/seckill/engine"
)

// RedisSnapshots is the SnapshotStore in Redis. Each shard has one hash:
//
//	seckill:snap:<item>/<shard>   data         the encoded snapshot (AppendShardSnapshot)
//	                              epoch, seq   its (epoch, seq), canonical decimals
//	                              saved_at_ms  Redis TIME when it was accepted
//
// Item ids are [A-Za-z0-9_.:-]: '/' never occurs in one, so the last '/'
// of a key separates item and shard and no two shards share a key, even
// with ':' in item ids. All fields change together in one script, so they
// always describe the same snapshot; epoch and seq sit beside the data so
// that the script and SnapshotMeta need not decode it.
//
// Redis is not the authority (its replication is asynchronous); run it
// with appendonly yes so that a restart keeps what it acknowledged.
type RedisSnapshots struct {
	rdb redis.UniversalClient
}

// NewRedisSnapshots stores snapshots through rdb.
func NewRedisSnapshots(rdb redis.UniversalClient) *RedisSnapshots { return &RedisSnapshots{rdb: rdb} }

// SnapshotKeyPrefix leads every snapshot key.
const SnapshotKeyPrefix = "seckill:snap:"

// SnapshotKey is the Redis key of a shard's snapshot hash.
func SnapshotKey(item string, shard int) string {
	return SnapshotKeyPrefix + item + "/" + strconv.Itoa(shard)
}

// saveSnapshotScript is the whole save, atomic in Redis: it compares the
// incoming (epoch, seq) with the stored one and writes only a newer
// snapshot. Epoch and seq are uint64: Lua numbers are doubles, exact only
// to 2^53, so they travel as canonical decimals (no sign, no leading zero)
// and compare by length, then digit by digit. It answers {verdict, stored
// epoch, stored seq}, the verdict as snapshotVerdict numbers it.
const saveSnapshotScript = `
local function cmp(a, b)
  if #a ~= #b then return #a < #b and -1 or 1 end
  for i = 1, #a do
    local x, y = string.byte(a, i), string.byte(b, i)
    if x ~= y then return x < y and -1 or 1 end
  end
  return 0
end
local cur = redis.call('HMGET', KEYS[1], 'epoch', 'seq')
if cur[1] then
  local c = cmp(ARGV[1], cur[1])
  if c == 0 then c = cmp(ARGV[2], cur[2]) end
  if c < 0 then return {0, cur[1], cur[2]} end
  if c == 0 then
    if redis.call('HGET', KEYS[1], 'data') == ARGV[3] then return {2, cur[1], cur[2]} end
    return {3, cur[1], cur[2]}
  end
end
local t = redis.call('TIME')
local ms = t[1] .. string.format('%03d', math.floor(tonumber(t[2]) / 1000))
redis.call('HSET', KEYS[1], 'epoch', ARGV[1], 'seq', ARGV[2], 'data', ARGV[3], 'saved_at_ms', ms)
return {1, ARGV[1], ARGV[2]}
`

// saveSnapshot runs by EVALSHA, falling back to EVAL (which loads it) when
// Redis does not know it, as after a restart.
var saveSnapshot = redis.NewScript(saveSnapshotScript)

// SaveSnapshot stores s unless a newer or conflicting snapshot is stored.
func (r *RedisSnapshots) SaveSnapshot(ctx context.Context, s engine.ShardSnapshot) error {
	if err := CheckShardSnapshot(s); err != nil {
		return fmt.Errorf("save: %w", err)
	}
	data := AppendShardSnapshot(nil, s)
	res, err := saveSnapshot.Run(ctx, r.rdb, []string{SnapshotKey(s.Item, s.Shard)},
		strconv.FormatUint(s.Epoch, 10), strconv.FormatUint(s.Seq(), 10), data).Slice()
	if err != nil {
		return fmt.Errorf("save snapshot %s.%d: %w", s.Item, s.Shard, err)
	}
	if len(res) != 3 {
		return fmt.Errorf("save snapshot %s.%d: script answered %v", s.Item, s.Shard, res)
	}
	v, ok := res[0].(int64)
	epoch, err1 := parseReplyUint(res[1])
	seq, err2 := parseReplyUint(res[2])
	if !ok || err1 != nil || err2 != nil {
		return fmt.Errorf("save snapshot %s.%d: script answered %v", s.Item, s.Shard, res)
	}
	return snapshotSaveError(s, snapshotVerdict(v), epoch, seq)
}

func parseReplyUint(v any) (uint64, error) {
	s, ok := v.(string)
	if !ok {
		return 0, errors.New("not a string")
	}
	return strconv.ParseUint(s, 10, 64)
}

// LoadSnapshot reads and decodes a shard's snapshot, and checks that it is
// the one its key and fields name.
func (r *RedisSnapshots) LoadSnapshot(ctx context.Context, item string, shard int) (engine.ShardSnapshot, bool, error) {
	vals, err := r.rdb.HMGet(ctx, SnapshotKey(item, shard), "data", "epoch", "seq").Result()
	if err != nil {
		return engine.ShardSnapshot{}, false, fmt.Errorf("load snapshot %s.%d: %w", item, shard, err)
	}
	if vals[0] == nil {
		return engine.ShardSnapshot{}, false, nil
	}
	data, _ := vals[0].(string)
	epoch, err1 := parseReplyUint(vals[1])
	seq, err2 := parseReplyUint(vals[2])
	s, err := DecodeShardSnapshot([]byte(data))
	if err == nil && (err1 != nil || err2 != nil || s.Item != item || s.Shard != shard || s.Epoch != epoch || s.Seq() != seq) {
		err = fmt.Errorf("snapshot of %s.%d at (%d, %d) stored as (%v, %v): %w", s.Item, s.Shard, s.Epoch, s.Seq(), vals[1], vals[2], errCorrupt)
	}
	if err != nil {
		return engine.ShardSnapshot{}, false, fmt.Errorf("load snapshot %s.%d: %w", item, shard, err)
	}
	return s, true, nil
}

// SnapshotMeta reads a shard's snapshot fields but its data, in one
// MULTI/EXEC so that they describe one snapshot.
func (r *RedisSnapshots) SnapshotMeta(ctx context.Context, item string, shard int) (SnapshotMeta, bool, error) {
	key := SnapshotKey(item, shard)
	var (
		fields *redis.SliceCmd
		size   *redis.IntCmd
	)
	_, err := r.rdb.TxPipelined(ctx, func(p redis.Pipeliner) error {
		fields = p.HMGet(ctx, key, "epoch", "seq", "saved_at_ms")
		size = p.HStrLen(ctx, key, "data")
		return nil
	})
	if err != nil {
		return SnapshotMeta{}, false, fmt.Errorf("snapshot meta %s.%d: %w", item, shard, err)
	}
	vals := fields.Val()
	if vals[0] == nil {
		return SnapshotMeta{}, false, nil
	}
	epoch, err1 := parseReplyUint(vals[0])
	seq, err2 := parseReplyUint(vals[1])
	at, _ := vals[2].(string)
	savedAt, err3 := strconv.ParseInt(at, 10, 64)
	if err := errors.Join(err1, err2, err3); err != nil {
		return SnapshotMeta{}, false, fmt.Errorf("snapshot meta %s.%d: fields %v: %w", item, shard, vals, errCorrupt)
	}
	return SnapshotMeta{Epoch: epoch, Seq: seq, SavedAtMs: savedAt, Bytes: size.Val()}, true, nil
}

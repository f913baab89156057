package persistence

import (
	"bytes"
	"encoding/binary"
	"errors"
	"reflect"
	"testing"

	"github.com/seckill/seckill/engine"
)

// snapshotSeeds are snapshots of every shape: empty, the full history of
// snapHistory, sparse sequences, extreme numbers.
func snapshotSeeds(tb testing.TB) []engine.ShardSnapshot {
	seeds := []engine.ShardSnapshot{
		{Item: "i", Counters: engine.Counters{NextSeq: 1}},
		{Item: "x.y:z-_", Shard: engine.MaxShards - 1, Epoch: 1<<64 - 1,
			Counters: engine.Counters{Allocated: engine.MaxStock, Sold: 3, NextSeq: 1 << 40, Received: 1 << 50, Returned: 7},
			Grabs: []engine.SnapGrab{
				{Seq: 1 << 32, User: "u", Qty: 1, AtMs: -5},
				{Seq: 1<<32 + 9, User: "v", Qty: engine.MaxPerUserLimit, Key: "k ~", AtMs: 1 << 62, Released: true},
			}},
	}
	_, hist := snapHistory(tb)
	return append(seeds, at(hist[len(hist)-1], 12))
}

func TestShardSnapshotCodec(t *testing.T) {
	for _, s := range snapshotSeeds(t) {
		v := AppendShardSnapshot(nil, s)
		got, err := DecodeShardSnapshot(v)
		if err != nil || !reflect.DeepEqual(got, s) {
			t.Fatalf("%+v decoded to %+v, %v", s, got, err)
		}
		for n := range len(v) {
			if _, err := DecodeShardSnapshot(v[:n]); !errors.Is(err, errCorrupt) {
				t.Fatalf("%d of %d bytes decoded: %v", n, len(v), err)
			}
		}
		if _, err := DecodeShardSnapshot(append(v, 0)); !errors.Is(err, errCorrupt) {
			t.Fatalf("a trailing byte decoded: %v", err)
		}
	}
}

func TestShardSnapshotCodecRefuses(t *testing.T) {
	hdr := func(n uint64) []byte { // item "i", shard 0, epoch 0, counters {1,1,3,0,0}, n grabs
		b := []byte{valueVersion, 1, 'i', 0, 0}
		for _, x := range []int64{1, 1} {
			b = binary.AppendVarint(b, x)
		}
		b = binary.AppendUvarint(b, 3)
		b = append(b, 0, 0)
		return binary.AppendUvarint(b, n)
	}
	grab := func(step uint64, user string, flags uint64, key string) []byte {
		b := binary.AppendUvarint(nil, step)
		b = append(binary.AppendUvarint(b, uint64(len(user))), user...)
		b = binary.AppendUvarint(b, flags)
		b = append(binary.AppendUvarint(b, uint64(len(key))), key...)
		return append(b, 0)
	}
	join := func(parts ...[]byte) []byte { return bytes.Join(parts, nil) }
	if _, err := DecodeShardSnapshot(join(hdr(1), grab(1, "u", 2, ""))); err != nil {
		t.Fatalf("the valid base case: %v", err)
	}
	for name, v := range map[string][]byte{
		"version 2":          append([]byte{2}, hdr(0)[1:]...),
		"padded varint":      {valueVersion, 0x81, 0x00, 'i'},
		"bad item":           {valueVersion, 1, '/', 0, 0, 2, 0, 2, 0, 0, 0},
		"shard too big":      join([]byte{valueVersion, 1, 'i'}, binary.AppendUvarint(nil, engine.MaxShards), hdr(0)[4:]),
		"seq step 0":         join(hdr(1), grab(0, "u", 2, "")),
		"seq at next":        join(hdr(1), grab(3, "u", 2, "")),
		"seqs not rising":    join(hdr(2), grab(1, "u", 2, ""), grab(0, "v", 2, "")),
		"qty 0":              join(hdr(1), grab(1, "u", 0, "")),
		"qty over the limit": join(hdr(1), grab(1, "u", (engine.MaxPerUserLimit+1)<<1, "")),
		"empty user":         join(hdr(1), grab(1, "", 2, "")),
		"bad key":            join(hdr(1), grab(1, "u", 2, "k\n")),
		"count beyond input": join(hdr(1 << 40)),
		"fewer grabs":        join(hdr(2), grab(1, "u", 2, "")),
	} {
		if s, err := DecodeShardSnapshot(v); !errors.Is(err, errCorrupt) {
			t.Errorf("%s: decoded %+v, %v", name, s, err)
		}
	}
}

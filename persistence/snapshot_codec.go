package persistence

import (
	"encoding/binary"
	"fmt"
	"math"

	"github.com/seckill/seckill/engine"
)

// A shard snapshot encodes as one value, in the style of the other records
// (a version byte, shortest varints, strict decoding, one spelling):
//
//	version        1
//	item           uvarint length, bytes
//	shard          uvarint
//	epoch          uvarint
//	counters       Allocated, Sold (varint), NextSeq (uvarint), Received, Returned (varint)
//	grabs          uvarint count, then per grab in seq order:
//	  seq          uvarint, the step from the previous grab's seq (from 0 for the first); >= 1
//	  user         uvarint length, bytes
//	  qty,released uvarint qty<<1 | released
//	  key          uvarint length, bytes (0 for none)
//	  atMs         varint
//
// Sequences travel as steps so that the format does not assume them dense
// (an incarnation may one day start its own range); a dense shard pays one
// byte per grab. Whether the grabs add up to the counters is the engine's
// check (engine.RestoreSnapshot); the decoder checks every field alone.

// minSnapGrabBytes is the fewest bytes a grab encodes to (a 1-byte user):
// the decoder allocates no more grabs than the input could hold.
const minSnapGrabBytes = 6

// AppendShardSnapshot appends the encoding of s to dst. s should pass
// CheckShardSnapshot; what does not is encoded all the same, and refused
// when decoded.
func AppendShardSnapshot(dst []byte, s engine.ShardSnapshot) []byte {
	dst = append(dst, valueVersion)
	dst = binary.AppendUvarint(dst, uint64(len(s.Item)))
	dst = append(dst, s.Item...)
	dst = binary.AppendUvarint(dst, uint64(s.Shard))
	dst = binary.AppendUvarint(dst, s.Epoch)
	dst = appendCounterFields(dst, s.Counters)
	dst = binary.AppendUvarint(dst, uint64(len(s.Grabs)))
	var prev uint64
	for _, g := range s.Grabs {
		dst = binary.AppendUvarint(dst, g.Seq-prev)
		prev = g.Seq
		dst = binary.AppendUvarint(dst, uint64(len(g.User)))
		dst = append(dst, g.User...)
		flags := uint64(g.Qty) << 1
		if g.Released {
			flags |= 1
		}
		dst = binary.AppendUvarint(dst, flags)
		dst = binary.AppendUvarint(dst, uint64(len(g.Key)))
		dst = append(dst, g.Key...)
		dst = binary.AppendVarint(dst, g.AtMs)
	}
	return dst
}

// DecodeShardSnapshot decodes a snapshot and checks it with
// CheckShardSnapshot. The strings it returns are copies: v may be reused.
func DecodeShardSnapshot(v []byte) (engine.ShardSnapshot, error) {
	d := decoder{b: v}
	d.version()
	var s engine.ShardSnapshot
	s.Item = d.str(engine.MaxIDLen)
	shard := d.uvarint()
	if shard >= engine.MaxShards {
		d.fail()
	}
	s.Shard = int(shard)
	s.Epoch = d.uvarint()
	s.Counters = d.counterFields()
	n := d.uvarint()
	if d.err == nil && n > uint64(len(d.b)/minSnapGrabBytes) {
		d.fail()
	}
	if d.err == nil && n > 0 {
		s.Grabs = make([]engine.SnapGrab, n)
	}
	var seq uint64
	for i := range s.Grabs {
		if d.err != nil {
			break
		}
		g := &s.Grabs[i]
		step := d.uvarint()
		if step == 0 || seq+step < seq {
			d.fail()
			break
		}
		seq += step
		g.Seq = seq
		g.User = d.str(engine.MaxIDLen)
		flags := d.uvarint()
		if flags>>1 > engine.MaxPerUserLimit {
			d.fail()
			break
		}
		g.Qty, g.Released = int64(flags>>1), flags&1 == 1
		g.Key = d.str(engine.MaxKeyLen)
		g.AtMs = d.varint()
	}
	if err := d.done(); err != nil {
		return engine.ShardSnapshot{}, fmt.Errorf("shard snapshot: %w", err)
	}
	if err := CheckShardSnapshot(s); err != nil {
		return engine.ShardSnapshot{}, err
	}
	return s, nil
}

// CheckShardSnapshot checks each field of a snapshot on its own: ids, keys
// and quantities in range, counters that can be a shard's, sequences rising
// and below NextSeq, and a Seq that does not overflow. Whether it all adds
// up is engine.RestoreSnapshot's to say, with the item's configuration.
func CheckShardSnapshot(s engine.ShardSnapshot) error {
	c := s.Counters
	switch {
	case !engine.ValidID(s.Item) || s.Shard < 0 || s.Shard >= engine.MaxShards:
		return fmt.Errorf("shard snapshot %q.%d: %w", s.Item, s.Shard, errCorrupt)
	case !countersInRange(c) || c.NextSeq > math.MaxUint64-uint64(c.Received)-uint64(c.Returned):
		return fmt.Errorf("shard snapshot %s.%d: counters %+v: %w", s.Item, s.Shard, c, errCorrupt)
	}
	var prev uint64
	for _, g := range s.Grabs {
		if g.Seq <= prev || g.Seq >= c.NextSeq || !engine.ValidHolder(g.User) || g.Qty < 1 || g.Qty > engine.MaxPerUserLimit ||
			(g.Key != "" && !engine.ValidKey(g.Key)) {
			return fmt.Errorf("shard snapshot %s.%d: grab %+v after seq %d: %w", s.Item, s.Shard, g, prev, errCorrupt)
		}
		prev = g.Seq
	}
	return nil
}

package persistence

import (
	"encoding/binary"
	"errors"
	"fmt"
	"unsafe"

	"github.com/seckill/seckill/engine"
)

// Key layout. Ids never hold 0x00, so it separates an item from what follows
// and keeps one item's keys contiguous:
//
//	i<item>                       item config
//	p<item>                       the item's pool ledger
//	c<item>\x00<shard:2>          shard counters
//	g<item>\x00<shard:2><seq:8>   confirmed grab (big-endian, so a shard's
//	                              grabs are one range in sequence order)
//	r<item>\x00<shard:2><seq:8>   the grab was released (returned to stock)
//	u<item>\x00<shard:2>          relay cursor: grabs up to this seq are in the stream
const (
	prefixItem     = 'i'
	prefixPool     = 'p'
	prefixCounters = 'c'
	prefixGrab     = 'g'
	prefixRelease  = 'r'
	prefixCursor   = 'u'
	// valueVersion leads every value so the format can change later.
	valueVersion = 1
)

var errCorrupt = errors.New("corrupt record")

func itemKey(dst []byte, item string) []byte {
	return append(append(dst, prefixItem), item...)
}

func countersKey(dst []byte, item string, shard int) []byte {
	dst = append(append(append(dst, prefixCounters), item...), 0)
	return binary.BigEndian.AppendUint16(dst, uint16(shard))
}

func grabKey(dst []byte, item string, shard int, seq uint64) []byte {
	dst = grabShardPrefix(dst, item, shard)
	return binary.BigEndian.AppendUint64(dst, seq)
}

func grabShardPrefix(dst []byte, item string, shard int) []byte {
	return shardPrefix(dst, prefixGrab, item, shard)
}

func shardPrefix(dst []byte, prefix byte, item string, shard int) []byte {
	dst = append(append(append(dst, prefix), item...), 0)
	return binary.BigEndian.AppendUint16(dst, uint16(shard))
}

func releaseKey(dst []byte, item string, shard int, seq uint64) []byte {
	return binary.BigEndian.AppendUint64(shardPrefix(dst, prefixRelease, item, shard), seq)
}

func poolKey(dst []byte, item string) []byte {
	return append(append(dst, prefixPool), item...)
}

func encodePool(dst []byte, st engine.PoolState) []byte {
	dst = append(dst, valueVersion)
	dst = binary.AppendVarint(dst, st.Stock)
	dst = binary.AppendVarint(dst, st.Pool)
	dst = binary.AppendUvarint(dst, uint64(len(st.Sent)))
	for i := range st.Sent {
		dst = binary.AppendVarint(dst, st.Sent[i])
		dst = binary.AppendVarint(dst, st.Got[i])
	}
	return dst
}

// DecodePool decodes an item's pool ledger.
func DecodePool(v []byte) (engine.PoolState, error) {
	d := decoder{b: v}
	d.version()
	st := engine.PoolState{Stock: d.varint(), Pool: d.varint()}
	n := d.uvarint()
	if d.err == nil && (n > engine.MaxShards || n*2 > uint64(len(d.b))) {
		d.fail()
	}
	if d.err == nil {
		st.Sent, st.Got = make([]int64, n), make([]int64, n)
		for i := range n {
			st.Sent[i], st.Got[i] = d.varint(), d.varint()
		}
	}
	if err := d.done(); err != nil {
		return engine.PoolState{}, fmt.Errorf("pool: %w", err)
	}
	if st.Stock < 0 || st.Stock > engine.MaxStock || st.Pool < 0 || st.Pool > st.Stock {
		return engine.PoolState{}, fmt.Errorf("pool stock %d pool %d: %w", st.Stock, st.Pool, errCorrupt)
	}
	return st, nil
}

// prefixEnd is the smallest key greater than every key with prefix p.
func prefixEnd(p []byte) []byte {
	end := append([]byte(nil), p...)
	for i := len(end) - 1; i >= 0; i-- {
		if end[i] < 0xff {
			end[i]++
			return end[:i+1]
		}
	}
	return nil
}

func encodeItem(dst []byte, c engine.ItemConfig) []byte {
	dst = append(dst, valueVersion)
	dst = binary.AppendVarint(dst, c.Stock)
	dst = binary.AppendUvarint(dst, uint64(c.Shards))
	dst = binary.AppendVarint(dst, c.PerUserLimit)
	dst = binary.AppendVarint(dst, c.StartsAtMs)
	dst = binary.AppendVarint(dst, c.EndsAtMs)
	return binary.AppendVarint(dst, c.PaymentWindowMs)
}

// DecodeItem decodes an item value stored under key i<item>.
func DecodeItem(item string, v []byte) (engine.ItemConfig, error) {
	d := decoder{b: v}
	d.version()
	c := engine.ItemConfig{Item: item}
	c.Stock = d.varint()
	c.Shards = int(d.uvarint())
	c.PerUserLimit = d.varint()
	c.StartsAtMs = d.varint()
	c.EndsAtMs = d.varint()
	c.PaymentWindowMs = d.varint()
	if err := d.done(); err != nil {
		return engine.ItemConfig{}, fmt.Errorf("item %q: %w", item, err)
	}
	if err := c.Validate(); err != nil {
		return engine.ItemConfig{}, fmt.Errorf("item %q: %w: %v", item, errCorrupt, err)
	}
	return c, nil
}

func encodeCounters(dst []byte, c engine.Counters) []byte {
	return appendCounterFields(append(dst, valueVersion), c)
}

// appendCounterFields writes a shard's counters, as a counters value and a
// shard snapshot both hold them.
func appendCounterFields(dst []byte, c engine.Counters) []byte {
	dst = binary.AppendVarint(dst, c.Allocated)
	dst = binary.AppendVarint(dst, c.Sold)
	dst = binary.AppendUvarint(dst, c.NextSeq)
	dst = binary.AppendVarint(dst, c.Received)
	return binary.AppendVarint(dst, c.Returned)
}

func (d *decoder) counterFields() engine.Counters {
	return engine.Counters{Allocated: d.varint(), Sold: d.varint(), NextSeq: d.uvarint(), Received: d.varint(), Returned: d.varint()}
}

// countersInRange: nothing negative, sold within the allocation, a next
// sequence. Whether they add up is the engine's to say.
func countersInRange(c engine.Counters) bool {
	return c.Allocated >= 0 && c.Sold >= 0 && c.Sold <= c.Allocated && c.NextSeq != 0 && c.Received >= 0 && c.Returned >= 0
}

// DecodeCounters decodes a shard counters value.
func DecodeCounters(v []byte) (engine.Counters, error) {
	d := decoder{b: v}
	d.version()
	c := d.counterFields()
	if err := d.done(); err != nil {
		return engine.Counters{}, fmt.Errorf("counters: %w", err)
	}
	if !countersInRange(c) {
		return engine.Counters{}, fmt.Errorf("counters %+v: %w", c, errCorrupt)
	}
	return c, nil
}

func encodeGrab(dst []byte, g engine.Grab) []byte {
	dst = append(dst, valueVersion)
	dst = binary.AppendUvarint(dst, uint64(len(g.User)))
	dst = append(dst, g.User...)
	dst = binary.AppendVarint(dst, g.Qty)
	dst = binary.AppendUvarint(dst, uint64(len(g.Key)))
	dst = append(dst, g.Key...)
	return binary.AppendVarint(dst, g.AtMs)
}

// DecodeGrab decodes a grab value; item, shard and seq come from its key.
func DecodeGrab(item string, shard int, seq uint64, v []byte) (engine.Grab, error) {
	return decodeGrab(item, shard, seq, v, nil)
}

// decodeGrab is DecodeGrab with its strings cut from a (nil: allocated
// one by one).
func decodeGrab(item string, shard int, seq uint64, v []byte, a *strArena) (engine.Grab, error) {
	d := decoder{b: v, arena: a}
	d.version()
	g := engine.Grab{Item: item, Shard: shard, Seq: seq}
	g.User = d.str(engine.MaxIDLen)
	g.Qty = d.varint()
	g.Key = d.str(engine.MaxKeyLen)
	g.AtMs = d.varint()
	if err := d.done(); err != nil {
		return engine.Grab{}, fmt.Errorf("grab %s: %w", g.ID(), err)
	}
	if !engine.ValidHolder(g.User) || g.Qty < 1 || g.Qty > engine.MaxPerUserLimit || (g.Key != "" && !engine.ValidKey(g.Key)) {
		return engine.Grab{}, fmt.Errorf("grab %s: %w", g.ID(), errCorrupt)
	}
	return g, nil
}

// ParseGrabKey splits a grab (or release) key into item, shard and seq.
func ParseGrabKey(k []byte) (item string, shard int, seq uint64, err error) {
	if len(k) < 1+1+1+2+8 || (k[0] != prefixGrab && k[0] != prefixRelease) || k[len(k)-11] != 0 {
		return "", 0, 0, fmt.Errorf("grab key %q: %w", k, errCorrupt)
	}
	item = string(k[1 : len(k)-11])
	shard = int(binary.BigEndian.Uint16(k[len(k)-10:]))
	seq = binary.BigEndian.Uint64(k[len(k)-8:])
	if !engine.ValidID(item) || shard >= engine.MaxShards || seq == 0 {
		return "", 0, 0, fmt.Errorf("grab key %q: %w", k, errCorrupt)
	}
	return item, shard, seq, nil
}

// uvarintLen is the length of x's shortest encoding: decoders refuse
// padded varints so that every record has exactly one spelling.
func uvarintLen(x uint64) int {
	n := 1
	for ; x >= 0x80; x >>= 7 {
		n++
	}
	return n
}

// decoder reads a value; the first problem sticks and later reads return zero.
type decoder struct {
	b     []byte
	err   error
	arena *strArena // nil: strings are allocated one by one
}

// strArenaChunk is the size of the blocks a strArena cuts strings from.
const strArenaChunk = 64 << 10

// strArena cuts many small strings from a few large blocks: loading a
// million grabs allocates a few thousand blocks instead of two million
// strings. A block lives while any string cut from it does, so it suits
// strings kept together (a shard's users and keys), not a few kept out of
// many.
type strArena struct{ buf []byte }

func (a *strArena) str(b []byte) string {
	if len(b) == 0 {
		return ""
	}
	if cap(a.buf)-len(a.buf) < len(b) {
		a.buf = make([]byte, 0, max(strArenaChunk, len(b)))
	}
	start := len(a.buf)
	a.buf = append(a.buf, b...)
	// Never written again: the bytes are the string's alone.
	return unsafe.String(&a.buf[start], len(b))
}

func (d *decoder) fail() { d.err, d.b = errCorrupt, nil }

func (d *decoder) version() {
	if len(d.b) == 0 || d.b[0] != valueVersion {
		d.fail()
		return
	}
	d.b = d.b[1:]
}

func (d *decoder) varint() int64 {
	if d.err != nil {
		return 0
	}
	v, n := binary.Varint(d.b)
	ux := uint64(v) << 1 // zigzag, as binary.PutVarint encodes
	if v < 0 {
		ux = ^ux
	}
	if n <= 0 || n != uvarintLen(ux) {
		d.fail()
		return 0
	}
	d.b = d.b[n:]
	return v
}

func (d *decoder) uvarint() uint64 {
	if d.err != nil {
		return 0
	}
	v, n := binary.Uvarint(d.b)
	if n <= 0 || n != uvarintLen(v) {
		d.fail()
		return 0
	}
	d.b = d.b[n:]
	return v
}

func (d *decoder) str(max int) string {
	n := d.uvarint()
	if d.err != nil {
		return ""
	}
	if n > uint64(max) || n > uint64(len(d.b)) {
		d.fail()
		return ""
	}
	var s string
	if d.arena != nil {
		s = d.arena.str(d.b[:n])
	} else {
		s = string(d.b[:n])
	}
	d.b = d.b[n:]
	return s
}

func (d *decoder) done() error {
	if d.err == nil && len(d.b) != 0 {
		d.fail()
	}
	return d.err
}

// DecodeCursor decodes a relay cursor value.
func DecodeCursor(v []byte) (uint64, error) {
	d := decoder{b: v}
	d.version()
	seq := d.uvarint()
	if err := d.done(); err != nil {
		return 0, fmt.Errorf("cursor: %w", err)
	}
	return seq, nil
}

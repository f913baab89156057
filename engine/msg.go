package engine

import (
	"bytes"
	"encoding/binary"
	"errors"
)

// Addr names a participant in an item's sale protocol: one of its shards,
// its pool (Shard == PoolShard) or the front that answers buyers for it
// (Shard == FrontShard). Every message is addressed by value, so the same
// message can go to an actor in this process or in another.
type Addr struct {
	Item  string
	Shard int
}

const (
	// PoolShard addresses an item's pool.
	PoolShard = -1
	// FrontShard addresses whatever answers buyers without a shard hop (the
	// sold-out flag of every front that serves the item).
	FrontShard = -2
)

// PoolAddr is the address of an item's pool.
func PoolAddr(item string) Addr { return Addr{Item: item, Shard: PoolShard} }

// ShardAddr is the address of an item's shard i.
func ShardAddr(item string, i int) Addr { return Addr{Item: item, Shard: i} }

// MsgKind names a message of the sale protocol.
type MsgKind uint8

const (
	// MsgAsk: shard → pool. Want units; Urgent when buyers wait for them;
	// Seq numbers the shard's asks (a MsgNoStock answers one by its Seq).
	MsgAsk MsgKind = iota + 1
	// MsgGrant: pool → shard. Total is the pool's cumulative count sent to
	// the shard, durable before the message left; the shard takes the
	// difference to its Received. PoolEmpty: the pool has nothing left
	// for top-ups.
	MsgGrant
	// MsgNoStock: pool → shard. No unit is left anywhere for the buyers
	// waiting since ask Seq: they are told sold out.
	MsgNoStock
	// MsgGiveBack: pool → shard. Hand up to Want unsold units back (a steal
	// for a sibling with buyers waiting, or a stock reduction).
	MsgGiveBack
	// MsgReturned: shard → pool. Total is the shard's cumulative Returned,
	// durable before the message left. Answer: it answers a MsgGiveBack.
	MsgReturned
	// MsgReport: shard → pool. The shard's counters changed in a way the
	// pool must hear of at once (it ran dry, a grab was released).
	MsgReport
	// MsgSync: shard → pool. The shard reloaded its durable state (Gen is
	// its new incarnation, Counters are durable); the pool replaces what it
	// knew of the shard, takes what it returned, and resends its durable
	// grant total.
	MsgSync
	// MsgStatus: pool → front. SoldOut: no unit is left anywhere. Seq
	// numbers the pool's statuses: a front keeps the one of highest Seq.
	MsgStatus
	msgKinds
)

var msgNames = [...]string{MsgAsk: "ask", MsgGrant: "grant", MsgNoStock: "no_stock", MsgGiveBack: "give_back",
	MsgReturned: "returned", MsgReport: "report", MsgSync: "sync", MsgStatus: "status"}

func (k MsgKind) String() string {
	if k > 0 && k < msgKinds {
		return msgNames[k]
	}
	return sprintf("msg(%d)", uint8(k))
}

// Msg is one message between a shard, its item's pool and the fronts: a
// plain value with a binary encoding (AppendMsg, DecodeMsg). Which fields
// mean something depends on Kind; the others are zero.
type Msg struct {
	Kind     MsgKind
	From, To Addr
	Want     int64  // MsgAsk, MsgGiveBack
	Total    int64  // MsgGrant: pool's Sent; MsgReturned: shard's Returned
	Seq      uint64 // MsgAsk, MsgNoStock: the ask's number; MsgStatus: its number
	Gen      uint64 // shard → pool: the sender's incarnation
	Counters Counters
	// Flags.
	Urgent    bool // MsgAsk: buyers are waiting
	Answer    bool // MsgReturned: answers a MsgGiveBack
	PoolEmpty bool // MsgGrant: the pool has no units for top-ups
	SoldOut   bool // MsgStatus
}

const (
	msgVersion = 1
	flagUrgent = 1 << iota
	flagAnswer
	flagPoolEmpty
	flagSoldOut
	flagsAll = flagUrgent | flagAnswer | flagPoolEmpty | flagSoldOut
	// MaxMsgLen bounds an encoded message: two ids and a dozen varints.
	MaxMsgLen = 2*MaxIDLen + 160
)

// ErrBadMsg: bytes that are not exactly one encoded message.
var ErrBadMsg = errors.New("malformed protocol message")

// AppendMsg appends m's binary encoding to dst. Every integer is a varint in
// its shortest form, so a message has exactly one encoding.
func AppendMsg(dst []byte, m Msg) []byte {
	dst = append(dst, msgVersion, byte(m.Kind))
	dst = appendAddr(dst, m.From)
	dst = appendAddr(dst, m.To)
	dst = binary.AppendVarint(dst, m.Want)
	dst = binary.AppendVarint(dst, m.Total)
	dst = binary.AppendUvarint(dst, m.Seq)
	dst = binary.AppendUvarint(dst, m.Gen)
	c := m.Counters
	dst = binary.AppendVarint(dst, c.Allocated)
	dst = binary.AppendVarint(dst, c.Sold)
	dst = binary.AppendUvarint(dst, c.NextSeq)
	dst = binary.AppendVarint(dst, c.Received)
	dst = binary.AppendVarint(dst, c.Returned)
	var f byte
	for _, b := range [...]struct {
		on  bool
		bit byte
	}{{m.Urgent, flagUrgent}, {m.Answer, flagAnswer}, {m.PoolEmpty, flagPoolEmpty}, {m.SoldOut, flagSoldOut}} {
		if b.on {
			f |= b.bit
		}
	}
	return append(dst, f)
}

func appendAddr(dst []byte, a Addr) []byte {
	dst = binary.AppendUvarint(dst, uint64(len(a.Item)))
	dst = append(dst, a.Item...)
	return binary.AppendVarint(dst, int64(a.Shard))
}

// DecodeMsg decodes one message, refusing anything AppendMsg would not have
// written for a valid message: unknown versions, kinds or flags, ids outside
// the id alphabet, shards out of range, trailing bytes, non-shortest varints.
func DecodeMsg(b []byte) (Msg, error) {
	if len(b) > MaxMsgLen || len(b) < 2 || b[0] != msgVersion {
		return Msg{}, ErrBadMsg
	}
	d := msgDecoder{b: b[2:]}
	m := Msg{Kind: MsgKind(b[1])}
	m.From = d.addr()
	m.To = d.addr()
	m.Want = d.varint()
	m.Total = d.varint()
	m.Seq = d.uvarint()
	m.Gen = d.uvarint()
	m.Counters = Counters{Allocated: d.varint(), Sold: d.varint(), NextSeq: d.uvarint(), Received: d.varint(), Returned: d.varint()}
	f := d.byte()
	if d.bad || len(d.b) != 0 || f&^flagsAll != 0 || m.Kind == 0 || m.Kind >= msgKinds ||
		m.Want < 0 || m.Want > MaxStock || m.Total < 0 || m.Total > 2*MaxStock*MaxStock {
		return Msg{}, ErrBadMsg
	}
	m.Urgent, m.Answer, m.PoolEmpty, m.SoldOut = f&flagUrgent != 0, f&flagAnswer != 0, f&flagPoolEmpty != 0, f&flagSoldOut != 0
	// One encoding per message: reject any other spelling of the same one.
	if !bytes.Equal(AppendMsg(make([]byte, 0, len(b)), m), b) {
		return Msg{}, ErrBadMsg
	}
	return m, nil
}

type msgDecoder struct {
	b   []byte
	bad bool
}

func (d *msgDecoder) uvarint() uint64 {
	v, n := binary.Uvarint(d.b)
	if n <= 0 {
		d.bad = true
		return 0
	}
	d.b = d.b[n:]
	return v
}

func (d *msgDecoder) varint() int64 {
	v, n := binary.Varint(d.b)
	if n <= 0 {
		d.bad = true
		return 0
	}
	d.b = d.b[n:]
	return v
}

func (d *msgDecoder) byte() byte {
	if len(d.b) == 0 {
		d.bad = true
		return 0
	}
	c := d.b[0]
	d.b = d.b[1:]
	return c
}

func (d *msgDecoder) addr() Addr {
	n := d.uvarint()
	if d.bad || n < 1 || n > MaxIDLen || n > uint64(len(d.b)) {
		d.bad = true
		return Addr{}
	}
	item := d.b[:n]
	d.b = d.b[n:]
	s := d.varint()
	if !ValidID(item) || s < FrontShard || s >= MaxShards {
		d.bad = true
		return Addr{}
	}
	return Addr{Item: string(item), Shard: int(s)}
}

// Routed reports whether m goes where its kind may go: a shard's ask,
// returned, report and sync to its own item's pool; the pool's grant,
// no-stock and give-back to one of its item's shards, and its status to
// the item's fronts. Who may say it is the other half of the rule: a node
// hears a message whose From is the pool only from the node placed to run
// the pool, and one whose From is a shard only from the node placed to run
// that shard (grid.Receive). A message that fails either is dropped.
func (m Msg) Routed() bool {
	if m.From.Item != m.To.Item {
		return false
	}
	switch m.Kind {
	case MsgAsk, MsgReturned, MsgReport, MsgSync:
		return m.From.Shard >= 0 && m.To.Shard == PoolShard
	case MsgGrant, MsgNoStock, MsgGiveBack:
		return m.From.Shard == PoolShard && m.To.Shard >= 0
	case MsgStatus:
		return m.From.Shard == PoolShard && m.To.Shard == FrontShard
	}
	return false
}

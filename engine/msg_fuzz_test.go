package engine

import (
	"bytes"
	"strings"
	"testing"
)

// msgExamples is one message of every kind, as the nodes send them, plus
// the extremes of every field.
func msgExamples() []Msg {
	item := "item-1"
	c := Counters{Allocated: 7, Sold: 3, NextSeq: 4, Received: 5, Returned: 2}
	long := strings.Repeat("x", MaxIDLen)
	return []Msg{
		{Kind: MsgAsk, From: ShardAddr(item, 3), To: PoolAddr(item), Want: 10, Seq: 7, Gen: 2, Counters: c, Urgent: true},
		{Kind: MsgAsk, From: ShardAddr(item, 0), To: PoolAddr(item), Want: 1, Seq: 1, Gen: 1},
		{Kind: MsgGrant, From: PoolAddr(item), To: ShardAddr(item, 3), Total: 25, PoolEmpty: true},
		{Kind: MsgGrant, From: PoolAddr(item), To: ShardAddr(item, 1)},
		{Kind: MsgNoStock, From: PoolAddr(item), To: ShardAddr(item, 2), Seq: 9},
		{Kind: MsgGiveBack, From: PoolAddr(item), To: ShardAddr(item, 5), Want: 4},
		{Kind: MsgGiveBack, From: PoolAddr(item), To: ShardAddr(item, 5)},
		{Kind: MsgReturned, From: ShardAddr(item, 5), To: PoolAddr(item), Total: 6, Gen: 3, Counters: c, Answer: true},
		{Kind: MsgReport, From: ShardAddr(item, 4), To: PoolAddr(item), Gen: 1, Counters: c},
		{Kind: MsgSync, From: ShardAddr(item, MaxShards-1), To: PoolAddr(item), Gen: 1<<64 - 1, Counters: c},
		{Kind: MsgStatus, From: PoolAddr(item), To: Addr{Item: item, Shard: FrontShard}, SoldOut: true},
		{Kind: MsgStatus, From: PoolAddr(long), To: Addr{Item: long, Shard: FrontShard}},
		{Kind: MsgAsk, From: ShardAddr("a", 1), To: PoolAddr("a"), Want: MaxStock, Total: 2 * MaxStock * MaxStock, Seq: 1<<64 - 1,
			Counters: Counters{Allocated: -1, Sold: -1 << 63, NextSeq: 1<<64 - 1, Received: 1<<63 - 1, Returned: -5},
			Urgent:   true, Answer: true, PoolEmpty: true, SoldOut: true},
	}
}

func TestMsgRoundTrip(t *testing.T) {
	kinds := map[MsgKind]bool{}
	for _, m := range msgExamples() {
		t.Run(m.Kind.String(), func(t *testing.T) {
			b := AppendMsg(nil, m)
			if len(b) > MaxMsgLen {
				t.Fatalf("%d bytes, more than MaxMsgLen %d", len(b), MaxMsgLen)
			}
			got, err := DecodeMsg(b)
			if err != nil || got != m {
				t.Fatalf("decoded %+v, %v; want %+v", got, err, m)
			}
			// Appending keeps what is there.
			if pre := AppendMsg([]byte("xy"), m); !bytes.Equal(pre[2:], b) || string(pre[:2]) != "xy" {
				t.Fatalf("AppendMsg does not append")
			}
			// A prefix or a byte more is not a message.
			for n := range len(b) {
				if _, err := DecodeMsg(b[:n]); err == nil {
					t.Fatalf("prefix of %d bytes decodes", n)
				}
			}
			if _, err := DecodeMsg(append(b, 0)); err == nil {
				t.Fatal("trailing byte decodes")
			}
		})
		kinds[m.Kind] = true
	}
	for k := MsgAsk; k < msgKinds; k++ {
		if !kinds[k] {
			t.Errorf("no example of %v", k)
		}
	}
}

func TestDecodeMsgRefuses(t *testing.T) {
	good := AppendMsg(nil, msgExamples()[0])
	set := func(i int, v byte) []byte { b := bytes.Clone(good); b[i] = v; return b }
	// Field offsets of msgExamples()[0]: version, kind, then From.Item's
	// length and bytes, From.Shard, To.Item's length and bytes, To.Shard.
	for _, c := range []struct {
		name string
		b    []byte
	}{
		{"empty", nil},
		{"version", set(0, 2)},
		{"kind zero", set(1, 0)},
		{"kind unknown", set(1, byte(msgKinds))},
		{"item empty", set(2, 0)},
		{"item bad byte", set(3, '/')},
		{"flags unknown", set(len(good)-1, 1<<7)},
		{"non-shortest varint", append(append(bytes.Clone(good[:len(good)-1]), 0x80, 0), good[len(good)-1])},
		{"too long", make([]byte, MaxMsgLen+1)},
		{"shard too big", AppendMsg(nil, Msg{Kind: MsgReport, From: ShardAddr("a", MaxShards), To: PoolAddr("a")})},
		{"shard below front", AppendMsg(nil, Msg{Kind: MsgReport, From: ShardAddr("a", FrontShard-1), To: PoolAddr("a")})},
		{"want negative", AppendMsg(nil, Msg{Kind: MsgAsk, From: ShardAddr("a", 0), To: PoolAddr("a"), Want: -1})},
		{"want too big", AppendMsg(nil, Msg{Kind: MsgAsk, From: ShardAddr("a", 0), To: PoolAddr("a"), Want: MaxStock + 1})},
		{"total negative", AppendMsg(nil, Msg{Kind: MsgGrant, From: PoolAddr("a"), To: ShardAddr("a", 0), Total: -1})},
	} {
		if m, err := DecodeMsg(c.b); err == nil {
			t.Errorf("%s: decoded %+v", c.name, m)
		}
	}
}

// FuzzDecodeMsg: any bytes either fail to decode or are the one encoding
// of the message they decode to.
func FuzzDecodeMsg(f *testing.F) {
	for _, m := range msgExamples() {
		f.Add(AppendMsg(nil, m))
	}
	f.Add([]byte{msgVersion})
	f.Add([]byte{msgVersion, byte(MsgAsk), 1, 'a', 0x80})
	f.Fuzz(func(t *testing.T, b []byte) {
		m, err := DecodeMsg(b)
		if err != nil {
			if err != ErrBadMsg {
				t.Fatalf("error %v is not ErrBadMsg", err)
			}
			return
		}
		if got := AppendMsg(nil, m); !bytes.Equal(got, b) {
			t.Fatalf("%x decodes to %+v which encodes as %x", b, m, got)
		}
		if m2, err := DecodeMsg(AppendMsg(nil, m)); err != nil || m2 != m {
			t.Fatalf("%+v does not round-trip: %+v %v", m, m2, err)
		}
	})
}

// TestRouted: each kind goes one way only, within one item.
func TestRouted(t *testing.T) {
	shard, pool, front := ShardAddr("it", 3), PoolAddr("it"), Addr{Item: "it", Shard: FrontShard}
	other := PoolAddr("other")
	for _, c := range []struct {
		kind     MsgKind
		from, to Addr
		ok       bool
	}{
		{MsgAsk, shard, pool, true},
		{MsgReport, shard, pool, true},
		{MsgSync, shard, pool, true},
		{MsgReturned, shard, pool, true},
		{MsgGrant, pool, shard, true},
		{MsgNoStock, pool, shard, true},
		{MsgGiveBack, pool, shard, true},
		{MsgStatus, pool, front, true},
		{MsgGrant, shard, shard, false},  // a shard granting a shard
		{MsgGrant, pool, front, false},   // a grant to the fronts
		{MsgStatus, shard, front, false}, // a shard saying sold out
		{MsgStatus, pool, shard, false},
		{MsgAsk, pool, pool, false},
		{MsgAsk, shard, other, false}, // another item's pool
		{MsgGrant, other, shard, false},
		{MsgAsk, shard, front, false},
		{0, pool, shard, false},
	} {
		if got := (Msg{Kind: c.kind, From: c.from, To: c.to}).Routed(); got != c.ok {
			t.Errorf("%v %+v → %+v: Routed %v, want %v", c.kind, c.from, c.to, got, c.ok)
		}
	}
}

package remote

import (
	"bytes"
	"errors"
	"strings"
	"testing"

	"github.com/seckill/seckill/engine"
)

// msgOfEveryKind is one message of every protocol kind, with the extremes
// of some fields.
func msgOfEveryKind() []engine.Msg {
	item := "item-1"
	c := engine.Counters{Allocated: 7, Sold: 3, NextSeq: 4, Received: 5, Returned: 2}
	long := strings.Repeat("x", engine.MaxIDLen)
	return []engine.Msg{
		{Kind: engine.MsgAsk, From: engine.ShardAddr(item, 3), To: engine.PoolAddr(item), Want: 10, Seq: 7, Gen: 2, Counters: c, Urgent: true},
		{Kind: engine.MsgGrant, From: engine.PoolAddr(item), To: engine.ShardAddr(item, 3), Total: 25, PoolEmpty: true},
		{Kind: engine.MsgNoStock, From: engine.PoolAddr(item), To: engine.ShardAddr(item, 2), Seq: 9},
		{Kind: engine.MsgGiveBack, From: engine.PoolAddr(item), To: engine.ShardAddr(item, 5), Want: 4},
		{Kind: engine.MsgReturned, From: engine.ShardAddr(item, 5), To: engine.PoolAddr(item), Total: 6, Gen: 3, Counters: c, Answer: true},
		{Kind: engine.MsgReport, From: engine.ShardAddr(item, 4), To: engine.PoolAddr(item), Gen: 1, Counters: c},
		{Kind: engine.MsgSync, From: engine.ShardAddr(item, engine.MaxShards-1), To: engine.PoolAddr(item), Gen: 1<<64 - 1, Counters: c},
		{Kind: engine.MsgStatus, From: engine.PoolAddr(long), To: engine.Addr{Item: long, Shard: engine.FrontShard}, Seq: 1<<64 - 1, SoldOut: true},
	}
}

func TestEnvelopeRoundTrip(t *testing.T) {
	for _, m := range msgOfEveryKind() {
		t.Run(m.Kind.String(), func(t *testing.T) {
			b := AppendEnvelope(nil, MsgEnvelope(m))
			if len(b) > MaxEnvelopeLen {
				t.Fatalf("%d bytes, more than MaxEnvelopeLen %d", len(b), MaxEnvelopeLen)
			}
			e, err := DecodeEnvelope(b)
			if err != nil || e != MsgEnvelope(m) {
				t.Fatalf("decoded %+v, %v; want %+v", e, err, m)
			}
			if w := wrap(MsgEnvelope(m)); !bytes.Equal(w.Value, b) {
				t.Fatal("wrap encodes differently")
			}
		})
	}
}

// longestFrom is a sender address of MaxPeerAddrLen bytes: the decoder
// bounds its length only (the transport checks it is a peer address).
var longestFrom = strings.Repeat("9", MaxPeerAddrLen)

func TestMsgFromEnvelopeRoundTrip(t *testing.T) {
	for _, from := range []string{"", "127.0.0.11:40000", longestFrom} {
		for _, m := range msgOfEveryKind() {
			e := MsgFromEnvelope(from, m)
			b := AppendEnvelope(nil, e)
			if len(b) > MaxEnvelopeLen {
				t.Fatalf("%d bytes, more than MaxEnvelopeLen %d", len(b), MaxEnvelopeLen)
			}
			if got, err := DecodeEnvelope(b); err != nil || got != e {
				t.Fatalf("decoded %+v, %v; want %+v", got, err, e)
			}
		}
	}
}

func TestEnvelopeRefuses(t *testing.T) {
	good := AppendEnvelope(nil, MsgEnvelope(msgOfEveryKind()[0]))
	msg := good[1:]
	fromTag := []byte{byte(TagMsgFrom)}
	for _, tc := range []struct {
		name string
		b    []byte
		want error
	}{
		{"empty", nil, ErrBadEnvelope},
		{"tag only", []byte{byte(TagMsg)}, ErrBadEnvelope},
		{"truncated", good[:len(good)-1], ErrBadEnvelope},
		{"trailing byte", append(append([]byte{}, good...), 0), ErrBadEnvelope},
		{"too long", append([]byte{byte(TagMsg)}, make([]byte, MaxEnvelopeLen)...), ErrBadEnvelope},
		{"tag 0", append([]byte{0}, good[1:]...), ErrUnknownTag},
		{"request tag, a msg", append([]byte{byte(TagRequest)}, msg...), ErrBadEnvelope},
		{"reply tag, a msg", append([]byte{byte(TagReply)}, msg...), ErrBadEnvelope},
		{"tag 5", append([]byte{5}, msg...), ErrUnknownTag},
		{"tag 255", []byte{255}, ErrUnknownTag},
		{"from, no msg", append(append(fromTag, 2), "ab"...), ErrBadEnvelope},
		{"from too long", append(append(append(fromTag, MaxPeerAddrLen+1), longestFrom+"9"...), msg...), ErrBadEnvelope},
		{"from length past the end", append(fromTag, 5, 'a'), ErrBadEnvelope},
		{"from length not shortest", append(append(append(fromTag, 0x82, 0), "ab"...), msg...), ErrBadEnvelope},
		{"from, bad msg", append(append(append(fromTag, 2), "ab"...), msg[:len(msg)-1]...), ErrBadEnvelope},
	} {
		t.Run(tc.name, func(t *testing.T) {
			if _, err := DecodeEnvelope(tc.b); !errors.Is(err, tc.want) {
				t.Fatalf("err %v, want %v", err, tc.want)
			}
		})
	}
}

// FuzzDecodeEnvelope: no input panics the decoder, and whatever decodes
// re-encodes to the same bytes (one encoding per envelope).
func FuzzDecodeEnvelope(f *testing.F) {
	for _, m := range msgOfEveryKind() {
		b := AppendEnvelope(nil, MsgEnvelope(m))
		f.Add(b)
		f.Add(b[:len(b)/2])
		f.Add(AppendEnvelope(nil, MsgFromEnvelope("127.0.0.11:40000", m)))
	}
	for _, r := range reqOfEveryKind() {
		f.Add(AppendEnvelope(nil, RequestEnvelope(r)))
	}
	for _, r := range replyOfEveryCode() {
		f.Add(AppendEnvelope(nil, ReplyEnvelope(r)))
	}
	f.Add([]byte{})
	f.Add([]byte{2, 1, 1})
	f.Fuzz(func(t *testing.T, b []byte) {
		e, err := DecodeEnvelope(b)
		if err != nil {
			return
		}
		if again := AppendEnvelope(nil, e); !bytes.Equal(again, b) {
			t.Fatalf("%x decodes to %+v, which encodes to %x", b, e, again)
		}
	})
}

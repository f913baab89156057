package remote

import (
	"encoding/binary"
	"errors"
	"fmt"

	"github.com/seckill/seckill/engine"
	"google.golang.org/protobuf/types/known/wrapperspb"
)

// Tag is an envelope's first byte: it says how the rest is encoded.
// Protoactor's remote sends only registered protobuf types, and a type name
// the receiver does not know crashes it (remote/proto_serializer.go:30-32),
// so every envelope travels as one well-known type, wrapperspb.BytesValue,
// and the tag does the typing. A tag is never reused for another meaning.
type Tag uint8

const (
	// TagMsg: an engine.Msg in engine.AppendMsg's encoding. Send no longer
	// writes it (TagMsgFrom says who sent); a receiver still takes it, with
	// no sender, from peers that predate TagMsgFrom.
	TagMsg Tag = 1
	// TagRequest: a Request (a grab, release or stock change sent to the
	// node that owns the item) in AppendRequest's encoding.
	TagRequest Tag = 2
	// TagReply: the Reply to a Request, in AppendReply's encoding.
	TagReply Tag = 3
	// TagMsgFrom: the sender's peer address (a uvarint length, at most
	// MaxPeerAddrLen bytes), then an engine.Msg as in TagMsg.
	TagMsgFrom Tag = 4
)

const (
	// MaxPeerAddrLen bounds a peer address an envelope carries: the longest
	// IP:PORT is an IPv6 address with an embedded IPv4 in brackets and a
	// five-digit port, 53 bytes; 64 leaves room and keeps the length one
	// varint byte.
	MaxPeerAddrLen = 64
	// maxMsgFromLen: a TagMsgFrom payload at its longest.
	maxMsgFromLen = 1 + MaxPeerAddrLen + engine.MaxMsgLen
	// MaxEnvelopeLen bounds an encoded envelope: the tag and the largest
	// payload of any tag. A receiver refuses anything longer before
	// decoding.
	MaxEnvelopeLen = 1 + max(engine.MaxMsgLen, maxMsgFromLen, maxRequestLen, maxReplyLen)
)

var (
	// ErrBadEnvelope: bytes that are not exactly one encoded envelope.
	ErrBadEnvelope = errors.New("malformed envelope")
	// ErrUnknownTag: an envelope of a tag this build does not know (a newer
	// peer, or garbage).
	ErrUnknownTag = errors.New("unknown envelope tag")
)

// Envelope is one decoded payload. Which field holds it depends on Tag.
type Envelope struct {
	Tag  Tag
	Msg  engine.Msg // TagMsg, TagMsgFrom
	From string     // TagMsgFrom: the sender's address, as its Transport.Addr
	Req  Request    // TagRequest
	Rep  Reply      // TagReply
}

// MsgEnvelope wraps a protocol message with no sender (the old form).
func MsgEnvelope(m engine.Msg) Envelope { return Envelope{Tag: TagMsg, Msg: m} }

// MsgFromEnvelope wraps a protocol message sent by the node at from.
func MsgFromEnvelope(from string, m engine.Msg) Envelope {
	return Envelope{Tag: TagMsgFrom, Msg: m, From: from}
}

// RequestEnvelope wraps a request.
func RequestEnvelope(r Request) Envelope { return Envelope{Tag: TagRequest, Req: r} }

// ReplyEnvelope wraps a reply.
func ReplyEnvelope(r Reply) Envelope { return Envelope{Tag: TagReply, Rep: r} }

// AppendEnvelope appends e's encoding to dst: the tag, then the payload in
// its own canonical encoding, so an envelope has exactly one encoding too.
// It panics on a tag it does not know: that is a bug in the sender.
func AppendEnvelope(dst []byte, e Envelope) []byte {
	switch e.Tag {
	case TagMsg:
		return engine.AppendMsg(append(dst, byte(TagMsg)), e.Msg)
	case TagMsgFrom:
		dst = appendStr(append(dst, byte(TagMsgFrom)), e.From)
		return engine.AppendMsg(dst, e.Msg)
	case TagRequest:
		return AppendRequest(append(dst, byte(TagRequest)), e.Req)
	case TagReply:
		return AppendReply(append(dst, byte(TagReply)), e.Rep)
	}
	panic(fmt.Sprintf("remote: append envelope of unknown tag %d", e.Tag))
}

// DecodeEnvelope decodes one envelope, refusing unknown tags
// (ErrUnknownTag) and any payload its tag's decoder refuses (ErrBadEnvelope).
func DecodeEnvelope(b []byte) (Envelope, error) {
	if len(b) == 0 || len(b) > MaxEnvelopeLen {
		return Envelope{}, ErrBadEnvelope
	}
	switch Tag(b[0]) {
	case TagMsg:
		m, err := engine.DecodeMsg(b[1:])
		if err != nil {
			return Envelope{}, fmt.Errorf("%w: %w", ErrBadEnvelope, err)
		}
		return Envelope{Tag: TagMsg, Msg: m}, nil
	case TagMsgFrom:
		d := decoder{b: b[1:]}
		from := d.str(MaxPeerAddrLen)
		if d.bad {
			return Envelope{}, ErrBadEnvelope
		}
		m, err := engine.DecodeMsg(d.b)
		if err != nil {
			return Envelope{}, fmt.Errorf("%w: %w", ErrBadEnvelope, err)
		}
		return MsgFromEnvelope(from, m), nil
	case TagRequest:
		r, err := DecodeRequest(b[1:])
		if err != nil {
			return Envelope{}, fmt.Errorf("%w: %w", ErrBadEnvelope, err)
		}
		return RequestEnvelope(r), nil
	case TagReply:
		r, err := DecodeReply(b[1:])
		if err != nil {
			return Envelope{}, fmt.Errorf("%w: %w", ErrBadEnvelope, err)
		}
		return ReplyEnvelope(r), nil
	}
	return Envelope{}, ErrUnknownTag
}

// appendStr appends s as a uvarint length and its bytes.
func appendStr(dst []byte, s string) []byte {
	return append(binary.AppendUvarint(dst, uint64(len(s))), s...)
}

// decoder reads the fields of one payload. The first field it cannot read
// sets bad, and every later read returns zero. It refuses varints that are
// not in their shortest form, so each value has exactly one encoding.
type decoder struct {
	b   []byte
	bad bool
}

// shortest reports whether the n-byte varint at the head of d.b is in its
// shortest form: one byte, or a last byte that is not zero.
func (d *decoder) shortest(n int) bool { return n == 1 || (n > 1 && d.b[n-1] != 0) }

func (d *decoder) uvarint() uint64 {
	v, n := binary.Uvarint(d.b)
	if d.bad || n <= 0 || !d.shortest(n) {
		d.bad = true
		return 0
	}
	d.b = d.b[n:]
	return v
}

func (d *decoder) varint() int64 {
	v, n := binary.Varint(d.b)
	if d.bad || n <= 0 || !d.shortest(n) {
		d.bad = true
		return 0
	}
	d.b = d.b[n:]
	return v
}

func (d *decoder) byte() byte {
	if d.bad || len(d.b) == 0 {
		d.bad = true
		return 0
	}
	c := d.b[0]
	d.b = d.b[1:]
	return c
}

// str reads a string of at most max bytes.
func (d *decoder) str(max int) string {
	n := d.uvarint()
	if d.bad || n > uint64(max) || n > uint64(len(d.b)) {
		d.bad = true
		return ""
	}
	s := string(d.b[:n])
	d.b = d.b[n:]
	return s
}

// done reports whether every byte was read and every read succeeded.
func (d *decoder) done() bool { return !d.bad && len(d.b) == 0 }

// wrap puts an encoded envelope into the protobuf type that crosses the wire.
func wrap(e Envelope) *wrapperspb.BytesValue {
	return &wrapperspb.BytesValue{Value: AppendEnvelope(make([]byte, 0, MaxEnvelopeLen), e)}
}

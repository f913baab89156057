package remote

import (
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
	// TagMsg: an engine.Msg in engine.AppendMsg's encoding.
	TagMsg Tag = 1
	// Tags 2 and 3 are kept for a grab sent to the node that owns its shard
	// and for its reply; until they exist the decoder refuses them.
)

// MaxEnvelopeLen bounds an encoded envelope: the tag and the largest
// payload of any tag. A receiver refuses anything longer before decoding.
const MaxEnvelopeLen = 1 + engine.MaxMsgLen

var (
	// ErrBadEnvelope: bytes that are not exactly one encoded envelope.
	ErrBadEnvelope = errors.New("malformed envelope")
	// ErrUnknownTag: an envelope of a tag this build does not know (a newer
	// peer, or garbage).
	ErrUnknownTag = errors.New("unknown envelope tag")
)

// Envelope is one decoded payload. Which field holds it depends on Tag.
type Envelope struct {
	Tag Tag
	Msg engine.Msg // TagMsg
}

// MsgEnvelope wraps a protocol message.
func MsgEnvelope(m engine.Msg) Envelope { return Envelope{Tag: TagMsg, Msg: m} }

// AppendEnvelope appends e's encoding to dst: the tag, then the payload in
// its own canonical encoding, so an envelope has exactly one encoding too.
// It panics on a tag it does not know: that is a bug in the sender.
func AppendEnvelope(dst []byte, e Envelope) []byte {
	switch e.Tag {
	case TagMsg:
		return engine.AppendMsg(append(dst, byte(TagMsg)), e.Msg)
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
	}
	return Envelope{}, ErrUnknownTag
}

// wrap puts an encoded envelope into the protobuf type that crosses the wire.
func wrap(e Envelope) *wrapperspb.BytesValue {
	return &wrapperspb.BytesValue{Value: AppendEnvelope(make([]byte, 0, MaxEnvelopeLen), e)}
}

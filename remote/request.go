package remote

import (
	"encoding/binary"
	"errors"
	"strconv"

	"github.com/seckill/seckill/engine"
)

// ReqKind names what a Request asks of the node that owns the item.
type ReqKind uint8

const (
	// ReqGrab: decide a grab of Qty units of Item for User, with the
	// idempotency key Key ("" for none).
	ReqGrab ReqKind = iota + 1
	// ReqRelease: return the grab GrabID of Item to stock.
	ReqRelease
	// ReqStock: change Item's stock by Delta.
	ReqStock
	reqKinds
)

var reqNames = [...]string{ReqGrab: "grab", ReqRelease: "release", ReqStock: "stock"}

func (k ReqKind) String() string {
	if k > 0 && k < reqKinds {
		return reqNames[k]
	}
	return "req(" + strconv.Itoa(int(k)) + ")"
}

// Request is one call of sale.Service sent to the node that owns the item
// (TagRequest). Which fields mean something depends on Kind; the others
// are zero. Transport.Request fills ID and From.
type Request struct {
	ID     uint64 // the requester's number for it; the Reply carries it back
	From   string // the requester's address: where the Reply goes
	Kind   ReqKind
	Item   string
	User   string // ReqGrab
	Key    string // ReqGrab, may be empty
	GrabID string // ReqRelease
	Qty    int64  // ReqGrab
	Delta  int64  // ReqStock
}

const (
	// MaxGrabIDLen bounds a grab id: an item id, a dot, a shard below
	// engine.MaxShards (4 digits), a dot, a uint64 sequence (20 digits).
	MaxGrabIDLen = engine.MaxIDLen + 1 + 4 + 1 + 20
	// maxLenLen: the uvarint length of any string here is below 2^14, two
	// bytes at most.
	maxLenLen = 2
	// maxRequestLen bounds an encoded Request: every field at its longest
	// (a Request of one kind never has them all).
	maxRequestLen = binary.MaxVarintLen64 + maxLenLen + MaxPeerAddrLen + 1 +
		2*(maxLenLen+engine.MaxIDLen) + maxLenLen + engine.MaxKeyLen + maxLenLen + MaxGrabIDLen +
		2*binary.MaxVarintLen64
)

// ErrBadRequest: bytes that are not exactly one encoded request, or a
// request that is not well formed for its kind.
var ErrBadRequest = errors.New("malformed request")

// AppendRequest appends r's encoding to dst: every field in order, strings
// as a uvarint length and their bytes, integers as varints in their
// shortest form, so a request has exactly one encoding. A new layout takes
// a new envelope tag, so there is no version byte.
func AppendRequest(dst []byte, r Request) []byte {
	dst = binary.AppendUvarint(dst, r.ID)
	dst = appendStr(dst, r.From)
	dst = append(dst, byte(r.Kind))
	dst = appendStr(dst, r.Item)
	dst = appendStr(dst, r.User)
	dst = appendStr(dst, r.Key)
	dst = appendStr(dst, r.GrabID)
	dst = binary.AppendVarint(dst, r.Qty)
	return binary.AppendVarint(dst, r.Delta)
}

// DecodeRequest decodes one request, refusing anything AppendRequest would
// not have written for a well-formed one (see Request.valid).
func DecodeRequest(b []byte) (Request, error) {
	if len(b) > maxRequestLen {
		return Request{}, ErrBadRequest
	}
	d := decoder{b: b}
	r := Request{ID: d.uvarint(), From: d.str(MaxPeerAddrLen), Kind: ReqKind(d.byte())}
	r.Item = d.str(engine.MaxIDLen)
	r.User = d.str(engine.MaxIDLen)
	r.Key = d.str(engine.MaxKeyLen)
	r.GrabID = d.str(MaxGrabIDLen)
	r.Qty = d.varint()
	r.Delta = d.varint()
	if !d.done() || !r.valid() {
		return Request{}, ErrBadRequest
	}
	return r, nil
}

// valid reports whether r is well formed: a known kind, the ids it names
// in the id alphabet, the fields its kind does not use zero. The wire
// checks shapes only: a quantity or a stock delta out of range is for the
// owner to answer (with the limit, or BadStock), not for the wire to lose.
// From is checked by the receiver, which drops a request it cannot answer.
func (r Request) valid() bool {
	if len(r.From) > MaxPeerAddrLen || !engine.ValidID(r.Item) {
		return false
	}
	switch r.Kind {
	case ReqGrab:
		return engine.ValidID(r.User) && (r.Key == "" || engine.ValidKey(r.Key)) && r.GrabID == "" && r.Delta == 0
	case ReqRelease:
		_, _, _, ok := engine.ParseGrabID(r.GrabID)
		return ok && r.User == "" && r.Key == "" && r.Qty == 0 && r.Delta == 0
	case ReqStock:
		return r.User == "" && r.Key == "" && r.GrabID == "" && r.Qty == 0
	}
	return false
}

package remote

import (
	"encoding/binary"
	"errors"
	"strconv"

	"github.com/seckill/seckill/engine"
	"github.com/seckill/seckill/sale"
)

// ReplyCode is a Reply's class: the sale error it stands for, or none.
type ReplyCode uint8

const (
	// ReplyOK: no error; Outcome and Grab (a grab or release) or Stock (a
	// stock change) hold the answer.
	ReplyOK ReplyCode = iota + 1
	// ReplyUnavailable: sale.ErrUnavailable, and any error this build does
	// not know (nothing is known to have been confirmed).
	ReplyUnavailable
	ReplyOverloaded  // sale.ErrOverloaded
	ReplyUnknownItem // sale.ErrUnknownItem
	// ReplyUnknownGrab: sale.ErrUnknownGrab; Outcome as the shard gave it.
	ReplyUnknownGrab
	// ReplyQty: *sale.QtyError; Limit is the item's per-user limit.
	ReplyQty
	// ReplyInsufficient: sale.ErrInsufficient; Available is what is unsold.
	ReplyInsufficient
	ReplyBadStock   // engine.ErrBadStock
	ReplyItemExists // sale.ErrItemExists
	replyCodes
)

var replyNames = [...]string{ReplyOK: "ok", ReplyUnavailable: "unavailable", ReplyOverloaded: "overloaded",
	ReplyUnknownItem: "unknown_item", ReplyUnknownGrab: "unknown_grab", ReplyQty: "qty",
	ReplyInsufficient: "insufficient", ReplyBadStock: "bad_stock", ReplyItemExists: "item_exists"}

func (c ReplyCode) String() string {
	if c > 0 && c < replyCodes {
		return replyNames[c]
	}
	return "reply(" + strconv.Itoa(int(c)) + ")"
}

// Reply answers the Request of the same ID (TagReply): a sale.Reply or a
// sale.StockReply as a plain value. Fields its Code does not use are zero.
type Reply struct {
	ID        uint64
	Code      ReplyCode
	Outcome   engine.Outcome // ReplyOK (a grab or release), ReplyUnknownGrab
	Grab      engine.Grab    // ReplyOK: for Confirmed, Replayed and Released
	Stock     int64          // ReplyOK: the stock after a change
	Available int64          // ReplyInsufficient
	Limit     int64          // ReplyQty
}

// lastOutcome is engine's last Outcome: a Reply carrying a larger one is
// refused. TestLastOutcome fails when engine adds one.
const lastOutcome = engine.BadStock

// maxGrabLen bounds an encoded engine.Grab: two ids, a key, four varints.
const maxGrabLen = 2*(maxLenLen+engine.MaxIDLen) + maxLenLen + engine.MaxKeyLen + 4*binary.MaxVarintLen64

// maxReplyLen bounds an encoded Reply: the id, the code and outcome bytes,
// three varints, the grab's presence byte and the grab.
const maxReplyLen = binary.MaxVarintLen64 + 2 + 3*binary.MaxVarintLen64 + 1 + maxGrabLen

// ErrBadReply: bytes that are not exactly one encoded reply, or a reply
// that is not well formed for its code.
var ErrBadReply = errors.New("malformed reply")

// AppendReply appends r's encoding to dst: the id, code and outcome, the
// three numbers, then a byte saying whether a grab follows (a zero Grab is
// not written). Integers are varints in their shortest form, so a reply
// has exactly one encoding.
func AppendReply(dst []byte, r Reply) []byte {
	dst = binary.AppendUvarint(dst, r.ID)
	dst = append(dst, byte(r.Code), byte(r.Outcome))
	dst = binary.AppendVarint(dst, r.Stock)
	dst = binary.AppendVarint(dst, r.Available)
	dst = binary.AppendVarint(dst, r.Limit)
	if r.Grab == (engine.Grab{}) {
		return append(dst, 0)
	}
	g := r.Grab
	dst = appendStr(append(dst, 1), g.Item)
	dst = binary.AppendVarint(dst, int64(g.Shard))
	dst = binary.AppendUvarint(dst, g.Seq)
	dst = appendStr(dst, g.User)
	dst = binary.AppendVarint(dst, g.Qty)
	dst = appendStr(dst, g.Key)
	return binary.AppendVarint(dst, g.AtMs)
}

// DecodeReply decodes one reply, refusing anything AppendReply would not
// have written for a well-formed one (see Reply.valid).
func DecodeReply(b []byte) (Reply, error) {
	if len(b) > maxReplyLen {
		return Reply{}, ErrBadReply
	}
	d := decoder{b: b}
	r := Reply{ID: d.uvarint(), Code: ReplyCode(d.byte()), Outcome: engine.Outcome(d.byte())}
	r.Stock = d.varint()
	r.Available = d.varint()
	r.Limit = d.varint()
	switch d.byte() {
	case 0:
	case 1:
		g := &r.Grab
		g.Item = d.str(engine.MaxIDLen)
		shard := d.varint()
		if shard < 0 || shard >= engine.MaxShards {
			d.bad = true
		}
		g.Shard = int(shard)
		g.Seq = d.uvarint()
		g.User = d.str(engine.MaxIDLen)
		g.Qty = d.varint()
		g.Key = d.str(engine.MaxKeyLen)
		g.AtMs = d.varint()
		// A grab that is present is never the zero Grab: its item is not
		// empty, so it has one encoding too.
		if !validGrab(*g) {
			d.bad = true
		}
	default:
		d.bad = true
	}
	if !d.done() || !r.valid() {
		return Reply{}, ErrBadReply
	}
	return r, nil
}

// valid reports whether r is well formed: a known code and outcome,
// numbers in the engine's ranges, and each field set only with the code
// that uses it.
func (r Reply) valid() bool {
	if r.Code == 0 || r.Code >= replyCodes || r.Outcome > lastOutcome {
		return false
	}
	if r.Outcome != 0 && r.Code != ReplyOK && r.Code != ReplyUnknownGrab {
		return false
	}
	if r.Grab != (engine.Grab{}) && (r.Code != ReplyOK || !validGrab(r.Grab)) {
		return false
	}
	if r.Stock < 0 || r.Stock > engine.MaxStock || (r.Stock != 0 && r.Code != ReplyOK) {
		return false
	}
	if r.Available < 0 || r.Available > engine.MaxStock || (r.Available != 0 && r.Code != ReplyInsufficient) {
		return false
	}
	if r.Code == ReplyQty {
		return r.Limit >= 1 && r.Limit <= engine.MaxPerUserLimit
	}
	return r.Limit == 0
}

// validGrab: a grab as a shard confirms one.
func validGrab(g engine.Grab) bool {
	return engine.ValidID(g.Item) && g.Shard >= 0 && g.Shard < engine.MaxShards && g.Seq >= 1 &&
		engine.ValidID(g.User) && g.Qty >= 1 && g.Qty <= engine.MaxPerUserLimit &&
		(g.Key == "" || engine.ValidKey(g.Key))
}

// ReplyFromSale is the Reply of request id answered by r: the code of
// r.Err (an error it does not know is ReplyUnavailable) and the fields
// that code carries.
func ReplyFromSale(id uint64, r sale.Reply) Reply {
	rep := Reply{ID: id}
	rep.Code, rep.Limit = codeOf(r.Err)
	switch rep.Code {
	case ReplyOK:
		rep.Outcome, rep.Grab = r.Outcome, r.Grab
	case ReplyUnknownGrab:
		rep.Outcome = r.Outcome
	}
	return rep
}

// StockReplyFromSale is the Reply of request id answered by r.
func StockReplyFromSale(id uint64, r sale.StockReply) Reply {
	rep := Reply{ID: id}
	rep.Code, rep.Limit = codeOf(r.Err)
	switch rep.Code {
	case ReplyOK:
		rep.Stock = r.Stock
	case ReplyInsufficient:
		rep.Available = r.Available
	}
	return rep
}

// codeOf is the code of a sale error, and the limit a *sale.QtyError
// carries.
func codeOf(err error) (ReplyCode, int64) {
	var qe *sale.QtyError
	switch {
	case err == nil:
		return ReplyOK, 0
	case errors.As(err, &qe):
		return ReplyQty, qe.Limit
	case errors.Is(err, sale.ErrOverloaded):
		return ReplyOverloaded, 0
	case errors.Is(err, sale.ErrUnknownItem):
		return ReplyUnknownItem, 0
	case errors.Is(err, sale.ErrUnknownGrab):
		return ReplyUnknownGrab, 0
	case errors.Is(err, sale.ErrInsufficient):
		return ReplyInsufficient, 0
	case errors.Is(err, engine.ErrBadStock):
		return ReplyBadStock, 0
	case errors.Is(err, sale.ErrItemExists):
		return ReplyItemExists, 0
	}
	return ReplyUnavailable, 0
}

// Sale is r as the answer to a grab or release.
func (r Reply) Sale() sale.Reply {
	return sale.Reply{Outcome: r.Outcome, Grab: r.Grab, Err: r.err()}
}

// SaleStock is r as the answer to a stock change.
func (r Reply) SaleStock() sale.StockReply {
	return sale.StockReply{Stock: r.Stock, Available: r.Available, Err: r.err()}
}

// err is the sale error r.Code stands for; an unknown code is
// sale.ErrUnavailable.
func (r Reply) err() error {
	switch r.Code {
	case ReplyOK:
		return nil
	case ReplyOverloaded:
		return sale.ErrOverloaded
	case ReplyUnknownItem:
		return sale.ErrUnknownItem
	case ReplyUnknownGrab:
		return sale.ErrUnknownGrab
	case ReplyQty:
		return &sale.QtyError{Limit: r.Limit}
	case ReplyInsufficient:
		return sale.ErrInsufficient
	case ReplyBadStock:
		return engine.ErrBadStock
	case ReplyItemExists:
		return sale.ErrItemExists
	}
	return sale.ErrUnavailable
}

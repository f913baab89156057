package sale

import (
	"errors"
	"strconv"

	"github.com/seckill/seckill/engine"
)

// Reply is the answer to one grab or release.
type Reply struct {
	Outcome engine.Outcome // set when Err is nil
	Grab    engine.Grab    // for Confirmed, Replayed and Released
	Err     error          // ErrUnavailable, ErrOverloaded, ErrUnknownItem, ErrUnknownGrab, *QtyError
}

// StockReply answers a stock change.
type StockReply struct {
	Stock     int64 // the item's stock after the change
	Available int64 // unsold units, when a reduction was refused
	Err       error // ErrInsufficient, ErrUnavailable, ErrUnknownItem, engine.ErrBadStock
}

// Errors the front maps to answers.
var (
	ErrUnknownItem = errors.New("unknown item")
	ErrItemExists  = errors.New("item exists")
	// ErrUnavailable: the grab's fate is not known to be durable (commit
	// failed, timeout, shutting down). Nothing was confirmed to the buyer.
	ErrUnavailable = errors.New("unavailable")
	// ErrOverloaded: the shard's queue is full; the request was not tried.
	ErrOverloaded = errors.New("overloaded")
	// ErrUnknownGrab: no grab with that id.
	ErrUnknownGrab = errors.New("unknown grab")
	// ErrInsufficient: a stock reduction asked for more than is unsold.
	ErrInsufficient = engine.ErrInsufficient
)

// QtyError: a grab asked for more units than the item's per-user limit.
// The grab was not tried, so it is refused the same way whether the item
// is on sale, sold out or closed. It carries the limit for the answer.
type QtyError struct{ Limit int64 }

func (e *QtyError) Error() string {
	return "qty exceeds the per-user limit of " + strconv.FormatInt(e.Limit, 10)
}

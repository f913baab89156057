package engine

import (
	"errors"
	"strconv"
)

// OrderState is where an order is in its life.
type OrderState uint8

const (
	// PendingPayment: written from a confirmed grab, waiting to be paid.
	PendingPayment OrderState = iota + 1
	// Paid: final.
	Paid
	// Cancelled: final; the grab's units went back to stock.
	Cancelled
)

var orderStateNames = [...]string{PendingPayment: "pending_payment", Paid: "paid", Cancelled: "cancelled"}

func (s OrderState) String() string {
	if int(s) < len(orderStateNames) && orderStateNames[s] != "" {
		return orderStateNames[s]
	}
	return "state(" + strconv.Itoa(int(s)) + ")"
}

// Order is the order a confirmed grab became.
type Order struct {
	GrabID    string
	Item      string
	User      string
	Qty       int64
	State     OrderState
	CreatedMs int64 // when the order was written
	PayByMs   int64 // unpaid after this, it is cancelled
	UpdatedMs int64
	Reason    string // why it was cancelled: "buyer" or "timeout"
}

// OrderOutcome is the answer to a transition.
type OrderOutcome uint8

const (
	OrderChanged OrderOutcome = iota + 1
	// OrderUnchanged: the transition was asked before (pay twice, cancel
	// twice): the same answer, nothing new.
	OrderUnchanged
	// OrderConflict: the order is already in the other final state (paid
	// wins over a later cancel and the other way round) or the buyer does
	// not own it.
	OrderConflict
	// OrderTooEarly: a timeout asked before the payment window closed.
	OrderTooEarly
)

// Pay marks a pending order paid, unless it was cancelled.
func (o Order) Pay(nowMs int64) (Order, OrderOutcome) {
	switch o.State {
	case Paid:
		return o, OrderUnchanged
	case PendingPayment:
		if nowMs >= o.PayByMs {
			// Too late: the window closed; the sweeper will cancel it.
			return o, OrderConflict
		}
		o.State, o.UpdatedMs = Paid, nowMs
		return o, OrderChanged
	}
	return o, OrderConflict
}

// Cancel cancels a pending order for its buyer, unless it was paid.
func (o Order) Cancel(user string, nowMs int64) (Order, OrderOutcome) {
	if user != o.User {
		return o, OrderConflict
	}
	return o.cancel(nowMs, "buyer")
}

// Expire cancels a pending order whose payment window has closed.
func (o Order) Expire(nowMs int64) (Order, OrderOutcome) {
	if o.State == PendingPayment && nowMs < o.PayByMs {
		return o, OrderTooEarly
	}
	return o.cancel(nowMs, "timeout")
}

func (o Order) cancel(nowMs int64, reason string) (Order, OrderOutcome) {
	switch o.State {
	case Cancelled:
		return o, OrderUnchanged
	case PendingPayment:
		o.State, o.UpdatedMs, o.Reason = Cancelled, nowMs, reason
		return o, OrderChanged
	}
	return o, OrderConflict
}

// NewOrder is the order of a confirmed grab, written at nowMs.
func NewOrder(g Grab, nowMs, paymentWindowMs int64) Order {
	return Order{GrabID: g.ID(), Item: g.Item, User: g.User, Qty: g.Qty, State: PendingPayment,
		CreatedMs: nowMs, PayByMs: PayBy(g, paymentWindowMs), UpdatedMs: nowMs}
}

// PayBy is when the order of grab g must be paid: the payment window runs
// from the grab, not from when its order was written.
func PayBy(g Grab, paymentWindowMs int64) int64 { return g.AtMs + paymentWindowMs }

// ErrNoOrder: no order, and no grab it could come from.
var ErrNoOrder = errors.New("no such order")

package engine

import "testing"

func TestOrderTransitions(t *testing.T) {
	base := NewOrder(Grab{Item: "i", Shard: 1, Seq: 2, User: "u", Qty: 1, AtMs: 1000}, 1100, 500)
	if base.GrabID != "i.1.2" || base.PayByMs != 1500 || base.State != PendingPayment {
		t.Fatalf("new order %+v", base)
	}
	paid, _ := base.Pay(1200)
	cancelled, _ := base.Cancel("u", 1200)
	for _, tc := range []struct {
		name  string
		o     Order
		op    func(Order) (Order, OrderOutcome)
		state OrderState
		out   OrderOutcome
	}{
		{"pay pending", base, func(o Order) (Order, OrderOutcome) { return o.Pay(1200) }, Paid, OrderChanged},
		{"pay twice", paid, func(o Order) (Order, OrderOutcome) { return o.Pay(1300) }, Paid, OrderUnchanged},
		{"pay after the window", base, func(o Order) (Order, OrderOutcome) { return o.Pay(1500) }, PendingPayment, OrderConflict},
		{"pay cancelled", cancelled, func(o Order) (Order, OrderOutcome) { return o.Pay(1300) }, Cancelled, OrderConflict},
		{"cancel pending", base, func(o Order) (Order, OrderOutcome) { return o.Cancel("u", 1200) }, Cancelled, OrderChanged},
		{"cancel by another user", base, func(o Order) (Order, OrderOutcome) { return o.Cancel("v", 1200) }, PendingPayment, OrderConflict},
		{"cancel twice", cancelled, func(o Order) (Order, OrderOutcome) { return o.Cancel("u", 1300) }, Cancelled, OrderUnchanged},
		{"cancel paid", paid, func(o Order) (Order, OrderOutcome) { return o.Cancel("u", 1300) }, Paid, OrderConflict},
		{"expire early", base, func(o Order) (Order, OrderOutcome) { return o.Expire(1499) }, PendingPayment, OrderTooEarly},
		{"expire", base, func(o Order) (Order, OrderOutcome) { return o.Expire(1500) }, Cancelled, OrderChanged},
		{"expire paid", paid, func(o Order) (Order, OrderOutcome) { return o.Expire(9999) }, Paid, OrderConflict},
		{"expire cancelled", cancelled, func(o Order) (Order, OrderOutcome) { return o.Expire(9999) }, Cancelled, OrderUnchanged},
	} {
		t.Run(tc.name, func(t *testing.T) {
			got, out := tc.op(tc.o)
			if got.State != tc.state || out != tc.out {
				t.Fatalf("got %v %v, want %v %v", got.State, out, tc.state, tc.out)
			}
			if out != OrderChanged && got != tc.o {
				t.Fatalf("an unchanged outcome changed the order: %+v", got)
			}
		})
	}
	if c, _ := base.Expire(1600); c.Reason != "timeout" {
		t.Fatalf("reason %q", c.Reason)
	}
}

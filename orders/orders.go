// Package orders owns what happens after a confirmed grab: the orders it
// makes, their lifecycle (pay, cancel, expire after the payment window),
// the release of a cancelled order's units, and reconciliation, the audit
// that grabs, stream messages, orders and counters agree. It reaches the
// node that sells only through Stock, so it runs the same beside a local
// node, a cluster's, or none (a standalone order writer).
package orders

import (
	"context"
	"fmt"
	"log/slog"
	"sync/atomic"
	"time"

	"github.com/seckill/seckill/engine"
	"github.com/seckill/seckill/persistence"
	"github.com/seckill/seckill/sale"
)

const (
	// SweepEvery is how often unpaid orders past their window are looked
	// for; a buyer's unit is back on sale at most this long after it.
	SweepEvery = 250 * time.Millisecond
	// MaxSweepBatch bounds the orders one sweep handles.
	MaxSweepBatch = 512
)

// Stock is what the order side needs of the node that sells.
type Stock interface {
	// Release returns a cancelled order's units; releasing twice returns
	// them once.
	Release(item, grabID string) sale.Reply
	// GrabDurable tells a grab whose order is not written yet
	// (ErrProcessing) from no grab at all (ErrNoOrder).
	GrabDurable(grabID string) bool
	// PaymentWindow is the item's payment window in milliseconds.
	PaymentWindow(item string) (int64, bool)
	// Now is the sale's clock in Unix milliseconds.
	Now() int64
}

// Orders is the order side of a node: it writes orders from confirmed
// grabs and runs their lifecycle (pay, cancel, expire), returning a
// cancelled order's units through the release path exactly once.
type Orders struct {
	stock Stock // for releases, grab lookups and the clock
	store persistence.OrderStore
	log   *slog.Logger
	// written counts orders made new by this process (not rewrites of a
	// redelivered grab), for metrics.
	written atomic.Int64
}

// Written is how many orders this process wrote that were new.
func (o *Orders) Written() int64 { return o.written.Load() }

var _ sale.Orders = (*Orders)(nil)

// New serves the orders of stock's grabs from store. A standalone order
// writer has no stock (nil): it only writes, with each message's PayByMs.
// log nil is slog.Default().
func New(stock Stock, store persistence.OrderStore, log *slog.Logger) *Orders {
	if log == nil {
		log = slog.Default()
	}
	return &Orders{stock: stock, store: store, log: log}
}

// Msg is a confirmed grab as an order writer receives it.
type Msg struct {
	Grab    engine.Grab
	PayByMs int64 // 0: the item's window from the grab time
}

// Write makes the orders of a batch of confirmed grabs in one durable
// write; an order already written is not written again. It returns the
// grabs that could not be written.
func (o *Orders) Write(msgs []Msg) map[string]error {
	now := time.Now().UnixMilli()
	if o.stock != nil {
		now = o.stock.Now()
	}
	orders := make([]engine.Order, 0, len(msgs))
	for _, m := range msgs {
		window := int64(engine.DefaultPaymentWindowMs)
		if o.stock != nil {
			if w, ok := o.stock.PaymentWindow(m.Grab.Item); ok {
				window = w
			}
		}
		ord := engine.NewOrder(m.Grab, now, window)
		if m.PayByMs != 0 {
			ord.PayByMs = m.PayByMs
		}
		orders = append(orders, ord)
	}
	if n, err := o.store.WriteNew(orders); err == nil {
		o.written.Add(int64(n))
		return nil
	} else if len(orders) == 1 {
		return map[string]error{orders[0].GrabID: err}
	}
	// One bad order must not hold back its batch: write them one by one
	// and report only those that fail.
	var failed map[string]error
	for _, ord := range orders {
		if n, err := o.store.WriteNew([]engine.Order{ord}); err != nil {
			if failed == nil {
				failed = map[string]error{}
			}
			failed[ord.GrabID] = err
		} else {
			o.written.Add(int64(n))
		}
	}
	return failed
}

// Get returns an order; ErrProcessing when the grab is confirmed but its
// order is not written yet, ErrNoOrder when there is no such grab.
func (o *Orders) Get(grabID string) (engine.Order, error) {
	ord, ok, err := o.store.Get(grabID)
	if err != nil {
		return engine.Order{}, err
	}
	if ok {
		return ord, nil
	}
	if o.stock.GrabDurable(grabID) {
		return engine.Order{}, sale.ErrProcessing
	}
	return engine.Order{}, sale.ErrNoOrder
}

// Pay marks an order paid (a stand-in for a payment provider's callback).
func (o *Orders) Pay(grabID string) (engine.Order, engine.OrderOutcome, error) {
	if _, err := o.Get(grabID); err != nil {
		return engine.Order{}, 0, err
	}
	now := o.stock.Now()
	return o.store.Update(grabID, func(ord engine.Order) (engine.Order, engine.OrderOutcome) { return ord.Pay(now) })
}

// Cancel cancels the buyer's order and returns its units to stock.
func (o *Orders) Cancel(grabID, user string) (engine.Order, engine.OrderOutcome, error) {
	cur, err := o.Get(grabID)
	if err != nil {
		return engine.Order{}, 0, err
	}
	if cur.User != user {
		return cur, engine.OrderConflict, sale.ErrNotBuyer
	}
	now := o.stock.Now()
	ord, out, err := o.store.Update(grabID, func(ord engine.Order) (engine.Order, engine.OrderOutcome) { return ord.Cancel(user, now) })
	if err != nil {
		return ord, out, err
	}
	if ord.State == engine.Cancelled {
		// Also for a repeated cancel: the release is idempotent, and this
		// finishes one a crash may have interrupted.
		if err := o.release(grabID); err != nil {
			return ord, out, err
		}
	}
	return ord, out, nil
}

// release returns a cancelled order's units through the release path and
// clears its marker. Releasing twice returns the units once.
func (o *Orders) release(grabID string) error {
	item, _, _, ok := engine.ParseGrabID(grabID)
	if !ok {
		return fmt.Errorf("release %q: bad grab id", grabID)
	}
	r := o.stock.Release(item, grabID)
	if r.Err != nil {
		return fmt.Errorf("release %s: %w", grabID, r.Err)
	}
	return o.store.MarkReleased(grabID)
}

// Sweep cancels unpaid orders past their window and finishes releases a
// crash interrupted. It returns how many orders it cancelled.
func (o *Orders) Sweep() (int, error) {
	now := o.stock.Now()
	due, err := o.store.Due(now, MaxSweepBatch)
	if err != nil {
		return 0, err
	}
	n := 0
	for _, d := range due {
		_, out, err := o.store.Update(d.GrabID, func(ord engine.Order) (engine.Order, engine.OrderOutcome) { return ord.Expire(now) })
		if err != nil {
			return n, err
		}
		if out == engine.OrderChanged {
			n++
		}
	}
	ids, err := o.store.Unreleased(MaxSweepBatch)
	if err != nil {
		return n, err
	}
	for _, id := range ids {
		if err := o.release(id); err != nil {
			return n, err
		}
	}
	return n, nil
}

// RunSweeper sweeps every SweepEvery until ctx is done.
func (o *Orders) RunSweeper(ctx context.Context) {
	t := time.NewTicker(SweepEvery)
	defer t.Stop()
	for {
		select {
		case <-ctx.Done():
			return
		case <-t.C:
			if _, err := o.Sweep(); err != nil {
				o.log.Warn("order sweep", "err", err)
			}
		}
	}
}

package persistence

import (
	"encoding/binary"
	"errors"
	"fmt"
	"sync"
	"sync/atomic"

	"github.com/cockroachdb/pebble/v2"
	"github.com/cockroachdb/pebble/v2/bloom"
	"github.com/seckill/seckill/engine"
)

// OrderStore keeps the orders confirmed grabs became, one per grab id.
// Pebble is the default; a SQL store with a unique key on grab id fits the
// same interface.
type OrderStore interface {
	// WriteNew durably writes, in one batch, the orders whose grab ids are
	// not stored yet, and returns how many were new. Writing an order
	// twice is how redelivery shows up; it never makes a second order.
	WriteNew(orders []engine.Order) (int, error)
	// Get returns the order of a grab.
	Get(grabID string) (engine.Order, bool, error)
	// Update applies fn to a stored order and durably writes the result
	// when fn reports OrderChanged. Updates of one store are serialised,
	// so a payment and a cancel never both win.
	Update(grabID string, fn func(engine.Order) (engine.Order, engine.OrderOutcome)) (engine.Order, engine.OrderOutcome, error)
	// Due lists up to limit pending orders whose payment window closed
	// by nowMs, oldest first.
	Due(nowMs int64, limit int) ([]engine.Order, error)
	// Scan feeds fn every order of an item.
	Scan(item string, fn func(engine.Order) error) error
	// Unreleased lists up to limit cancelled orders whose units have not
	// been confirmed back in stock; MarkReleased records that they are.
	// The marker is written with the cancel, so a crash between the cancel
	// and the release leaves work to redo, never a lost unit.
	Unreleased(limit int) ([]string, error)
	MarkReleased(grabID string) error
	Close() error
}

// ErrNoOrder is returned by Update for an unknown grab id.
var ErrNoOrder = engine.ErrNoOrder

// Order store keys:
//
//	o<grab id>                       the order
//	t<pay by ms:8><grab id>          pending orders by payment deadline
//	x<grab id>                       cancelled, units not yet back in stock
const (
	prefixOrder     = 'o'
	prefixDeadline  = 't'
	prefixUnrelease = 'x'
)

func orderKey(dst []byte, grabID string) []byte { return append(append(dst, prefixOrder), grabID...) }

func deadlineKey(dst []byte, o engine.Order) []byte {
	dst = binary.BigEndian.AppendUint64(append(dst, prefixDeadline), uint64(o.PayByMs))
	return append(dst, o.GrabID...)
}

func encodeOrder(dst []byte, o engine.Order) []byte {
	dst = append(dst, valueVersion, byte(o.State))
	dst = binary.AppendUvarint(dst, uint64(len(o.User)))
	dst = append(dst, o.User...)
	dst = binary.AppendVarint(dst, o.Qty)
	dst = binary.AppendVarint(dst, o.CreatedMs)
	dst = binary.AppendVarint(dst, o.PayByMs)
	dst = binary.AppendVarint(dst, o.UpdatedMs)
	dst = binary.AppendUvarint(dst, uint64(len(o.Reason)))
	return append(dst, o.Reason...)
}

// maxReasonLen bounds the stored cancel reason.
const maxReasonLen = 32

// DecodeOrder decodes the order stored under grab id.
func DecodeOrder(grabID string, v []byte) (engine.Order, error) {
	item, _, _, ok := engine.ParseGrabID(grabID)
	if !ok {
		return engine.Order{}, fmt.Errorf("order %q: %w", grabID, errCorrupt)
	}
	d := decoder{b: v}
	d.version()
	o := engine.Order{GrabID: grabID, Item: item}
	if d.err == nil && len(d.b) > 0 {
		o.State = engine.OrderState(d.b[0])
		d.b = d.b[1:]
	}
	o.User = d.str(engine.MaxIDLen)
	o.Qty = d.varint()
	o.CreatedMs, o.PayByMs, o.UpdatedMs = d.varint(), d.varint(), d.varint()
	o.Reason = d.str(maxReasonLen)
	if err := d.done(); err != nil {
		return engine.Order{}, fmt.Errorf("order %s: %w", grabID, err)
	}
	if o.State < engine.PendingPayment || o.State > engine.Cancelled || !engine.ValidID(o.User) || o.Qty < 1 || o.Qty > engine.MaxPerUserLimit {
		return engine.Order{}, fmt.Errorf("order %s: %w", grabID, errCorrupt)
	}
	return o, nil
}

// PebbleOrders is the OrderStore on local disk, in its own directory.
type PebbleOrders struct {
	db *pebble.DB
	mu sync.Mutex // serialises WriteNew and Update
	// known holds every grab id with an order (under mu). Orders are at
	// most the item's stock plus releases, so the set is small; it lets a
	// write of a batch skip a Pebble lookup per order, which profiles
	// showed as the writer's largest cost.
	known map[string]struct{}
	// fail is set once Pebble failed a write; guard refuses writes while
	// the disk is low (see disk.go).
	fail  *failure
	guard atomic.Pointer[DiskGuard]
}

// OpenPebbleOrders opens (creating if needed) the order store in dir.
func OpenPebbleOrders(dir string) (*PebbleOrders, error) {
	fail := &failure{name: "orders"}
	opts := &pebble.Options{FormatMajorVersion: pebble.FormatNewest, Logger: failLogger{fail}, MemTableSize: pebbleMemTable}
	// Every write first looks the grab id up, and almost every lookup
	// misses: bloom filters answer a miss without reading a block.
	for i := range opts.Levels {
		opts.Levels[i].FilterPolicy = bloom.FilterPolicy(10)
		opts.Levels[i].FilterType = pebble.TableFilter
	}
	db, err := pebble.Open(dir, opts)
	if err != nil {
		return nil, fmt.Errorf("open order store %s: %w", dir, err)
	}
	p := &PebbleOrders{db: db, known: map[string]struct{}{}, fail: fail}
	lo := []byte{prefixOrder}
	it, err := db.NewIter(&pebble.IterOptions{LowerBound: lo, UpperBound: prefixEnd(lo)})
	if err != nil {
		db.Close()
		return nil, err
	}
	for ok := it.First(); ok; ok = it.Next() {
		p.known[string(it.Key()[1:])] = struct{}{}
	}
	if err := errors.Join(it.Error(), it.Close()); err != nil {
		db.Close()
		return nil, fmt.Errorf("open order store %s: %w", dir, err)
	}
	return p, nil
}

// Guard makes the store refuse writes while g says the disk is low.
func (p *PebbleOrders) Guard(g *DiskGuard) { p.guard.Store(g) }

// Health is nil while the store takes writes, else why it does not: the
// disk below its reserve, or a write Pebble failed (until a restart).
func (p *PebbleOrders) Health() error {
	if err := p.fail.get(); err != nil {
		return err
	}
	if err := p.guard.Load().Err(); err != nil {
		return fmt.Errorf("orders: %w", err)
	}
	return nil
}

// commit makes b durable: ApplyNoSyncWait and SyncWait rather than
// Commit(Sync), whose failed sync goes to Logger.Fatalf and then returns
// nil. Any failure marks the store failed.
func (p *PebbleOrders) commit(b *pebble.Batch) (err error) {
	if err := p.Health(); err != nil {
		return err
	}
	defer p.fail.recoverInto(&err)
	if err := p.db.ApplyNoSyncWait(b, pebble.Sync); err != nil {
		p.fail.set(err)
		return err
	}
	if err := p.fail.get(); err != nil {
		return err
	}
	if err := b.SyncWait(); err != nil {
		p.fail.set(err)
		return err
	}
	return nil
}

func (p *PebbleOrders) get(grabID string) (engine.Order, bool, error) {
	v, closer, err := p.db.Get(orderKey(nil, grabID))
	if errors.Is(err, pebble.ErrNotFound) {
		return engine.Order{}, false, nil
	}
	if err != nil {
		return engine.Order{}, false, err
	}
	defer closer.Close()
	o, err := DecodeOrder(grabID, v)
	return o, err == nil, err
}

// WriteNew writes the orders not stored yet in one synced batch.
func (p *PebbleOrders) WriteNew(orders []engine.Order) (int, error) {
	p.mu.Lock()
	defer p.mu.Unlock()
	b := p.db.NewBatch()
	defer b.Close()
	seen := make(map[string]bool, len(orders))
	n := 0
	for _, o := range orders {
		if seen[o.GrabID] {
			continue
		}
		seen[o.GrabID] = true
		if _, ok := p.known[o.GrabID]; ok {
			continue
		}
		if err := b.Set(orderKey(nil, o.GrabID), encodeOrder(nil, o), nil); err != nil {
			return 0, err
		}
		if o.State == engine.PendingPayment {
			if err := b.Set(deadlineKey(nil, o), nil, nil); err != nil {
				return 0, err
			}
		}
		n++
	}
	if n == 0 {
		return 0, nil
	}
	if err := p.commit(b); err != nil {
		return 0, fmt.Errorf("write %d orders: %w", n, err)
	}
	for id := range seen {
		p.known[id] = struct{}{}
	}
	return n, nil
}

// Get returns the order of a grab.
func (p *PebbleOrders) Get(grabID string) (engine.Order, bool, error) { return p.get(grabID) }

// Update changes one order atomically with respect to other updates.
func (p *PebbleOrders) Update(grabID string, fn func(engine.Order) (engine.Order, engine.OrderOutcome)) (engine.Order, engine.OrderOutcome, error) {
	p.mu.Lock()
	defer p.mu.Unlock()
	o, ok, err := p.get(grabID)
	if err != nil {
		return engine.Order{}, 0, err
	}
	if !ok {
		return engine.Order{}, 0, ErrNoOrder
	}
	next, out := fn(o)
	if out != engine.OrderChanged {
		return o, out, nil
	}
	b := p.db.NewBatch()
	defer b.Close()
	if err := b.Set(orderKey(nil, grabID), encodeOrder(nil, next), nil); err != nil {
		return o, 0, err
	}
	if o.State == engine.PendingPayment && next.State != engine.PendingPayment {
		if err := b.Delete(deadlineKey(nil, o), nil); err != nil {
			return o, 0, err
		}
	}
	if next.State == engine.Cancelled {
		if err := b.Set(append([]byte{prefixUnrelease}, grabID...), nil, nil); err != nil {
			return o, 0, err
		}
	}
	if err := p.commit(b); err != nil {
		return o, 0, fmt.Errorf("update order %s: %w", grabID, err)
	}
	return next, out, nil
}

// Due lists pending orders past their payment deadline.
func (p *PebbleOrders) Due(nowMs int64, limit int) ([]engine.Order, error) {
	hi := binary.BigEndian.AppendUint64([]byte{prefixDeadline}, uint64(nowMs)+1)
	it, err := p.db.NewIter(&pebble.IterOptions{LowerBound: []byte{prefixDeadline}, UpperBound: hi})
	if err != nil {
		return nil, err
	}
	defer it.Close()
	var out []engine.Order
	for ok := it.First(); ok && len(out) < limit; ok = it.Next() {
		id := string(it.Key()[9:])
		o, found, err := p.get(id)
		if err != nil {
			return nil, err
		}
		if found && o.State == engine.PendingPayment {
			out = append(out, o)
		}
	}
	return out, it.Error()
}

// Scan feeds fn every order of an item.
func (p *PebbleOrders) Scan(item string, fn func(engine.Order) error) error {
	lo := orderKey(nil, item+".")
	it, err := p.db.NewIter(&pebble.IterOptions{LowerBound: lo, UpperBound: prefixEnd(lo)})
	if err != nil {
		return err
	}
	defer it.Close()
	for ok := it.First(); ok; ok = it.Next() {
		id := string(it.Key()[1:])
		if gi, _, _, ok := engine.ParseGrabID(id); !ok || gi != item {
			continue // an item whose id starts with this one's and a dot
		}
		o, err := DecodeOrder(id, it.Value())
		if err != nil {
			return err
		}
		if err := fn(o); err != nil {
			return err
		}
	}
	return it.Error()
}

// Unreleased lists cancelled orders whose release is not confirmed.
func (p *PebbleOrders) Unreleased(limit int) ([]string, error) {
	lo := []byte{prefixUnrelease}
	it, err := p.db.NewIter(&pebble.IterOptions{LowerBound: lo, UpperBound: prefixEnd(lo)})
	if err != nil {
		return nil, err
	}
	defer it.Close()
	var out []string
	for ok := it.First(); ok && len(out) < limit; ok = it.Next() {
		out = append(out, string(it.Key()[1:]))
	}
	return out, it.Error()
}

// MarkReleased records that a cancelled order's units are back in stock.
func (p *PebbleOrders) MarkReleased(grabID string) error {
	b := p.db.NewBatch()
	defer b.Close()
	if err := b.Delete(append([]byte{prefixUnrelease}, grabID...), nil); err != nil {
		return err
	}
	return p.commit(b)
}

// Close closes the store.
func (p *PebbleOrders) Close() error { return p.db.Close() }

package persistence

import (
	"encoding/binary"
	"errors"
	"fmt"
	"sync"

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
	dir string
	mu  sync.Mutex // serialises WriteNew and Update
	// known holds every grab id with an order (under mu). Orders are at
	// most the item's stock plus releases, so the set is small; it lets a
	// write of a batch skip a Pebble lookup per order, which profiles
	// showed as the writer's largest cost.
	known map[string]struct{}
	// dbMu guards db: read-locked by every use, locked by Close and a
	// reopen (which also holds mu).
	dbMu   sync.RWMutex
	db     *pebble.DB // nil while a failed store could not be opened again
	closed bool
	writeHealth
	stop chan struct{} // closed by Close: ends a reopen loop
}

// OpenPebbleOrders opens (creating if needed) the order store in dir.
func OpenPebbleOrders(dir string) (*PebbleOrders, error) {
	p := &PebbleOrders{dir: dir, stop: make(chan struct{}), writeHealth: writeHealth{name: "orders"}}
	f := p.newFailure()
	db, known, err := openOrdersDB(dir, f)
	if err != nil {
		return nil, err
	}
	p.db, p.known = db, known
	p.fail.Store(f)
	return p, nil
}

func (p *PebbleOrders) newFailure() *failure {
	return &failure{name: "orders", onFail: func() { go reopenLoop(ordersReopener{p}) }}
}

func openOrdersDB(dir string, f *failure) (*pebble.DB, map[string]struct{}, error) {
	opts := &pebble.Options{FormatMajorVersion: pebble.FormatNewest, Logger: failLogger{f}, MemTableSize: pebbleMemTable}
	// Every write first looks the grab id up, and almost every lookup
	// misses: bloom filters answer a miss without reading a block.
	for i := range opts.Levels {
		opts.Levels[i].FilterPolicy = bloom.FilterPolicy(10)
		opts.Levels[i].FilterType = pebble.TableFilter
	}
	db, err := openDB(dir, opts)
	if err != nil {
		return nil, nil, fmt.Errorf("open order store %s: %w", dir, err)
	}
	known := map[string]struct{}{}
	lo := []byte{prefixOrder}
	it, err := db.NewIter(&pebble.IterOptions{LowerBound: lo, UpperBound: prefixEnd(lo)})
	if err != nil {
		db.Close()
		return nil, nil, err
	}
	for ok := it.First(); ok; ok = it.Next() {
		known[string(it.Key()[1:])] = struct{}{}
	}
	if err := errors.Join(it.Error(), it.Close()); err != nil {
		db.Close()
		return nil, nil, fmt.Errorf("open order store %s: %w", dir, err)
	}
	return db, known, nil
}

// use runs fn on the database under the read lock.
func (p *PebbleOrders) use(fn func(db *pebble.DB) error) error {
	p.dbMu.RLock()
	defer p.dbMu.RUnlock()
	if p.closed {
		return ErrClosed
	}
	if p.db == nil {
		return errors.Join(p.fail.Load().get(), ErrStoreFailed)
	}
	return fn(p.db)
}

// commit makes b durable: ApplyNoSyncWait and SyncWait rather than
// Commit(Sync), whose failed sync goes to Logger.Fatalf and then returns
// nil. Any failure marks the store failed.
// The batch is built by fill on the database in use.
func (p *PebbleOrders) commit(fill func(b *pebble.Batch) error) error {
	if err := p.Health(); err != nil {
		return err
	}
	return p.use(func(db *pebble.DB) (err error) {
		fl := p.fail.Load()
		if err := fl.get(); err != nil {
			return err
		}
		defer fl.recoverInto(&err)
		b := db.NewBatch()
		defer b.Close()
		if err := fill(b); err != nil {
			return err
		}
		if err := db.ApplyNoSyncWait(b, pebble.Sync); err != nil {
			fl.set(err)
			return err
		}
		if err := fl.get(); err != nil {
			return err
		}
		if err := b.SyncWait(); err != nil {
			fl.set(err)
			return err
		}
		return nil
	})
}

func (p *PebbleOrders) get(grabID string) (o engine.Order, found bool, err error) {
	err = p.use(func(db *pebble.DB) error {
		v, closer, err := db.Get(orderKey(nil, grabID))
		if errors.Is(err, pebble.ErrNotFound) {
			return nil
		}
		if err != nil {
			return err
		}
		defer closer.Close()
		o, err = DecodeOrder(grabID, v)
		found = err == nil
		return err
	})
	return o, found, err
}

// WriteNew writes the orders not stored yet in one synced batch.
func (p *PebbleOrders) WriteNew(orders []engine.Order) (int, error) {
	p.mu.Lock()
	defer p.mu.Unlock()
	seen := make(map[string]bool, len(orders))
	var fresh []engine.Order
	for _, o := range orders {
		if seen[o.GrabID] {
			continue
		}
		seen[o.GrabID] = true
		if _, ok := p.known[o.GrabID]; ok {
			continue
		}
		fresh = append(fresh, o)
	}
	n := len(fresh)
	if n == 0 {
		return 0, nil
	}
	if err := p.commit(func(b *pebble.Batch) error {
		for _, o := range fresh {
			if err := b.Set(orderKey(nil, o.GrabID), encodeOrder(nil, o), nil); err != nil {
				return err
			}
			if o.State == engine.PendingPayment {
				if err := b.Set(deadlineKey(nil, o), nil, nil); err != nil {
					return err
				}
			}
		}
		return nil
	}); err != nil {
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
	if err := p.commit(func(b *pebble.Batch) error {
		if err := b.Set(orderKey(nil, grabID), encodeOrder(nil, next), nil); err != nil {
			return err
		}
		if o.State == engine.PendingPayment && next.State != engine.PendingPayment {
			if err := b.Delete(deadlineKey(nil, o), nil); err != nil {
				return err
			}
		}
		if next.State == engine.Cancelled {
			return b.Set(append([]byte{prefixUnrelease}, grabID...), nil, nil)
		}
		return nil
	}); err != nil {
		return o, 0, fmt.Errorf("update order %s: %w", grabID, err)
	}
	return next, out, nil
}

// Due lists pending orders past their payment deadline.
func (p *PebbleOrders) Due(nowMs int64, limit int) ([]engine.Order, error) {
	hi := binary.BigEndian.AppendUint64([]byte{prefixDeadline}, uint64(nowMs)+1)
	var ids []string
	if err := p.use(func(db *pebble.DB) error {
		it, err := db.NewIter(&pebble.IterOptions{LowerBound: []byte{prefixDeadline}, UpperBound: hi})
		if err != nil {
			return err
		}
		defer it.Close()
		for ok := it.First(); ok && len(ids) < limit; ok = it.Next() {
			ids = append(ids, string(it.Key()[9:]))
		}
		return it.Error()
	}); err != nil {
		return nil, err
	}
	var out []engine.Order
	for _, id := range ids {
		o, found, err := p.get(id)
		if err != nil {
			return nil, err
		}
		if found && o.State == engine.PendingPayment {
			out = append(out, o)
		}
	}
	return out, nil
}

// Scan feeds fn every order of an item.
func (p *PebbleOrders) Scan(item string, fn func(engine.Order) error) error {
	lo := orderKey(nil, item+".")
	return p.use(func(db *pebble.DB) error {
		it, err := db.NewIter(&pebble.IterOptions{LowerBound: lo, UpperBound: prefixEnd(lo)})
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
	})
}

// Unreleased lists cancelled orders whose release is not confirmed.
func (p *PebbleOrders) Unreleased(limit int) ([]string, error) {
	lo := []byte{prefixUnrelease}
	var out []string
	err := p.use(func(db *pebble.DB) error {
		it, err := db.NewIter(&pebble.IterOptions{LowerBound: lo, UpperBound: prefixEnd(lo)})
		if err != nil {
			return err
		}
		defer it.Close()
		for ok := it.First(); ok && len(out) < limit; ok = it.Next() {
			out = append(out, string(it.Key()[1:]))
		}
		return it.Error()
	})
	return out, err
}

// MarkReleased records that a cancelled order's units are back in stock.
func (p *PebbleOrders) MarkReleased(grabID string) error {
	return p.commit(func(b *pebble.Batch) error { return b.Delete(append([]byte{prefixUnrelease}, grabID...), nil) })
}

// Close closes the store.
func (p *PebbleOrders) Close() error {
	p.dbMu.Lock()
	defer p.dbMu.Unlock()
	if p.closed {
		return nil
	}
	p.closed = true
	close(p.stop)
	if p.db == nil {
		return nil
	}
	return p.db.Close()
}

// ordersReopener is the order store as reopenLoop sees it.
type ordersReopener struct{ p *PebbleOrders }

func (r ordersReopener) name() string             { return "orders" }
func (r ordersReopener) stopped() <-chan struct{} { return r.p.stop }
func (r ordersReopener) guardErr() error          { return spaceErr(r.p.dir, r.p.guard.Load()) }
func (r ordersReopener) tryLock() bool {
	if !r.p.mu.TryLock() {
		return false
	}
	if !r.p.dbMu.TryLock() {
		r.p.mu.Unlock()
		return false
	}
	return true
}
func (r ordersReopener) unlock() { r.p.dbMu.Unlock(); r.p.mu.Unlock() }
func (r ordersReopener) closeDB() error {
	if r.p.db == nil {
		return nil
	}
	return r.p.db.Close()
}
func (r ordersReopener) abandon() { r.p.db = nil }
func (r ordersReopener) openDB() (func(), error) {
	if r.p.closed {
		return nil, ErrClosed
	}
	f := r.p.newFailure()
	db, known, err := openOrdersDB(r.p.dir, f)
	r.p.db = db
	if err != nil {
		return nil, err
	}
	r.p.known = known
	return func() { r.p.fail.Store(f) }, nil
}

package actors

import (
	"github.com/seckill/seckill/engine"
	"github.com/seckill/seckill/sale"
)

// The answers and errors of a sale are sale's: the front depends on that
// small package, not on this one. These names keep the actors' code as it
// was.
type (
	Reply      = sale.Reply
	StockReply = sale.StockReply
	ShardView  = sale.ShardView
)

// Errors the front maps to answers.
var (
	ErrUnknownItem  = sale.ErrUnknownItem
	ErrItemExists   = sale.ErrItemExists
	ErrUnavailable  = sale.ErrUnavailable
	ErrOverloaded   = sale.ErrOverloaded
	ErrUnknownGrab  = sale.ErrUnknownGrab
	ErrInsufficient = sale.ErrInsufficient
)

// Local is a node as the front's sale.Service and the order side's stock
// (orders.Stock): the sale as it runs on this machine.
type Local struct{ n *Node }

// NewLocal serves n.
func NewLocal(n *Node) *Local { return &Local{n: n} }

var _ sale.Service = (*Local)(nil)

// Grab looks the item up once and checks qty against its per-user limit
// before any actor hop: an over-limit grab is refused even when the item
// is sold out or closed.
func (l *Local) Grab(item, user string, qty int64, key string) sale.Reply {
	it, ok := l.n.Item(item)
	if !ok {
		return sale.Reply{Err: sale.ErrUnknownItem}
	}
	if !it.Config.ValidQty(qty) {
		return sale.Reply{Err: &sale.QtyError{Limit: it.Config.PerUserLimit}}
	}
	return l.n.GrabIn(it, user, qty, key)
}

// Release returns a grab's units to stock.
func (l *Local) Release(item, grabID string) sale.Reply { return l.n.Release(item, grabID) }

// ChangeStock changes an item's stock by delta.
func (l *Local) ChangeStock(item string, delta int64) sale.StockReply {
	return l.n.ChangeStock(item, delta)
}

// CreateItem creates an item and starts its shards.
func (l *Local) CreateItem(cfg engine.ItemConfig) error { return l.n.CreateItem(cfg) }

// Item returns an item's view with its shards.
func (l *Local) Item(id string) (sale.ItemView, bool) {
	it, ok := l.n.Item(id)
	if !ok {
		return sale.ItemView{}, false
	}
	b, shards := it.View()
	return sale.ItemView{Config: it.Config, Balance: b, SoldOut: it.SoldOut(), Shards: shards}, true
}

// Items returns every item's view, without shards, sorted by id.
func (l *Local) Items() []sale.ItemView {
	items := l.n.Items()
	out := make([]sale.ItemView, len(items))
	for i, it := range items {
		out[i] = sale.ItemView{Config: it.Config, Balance: it.Balance(), SoldOut: it.SoldOut()}
	}
	return out
}

// Now is the node's clock.
func (l *Local) Now() int64 { return l.n.Now() }

// GrabDurable reports whether grabID names a confirmed grab on disk.
func (l *Local) GrabDurable(grabID string) bool { return l.n.GrabDurable(grabID) }

// PaymentWindow is the item's payment window in milliseconds; false when
// the item is not on this node.
func (l *Local) PaymentWindow(item string) (int64, bool) {
	it, ok := l.n.Item(item)
	if !ok {
		return 0, false
	}
	return it.Config.PaymentWindow(), true
}

// GrabDurable reports whether a grab id names a confirmed grab on disk.
func (n *Node) GrabDurable(grabID string) bool {
	item, shard, seq, ok := engine.ParseGrabID(grabID)
	if !ok {
		return false
	}
	it, ok := n.Item(item)
	if !ok || shard >= len(it.shards) {
		return false
	}
	if seq > it.shards[shard].durableSeq.Load() {
		return false
	}
	// Below the durable mark every sequence is a grab, but a forced
	// move's skipped ones are nobody's (engine.GapUser): asked only when
	// the order is not there, so the read costs the sale nothing.
	found := false
	err := n.store.GrabsAfter(item, shard, seq-1, 1, func(g engine.Grab) error {
		found = g.Seq == seq && !g.IsGap()
		return nil
	})
	return err == nil && found
}

// Package sale owns what the HTTP front needs of a running sale: the
// Service it sells through (grab, release, change stock, the item views),
// the order side it answers for (Orders, dead letters, reconciliation
// reports) and the outcomes both report, as values and sentinel errors.
// The local node implements Service today and a cluster will tomorrow, so
// nothing here may depend on how a sale runs: no actors, Pebble, NATS or
// HTTP, only engine's plain values.
package sale

import "github.com/seckill/seckill/engine"

// Service is a running sale as the front sees it. Every method is safe for
// concurrent use and answers without blocking longer than the
// implementation's request timeout.
type Service interface {
	// Grab decides one grab of qty units of item for user; key is the
	// buyer's Idempotency-Key ("" for none). It looks the item up once:
	// it is the hot path.
	Grab(item, user string, qty int64, key string) Reply
	// Release returns a confirmed grab's units to stock, once.
	Release(item, grabID string) Reply
	// ChangeStock adds delta (negative: takes back unsold units).
	ChangeStock(item string, delta int64) StockReply
	// CreateItem validates cfg, makes it durable and starts selling it;
	// ErrItemExists when the item is there already.
	CreateItem(cfg engine.ItemConfig) error
	// Item returns an item's view with its shards.
	Item(id string) (ItemView, bool)
	// Items returns every item sorted by id, without their shards.
	Items() []ItemView
	// Now is the sale's clock in Unix milliseconds: sale windows and
	// payment deadlines are decided by it, not by the caller's clock.
	Now() int64
}

// ItemView is an item as the public and admin views show it. Balance and
// Shards come from one read, so the shards always add up to the totals.
type ItemView struct {
	Config  engine.ItemConfig
	Balance engine.Balance
	SoldOut bool
	Shards  []ShardView // nil from Items
}

// ShardView is a shard's numbers as last decided in memory.
type ShardView struct {
	Shard     int
	Allocated int64
	Sold      int64
	Refills   int64 // refills received from the pool
	Steals    int64 // times it gave units back to the pool for a sibling
	Waiting   int64 // buyers held for a refill (0 for a shard on another node)
}

// Remaining is what the shard can still sell.
func (v ShardView) Remaining() int64 { return v.Allocated - v.Sold }

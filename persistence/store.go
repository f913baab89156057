// Package persistence owns what seckill keeps on disk: items, shard counters
// and confirmed grabs. It hides Pebble behind the small Store interface the
// actors need, with an in-memory implementation for actor tests.
package persistence

import (
	"errors"

	"github.com/seckill/seckill/engine"
)

// Store makes records durable and reads them back.
type Store interface {
	// Apply makes every record of b durable, all or none, before it returns.
	// An error means none of them may be reported as durable.
	Apply(b *Batch) error
	// Items lists every item created, in id order.
	Items() ([]engine.ItemConfig, error)
	// ShardCounters returns a shard's durable counters.
	ShardCounters(item string, shard int) (engine.Counters, error)
	// ShardGrabs feeds fn each grab of a shard in sequence order.
	ShardGrabs(item string, shard int, fn func(engine.Grab) error) error
	Close() error
}

// ErrClosed is returned by a store used after Close.
var ErrClosed = errors.New("store closed")

// GrabRecord is a confirmed grab and its shard's counters after it.
type GrabRecord struct {
	Grab     engine.Grab
	Counters engine.Counters
}

// Batch collects records for one Apply. A Batch is reused: Reset clears it
// without freeing its memory.
type Batch struct {
	Items    []engine.ItemConfig
	Counters []ShardCounters
	Grabs    []GrabRecord
}

// ShardCounters are one shard's counters on their own (item creation).
type ShardCounters struct {
	Item     string
	Shard    int
	Counters engine.Counters
}

// Len counts the records in the batch.
func (b *Batch) Len() int { return len(b.Items) + len(b.Counters) + len(b.Grabs) }

// Reset empties the batch for reuse.
func (b *Batch) Reset() {
	clear(b.Items)
	clear(b.Counters)
	clear(b.Grabs)
	b.Items, b.Counters, b.Grabs = b.Items[:0], b.Counters[:0], b.Grabs[:0]
}

// PutItem records a new item with every shard's initial counters.
func (b *Batch) PutItem(cfg engine.ItemConfig) {
	b.Items = append(b.Items, cfg)
	for i := 0; i < cfg.Shards; i++ {
		b.Counters = append(b.Counters, ShardCounters{Item: cfg.Item, Shard: i,
			Counters: engine.Counters{Allocated: cfg.InitialAllocation(i), NextSeq: 1}})
	}
}

// PutGrab records a confirmed grab with its shard's counters.
func (b *Batch) PutGrab(g engine.Grab, c engine.Counters) {
	b.Grabs = append(b.Grabs, GrabRecord{Grab: g, Counters: c})
}

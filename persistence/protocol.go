package persistence

import "github.com/seckill/seckill/engine"

// PutRecord adds a record the sale protocol decided (engine.Ready.Records).
func (b *Batch) PutRecord(r engine.Record) {
	b.Records = append(b.Records, FromEngine(r))
}

// FromEngine is the stored form of a record the protocol decided.
func FromEngine(r engine.Record) Record {
	switch r.Kind {
	case engine.RecGrab:
		return Record{Kind: KindGrab, Grab: r.Grab, Counters: r.Counters}
	case engine.RecRelease:
		return Record{Kind: KindRelease, Grab: r.Grab, Counters: r.Counters}
	case engine.RecCounters:
		return Record{Kind: KindCounters, Item: engine.ItemConfig{Item: r.Item}, Shard: r.Shard, Counters: r.Counters}
	case engine.RecPool:
		return Record{Kind: KindPool, Item: engine.ItemConfig{Item: r.Item}, Pool: r.Pool}
	}
	return Record{}
}

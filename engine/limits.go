// Package engine owns the pure state machines of seckill: a shard of an item's
// stock, and the rules for routing a buyer to a shard. Nothing here starts a
// goroutine, does I/O or reads a clock: callers pass time in and persist the
// records a decision returns before telling anyone it happened.
package engine

// Limits. Each exists so that one item, one user or one request cannot grow
// memory or latency without bound.
const (
	// DefaultShards spreads a hot item over enough actors to use every core
	// of a small machine while keeping each shard's stock meaningful, and
	// few enough that each actor decides a batch of grabs a wake-up. On 2
	// cores, 10 000 units, 33 k buyers a second (three alternating runs
	// each): 8 shards sold out after 0.301-0.304 s, first-second p99 8 ms;
	// 16 after 0.308-0.346 s, 8-39 ms; 4 after 0.307-0.316 s. Durable
	// grabs, closed loop: 8 shards made 4 % more than 16.
	DefaultShards = 8
	// MaxShards bounds the actors and per-shard state of one item.
	MaxShards = 1024
	// MaxStock keeps every counter far below 2^32 so that packed counters
	// and sums over shards cannot overflow.
	MaxStock = 1_000_000_000
	// MaxPerUserLimit bounds how many units one buyer may hold of one item;
	// a flash sale that wants more per buyer is not a flash sale.
	MaxPerUserLimit = 1000
	// DefaultPerUserLimit is the usual flash-sale rule: one unit per buyer.
	DefaultPerUserLimit = 1
	// MaxIDLen bounds item, user and grab ids (bytes).
	MaxIDLen = 128
	// MaxKeyLen bounds an Idempotency-Key (bytes).
	MaxKeyLen = 64
	// MaxRestoreHint bounds the map sizes a shard restored from disk starts
	// with (RestoreShard): a million entries each is about 100 MB.
	MaxRestoreHint = 1 << 20
	// InitialQuotaPercent of the stock is spread over the shards at
	// creation; the rest stays in the pool and follows the buyers, so an
	// uneven crowd empties the pool before any shard says "sold out".
	InitialQuotaPercent = 50
	// DefaultPaymentWindowMs: 15 minutes, the usual time to pay a flash-sale
	// order before its unit goes back on sale.
	DefaultPaymentWindowMs = 15 * 60 * 1000
	// MinPaymentWindowMs and MaxPaymentWindowMs bound the window an operator
	// may set: shorter cannot be paid in, longer keeps units off sale.
	MinPaymentWindowMs = 1000
	MaxPaymentWindowMs = 24 * 60 * 60 * 1000
	// MaxRefillChunk bounds one refill so a single shard never drains the
	// pool of a large item in one step.
	MaxRefillChunk = 10_000
	// MaxWaitingPerShard bounds the buyers parked at one shard for units.
	MaxWaitingPerShard = 4096
	// RefillWaitMs bounds how long a buyer whose shard is empty waits for
	// units from the pool or a sibling before hearing "retry". A refill
	// takes one hop and one group commit, well under it.
	RefillWaitMs = 50
	// AskRetryMs: an ask unanswered this long is sent again (a message
	// lost between processes); in one process none is lost.
	AskRetryMs = RefillWaitMs / 2
	// StealRetryMs is how soon the pool looks again for units for waiting
	// shards while every unsold unit is moving between the pool and shards.
	StealRetryMs = 2
	// StealTimeoutMs: a shard asked to give back that has not answered in
	// this long is asked no more for now (a message lost, or a shard
	// restarting); the pool looks elsewhere.
	StealTimeoutMs = 200
)

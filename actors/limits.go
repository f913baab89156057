// Package actors runs the engine: one protoactor-go actor per (item, shard)
// deciding grabs in memory, and group committers that make those decisions
// durable in batches before any buyer hears "confirmed".
package actors

import "time"

const (
	// MaxInflightPerShard bounds the requests queued at one shard actor.
	// Past it a buyer is told "unavailable" at once instead of joining a
	// queue whose tail would wait longer than anyone should.
	MaxInflightPerShard = 4096
	// MaxCommitBatch bounds the decisions in one Pebble commit: large enough
	// to amortise an fdatasync over hundreds of grabs, small enough that one
	// batch encodes in well under a millisecond.
	MaxCommitBatch = 2048
	// CommitQueueLen bounds decisions waiting for a committer. Shard actors
	// block on a full queue, which pushes back to the HTTP front.
	CommitQueueLen = 16384
	// DefaultCommitters: each shard's records always go to the same
	// committer (so they land in order). A committer never waits on the
	// disk itself (see MaxRoundsInFlight), so one keeps the WAL busy.
	DefaultCommitters = 1
	// MaxRoundsInFlight bounds the group commits a committer has submitted
	// beyond the one its syncer waits for (it submits one more before it
	// blocks). Pebble syncs every batch queued during one fdatasync in the
	// next, so a round need not wait for the last to finish; the bound
	// keeps rounds from shrinking to one decision each (a Pebble commit
	// apiece) under heavy load. With 8, 86 % of a flash's rounds held one
	// record; with 1, what gathers during a sync goes in one commit, and
	// durable grabs ran 3-7 % faster with p99 no higher (six alternating
	// pairs, whole system, 2026-11-30, the WAL zero-filled).
	MaxRoundsInFlight = 1
	// DefaultRequestTimeout is how long the front waits for a shard's answer.
	// A grab that times out may still be confirmed later: the buyer's retry
	// with the same Idempotency-Key then returns it.
	DefaultRequestTimeout = 2 * time.Second
)

// Package fence keeps the cluster's authority in etcd: which nodes hold a
// live lease, which items exist, which node runs each shard of an item and
// at which epoch, and the item's stock ledger, every change of which is a
// compare-and-swap transaction.
//
// Membership alone is never trusted (protoactor's disthash ran two
// activations of one grain and sold 1441 of 1000 units here): a node past
// its lease stops confirming, a shard incarnation (item, shard, epoch) is
// granted units only while the placement names that epoch, in the same
// transaction, and a stale incarnation can sell only what it alone already
// holds. Nothing here is on a grab's path: only refills, give-backs, stock
// changes, placement and leases touch etcd.
//
// The pieces (keys.go has the key layout):
//
//   - Leases (Join, Lease): a node's membership and its right to confirm.
//   - Items (CreateItem, Item, Items, WatchItems): an item's config,
//     written once, with its pool ledger and every shard's placement at
//     epoch 1, in one transaction.
//   - The pool ledger (PoolLedger, LoadPool, CommitPool): the engine's
//     PoolState per shard, plus the units forced moves froze. The item's
//     pool commits its state over the revision it loaded, guarded by the
//     placements of the incarnations it traded with (Guard); any change
//     since is ErrStale and the pool reloads and decides again.
//   - Placements (Attach, RequestMove, Move, CancelMove, ForceMove,
//     SetState, Placement, WatchPlacement): a cooperative move is
//     requested (Moving, To), then completed at epoch+1 or cancelled; a
//     forced move takes a shard from an expired owner and rebases the pool
//     ledger in the same transaction, freezing what the dead owner may
//     have sold after its last snapshot.
//   - Drain marks (SetDraining, Draining): nodes an operator is emptying.
package fence

import (
	"errors"
	"time"
)

// Limits and timings. Each says why it is that number.
const (
	// LeaseTTL: two busy cores can starve a scheduler for a second or more;
	// five seconds survives that while a dead node's shards wait at most
	// five seconds for a forced move (cluster.md, rule 1).
	LeaseTTL = 5 * time.Second
	// KeepAliveInterval: one keep-alive a second leaves four chances to renew
	// before a 5 s lease expires.
	KeepAliveInterval = time.Second
	// KeepAliveTimeout bounds one keep-alive round trip (p99 3.6 ms measured
	// here): a slower answer is as good as lost, the next one is due.
	KeepAliveTimeout = KeepAliveInterval
	// ValidityMargin is taken off the lease a node believes it holds. etcd
	// starts a renewed TTL when it receives the keep-alive, after we sent it,
	// so sent + TTL is already conservative; the margin covers a local clock
	// that runs slower than the etcd leader's (20% of a 5 s lease) and the
	// time between a node's check and its action.
	ValidityMargin = time.Second
	// MinLeaseTTL: the lease must outlive the margin and one keep-alive
	// interval, or a node would be invalid between two healthy keep-alives.
	MinLeaseTTL = ValidityMargin + KeepAliveInterval + time.Second
	// MaxCASAttempts bounds the retries of one compare-and-swap. A ledger is
	// written by refills, give-backs, stock changes and moves: a few writers
	// at once, each retrying at once with the values its failed compare
	// returned. Past this the caller hears ErrContended and backs off.
	MaxCASAttempts = 64
	// maxCASBackoff caps the random pause after a lost compare. The pause
	// is drawn from a window of the losing transaction's own round trip,
	// doubled with every loss up to 32 round trips: on a loaded machine
	// (2 cores, a write 1-10 ms) sixteen writers of one ledger then spread
	// out instead of colliding again in lockstep.
	maxCASBackoff = 200 * time.Millisecond
	// MaxEpoch: a clustered shard's incarnation number packs its epoch
	// above 20 bits of node starts and 20 of reloads (actors.GenShift,
	// BootBits), so the epoch must fit in the 24 bits left: 16 million
	// moves of one shard.
	MaxEpoch = 1<<24 - 1
	// MaxJoinAttempts bounds how many times Join waits for an earlier
	// lease of the same node id to expire (a restart after SIGKILL).
	MaxJoinAttempts = 8
	// EtcdMaxTxnOps is etcd's default --max-txn-ops (128 in 3.4 and 3.5):
	// etcd refuses a transaction whose compare, success or failure list
	// holds more operations. The cluster runs etcd with the default.
	EtcdMaxTxnOps = 128
	// MaxShardsPerItemTxn: CreateItem writes an item's record, its pool
	// ledger and every shard's placement in one transaction, so that an
	// item exists whole or not at all; two puts besides the placements
	// leave 126 shards of EtcdMaxTxnOps. A bigger item is refused
	// (ErrTooManyShards) rather than created in parts that a crash could
	// leave half-written.
	MaxShardsPerItemTxn = EtcdMaxTxnOps - 2
	// MaxGuards bounds the placements one CommitPool depends on: its read
	// takes the pool ledger, the item record and one placement per guard in
	// one transaction, so two gets besides the guards fit EtcdMaxTxnOps.
	// An item that CreateItem placed has no more shards than this.
	MaxGuards = EtcdMaxTxnOps - 2
	// watchBuffer is the events a watch channel holds for a slow reader
	// before the watch waits for it: items and placements change a few
	// times a minute, so a reader this far behind is stuck, not slow.
	watchBuffer = 16
	// itemsRelistPause is the wait before WatchItems lists the items again
	// after a listing failed (etcd unreachable): a keep-alive interval, the
	// pace at which this package retries etcd anyway.
	itemsRelistPause = KeepAliveInterval
)

// Outcomes callers branch on.
var (
	// ErrNodeDown: the node named has no live lease (its key is gone).
	ErrNodeDown = errors.New("fence: node has no live lease")
	// ErrOwnerAlive: the shard is placed on another node whose lease lives.
	ErrOwnerAlive = errors.New("fence: shard owner's lease is alive")
	// ErrOwnerExpired: the shard's owner lost its lease; only ForceMove may
	// take the shard.
	ErrOwnerExpired = errors.New("fence: shard owner's lease expired: force move needed")
	// ErrNotOwner: a cooperative move named a node that does not hold the shard.
	ErrNotOwner = errors.New("fence: shard is not placed on that node")
	// ErrNotActive: the shard is frozen, or moving where the operation
	// needs it active (or moving to another node).
	ErrNotActive = errors.New("fence: shard placement is not active")
	// ErrSameNode: a move named the node that already holds the shard.
	ErrSameNode = errors.New("fence: shard is already on that node")
	// ErrUnplaced: the shard has no placement.
	ErrUnplaced = errors.New("fence: shard is not placed")
	// ErrStale: the incarnation is not the placement's current active one;
	// it gets no units. From CommitPool also: the pool ledger is no longer
	// at the revision the caller decided on; reload and decide again.
	ErrStale = errors.New("fence: stale incarnation")
	// ErrNoLedger: the item has no ledger.
	ErrNoLedger = errors.New("fence: item has no ledger")
	// ErrItemExists: CreateItem found the item's record, or keys of an item
	// by that id (a pool ledger, placements) without one.
	ErrItemExists = errors.New("fence: item exists")
	// ErrNoItem: the item has no record.
	ErrNoItem = errors.New("fence: no such item")
	// ErrTooManyShards: the item has more shards than one etcd transaction
	// can place (MaxShardsPerItemTxn).
	ErrTooManyShards = errors.New("fence: too many shards for one etcd transaction")
	// ErrRefused: the change would break the ledger's conservation (or its
	// record is already broken); nothing was written.
	ErrRefused = errors.New("fence: refused: the change would break the ledger")
	// ErrContended: MaxCASAttempts compare-and-swaps all lost.
	ErrContended = errors.New("fence: too much contention")
	// ErrNodeTaken: another lease still holds the node id.
	ErrNodeTaken = errors.New("fence: node id held by another lease")
)

package actors

import (
	"sync"
	"sync/atomic"

	"github.com/asynkron/protoactor-go/actor"
	"github.com/seckill/seckill/engine"
)

// lane is whatever owns a stream of durable decisions (a shard or a pool):
// its actor and the generation guard a failed commit sets.
type lane struct {
	// pidp is the actor while it runs here; nil when it is not active on
	// this node (a cluster places it elsewhere) or has stopped.
	pidp atomic.Pointer[actor.PID]
	// failedGen is the newest generation of decisions a failed commit
	// poisoned; the committers drop decisions of that generation or older.
	failedGen atomic.Uint64
	stopped   chan struct{} // closed when the actor has stopped
}

// pid is the lane's actor, nil when it does not run here.
func (l *lane) pid() *actor.PID { return l.pidp.Load() }

// Item is a live item: its configuration, pool and shards, and the numbers
// they publish for the front and the admin views.
type Item struct {
	Config engine.ItemConfig
	shards []*shardRef
	pool   *lane

	// status packs the newest engine.MsgStatus taken, seq<<1 | soldOut:
	// the pool's word that no shard, the pool nor a transfer holds a unit,
	// so the front can answer without an actor hop.
	status atomic.Uint64

	// viewMu orders every change of where units are (transfers, releases,
	// stock changes) against readers of the whole balance. Grabs do not
	// take it: they change a shard's sold and remaining together and leave
	// its allocation alone, so a balance read under viewMu still adds up.
	viewMu    sync.Mutex
	stock     int64
	poolAvail int64
	sent, got []int64
}

// shardRef is what the front, the pool and the committers know of a shard.
type shardRef struct {
	lane
	item      *Item
	index     int
	committer *committer

	// counters packs allocated<<32 | sold as last decided, so a reader sees
	// a consistent pair without asking the actor (MaxStock < 2^32).
	counters atomic.Uint64
	inflight atomic.Int32
	// waiting is how many buyers the shard holds for a refill, as of its
	// last step (for operators: metrics and the dashboard).
	waiting atomic.Int32
	// relayFloor: grabs up to here were adopted from another node's
	// snapshot and published by that node (cluster.go adopt).
	relayFloor atomic.Uint64
	// relayedSeq: the stream acknowledged this shard's grabs up to here
	// (the relay's cursor, for RelayLag).
	relayedSeq atomic.Uint64
	// relayCeiling, when not 0: grabs from this sequence on are not
	// published from here (a forced move gave those sequences to another
	// incarnation; see fence.Forced).
	relayCeiling atomic.Uint64
	// seqLimit, on a clustered node: grabs of this shard may take only
	// sequences below it, as etcd granted (ClusterHooks.ExtendSeqs; see
	// fence.SeqGrant). It only rises; seqEpoch: the latest incarnation
	// granted any; extending: an extension is asked.
	seqLimit, seqEpoch atomic.Uint64
	extending          atomic.Bool
	// journalSeq, with a replicated journal: the position of the shard's
	// last entry as this incarnation knows it (its next append expects
	// it); journalEpoch: the incarnation it writes as (0: not taken over).
	journalSeq, journalEpoch atomic.Uint64
	// durableSeq is the highest grab sequence known to be on disk: how far
	// the relay may publish, and whether an order can still be coming.
	durableSeq atomic.Uint64
	// holders is every user who ever held a grab of the item on this shard
	// made with an Idempotency-Key (at most its grabs; after a restart,
	// every holder), for the front's sold-out answers: only such a user's
	// key can replay a grab.
	holdersMu sync.RWMutex
	holders   map[string]struct{}
	// fresh is a run of consecutive grabs made durable since the relay's
	// cursor, handed over in memory so that the relay need not read them
	// back from Pebble; at most MaxFreshGrabs. Whatever it lacks, the relay
	// reads from Pebble, the outbox of record.
	freshMu sync.Mutex
	fresh   []engine.Grab
	// Under item.viewMu: the shard's side of transfers, and counts for
	// operators.
	received, returned int64
	refills, steals    int64
}

func (r *shardRef) load() (allocated, sold int64) {
	v := r.counters.Load()
	return int64(v >> 32), int64(v & 0xffffffff)
}

func pack(c engine.Counters) uint64 { return uint64(c.Allocated)<<32 | uint64(c.Sold) }

// addHolder records that user holds (or held) a grab on this shard. The
// shard adds a user before it publishes the counters of that grab, so
// whoever sees the item sold out also sees its holders.
func (r *shardRef) addHolder(user string) {
	r.holdersMu.Lock()
	r.holders[user] = struct{}{}
	r.holdersMu.Unlock()
}

func (r *shardRef) isHolder(user string) bool {
	r.holdersMu.RLock()
	_, ok := r.holders[user]
	r.holdersMu.RUnlock()
	return ok
}

// setStatus takes the pool's status number seq unless a newer one was
// taken already (statuses may arrive out of order from another process).
func (it *Item) setStatus(seq uint64, soldOut bool) {
	v := seq << 1
	if soldOut {
		v |= 1
	}
	for {
		cur := it.status.Load()
		if cur>>1 >= seq {
			return
		}
		if it.status.CompareAndSwap(cur, v) {
			return
		}
	}
}

// publish publishes a shard's counters for the views. Counters whose
// allocation did not move (grabs) need no lock: a grab changes sold and
// remaining together.
func (r *shardRef) publish(c engine.Counters, refills, steals int64) {
	if c.Received == r.received && c.Returned == r.returned {
		r.counters.Store(pack(c))
		return
	}
	it := r.item
	it.viewMu.Lock()
	r.counters.Store(pack(c))
	r.received, r.returned = c.Received, c.Returned
	r.refills, r.steals = refills, steals
	it.viewMu.Unlock()
}

// publishPool publishes the pool's ledger.
func (it *Item) publishPool(p *engine.Pool) {
	it.viewMu.Lock()
	it.stock, it.poolAvail = p.Stock(), p.Available()
	for i := range it.sent {
		it.sent[i], it.got[i] = p.SentTo(i), p.GotFrom(i)
	}
	it.viewMu.Unlock()
}

func (it *Item) balanceLocked() engine.Balance {
	b, _ := it.readLocked(false)
	return b
}

// readLocked reads every shard's counters once and sums the balance from
// those same reads, so a view's shards always add up to its totals.
func (it *Item) readLocked(withShards bool) (engine.Balance, []ShardView) {
	b := engine.Balance{Stock: it.stock, Pool: it.poolAvail}
	var views []ShardView
	if withShards {
		views = make([]ShardView, len(it.shards))
	}
	for i, r := range it.shards {
		a, s := r.load()
		b.ShardRemaining += a - s
		b.Sold += s
		b.InTransit += it.sent[i] - r.received + r.returned - it.got[i]
		if withShards {
			views[i] = ShardView{Shard: i, Allocated: a, Sold: s, Refills: r.refills, Steals: r.steals,
				Waiting: int64(r.waiting.Load())}
		}
	}
	return b, views
}

// Balance is the item's whole stock counted once:
// shard remaining + pool + in transit + sold == stock.
func (it *Item) Balance() engine.Balance {
	it.viewMu.Lock()
	defer it.viewMu.Unlock()
	return it.balanceLocked()
}

// View returns the balance and every shard's numbers from one read.
func (it *Item) View() (engine.Balance, []ShardView) {
	it.viewMu.Lock()
	defer it.viewMu.Unlock()
	return it.readLocked(true)
}

// Remaining is every unsold unit of the item.
func (it *Item) Remaining() int64 { return it.Balance().Remaining() }

// SoldOut reports whether every unit is sold.
func (it *Item) SoldOut() bool { return it.status.Load()&1 == 1 }

// addFresh hands a grab that has just become durable to the relay. A grab
// that does not follow the run (a gap, left by a full run) starts a new one:
// the relay reads the grabs before it from Pebble.
func (r *shardRef) addFresh(g engine.Grab) {
	r.freshMu.Lock()
	defer r.freshMu.Unlock()
	switch n := len(r.fresh); {
	case n > 0 && r.fresh[n-1].Seq+1 == g.Seq && n < MaxFreshGrabs:
		r.fresh = append(r.fresh, g)
	case n == 0 || r.fresh[n-1].Seq+1 != g.Seq:
		clear(r.fresh)
		r.fresh = append(r.fresh[:0], g)
	}
	// Else the run is full: g waits in Pebble.
}

// takeFresh forgets the grabs up to cursor (acknowledged by the stream)
// and appends to batch up to max grabs that follow cursor, if the run
// starts right after it; it reports whether it did.
func (r *shardRef) takeFresh(batch []engine.Grab, cursor uint64, max int) ([]engine.Grab, bool) {
	r.freshMu.Lock()
	defer r.freshMu.Unlock()
	k := 0
	for k < len(r.fresh) && r.fresh[k].Seq <= cursor {
		k++
	}
	if k > 0 {
		n := copy(r.fresh, r.fresh[k:])
		clear(r.fresh[n:])
		r.fresh = r.fresh[:n]
	}
	if len(r.fresh) == 0 || r.fresh[0].Seq != cursor+1 {
		return batch, false
	}
	return append(batch, r.fresh[:min(max, len(r.fresh))]...), true
}

package actors

import (
	"errors"
	"fmt"
	"sync/atomic"
	"time"

	"github.com/asynkron/protoactor-go/actor"
	"github.com/seckill/seckill/engine"
	"github.com/seckill/seckill/persistence"
)

// Cluster hosting. On a clustered node nothing runs at start: the cluster
// activates here the shards and pools etcd places here, and deactivates
// them when they move. Messages between participants go through the
// cluster's Send, which delivers locally (Deliver) or to another node.
//
// What keeps a shard from selling twice is not here but in the cluster's
// authority: the pool's ledger lives in etcd and every change of it is a
// compare-and-swap (PoolLedger), grants are routed to the shard's placed
// owner only, and a shard that moves away first gives back every unsold
// unit and only then hands over its snapshot. This file only makes the
// local side of that possible.

// The incarnation number the pool sees (engine.Msg.Gen) and the number of
// a pool's statuses must rise with every activation, or the pool (a
// front) would take the newer one's messages for stale copies: a shard's
// Gen is (epoch, boot, reload) and a status's number (epoch, boot,
// status), each field in its own bits. The pool takes a higher Gen as a
// new incarnation and ignores messages of a lower one, so an activation
// after a move, or after its node restarted, outranks the one before.
const (
	// GenShift: reloads of one activation (failed commits) below it.
	GenShift = 20
	// BootBits: the node's process starts (ClusterHooks.Boot) counted
	// modulo 2^20 within one epoch: a million restarts of one node before
	// a shard moves.
	BootBits = 20
	// StatusBits: statuses one pool activation sends (sold out and back).
	StatusBits = 20
)

// incarnation is (epoch, boot) in one number.
func (n *Node) incarnation(epoch uint64) uint64 {
	return epoch<<BootBits | n.opts.Cluster.Boot&(1<<BootBits-1)
}

// MaxDeactivateWait bounds a deactivation: the shard's queued decisions and
// the give-back of its units must be durable before its snapshot is taken.
const MaxDeactivateWait = 10 * time.Second

// ClusterHooks connect a node to a cluster.
type ClusterHooks struct {
	// Send carries every protocol message the node's participants send:
	// to Deliver on this node, or to another node. It must not block.
	Send func(m engine.Msg)
	// Ledger is the pools' durable store (etcd).
	Ledger PoolLedger
	// Boot counts this node's process starts (kept in its data
	// directory): see GenShift.
	Boot uint64
	// ExtendSeqs asks etcd for more grab sequences for the incarnation
	// epoch of shard of item, from at least atLeast, and returns the new
	// limit (fence.Store.ExtendSeqs). Nil: sequences are not limited.
	// Called from a goroutine of its own, never from an actor.
	ExtendSeqs func(item string, shard int, epoch, atLeast uint64) (uint64, error)
	// Journal, when set, is the shards' replicated journal: every commit
	// round of a shard is appended to it before the local store and
	// before anyone hears of it (journal.go). Shards then run only as
	// ActivateJournaled starts them, after a takeover.
	Journal persistence.ReplicatedJournal
	// Node is this node's id, written in its journal entries.
	Node string
	// Lost, when set, hears that the journal did not take a round of shard
	// of item: the shard stopped here. Called from the committer; it must
	// not block.
	Lost func(item string, shard int)
}

// SeqLowWater: a shard asks for more sequences once fewer than this many
// are left below its limit, so that the hot path never waits for etcd (a
// grant, fence.SeqBlock, is twice this).
const SeqLowWater = 2048

// GrantSeqs lets shard i of item number its grabs below limit, granted to
// its incarnation epoch (a limit lower than the one held changes nothing).
func (n *Node) GrantSeqs(item string, i int, epoch, limit uint64) {
	it, ok := n.Item(item)
	if !ok || i < 0 || i >= len(it.shards) {
		return
	}
	raiseTo(&it.shards[i].seqLimit, limit)
	raiseTo(&it.shards[i].seqEpoch, epoch)
}

// SeqsGranted reports whether shard i of item holds grab sequences granted
// to its incarnation epoch.
func (n *Node) SeqsGranted(item string, i int, epoch uint64) bool {
	it, ok := n.Item(item)
	return ok && i >= 0 && i < len(it.shards) && it.shards[i].seqEpoch.Load() == epoch
}

func raiseTo(v *atomic.Uint64, x uint64) {
	for {
		old := v.Load()
		if old >= x || v.CompareAndSwap(old, x) {
			return
		}
	}
}

// seqsShort reports whether a new grab must be refused (503) because the
// sequence it could take is not granted yet; it asks for more sequences
// once few are left. Every buyer waiting for units may still take one
// sequence each, so they count as used.
func (a *shardActor) seqsShort() bool {
	h := a.node.opts.Cluster
	if h == nil || h.ExtendSeqs == nil {
		return false
	}
	ref := a.ref
	used := a.sn.Shard().Counters().NextSeq + uint64(a.sn.Waiting())
	limit := ref.seqLimit.Load()
	if used+SeqLowWater > limit && ref.extending.CompareAndSwap(false, true) {
		item, idx, epoch, log := ref.item.Config.Item, ref.index, a.epoch, a.node.opts.Logger
		go func() {
			defer ref.extending.Store(false)
			l, err := h.ExtendSeqs(item, idx, epoch, used+1)
			if err != nil {
				log.Warn("shard: extend grab sequences", "item", item, "shard", idx, "epoch", epoch, "err", err)
				return
			}
			raiseTo(&ref.seqLimit, l)
			raiseTo(&ref.seqEpoch, epoch)
		}()
	}
	return used >= limit
}

// PoolLedger keeps an item's pool where every node can load it and where
// two activations of one pool cannot both change it.
type PoolLedger interface {
	// Load returns the pool's durable state.
	Load(item string) (engine.PoolState, error)
	// Commit replaces the pool's state by st if nobody changed it since
	// this node last loaded or committed it, and if every shard in granted
	// (whose Sent total grew) is still placed where the pool sends it.
	// Any error leaves the ledger as it was: the pool reloads.
	Commit(item string, st engine.PoolState, granted []int) error
}

// Errors of activation.
var (
	ErrActive   = errors.New("already active on this node")
	ErrInactive = errors.New("not active on this node")
	// ErrRelayBehind: a shard cannot be adopted while grabs this node made
	// of it earlier are not yet in the stream; try again shortly.
	ErrRelayBehind = errors.New("grabs made here earlier are not relayed yet")
)

// Deliver hands a protocol message to its addressee on this node. A
// message for a participant not active here is dropped (sends are at most
// once; the protocol recovers what is lost).
func (n *Node) Deliver(m engine.Msg) {
	it, ok := n.Item(m.To.Item)
	if !ok {
		return
	}
	switch s := m.To.Shard; {
	case s == engine.FrontShard:
		if m.Kind == engine.MsgStatus {
			it.setStatus(m.Seq, m.SoldOut)
		}
	case s == engine.PoolShard:
		n.tell(it.pool, m)
	case s >= 0 && s < len(it.shards):
		n.tell(&it.shards[s].lane, m)
	}
}

// tell sends msg to l's actor if it runs here.
func (n *Node) tell(l *lane, msg any) bool {
	pid := l.pid()
	if pid == nil {
		return false
	}
	n.sys.Root.Send(pid, msg)
	return true
}

// AddItem makes a clustered item known here (durable in the local store)
// without running any of it; an item known already is left alone.
func (n *Node) AddItem(cfg engine.ItemConfig) error {
	err := n.CreateItem(cfg)
	if errors.Is(err, ErrItemExists) {
		return nil
	}
	return err
}

// ShardActive reports whether shard i of item runs here.
func (n *Node) ShardActive(item string, i int) bool {
	it, ok := n.Item(item)
	return ok && i >= 0 && i < len(it.shards) && it.shards[i].pid() != nil
}

// PoolActive reports whether item's pool runs here.
func (n *Node) PoolActive(item string) bool {
	it, ok := n.Item(item)
	return ok && it.pool.pid() != nil
}

// ActivateShard starts shard i of item here as incarnation epoch. With a
// snapshot (a move), the snapshot is first written to the local store
// unless the store already holds the same state or a later one of it; the
// shard then runs on what the store holds. It tells the pool at once
// (MsgSync), so the pool learns the new incarnation and resends its total.
func (n *Node) ActivateShard(item string, i int, epoch uint64, snap *engine.ShardSnapshot) error {
	return n.activateShard(item, i, epoch, snap, false, RelayAfterSnapshot)
}

// Where the relay of an adopting node starts publishing an adopted shard's
// grabs (adopt): at a sequence (the grabs after it), or one of these.
const (
	// RelayOwn: from this node's own cursor: every adopted grab the local
	// store lacked is relayed here.
	RelayOwn int64 = -1
	// RelayAfterSnapshot: after the snapshot's last grab: the node that
	// made them relays them.
	RelayAfterSnapshot int64 = -2
)

// ActivateForced is ActivateShard after a forced move: the snapshot's
// grabs are relayed from here too, on this node's lane, since the node
// that made them was lost and may not have handed them all to the stream.
func (n *Node) ActivateForced(item string, i int, epoch uint64, snap *engine.ShardSnapshot) error {
	return n.activateShard(item, i, epoch, snap, false, RelayOwn)
}

// ActivateJournaled starts shard i of item here as incarnation epoch from
// snap, the state its replicated journal ends in after this node's
// takeover marker at position at (bus.Journal.Takeover): snap is written
// to the local store where the store holds less (the local store holds a
// prefix of the journal), and the shard's first append expects at. relay
// says which of the grabs the local store lacked this node relays: after a
// sequence, RelayOwn or RelayAfterSnapshot.
func (n *Node) ActivateJournaled(item string, i int, epoch uint64, snap engine.ShardSnapshot, at uint64, relay int64) error {
	it, ok := n.Item(item)
	if !ok {
		return ErrUnknownItem
	}
	if i < 0 || i >= len(it.shards) {
		return fmt.Errorf("activate %s.%d: no such shard", item, i)
	}
	return n.activateShardAt(item, i, epoch, &snap, false, relay, &journalAt{seq: at, epoch: epoch})
}

// journalAt is where a journaled activation's first append goes.
type journalAt struct{ seq, epoch uint64 }

// ActivateSecond starts shard i of item here whatever etcd says, from what
// the local store holds or from nothing: a second activation, as a grain
// framework that lost track would make one. Only the test hook of
// `seckill serve` calls it, to show that such an activation sells nothing.
func (n *Node) ActivateSecond(item string, i int, epoch uint64) error {
	return n.activateShard(item, i, epoch, nil, true, RelayAfterSnapshot)
}

// ClusterStart is engine.ClusterStart.
func ClusterStart(cfg engine.ItemConfig, i int) engine.Counters { return engine.ClusterStart(cfg, i) }

// activating looks item up for an activation; n.mu is held.
func (n *Node) activating(item string) (*Item, error) {
	if n.opts.Cluster == nil {
		return nil, errors.New("activate: not a clustered node")
	}
	if n.closed {
		return nil, ErrUnavailable
	}
	it, ok := n.Item(item)
	if !ok {
		return nil, ErrUnknownItem
	}
	return it, nil
}

func (n *Node) activateShard(item string, i int, epoch uint64, snap *engine.ShardSnapshot, fresh bool, relay int64) error {
	return n.activateShardAt(item, i, epoch, snap, fresh, relay, nil)
}

// activateShardAt is activateShard; with ja, the incarnation's journal
// position is set once nothing runs the shard (never under a running one).
func (n *Node) activateShardAt(item string, i int, epoch uint64, snap *engine.ShardSnapshot, fresh bool, relay int64, ja *journalAt) error {
	n.mu.Lock()
	defer n.mu.Unlock()
	it, err := n.activating(item)
	if err != nil {
		return err
	}
	if i < 0 || i >= len(it.shards) {
		return fmt.Errorf("activate %s.%d: no such shard", item, i)
	}
	ref := it.shards[i]
	if ref.pid() != nil {
		return ErrActive
	}
	if ja != nil {
		ref.journalSeq.Store(ja.seq)
		ref.journalEpoch.Store(ja.epoch)
	}
	if snap != nil {
		if err := n.adopt(it.Config, *snap, relay); err != nil {
			return err
		}
	}
	sh, err := persistence.LoadShard(n.store, it.Config, i)
	if errors.Is(err, persistence.ErrNoShard) && snap == nil && (epoch == 1 || fresh) {
		// The shard never ran here: it starts with nothing (see
		// ClusterStart) and asks the pool.
		sh = engine.RestoreShard(it.Config, i, ClusterStart(it.Config, i))
		var b persistence.Batch
		b.PutCounters(item, i, sh.Counters())
		err = n.store.Apply(&b)
	}
	if err != nil {
		return err
	}
	c := sh.Counters()
	it.viewMu.Lock()
	ref.counters.Store(pack(c))
	ref.received, ref.returned = c.Received, c.Returned
	it.viewMu.Unlock()
	ref.durableSeq.Store(c.NextSeq - 1)
	sh.Holders(ref.addHolder)
	ref.stopped = make(chan struct{})
	base := n.incarnation(epoch) << GenShift
	// Above every generation a failed commit or a lost journal round
	// poisoned: the committer drops decisions at or below it.
	gen := ref.failedGen.Load() + 1
	sn := engine.NewShardNode(sh, base+gen)
	a := &shardActor{node: n, ref: ref, sn: sn, genBase: base, epoch: epoch, gen: gen}
	// The Sync goes out with the first flush: the pool hears the new
	// incarnation and its durable counters.
	sn.Restart(sh, base+gen)
	ref.pidp.Store(n.sys.Root.Spawn(actor.PropsFromProducer(func() actor.Actor { return a }, actor.WithDispatcher(n.dispatch))))
	n.tell(&ref.lane, tickMsg{})
	return nil
}

// adopt writes snap to the local store unless what the store holds of the
// shard is the same state or later (a restart of the owner, or a snapshot
// older than the local copy). relay says where the relay here starts on
// the shard (ActivateJournaled).
func (n *Node) adopt(cfg engine.ItemConfig, snap engine.ShardSnapshot, relay int64) error {
	sh, err := engine.RestoreSnapshot(cfg, snap)
	if err != nil {
		return fmt.Errorf("adopt %s.%d: %w", cfg.Item, snap.Shard, err)
	}
	local, err := n.store.ShardCounters(cfg.Item, snap.Shard)
	if errors.Is(err, persistence.ErrNoShard) {
		local, err = engine.Counters{NextSeq: 1}, nil
	}
	if err != nil {
		return err
	}
	if local.NextSeq >= snap.Counters.NextSeq && local.Received >= snap.Counters.Received && local.Returned >= snap.Counters.Returned {
		return nil
	}
	// The grabs this node did not make were published by the node that
	// made them, on its lane, and its writers write their orders: the
	// relay here must start after them, or their orders would be written
	// here too. If grabs made here earlier are still on their way to the
	// stream, wait for the relay (the grid activates again shortly).
	cursor, err := n.store.RelayCursor(cfg.Item, snap.Shard)
	if err != nil {
		return err
	}
	if cursor+1 < local.NextSeq && relay != RelayOwn {
		return fmt.Errorf("adopt %s.%d: %w", cfg.Item, snap.Shard, ErrRelayBehind)
	}
	c := sh.Counters()
	var b persistence.Batch
	for _, g := range snap.Grabs {
		eg := engine.Grab{Item: cfg.Item, Shard: snap.Shard, Seq: g.Seq, User: g.User, Qty: g.Qty, Key: g.Key, AtMs: g.AtMs}
		if g.Seq < local.NextSeq {
			if g.Released {
				b.PutRelease(eg, c)
			}
			continue
		}
		b.PutGrab(eg, c)
		if g.Released {
			b.PutRelease(eg, c)
		}
	}
	b.PutCounters(cfg.Item, snap.Shard, c)
	floor := snap.Counters.NextSeq - 1
	if relay >= 0 {
		floor = min(uint64(relay), floor)
	}
	if relay != RelayOwn {
		b.PutCursor(cfg.Item, snap.Shard, max(floor, cursor))
	}
	if err := n.store.Apply(&b); err != nil {
		return fmt.Errorf("adopt %s.%d: %w", cfg.Item, snap.Shard, err)
	}
	if it, ok := n.Item(cfg.Item); ok && relay != RelayOwn {
		it.shards[snap.Shard].relayFloor.Store(floor)
	}
	return nil
}

// handoverMsg asks a shard actor to stop selling, give back every unsold
// unit and stop once that is durable.
type handoverMsg struct{ done chan error }

// DeactivateShard stops shard i of item here for a move: new grabs answer
// 503, buyers waiting are told to retry, every unsold unit is given back to
// the pool, and once all of it is durable the shard's snapshot is read from
// the store (as incarnation epoch) and returned.
func (n *Node) DeactivateShard(item string, i int, epoch uint64) (engine.ShardSnapshot, error) {
	it, ok := n.Item(item)
	if !ok {
		return engine.ShardSnapshot{}, ErrUnknownItem
	}
	if i < 0 || i >= len(it.shards) {
		return engine.ShardSnapshot{}, fmt.Errorf("deactivate %s.%d: no such shard", item, i)
	}
	ref := it.shards[i]
	n.mu.Lock()
	pid, stopped := ref.pid(), ref.stopped
	n.mu.Unlock()
	if pid == nil {
		return engine.ShardSnapshot{}, ErrInactive
	}
	done := make(chan error, 1)
	n.sys.Root.Send(pid, handoverMsg{done: done})
	t := time.NewTimer(MaxDeactivateWait)
	defer t.Stop()
	select {
	case err := <-done:
		if err != nil {
			return engine.ShardSnapshot{}, err
		}
	case <-t.C:
		return engine.ShardSnapshot{}, fmt.Errorf("deactivate %s.%d: no answer in %s", item, i, MaxDeactivateWait)
	}
	select {
	case <-stopped:
	case <-t.C:
		return engine.ShardSnapshot{}, fmt.Errorf("deactivate %s.%d: actor did not stop", item, i)
	}
	n.mu.Lock()
	ref.pidp.Store(nil)
	n.mu.Unlock()
	sh, err := persistence.LoadShard(n.store, it.Config, i)
	if err != nil {
		return engine.ShardSnapshot{}, err
	}
	return sh.Snapshot(epoch), nil
}

// StopShard stops shard i of item here without a handover (its owner
// changed behind its back): waiting buyers are told to retry; what it
// decided stays durable.
func (n *Node) StopShard(item string, i int) {
	it, ok := n.Item(item)
	if !ok || i < 0 || i >= len(it.shards) {
		return
	}
	ref := it.shards[i]
	n.mu.Lock()
	pid, stopped := ref.pid(), ref.stopped
	n.mu.Unlock()
	if pid == nil {
		return
	}
	n.sys.Root.Poison(pid)
	<-stopped
	n.mu.Lock()
	ref.pidp.Store(nil)
	n.mu.Unlock()
}

// ActivatePool starts item's pool here from the ledger, as incarnation
// epoch (the statuses it sends outrank those of earlier activations). It
// asks every shard for its counters (a give-back of nothing), so that it
// knows what they hold; until they answer it counts each shard as holding
// everything it may, so it never says sold out early.
func (n *Node) ActivatePool(item string, epoch uint64) error {
	n.mu.Lock()
	defer n.mu.Unlock()
	it, err := n.activating(item)
	if err != nil {
		return err
	}
	hooks := n.opts.Cluster
	if it.pool.pid() != nil {
		return ErrActive
	}
	st, err := hooks.Ledger.Load(item)
	if err != nil {
		return err
	}
	pool, err := engine.RestorePool(it.Config, st)
	if err != nil {
		return err
	}
	it.publishPool(pool)
	pn := engine.NewPoolNode(pool, unknownShards(it.Config))
	it.pool.stopped = make(chan struct{})
	pa := &poolActor{node: n, item: it, lane: it.pool, pn: pn, statusBase: n.incarnation(epoch) << StatusBits,
		lc: newLedgerCommitter(n, it, hooks.Ledger, st)}
	it.pool.pidp.Store(n.sys.Root.Spawn(actor.PropsFromProducer(func() actor.Actor { return pa }, actor.WithDispatcher(n.dispatch))))
	for i := range it.Config.Shards {
		hooks.Send(engine.Msg{Kind: engine.MsgGiveBack, From: engine.PoolAddr(item), To: engine.ShardAddr(item, i), Total: pool.SentTo(i)})
	}
	n.tell(it.pool, tickMsg{})
	return nil
}

// unknownShards is what a pool that has not heard from its shards assumes:
// each holds everything sent to it and not got back.
func unknownShards(cfg engine.ItemConfig) []engine.Counters {
	cs := make([]engine.Counters, cfg.Shards)
	for i := range cs {
		cs[i] = ClusterStart(cfg, i)
	}
	return cs
}

// ReloadPool makes item's pool, if it runs here, drop its memory and load
// its ledger again before its next step: someone else changed the ledger
// (a forced move rebased a shard's totals).
func (n *Node) ReloadPool(item string) {
	if it, ok := n.Item(item); ok {
		n.tell(it.pool, reloadMsg{gen: ^uint64(0)})
	}
}

// DeactivatePool stops item's pool here (its shard 0 moves away).
func (n *Node) DeactivatePool(item string) {
	it, ok := n.Item(item)
	if !ok {
		return
	}
	n.mu.Lock()
	pid, stopped := it.pool.pid(), it.pool.stopped
	n.mu.Unlock()
	if pid == nil {
		return
	}
	n.sys.Root.Poison(pid)
	<-stopped
	n.mu.Lock()
	it.pool.pidp.Store(nil)
	n.mu.Unlock()
}

// LocalView is what this node knows first-hand of an item: the shards it
// runs and, when the pool runs here, the pool's ledger.
type LocalView struct {
	Shards []ShardView // the shards active here
	Pool   *engine.PoolState
}

// Local returns item's first-hand view.
func (n *Node) LocalView(item string) (LocalView, bool) {
	it, ok := n.Item(item)
	if !ok {
		return LocalView{}, false
	}
	var v LocalView
	it.viewMu.Lock()
	defer it.viewMu.Unlock()
	for i, r := range it.shards {
		if r.pid() == nil {
			continue
		}
		a, s := r.load()
		v.Shards = append(v.Shards, ShardView{Shard: i, Allocated: a, Sold: s, Refills: r.refills, Steals: r.steals, Waiting: int64(r.waiting.Load())})
	}
	if it.pool.pid() != nil {
		st := engine.PoolState{Stock: it.stock, Pool: it.poolAvail, Sent: append([]int64(nil), it.sent...), Got: append([]int64(nil), it.got...)}
		v.Pool = &st
	}
	return v, true
}

// MaxLedgerBatch bounds the pool steps folded into one ledger write: a
// write carries the last state, so folding costs nothing but latency for
// the answers already waiting.
const MaxLedgerBatch = 256

// ledgerReq is a pool step's Ready waiting for the ledger write.
type ledgerReq struct {
	gen     uint64
	st      *engine.PoolState // nil: nothing to write, only wait
	answers []pending
	msgs    []engine.Msg
}

// ledgerCommitter writes a clustered pool's steps to the ledger in order,
// folding whatever queued up into one compare-and-swap of the last state;
// only then are the steps' messages sent and answers given. A refused
// write answers unavailable, sends nothing and makes the pool reload.
type ledgerCommitter struct {
	n        *Node
	it       *Item
	ledger   PoolLedger
	in       chan ledgerReq
	done     chan struct{}
	lastSent []int64
}

func newLedgerCommitter(n *Node, it *Item, l PoolLedger, st engine.PoolState) *ledgerCommitter {
	c := &ledgerCommitter{n: n, it: it, ledger: l, in: make(chan ledgerReq, CommitQueueLen),
		done: make(chan struct{}), lastSent: append([]int64(nil), st.Sent...)}
	go c.run()
	return c
}

func (c *ledgerCommitter) run() {
	defer close(c.done)
	reqs := make([]ledgerReq, 0, MaxLedgerBatch)
	for first := range c.in {
		reqs = append(reqs[:0], first)
	drain:
		for len(reqs) < MaxLedgerBatch {
			select {
			case q, ok := <-c.in:
				if !ok {
					break drain
				}
				reqs = append(reqs, q)
			default:
				break drain
			}
		}
		c.commit(reqs)
		clear(reqs)
	}
}

func (c *ledgerCommitter) commit(reqs []ledgerReq) {
	lane := c.it.pool
	var st *engine.PoolState
	var gen uint64
	failedGen := lane.failedGen.Load()
	for i := range reqs {
		if reqs[i].gen <= failedGen {
			continue // decided on memory a refused write made wrong
		}
		gen = max(gen, reqs[i].gen)
		if reqs[i].st != nil {
			st = reqs[i].st
		}
	}
	var err error
	if st != nil {
		var granted []int
		for i, s := range st.Sent {
			if s > c.lastSent[i] {
				granted = append(granted, i)
			}
		}
		if !c.n.fenceValid() {
			err = errors.New("lease expired")
		} else {
			err = c.ledger.Commit(c.it.Config.Item, *st, granted)
		}
		if err == nil {
			copy(c.lastSent, st.Sent)
		} else {
			c.n.opts.Logger.Warn("pool ledger write refused: reloading", "item", c.it.Config.Item, "err", err)
			for {
				cur := lane.failedGen.Load()
				if cur >= gen || lane.failedGen.CompareAndSwap(cur, gen) {
					break
				}
			}
			c.n.tell(lane, reloadMsg{gen: gen})
		}
	}
	for i := range reqs {
		q := &reqs[i]
		failed := err != nil || q.gen <= failedGen
		for _, p := range q.answers {
			if failed {
				p.s.done <- StockReply{Err: ErrUnavailable}
			} else {
				p.s.done <- stockReply(p.a)
			}
		}
		if !failed {
			for _, m := range q.msgs {
				c.n.send(m)
			}
		}
	}
}

// dormantItem builds a clustered item from the local store at start: the
// counters of whatever shards this node held, nothing running.
func (n *Node) dormantItem(cfg engine.ItemConfig) (*Item, error) {
	cs := make([]engine.Counters, cfg.Shards)
	for i := range cs {
		c, err := n.store.ShardCounters(cfg.Item, i)
		if errors.Is(err, persistence.ErrNoShard) {
			continue // never ran here
		}
		if err != nil {
			return nil, fmt.Errorf("load %s.%d: %w", cfg.Item, i, err)
		}
		cs[i] = c
	}
	return n.newItem(cfg, cs), nil
}

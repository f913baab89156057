package actors

import (
	"errors"
	"fmt"
	"log/slog"
	"slices"
	"sync"
	"sync/atomic"
	"time"

	"github.com/asynkron/protoactor-go/actor"
	"github.com/seckill/seckill/engine"
	"github.com/seckill/seckill/persistence"
)

// Errors the front maps to answers live in sale (see service.go).
var (
	// errDropped: a decision made on memory a failed commit invalidated.
	errDropped = errors.New("decision dropped after a failed commit")
)

// Options configure a Node.
type Options struct {
	// Clock returns the time in Unix milliseconds; time.Now by default.
	Clock func() int64
	// Committers is the number of group committers (DefaultCommitters).
	Committers int
	// RequestTimeout bounds the wait for a shard's answer.
	RequestTimeout time.Duration
	Logger         *slog.Logger
	// Fence reports whether the node may still confirm at now (a
	// time.Now() value: its monotonic reading is what counts). Committers
	// ask it before submitting a round and again after its sync; false
	// answers the round 503 while its records stay durable. Nil: always
	// valid (a single node). It is on the hot path: one atomic load.
	Fence func(now time.Time) bool
	// OnClose, when set, runs in Close once every decision is durable and
	// before the store closes, with the store to read: the last shard
	// snapshots are taken there.
	OnClose func(persistence.Reader)
	// Cluster, when set, makes this a clustered node: nothing runs until
	// activated (see cluster.go).
	Cluster *ClusterHooks
	// Writable, when set, says whether the store takes writes now (nil)
	// or why not (the disk below its reserve, a failed store): grabs,
	// releases and stock changes are then answered unavailable before
	// reaching a shard, so a full disk costs no reload per refused grab.
	// Sold-out and sale-window answers and reads go on. On the hot path:
	// keep it to an atomic load or two.
	Writable func() error
	// Rounds, when set, hears of every durable group commit (metrics). It
	// runs on the syncer goroutine: it must only count.
	Rounds RoundObserver
}

// RoundObserver hears of each group commit once its records are durable:
// how many records it held and how long from its submission to the end of
// its sync.
type RoundObserver interface {
	ObserveRound(records int, durable time.Duration)
}

// Node runs every item's shard actors on one machine.
type Node struct {
	opts       Options
	store      persistence.Store
	sys        *actor.ActorSystem
	committers []*committer
	commitWG   sync.WaitGroup
	dispatch   *poolDispatcher

	// relayKick wakes the relay after a commit with grabs in it.
	relayKick chan struct{}
	relayed   atomic.Int64
	// durableGrabs counts grabs made durable (DurableGrabs).
	durableGrabs atomic.Int64
	// commitFailing: the last group commit that wrote anything failed
	// (readiness: Pebble's WAL errors are sticky, so it stays failed).
	commitFailing atomic.Bool

	mu     sync.Mutex // serialises item creation and Close
	items  atomic.Pointer[map[string]*Item]
	closed bool
}

// CommitFailing reports whether the last group commit that wrote
// anything failed: the node cannot confirm grabs.
func (n *Node) CommitFailing() bool { return n.commitFailing.Load() }

// Start opens a node over store: it loads every item and spawns its shards.
func Start(store persistence.Store, opts Options) (*Node, error) {
	if opts.Clock == nil {
		opts.Clock = func() int64 { return time.Now().UnixMilli() }
	}
	if opts.Committers <= 0 {
		opts.Committers = DefaultCommitters
	}
	if opts.RequestTimeout <= 0 {
		opts.RequestTimeout = DefaultRequestTimeout
	}
	if opts.Logger == nil {
		opts.Logger = slog.Default()
	}
	n := &Node{opts: opts, store: store, relayKick: make(chan struct{}, 1), dispatch: newPoolDispatcher()}
	n.sys = actor.NewActorSystem(actor.WithLoggerFactory(func(*actor.ActorSystem) *slog.Logger {
		return slog.New(slog.DiscardHandler)
	}))
	for range opts.Committers {
		c := newCommitter(n)
		n.committers = append(n.committers, c)
		n.commitWG.Go(c.run)
	}
	empty := map[string]*Item{}
	n.items.Store(&empty)
	cfgs, err := store.Items()
	if err != nil {
		n.stopCommitters()
		return nil, fmt.Errorf("load items: %w", err)
	}
	loaded := make(map[string]*Item, len(cfgs))
	for _, cfg := range cfgs {
		if opts.Cluster != nil {
			// Nothing runs until the cluster activates it here.
			it, err := n.dormantItem(cfg)
			if err != nil {
				n.stopCommitters()
				return nil, err
			}
			loaded[cfg.Item] = it
			continue
		}
		li, err := persistence.LoadItem(store, cfg)
		if err != nil {
			n.stopCommitters()
			return nil, err
		}
		loaded[cfg.Item] = n.spawnItem(cfg, li)
	}
	n.items.Store(&loaded)
	return n, nil
}

// newItem builds an item's refs from its shards' counters; no actor runs.
func (n *Node) newItem(cfg engine.ItemConfig, counters []engine.Counters) *Item {
	it := &Item{Config: cfg, shards: make([]*shardRef, cfg.Shards),
		sent: make([]int64, cfg.Shards), got: make([]int64, cfg.Shards),
		pool: &lane{stopped: make(chan struct{})}}
	for i, c := range counters {
		ref := &shardRef{lane: lane{stopped: make(chan struct{})}, item: it, index: i, holders: map[string]struct{}{},
			committer: n.committers[i%len(n.committers)], received: c.Received, returned: c.Returned}
		ref.counters.Store(pack(c))
		if c.NextSeq > 0 { // zero counters: a clustered shard that never ran here
			ref.durableSeq.Store(c.NextSeq - 1)
		}
		it.shards[i] = ref
	}
	return it
}

func (n *Node) spawnItem(cfg engine.ItemConfig, li *persistence.LoadedItem) *Item {
	counters := make([]engine.Counters, len(li.Shards))
	for i, sh := range li.Shards {
		counters[i] = sh.Counters()
	}
	it := n.newItem(cfg, counters)
	for i, sh := range li.Shards {
		sh.Holders(it.shards[i].addHolder)
	}
	it.publishPool(li.Pool)
	pn := engine.NewPoolNode(li.Pool, counters)
	if pn.SoldOut() {
		it.status.Store(1) // status 0 of this pool, sold out
	}
	// The pool's PID must exist before any shard can ask it for units.
	pa := &poolActor{node: n, item: it, lane: it.pool, pn: pn, c: n.committers[0]}
	it.pool.pidp.Store(n.sys.Root.Spawn(actor.PropsFromProducer(func() actor.Actor { return pa }, actor.WithDispatcher(n.dispatch))))
	for i, sh := range li.Shards {
		a := &shardActor{node: n, ref: it.shards[i], sn: engine.NewShardNode(sh, 1)}
		it.shards[i].pidp.Store(n.sys.Root.Spawn(actor.PropsFromProducer(func() actor.Actor { return a }, actor.WithDispatcher(n.dispatch))))
	}
	return it
}

// CreateItem validates cfg, makes it durable and starts its shards.
func (n *Node) CreateItem(cfg engine.ItemConfig) error {
	if err := cfg.Validate(); err != nil {
		return err
	}
	n.mu.Lock()
	defer n.mu.Unlock()
	if n.closed {
		return ErrUnavailable
	}
	cur := *n.items.Load()
	if _, ok := cur[cfg.Item]; ok {
		return ErrItemExists
	}
	var b persistence.Batch
	if n.opts.Cluster != nil {
		b.PutItemConfig(cfg)
	} else {
		b.PutItem(cfg)
	}
	if err := n.store.Apply(&b); err != nil {
		return fmt.Errorf("create item %s: %w", cfg.Item, err)
	}
	var it *Item
	if n.opts.Cluster != nil {
		it = n.newItem(cfg, make([]engine.Counters, cfg.Shards))
	} else {
		li := &persistence.LoadedItem{Pool: engine.NewPool(cfg), Shards: make([]*engine.Shard, cfg.Shards)}
		for i := range li.Shards {
			li.Shards[i] = engine.NewShard(cfg, i)
		}
		it = n.spawnItem(cfg, li)
	}
	next := make(map[string]*Item, len(cur)+1)
	for k, v := range cur {
		next[k] = v
	}
	next[cfg.Item] = it
	n.items.Store(&next)
	return nil
}

// Item returns a live item.
func (n *Node) Item(id string) (*Item, bool) {
	it, ok := (*n.items.Load())[id]
	return it, ok
}

// Items returns every live item sorted by id.
func (n *Node) Items() []*Item {
	m := *n.items.Load()
	out := make([]*Item, 0, len(m))
	for _, it := range m {
		out = append(out, it)
	}
	slices.SortFunc(out, func(a, b *Item) int {
		switch {
		case a.Config.Item < b.Config.Item:
			return -1
		case a.Config.Item > b.Config.Item:
			return 1
		}
		return 0
	})
	return out
}

// Now is the node's clock in Unix milliseconds.
func (n *Node) Now() int64 { return n.opts.Clock() }

// fenceValid asks Options.Fence whether the node may confirm now.
func (n *Node) fenceValid() bool {
	return n.opts.Fence == nil || n.opts.Fence(time.Now())
}

// Close stops the shards, lets the committers finish what was decided and
// closes the store. Callers stop sending requests first.
func (n *Node) Close() error {
	n.mu.Lock()
	if n.closed {
		n.mu.Unlock()
		return nil
	}
	n.closed = true
	n.mu.Unlock()
	// Poison is queued behind every request already sent, so each actor
	// hands all its decisions to a committer before it stops.
	for _, it := range *n.items.Load() {
		for _, r := range it.shards {
			if pid := r.pid(); pid != nil {
				n.sys.Root.Poison(pid)
			}
		}
	}
	for _, it := range *n.items.Load() {
		for _, r := range it.shards {
			if r.pid() != nil {
				<-r.stopped
			}
		}
		// The pool last: shards may still have told it of give-backs.
		if pid := it.pool.pid(); pid != nil {
			n.sys.Root.Poison(pid)
			<-it.pool.stopped
		}
	}
	n.stopCommitters()
	n.sys.Shutdown()
	if n.opts.OnClose != nil {
		n.opts.OnClose(n.store)
	}
	return n.store.Close()
}

func (n *Node) stopCommitters() {
	for _, c := range n.committers {
		close(c.in)
	}
	n.commitWG.Wait()
	n.dispatch.stop()
}

// MayConfirm reports whether the node's fence lets it confirm now (always
// on a single node; on a cluster node, a valid lease and placement read).
func (n *Node) MayConfirm() bool { return n.fenceValid() }

// Package grid runs a sale over several nodes: each (item, shard) is an
// actor on exactly the node etcd places it on, an item's pool runs with its
// shard 0, protocol messages cross nodes over protoactor remote, and a
// buyer's request reaching any node's front goes to its shard's node (one
// send, a timeout, 503 on no answer; never a resend).
//
// What keeps the sale safe is etcd (package fence), never this package's
// caches: the pool's ledger is changed only by compare-and-swap, so two
// activations of a pool cannot both grant a unit; a grant goes to the
// shard's placed owner only, as a cumulative total, so a unit is taken
// once; a shard moving away gives back every unsold unit and writes its
// last snapshot before etcd names the new owner; and a node past its lease
// confirms nothing (the committers' fence).
package grid

import (
	"context"
	"crypto/tls"
	"errors"
	"fmt"
	"log/slog"
	"net/http"
	"slices"
	"strconv"
	"sync"
	"sync/atomic"
	"time"

	"github.com/seckill/seckill/actors"
	"github.com/seckill/seckill/bus"
	"github.com/seckill/seckill/engine"
	"github.com/seckill/seckill/fence"
	"github.com/seckill/seckill/persistence"
	"github.com/seckill/seckill/remote"
	"github.com/seckill/seckill/sale"
)

// Timings. Each says why it is that number.
const (
	// RequestTimeout bounds a grab sent to another node: the owner's own
	// wait for a commit (actors.DefaultRequestTimeout) plus a round trip.
	// Past it the buyer hears 503 and retries with the same key.
	RequestTimeout = 3 * time.Second
	// ReconcileEvery is how often a node compares what runs here with
	// etcd's placement even without a watch event: a lost watch, a re-join
	// after a partition, a move that failed half way.
	ReconcileEvery = time.Second
	// MembersEvery is how often the members' peer addresses are re-read.
	MembersEvery = 500 * time.Millisecond
	// EtcdTimeout bounds one etcd call made by a step here.
	EtcdTimeout = 5 * time.Second
	// CreateSettle bounds how long creating an item waits for its shards
	// to run on every node (each learns of it by an etcd watch, within
	// milliseconds): past it the answer goes out anyway.
	CreateSettle = 3 * time.Second
	settlePoll   = 20 * time.Millisecond
)

// Config is what a grid runs on.
type Config struct {
	Self  fence.NodeInfo
	Node  *actors.Node
	Fence *fence.Store
	// Snapshots is where shards hand over on a move.
	Snapshots persistence.SnapshotStore
	Logger    *slog.Logger
	// Valid is the node's lease fence (nil: always valid).
	Valid func(time.Time) bool
	// LeaseID is the node's current lease (nil: none, the grid is always
	// current): see Current.
	LeaseID func() int64
	// Journal, when set, is the shards' replicated journal: every shard
	// starts through a takeover of its journal, appends each commit round
	// to it before a 201, and a shard whose owner's lease expired is taken
	// over by a live node without anyone asking (failover.go).
	Journal *bus.Journal
	// Published, with Journal, is the highest sequence of a shard's grabs
	// any relay published on the order stream (bus.PublishedUpTo): a node
	// taking a shard over from a lost one relays only the grabs after it.
	Published func(ctx context.Context, item string, shard int) (uint64, error)
	// SecondActivation, "ITEM/SHARD", is a test hook: this node runs that
	// shard too, whatever etcd says, and sends its own front's buyers of
	// it there: the second activation a grain framework may make by
	// mistake. Empty in production.
	SecondActivation string
	// PeerTLS, with certificates, is what this node calls the others'
	// admin API with (fence.NodeInfo.PeerHTTP): its certificate presented,
	// theirs checked against the cluster's CA.
	PeerTLS *tls.Config
}

// Grid is one node's part of a clustered sale.
type Grid struct {
	cfg Config
	log *slog.Logger
	tr  atomic.Pointer[remote.Transport]

	// view is etcd's placement and members as last read.
	view atomic.Pointer[view]

	// ledgerRev: the pool ledger's revision this node last read or wrote.
	ledgerMu  sync.Mutex
	ledgerRev map[string]int64

	refreshMu sync.Mutex // see refresh
	// refreshedLease is the lease under which a refresh last completed.
	refreshedLease atomic.Int64

	// moving: shards this node is handing over (one step at a time).
	movingMu sync.Mutex
	moving   map[shardKey]bool

	// facts reads this node's stores for the cluster reconcile.
	facts FactsFunc
	// token and client: the fan-out behind item views (views.go).
	token      string
	clientOnce sync.Once
	client     *http.Client

	// unheard counts protocol messages dropped because their sender may not
	// say them (Receive) or, from a local shard, because it is not placed
	// here (Send).
	unheard atomic.Int64
	// foreign counts requests refused because the shard they are for is
	// not placed here.
	foreign atomic.Int64
	// forwarded counts the grabs this front sent to the node that owns
	// their shard (each a remote request and its reply).
	forwarded atomic.Int64

	kick chan struct{}
	stop chan struct{}
	done chan struct{}
}

type shardKey struct {
	item  string
	shard int
}

// view is a consistent read of the cluster's layout.
type view struct {
	items     map[string]engine.ItemConfig
	placement map[string][]fence.Placement // by item, index = shard
	peers     map[string]fence.NodeInfo    // live members by id
	draining  map[string]bool
	// forcedAway: the nodes forced moves took each shard from; the shard
	// is never given back to them.
	forcedAway map[shardKey][]string
	// relayFrom: the failovers' records by (item, shard, the node they
	// took it from): that node's lane holds none of the shard's grabs from
	// this sequence on (0: not known yet).
	relayFrom map[laneShard]uint64
}

// laneShard is a shard of an item on a node's lane of the order stream.
type laneShard struct {
	shardKey
	node string
}

// New makes a grid; Attach gives it its transport, Run starts it.
func New(cfg Config) *Grid {
	if cfg.Logger == nil {
		cfg.Logger = slog.Default()
	}
	g := &Grid{cfg: cfg, log: cfg.Logger, ledgerRev: map[string]int64{}, moving: map[shardKey]bool{},
		kick: make(chan struct{}, 1), stop: make(chan struct{}), done: make(chan struct{})}
	g.view.Store(&view{items: map[string]engine.ItemConfig{}, placement: map[string][]fence.Placement{},
		peers: map[string]fence.NodeInfo{}, draining: map[string]bool{}})
	return g
}

// Hooks are what the actors node needs of the grid.
func (g *Grid) Hooks() *actors.ClusterHooks {
	h := &actors.ClusterHooks{Send: g.Send, Ledger: ledger{g}, ExtendSeqs: g.extendSeqs, Node: g.cfg.Self.ID}
	if g.cfg.Journal != nil {
		h.Journal = g.cfg.Journal
		h.Lost = func(string, int) { g.poke() }
	}
	return h
}

// extendSeqs asks etcd for more grab sequences for this node's incarnation
// epoch of a shard (fence.Store.ExtendSeqs).
func (g *Grid) extendSeqs(item string, shard int, epoch, atLeast uint64) (uint64, error) {
	ctx, cancel := g.ctx()
	defer cancel()
	return g.cfg.Fence.ExtendSeqs(ctx, item, shard, g.cfg.Self.ID, epoch, atLeast)
}

// Attach gives the grid its transport (made after the node, since the
// transport hands what arrives to the grid).
func (g *Grid) Attach(tr *remote.Transport) { g.tr.Store(tr) }

// Run reads etcd once, activates what is placed here and keeps it so until
// Close.
func (g *Grid) Run() {
	g.refresh()
	go g.loop()
	go g.watch()
}

// Close stops the loops; the node's actors are the node's to stop.
func (g *Grid) Close() {
	select {
	case <-g.stop:
		return
	default:
	}
	close(g.stop)
	<-g.done
}

func (g *Grid) loop() {
	defer close(g.done)
	t := time.NewTicker(ReconcileEvery)
	defer t.Stop()
	m := time.NewTicker(MembersEvery)
	defer m.Stop()
	for {
		select {
		case <-g.stop:
			return
		case <-t.C:
			g.refresh()
		case <-m.C:
			g.refreshMembers()
		case <-g.kick:
			g.refresh()
		}
	}
}

// watch kicks a refresh whenever an item, a placement or a drain mark
// changes in etcd.
func (g *Grid) watch() {
	ctx, cancel := context.WithCancel(context.Background())
	go func() { <-g.stop; cancel() }()
	for ctx.Err() == nil {
		for range g.cfg.Fence.WatchLayout(ctx) {
			g.poke()
		}
		select {
		case <-ctx.Done():
		case <-time.After(ReconcileEvery):
		}
	}
}

func (g *Grid) poke() {
	select {
	case g.kick <- struct{}{}:
	default:
	}
}

func (g *Grid) ctx() (context.Context, context.CancelFunc) {
	return context.WithTimeout(context.Background(), EtcdTimeout)
}

func (g *Grid) refreshMembers() {
	ctx, cancel := g.ctx()
	defer cancel()
	ms, err := g.cfg.Fence.Members(ctx)
	if err != nil {
		return
	}
	cur := g.view.Load()
	next := *cur
	next.peers = make(map[string]fence.NodeInfo, len(ms))
	for _, m := range ms {
		next.peers[m.ID] = m
	}
	g.view.Store(&next)
}

// refresh reads items, placements, members and drain marks, then makes
// what runs here match. One runs at a time: a refresh that read etcd
// before a move was asked must not act after one that read it since (it
// would start again a shard the newer one is handing over).
func (g *Grid) refresh() {
	g.refreshMu.Lock()
	defer g.refreshMu.Unlock()
	lease := g.leaseID()
	ctx, cancel := g.ctx()
	defer cancel()
	items, _, err := g.cfg.Fence.Items(ctx)
	if err != nil {
		g.log.Debug("grid: read items", "err", err)
		return
	}
	v := &view{items: map[string]engine.ItemConfig{}, placement: map[string][]fence.Placement{}, peers: map[string]fence.NodeInfo{}}
	for _, cfg := range items {
		ps, err := g.cfg.Fence.Placement(ctx, cfg.Item)
		if err != nil || len(ps) != cfg.Shards {
			g.log.Debug("grid: read placement", "item", cfg.Item, "err", err, "placed", len(ps))
			return
		}
		// etcd lists them in key order ("10" before "2"): index by shard.
		slices.SortFunc(ps, func(a, b fence.Placement) int { return a.Shard - b.Shard })
		v.items[cfg.Item] = cfg
		v.placement[cfg.Item] = ps
	}
	ms, err := g.cfg.Fence.Members(ctx)
	if err != nil {
		return
	}
	for _, m := range ms {
		v.peers[m.ID] = m
	}
	if v.draining, err = g.cfg.Fence.Draining(ctx); err != nil {
		return
	}
	forced, err := g.cfg.Fence.ForcedMoves(ctx)
	if err != nil {
		return
	}
	v.forcedAway = map[shardKey][]string{}
	v.relayFrom = map[laneShard]uint64{}
	for _, f := range forced {
		if f.Journaled {
			// A failover: the shard may come back to the node.
			v.relayFrom[laneShard{shardKey{f.Item, f.Shard}, f.Node}] = f.Seq
			continue
		}
		k := shardKey{f.Item, f.Shard}
		v.forcedAway[k] = append(v.forcedAway[k], f.Node)
	}
	g.view.Store(v)
	if g.failover(v) {
		g.poke() // read the new placements at once
	}
	var added []engine.ItemConfig
	var takeovers []func()
	for _, cfg := range items {
		if err := g.cfg.Node.AddItem(cfg); err != nil {
			g.log.Warn("grid: add item", "item", cfg.Item, "err", err)
			continue
		}
		added = append(added, cfg)
		for _, f := range forced {
			if f.Journaled && f.Node == g.cfg.Self.ID && f.Item == cfg.Item {
				switch {
				case f.Seq == 0:
					g.cfg.Node.SetRelayCeiling(f.Item, f.Shard, 1) // nothing, until the new owner says
				default:
					g.cfg.Node.SetRelayCeiling(f.Item, f.Shard, f.Seq)
				}
				continue
			}
			if f.Node == g.cfg.Self.ID && f.Item == cfg.Item {
				// Taken from this node by a forced move: its grabs from
				// f.Seq on are not the shard's any more.
				g.cfg.Node.SetRelayCeiling(f.Item, f.Shard, f.Seq)
			}
		}
		takeovers = g.reconcileShards(v, cfg, takeovers)
	}
	// The journaled takeovers of every item at once, a few at a time: each
	// is a few round trips to NATS and etcd (more under load), and a
	// failover hands a node shards of every item, the sold-out ones too.
	sem := make(chan struct{}, MaxParallelTakeovers)
	var wg sync.WaitGroup
	for _, f := range takeovers {
		sem <- struct{}{}
		wg.Go(func() {
			defer func() { <-sem }()
			f()
		})
	}
	wg.Wait()
	for _, cfg := range added {
		g.reconcilePool(v, cfg)
	}
	g.refreshedLease.Store(lease)
}

// MaxParallelTakeovers bounds the journaled takeovers one refresh runs at
// once.
const MaxParallelTakeovers = 8

func (g *Grid) leaseID() int64 {
	if g.cfg.LeaseID == nil {
		return 0
	}
	return g.cfg.LeaseID()
}

// Current reports whether this node has read etcd's placement under its
// current lease. The committers confirm nothing until it has: a node back
// from a pause or a partition re-joins with a new lease, and one of its
// shards may have been moved away by force meanwhile; until it has seen
// that, it must not sell from that shard. One atomic load and a call.
func (g *Grid) Current() bool { return g.refreshedLease.Load() == g.leaseID() }

// reconcileShards starts and stops the item's shards here as etcd says;
// the journaled activations it appends to takeovers, for the caller to
// run (they may run at once: each is one shard's).
func (g *Grid) reconcileShards(v *view, cfg engine.ItemConfig, takeovers []func()) []func() {
	self := g.cfg.Self.ID
	n := g.cfg.Node
	for _, p := range v.placement[cfg.Item] {
		active := n.ShardActive(cfg.Item, p.Shard)
		if g.second(cfg.Item, p.Shard) {
			if !active && p.Node != self {
				err := n.ActivateSecond(cfg.Item, p.Shard, p.Epoch)
				g.log.Warn("grid: test hook: second activation", "item", cfg.Item, "shard", p.Shard, "owner", p.Node, "err", err)
			}
			continue
		}
		switch {
		case p.Node == self && p.State == fence.Moving && active:
			g.handOver(cfg, p)
		case p.Node == self && p.State == fence.Active && !active && g.valid():
			if g.cfg.Journal != nil {
				takeovers = append(takeovers, func() { g.activateJournaled(cfg, p) })
				continue
			}
			g.activate(cfg, p)
		case p.Node != self && active:
			// Moved away behind our back (a forced move): stop selling.
			g.log.Warn("grid: shard placed elsewhere: stopping it here", "item", cfg.Item, "shard", p.Shard, "owner", p.Node, "epoch", p.Epoch)
			n.StopShard(cfg.Item, p.Shard)
		}
	}
	return takeovers
}

// reconcilePool starts and stops the item's pool here as etcd says: it
// runs with shard 0.
func (g *Grid) reconcilePool(v *view, cfg engine.ItemConfig) {
	self := g.cfg.Self.ID
	n := g.cfg.Node
	p0 := v.placement[cfg.Item][0]
	switch pool := n.PoolActive(cfg.Item); {
	case p0.Node == self && p0.State == fence.Active && !pool && g.valid():
		if err := n.ActivatePool(cfg.Item, p0.Epoch); err != nil && !errors.Is(err, actors.ErrActive) {
			g.log.Warn("grid: activate pool", "item", cfg.Item, "err", err)
		}
	case (p0.Node != self || p0.State != fence.Active) && pool && !g.handingOver(cfg.Item, 0):
		n.DeactivatePool(cfg.Item)
	}
}

func (g *Grid) valid() bool { return g.cfg.Valid == nil || g.cfg.Valid(time.Now()) }

// activate starts a shard placed here. At a later epoch than the local
// store holds, it starts from the snapshot its last owner handed over, or,
// with a replicated journal, from the journal (activateJournaled).
func (g *Grid) activate(cfg engine.ItemConfig, p fence.Placement) {
	if g.cfg.Journal != nil {
		g.activateJournaled(cfg, p)
		return
	}
	var snap *engine.ShardSnapshot
	if p.Epoch > 1 && g.cfg.Snapshots != nil {
		ctx, cancel := g.ctx()
		s, ok, err := g.cfg.Snapshots.LoadSnapshot(ctx, cfg.Item, p.Shard)
		cancel()
		switch {
		case err != nil:
			g.log.Warn("grid: load snapshot", "item", cfg.Item, "shard", p.Shard, "err", err)
			return
		case ok:
			snap = &s
		}
	}
	activate := g.cfg.Node.ActivateShard
	if p.Forced {
		// Only the snapshot the forced move wrote for this epoch will
		// do: an older one still holds units the move froze.
		if snap == nil || snap.Epoch != p.Epoch {
			g.log.Warn("grid: forced shard waits for its snapshot", "item", cfg.Item, "shard", p.Shard, "epoch", p.Epoch)
			return
		}
		activate = g.cfg.Node.ActivateForced
	}
	if !g.grantFirstSeqs(cfg, p) {
		return
	}
	if err := activate(cfg.Item, p.Shard, p.Epoch, snap); err != nil && !errors.Is(err, actors.ErrActive) {
		g.log.Warn("grid: activate shard", "item", cfg.Item, "shard", p.Shard, "epoch", p.Epoch, "err", err)
		return
	}
	g.log.Debug("grid: shard active", "item", cfg.Item, "shard", p.Shard, "epoch", p.Epoch)
}

// grantFirstSeqs gives the shard a first block of grab sequences before it
// sells (it asks for more itself): without one it would answer 503.
func (g *Grid) grantFirstSeqs(cfg engine.ItemConfig, p fence.Placement) bool {
	if g.cfg.Node.SeqsGranted(cfg.Item, p.Shard, p.Epoch) {
		return true
	}
	limit, err := g.extendSeqs(cfg.Item, p.Shard, p.Epoch, 0)
	if err != nil {
		g.log.Warn("grid: grant grab sequences", "item", cfg.Item, "shard", p.Shard, "epoch", p.Epoch, "err", err)
		return false
	}
	g.cfg.Node.GrantSeqs(cfg.Item, p.Shard, p.Epoch, limit)
	return true
}

// handOver moves a shard this node runs to p.To: stop selling, give back
// every unsold unit, write the last snapshot, then let etcd name the new
// owner (epoch+1). A step that fails puts the shard back to work here.
func (g *Grid) handOver(cfg engine.ItemConfig, p fence.Placement) {
	k := shardKey{cfg.Item, p.Shard}
	g.movingMu.Lock()
	if g.moving[k] {
		g.movingMu.Unlock()
		return
	}
	g.moving[k] = true
	g.movingMu.Unlock()
	go func() {
		defer func() {
			g.movingMu.Lock()
			delete(g.moving, k)
			g.movingMu.Unlock()
			g.poke()
		}()
		start := time.Now()
		err := g.handOverSteps(cfg, p)
		if err != nil {
			g.log.Warn("grid: move failed: shard stays here", "item", cfg.Item, "shard", p.Shard, "to", p.To, "err", err)
			ctx, cancel := g.ctx()
			_, cerr := g.cfg.Fence.CancelMove(ctx, cfg.Item, p.Shard, p.Epoch)
			cancel()
			if cerr != nil {
				g.log.Warn("grid: cancel move", "item", cfg.Item, "shard", p.Shard, "err", cerr)
			}
			return
		}
		g.log.Info("grid: shard handed over", "item", cfg.Item, "shard", p.Shard, "to", p.To, "epoch", p.Epoch+1, "took", time.Since(start))
	}()
}

func (g *Grid) handOverSteps(cfg engine.ItemConfig, p fence.Placement) error {
	n := g.cfg.Node
	if g.cfg.Snapshots == nil && g.cfg.Journal == nil {
		return errors.New("no snapshot store (--redis) and no journal: a shard cannot move")
	}
	if p.Shard == 0 {
		n.DeactivatePool(cfg.Item)
	}
	snap, err := n.DeactivateShard(cfg.Item, p.Shard, p.Epoch)
	if err != nil {
		// The shard stopped or not; run it again on what is durable.
		n.StopShard(cfg.Item, p.Shard)
		return err
	}
	ctx, cancel := g.ctx()
	defer cancel()
	if g.cfg.Snapshots != nil {
		if err := g.cfg.Snapshots.SaveSnapshot(ctx, snap); err != nil && !errors.Is(err, persistence.ErrStaleSnapshot) {
			return fmt.Errorf("final snapshot: %w", err)
		}
	}
	if _, err := g.cfg.Fence.Move(ctx, cfg.Item, p.Shard, g.cfg.Self.ID, p.To); err != nil {
		return fmt.Errorf("move in etcd: %w", err)
	}
	return nil
}

// handingOver reports whether this node is moving shard i of item away.
func (g *Grid) handingOver(item string, i int) bool {
	g.movingMu.Lock()
	defer g.movingMu.Unlock()
	return g.moving[shardKey{item, i}]
}

// owner is the node shard i of item is placed on, with its placement.
func (v *view) owner(item string, i int) (fence.Placement, bool) {
	ps, ok := v.placement[item]
	if !ok || i < 0 || i >= len(ps) {
		return fence.Placement{}, false
	}
	return ps[i], true
}

// Send carries a protocol message to the node that runs its addressee.
func (g *Grid) Send(m engine.Msg) {
	v := g.view.Load()
	self := g.cfg.Self.ID
	tr := g.tr.Load()
	switch m.To.Shard {
	case engine.FrontShard:
		g.cfg.Node.Deliver(m)
		if tr != nil {
			for id, p := range v.peers {
				if id != self {
					tr.Send(p.Addr, m)
				}
			}
		}
		return
	}
	shard := m.To.Shard
	if shard == engine.PoolShard {
		shard = 0
	}
	p, ok := v.owner(m.To.Item, shard)
	if !ok {
		return
	}
	if m.To.Shard == engine.PoolShard && m.From.Shard >= 0 {
		if from, ok := v.owner(m.From.Item, m.From.Shard); !ok || from.Node != self {
			g.unheard.Add(1) // see Receive
			return
		}
	}
	if m.From.Shard == engine.PoolShard && p.Forced && g.poolRev(m.To.Item) < p.ModRev {
		// A forced move rebased this shard's totals in the ledger after
		// the pool last read it: a total from the pool's memory would hand
		// the new incarnation units the move froze. The pool reloads
		// first; what it sends after is right.
		g.cfg.Node.ReloadPool(m.To.Item)
		return
	}
	if p.Node == self {
		g.cfg.Node.Deliver(m)
		return
	}
	if peer, ok := v.peers[p.Node]; ok && tr != nil {
		tr.Send(peer.Addr, m)
	}
}

// Receive takes a protocol message from another node, and only one its
// sender may say: it goes where its kind goes (engine.Msg.Routed), and it
// comes from the node etcd places its sender on: the pool's grants,
// give-backs, no-stock answers and sold-out statuses from the node placed
// to run the item's pool (with shard 0), a shard's asks, reports and syncs
// from the shard's node. The sender is the node its certificate proved;
// without certificates, the node whose address the envelope names. So a
// second activation elsewhere, an owner that moved the shard away, a node
// wrong about placement or a forger is not heard: what the rightful sender
// would have said reaches the addressee again, in cumulative totals.
func (g *Grid) Receive(from remote.Sender, m engine.Msg) {
	v := g.view.Load()
	if !m.Routed() || !v.says(v.nodeOf(from), m.From) {
		g.unheard.Add(1)
		return
	}
	g.cfg.Node.Deliver(m)
}

// nodeOf is the node a message came from: the name its connection proved,
// or without certificates the live member at the address it names ("" for
// none).
func (v *view) nodeOf(s remote.Sender) string {
	if s.Node != "" {
		return s.Node
	}
	if s.Addr == "" {
		return ""
	}
	for id, p := range v.peers {
		if p.Addr == s.Addr {
			return id
		}
	}
	return ""
}

// says reports whether node is placed to run the participant at a: the
// shard, or for the pool shard 0.
func (v *view) says(node string, a engine.Addr) bool {
	shard := a.Shard
	if shard == engine.PoolShard {
		shard = 0
	}
	p, ok := v.owner(a.Item, shard)
	return ok && node != "" && p.Node == node
}

// Unheard counts the protocol messages dropped because their sender may not
// say them; Foreign the requests refused because the shard they are for is
// not placed here.
func (g *Grid) Unheard() int64 { return g.unheard.Load() }
func (g *Grid) Foreign() int64 { return g.foreign.Load() }

// Forwarded counts the grabs this front sent to their shard's owner.
func (g *Grid) Forwarded() int64 { return g.forwarded.Load() }

// second reports whether shard i of item is the test hook's second
// activation on this node.
func (g *Grid) second(item string, i int) bool {
	return g.cfg.SecondActivation != "" && g.cfg.SecondActivation == item+"/"+strconv.Itoa(i)
}

// poolRev is the ledger revision the pool of item last read or wrote here.
func (g *Grid) poolRev(item string) int64 {
	g.ledgerMu.Lock()
	defer g.ledgerMu.Unlock()
	return g.ledgerRev[item]
}

// ledger is the pools' PoolLedger over fence.
type ledger struct{ g *Grid }

func (l ledger) Load(item string) (engine.PoolState, error) {
	ctx, cancel := l.g.ctx()
	defer cancel()
	pl, err := l.g.cfg.Fence.LoadPool(ctx, item)
	if err != nil {
		return engine.PoolState{}, err
	}
	l.g.ledgerMu.Lock()
	l.g.ledgerRev[item] = pl.Rev
	l.g.ledgerMu.Unlock()
	return pl.State(), nil
}

func (l ledger) Commit(item string, st engine.PoolState, granted []int) error {
	v := l.g.view.Load()
	guards := make([]fence.Guard, 0, len(granted))
	for _, s := range granted {
		p, ok := v.owner(item, s)
		if !ok {
			return fmt.Errorf("pool %s: shard %d not placed", item, s)
		}
		if p.State != fence.Active {
			// A shard handing over takes no grant (its old owner ignores
			// it, its new one takes the total with its first Sync): no
			// incarnation to guard, and a guard would refuse the write
			// until the move is done.
			continue
		}
		guards = append(guards, fence.Guard{Shard: s, Epoch: p.Epoch})
	}
	l.g.ledgerMu.Lock()
	prev := l.g.ledgerRev[item]
	l.g.ledgerMu.Unlock()
	ctx, cancel := l.g.ctx()
	defer cancel()
	rev, err := l.g.cfg.Fence.CommitPool(ctx, item, prev, st, guards)
	if err != nil {
		return err
	}
	l.g.ledgerMu.Lock()
	l.g.ledgerRev[item] = rev
	l.g.ledgerMu.Unlock()
	return nil
}

// ---- the front's Service ----

var _ sale.Service = (*Grid)(nil)

// Grab sends the grab to its shard's node: this one, or another over
// remote, once.
func (g *Grid) Grab(item, user string, qty int64, key string) sale.Reply {
	n := g.cfg.Node
	it, ok := n.Item(item)
	if !ok {
		return sale.Reply{Err: sale.ErrUnknownItem}
	}
	if !it.Config.ValidQty(qty) {
		return sale.Reply{Err: &sale.QtyError{Limit: it.Config.PerUserLimit}}
	}
	shard := engine.ShardFor(item, user, it.Config.Shards)
	v := g.view.Load()
	p, ok := v.owner(item, shard)
	if !ok {
		return sale.Reply{Err: sale.ErrUnavailable}
	}
	if p.Node == g.cfg.Self.ID || g.second(item, shard) {
		return n.GrabIn(it, user, qty, key)
	}
	if key == "" {
		// Only a keyed request can replay an earlier grab: the others may
		// be answered from the window and the sold-out flag here.
		if w := it.Config.Window(n.Now()); w != 0 {
			return sale.Reply{Outcome: w}
		}
		if it.SoldOut() {
			return sale.Reply{Outcome: engine.SoldOut}
		}
	}
	g.forwarded.Add(1)
	return g.request(v, p, remote.Request{Kind: remote.ReqGrab, Item: item, User: user, Qty: qty, Key: key}).Sale()
}

// Release sends the release to the grab's shard's node.
func (g *Grid) Release(item, grabID string) sale.Reply {
	it, ok := g.cfg.Node.Item(item)
	if !ok {
		return sale.Reply{Err: sale.ErrUnknownItem}
	}
	gi, shard, _, ok := engine.ParseGrabID(grabID)
	if !ok || gi != item || shard >= it.Config.Shards {
		return sale.Reply{Err: sale.ErrUnknownGrab}
	}
	v := g.view.Load()
	p, ok := v.owner(item, shard)
	if !ok {
		return sale.Reply{Err: sale.ErrUnavailable}
	}
	if p.Node == g.cfg.Self.ID {
		return g.cfg.Node.Release(item, grabID)
	}
	return g.request(v, p, remote.Request{Kind: remote.ReqRelease, Item: item, GrabID: grabID}).Sale()
}

// ChangeStock sends the change to the item's pool's node.
func (g *Grid) ChangeStock(item string, delta int64) sale.StockReply {
	if _, ok := g.cfg.Node.Item(item); !ok {
		return sale.StockReply{Err: sale.ErrUnknownItem}
	}
	v := g.view.Load()
	p, ok := v.owner(item, 0)
	if !ok {
		return sale.StockReply{Err: sale.ErrUnavailable}
	}
	if p.Node == g.cfg.Self.ID {
		return g.cfg.Node.ChangeStock(item, delta)
	}
	return g.request(v, p, remote.Request{Kind: remote.ReqStock, Item: item, Delta: delta}).SaleStock()
}

// request sends one request to the node of p and waits for its answer.
func (g *Grid) request(v *view, p fence.Placement, req remote.Request) remote.Reply {
	if p.State != fence.Active {
		return remote.Reply{Code: remote.ReplyUnavailable}
	}
	peer, ok := v.peers[p.Node]
	tr := g.tr.Load()
	if !ok || tr == nil {
		return remote.Reply{Code: remote.ReplyUnavailable}
	}
	r, err := tr.RequestNode(p.Node, peer.Addr, req, RequestTimeout)
	if err != nil {
		return remote.Reply{Code: remote.ReplyUnavailable}
	}
	return r
}

// Serve answers a request another node's front sent here, only for a
// shard etcd places here and active: a peer wrong about placement (or one
// that forges a request) hears unavailable, and its front asks again once
// its view is current.
func (g *Grid) Serve(req remote.Request) remote.Reply {
	n := g.cfg.Node
	it, ok := n.Item(req.Item)
	if !ok {
		return remote.ReplyFromSale(req.ID, sale.Reply{Err: sale.ErrUnknownItem})
	}
	shard := 0 // a stock change goes to the pool, with shard 0
	switch req.Kind {
	case remote.ReqGrab:
		shard = engine.ShardFor(req.Item, req.User, it.Config.Shards)
	case remote.ReqRelease:
		gi, s, _, ok := engine.ParseGrabID(req.GrabID)
		if !ok || gi != req.Item || s >= it.Config.Shards {
			return remote.ReplyFromSale(req.ID, sale.Reply{Err: sale.ErrUnknownGrab})
		}
		shard = s
	}
	if p, ok := g.view.Load().owner(req.Item, shard); !ok || p.Node != g.cfg.Self.ID || p.State != fence.Active {
		g.foreign.Add(1)
		return remote.ReplyFromSale(req.ID, sale.Reply{Err: sale.ErrUnavailable})
	}
	switch req.Kind {
	case remote.ReqGrab:
		if !it.Config.ValidQty(req.Qty) || !engine.ValidID(req.User) || (req.Key != "" && !engine.ValidKey(req.Key)) {
			return remote.ReplyFromSale(req.ID, sale.Reply{Err: &sale.QtyError{Limit: it.Config.PerUserLimit}})
		}
		return remote.ReplyFromSale(req.ID, n.GrabIn(it, req.User, req.Qty, req.Key))
	case remote.ReqRelease:
		return remote.ReplyFromSale(req.ID, n.Release(req.Item, req.GrabID))
	case remote.ReqStock:
		return remote.StockReplyFromSale(req.ID, n.ChangeStock(req.Item, req.Delta))
	}
	return remote.ReplyFromSale(req.ID, sale.Reply{Err: sale.ErrUnavailable})
}

// CreateItem places the new item's shards over the live members that are
// not draining (round robin, in id order) in one etcd transaction, then
// makes it known here at once.
func (g *Grid) CreateItem(cfg engine.ItemConfig) error {
	if err := cfg.Validate(); err != nil {
		return err
	}
	g.refreshMembers()
	ctx, cancel := g.ctx()
	defer cancel()
	draining, err := g.cfg.Fence.Draining(ctx)
	if err != nil {
		return fmt.Errorf("create %s: %w", cfg.Item, err)
	}
	var nodes []string
	for id := range g.view.Load().peers {
		if !draining[id] {
			nodes = append(nodes, id)
		}
	}
	if len(nodes) == 0 {
		return fmt.Errorf("create %s: no live node to place it on: %w", cfg.Item, sale.ErrUnavailable)
	}
	slices.Sort(nodes)
	if _, err := g.cfg.Fence.CreateItem(ctx, cfg, nodes); err != nil {
		if errors.Is(err, fence.ErrItemExists) {
			return sale.ErrItemExists
		}
		return fmt.Errorf("create %s: %w", cfg.Item, err)
	}
	g.refresh()
	g.settle(cfg)
	return nil
}

// settle waits, at most CreateSettle, until every shard of a new item runs
// on its node, so that an item answered "created" sells everywhere.
func (g *Grid) settle(cfg engine.ItemConfig) {
	deadline := time.Now().Add(CreateSettle)
	for time.Now().Before(deadline) {
		if len(g.gather(cfg.Item)) == cfg.Shards {
			return
		}
		select {
		case <-g.stop:
			return
		case <-time.After(settlePoll): // the other nodes' activations have no notification here
		}
	}
	g.log.Warn("grid: new item not running everywhere yet", "item", cfg.Item, "waited", CreateSettle)
}
func (g *Grid) Now() int64 { return g.cfg.Node.Now() }

// SetNode gives the grid the node it runs (made after Hooks, since the node
// starts with them).
func (g *Grid) SetNode(n *actors.Node) { g.cfg.Node = n }

// EpochOf says whether etcd places shard i of item on this node, and as
// which incarnation: the snapshots this node may write.
func (g *Grid) EpochOf(item string, i int) (uint64, bool) {
	p, ok := g.view.Load().owner(item, i)
	if !ok || p.Node != g.cfg.Self.ID {
		return 0, false
	}
	return p.Epoch, true
}

// GrabDurable implements orders.Stock: what this node knows (the grabs of
// the shards it holds or held).
func (g *Grid) GrabDurable(grabID string) bool { return g.cfg.Node.GrabDurable(grabID) }

// PaymentWindow implements orders.Stock.
func (g *Grid) PaymentWindow(item string) (int64, bool) {
	it, ok := g.cfg.Node.Item(item)
	if !ok {
		return 0, false
	}
	return it.Config.PaymentWindow(), true
}

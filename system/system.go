// Package system is the composition root: it opens a node's stores, starts
// its shard actors, its stream connection (embedded NATS or external), the
// order pipeline (relay, order writers, dead-letter copier, payment-window
// sweeper) and its HTTP front, and closes them in the right order.
// `seckill serve`, the bench harness's in-process target and the tests
// that run a whole node in-process all start it through Open.
package system

import (
	"context"
	"crypto/tls"
	"errors"
	"fmt"
	"log/slog"
	"net"
	"os"
	"path/filepath"
	"sync/atomic"
	"time"

	"github.com/nats-io/nats.go"
	"github.com/seckill/seckill/actors"
	"github.com/seckill/seckill/bus"
	"github.com/seckill/seckill/engine"
	"github.com/seckill/seckill/grid"
	"github.com/seckill/seckill/orders"
	"github.com/seckill/seckill/persistence"
	"github.com/seckill/seckill/remote"
	"github.com/seckill/seckill/sale"
	"github.com/seckill/seckill/transport"
	"github.com/valyala/fasthttp"
)

// DrainTimeout bounds how long Close waits for HTTP requests in flight.
const DrainTimeout = 10 * time.Second

// Config is what a node is opened with.
type Config struct {
	// DataDir holds pebble/ (items, grabs), orders/ (the order store) and
	// nats/ (the embedded server's stream).
	DataDir string
	// HTTPAddr is where the HTTP front listens ("127.0.0.1:0" for any
	// free port); empty opens no listener.
	HTTPAddr string
	// AdminToken is what admin calls carry as "Bearer <token>".
	AdminToken string
	// AdminHTTPAddr, when set, is where the admin API listens on its own;
	// the HTTP front then answers admin paths 404. With Cluster it is the
	// address the other nodes call (the members' http).
	AdminHTTPAddr string
	// Security is what the front checks: buyer tokens, the payment
	// secret, rate limits.
	Security transport.Security
	// NATSURL is an external NATS server or cluster; empty runs one
	// in-process under DataDir/nats.
	NATSURL string
	// NATSListen is where the in-process NATS server listens for order
	// writers in other processes; empty: in-process only.
	NATSListen string
	// NATSAuth is how this node proves itself to an external NATS
	// (credentials, TLS); unused with the embedded server.
	NATSAuth bus.ClientAuth
	// NATSName names this node's NATS connection.
	NATSName string
	// NATSReplicas, when set, is how many servers of the external NATS
	// cluster keep each stream (bus.Config.Replicas).
	NATSReplicas int
	// OrderWriters is how many order writers run in this process (0:
	// orders are written by `seckill orders` elsewhere).
	OrderWriters int
	// NoOrders runs the engine and HTTP front alone: no stream, relay,
	// order store or writers (the bench's --no-orders).
	NoOrders bool
	// Bus tunes the stream and its consumer (tests shorten redelivery).
	Bus bus.Config
	// WrapOrders, when set, wraps the order store (tests inject faults).
	WrapOrders func(persistence.OrderStore) persistence.OrderStore
	// Logger receives the node's logs; nil is slog.Default().
	Logger *slog.Logger
	// NoMetrics turns metrics off: no /metrics, no counting on the hot path
	// (the bench compares both).
	NoMetrics bool
	// Clock is the sale's clock in Unix milliseconds (nil: the wall
	// clock); tests move it forward.
	Clock func() int64
	// Cluster, when set, joins the node to a cluster through etcd: it holds
	// a lease, is listed among the members, and its committers stop
	// confirming (503) once the lease runs out. Nil: a single node.
	Cluster *ClusterConfig
}

// System is one running node.
type System struct {
	Node     *actors.Node
	Stream   *Stream   // nil with NoOrders
	Pipeline *Pipeline // nil with NoOrders
	Front    *transport.Server

	log  *slog.Logger
	http *fasthttp.Server // nil without HTTPAddr
	ln   net.Listener
	// The admin API's own listener and server (AdminHTTPAddr); nil without.
	adminHTTP *fasthttp.Server
	adminLn   net.Listener
	adminDone chan struct{}
	// With certificates, the admin API the other nodes call, over TLS on
	// the peer IP (fence.NodeInfo.PeerHTTP); nil without.
	peerHTTP *fasthttp.Server
	peerLn   net.Listener
	peerDone chan struct{}
	clu      *cluster   // nil on a single node
	grid     *grid.Grid // nil on a single node
	tr       *remote.Transport
	// gridReady is the grid once it runs: what the transport hands over.
	gridReady atomic.Pointer[grid.Grid]
	svc       sale.Service // the sale the front and the orders use
	snap      *snapshotter // nil without Cluster.Redis
	store     *persistence.Pebble
	ostore    *persistence.PebbleOrders // nil with NoOrders
	guard     *persistence.DiskGuard
	failed    chan error    // the HTTP server's error, if it stops by itself
	served    chan struct{} // closed when the HTTP server has stopped
	closed    bool
	obs       observed
	node      string // the cluster node's name, "" on a single node
	// journalConn is the replicated journal's NATS connection (nil without).
	journalConn *nats.Conn
	// streamReady is Stream once open (the grid runs before it is).
	streamReady atomic.Pointer[Stream]
}

// Open starts a node as cfg says. On error, whatever it had opened is
// closed again.
func Open(cfg Config) (*System, error) {
	if cfg.Logger == nil {
		cfg.Logger = slog.Default()
	}
	s := &System{log: cfg.Logger}
	if err := s.open(cfg); err != nil {
		return nil, errors.Join(err, s.stop())
	}
	return s, nil
}

func (s *System) open(cfg Config) error {
	started := time.Now()
	opts := actors.Options{Logger: s.log, Clock: cfg.Clock}
	if r := s.observeRounds(cfg); r != nil {
		opts.Rounds = r
	}
	if cfg.Cluster != nil {
		s.node = cfg.Cluster.Node
		if err := cfg.Cluster.checkPeerSecurity(); err != nil {
			return err
		}
	}
	var snaps persistence.SnapshotStore
	var err error
	if cfg.Cluster != nil {
		// The remote transport first: protoactor sets grpc's global logger
		// when it starts, which races with any grpc client already running
		// (etcd's).
		if err := s.openTransport(cfg); err != nil {
			return err
		}
		if err := s.openCluster(cfg); err != nil {
			return err
		}
		opts.Fence = s.clu.valid
		if cfg.Cluster.Redis != "" {
			host, _, _ := net.SplitHostPort(cfg.Cluster.Peer) // checked by openCluster
			rdb, err := openRedis(cfg.Cluster.Redis, cfg.Cluster.Auth.RedisCA, net.ParseIP(host))
			if err != nil {
				return err
			}
			s.snap = newSnapshotter(rdb, cfg.Cluster.SnapshotInterval, s.log)
			s.clu.redisPing = func(ctx context.Context) error { return rdb.Ping(ctx).Err() }
			opts.OnClose = s.snap.final
			snaps = s.snap.snaps
		}
		var journal *bus.Journal
		if cfg.Cluster.Journal {
			if cfg.NATSURL == "" {
				return errors.New("cluster: the replicated journal needs the cluster's NATS (--nats)")
			}
			if journal, s.journalConn, err = openJournal(cfg.NATSURL, cfg.Cluster.Node, cfg.NATSAuth, cfg.Cluster.JournalReplicas); err != nil {
				return err
			}
		}
		var peerTLS *tls.Config
		if cfg.Cluster.Certs != nil {
			peerTLS = cfg.Cluster.Certs.ClientTLS()
		}
		s.grid = grid.New(grid.Config{Self: s.clu.info, PeerTLS: peerTLS, Fence: s.clu.store, Snapshots: snaps, Logger: s.log, Valid: s.clu.valid,
			LeaseID: s.clu.leaseID, SecondActivation: cfg.Cluster.SecondActivation, Journal: journal, Published: s.published(cfg)})
		// A node confirms only under a valid lease and once it has read
		// etcd's placement under that lease (grid.Current).
		g := s.grid
		opts.Fence = func(now time.Time) bool { return s.clu.valid(now) && g.Current() }
		s.grid.SetAdminToken(cfg.AdminToken)
		opts.Cluster = s.grid.Hooks()
		local, err := nextBoot(cfg.DataDir)
		if err != nil {
			return err
		}
		// Counted in etcd too: a node back on an empty disk outranks its
		// earlier processes all the same.
		ctx, cancel := context.WithTimeout(context.Background(), grid.EtcdTimeout)
		opts.Cluster.Boot, err = s.clu.store.NextBoot(ctx, cfg.Cluster.Node, local)
		cancel()
		if err != nil {
			return fmt.Errorf("count this start in etcd: %w", err)
		}
		if s.snap != nil {
			s.snap.epochOf = s.grid.EpochOf
		}
	}
	store, err := persistence.OpenPebble(filepath.Join(cfg.DataDir, "pebble"))
	if err != nil {
		return err
	}
	s.store = store
	s.guard = persistence.NewDiskGuard(cfg.DataDir, diskReserve(cfg), s.log)
	store.Guard(s.guard)
	opts.Writable = s.writable
	if s.Node, err = actors.Start(store, opts); err != nil {
		store.Close()
		return fmt.Errorf("start node: %w", err)
	}
	node := s.Node
	store.OnReopen(func() {
		// The failed database showed records it never wrote: every shard
		// and pool reloads from the reopened one before writes go on.
		if late := node.ReloadAll(); late > 0 {
			s.log.Error("after reopening the grab store, actors did not reload in time", "late", late)
		}
	})
	s.svc = actors.NewLocal(s.Node)
	if s.grid != nil {
		s.grid.SetNode(s.Node)
		s.grid.Attach(s.tr)
		s.gridReady.Store(s.grid)
		s.grid.Run()
		s.svc = s.grid
	}
	if s.snap != nil {
		s.snap.store = store
		go s.snap.run()
	}
	var sold int64
	for _, it := range s.Node.Items() {
		sold += it.Config.Stock - it.Remaining()
	}
	s.log.Info("loaded", "items", len(s.Node.Items()), "units_sold", sold, "took", time.Since(started).Round(time.Millisecond))
	if !cfg.NoOrders {
		if err := s.openOrders(cfg); err != nil {
			return err
		}
	}
	s.Front = s.observe(s.front(cfg.AdminToken, store).WithSecurity(cfg.Security), store)
	if cfg.HTTPAddr == "" {
		return nil
	}
	if s.ln == nil {
		if s.ln, err = net.Listen("tcp", cfg.HTTPAddr); err != nil {
			return fmt.Errorf("listen %s: %w", cfg.HTTPAddr, err)
		}
	}
	if err := s.listenAdmin(cfg); err != nil {
		return err
	}
	s.failed, s.served = make(chan error, 3), make(chan struct{})
	if s.peerLn != nil {
		s.peerHTTP, s.peerDone = s.Front.PeerFastHTTP(), make(chan struct{})
		ln := tls.NewListener(s.peerLn, cfg.Cluster.Certs.ServerTLS())
		go func() {
			defer close(s.peerDone)
			if err := s.peerHTTP.Serve(ln); err != nil {
				s.failed <- fmt.Errorf("peer https: %w", err)
			}
		}()
	}
	if s.adminLn != nil {
		s.adminHTTP, s.adminDone = s.Front.AdminFastHTTP(), make(chan struct{})
		go func() {
			defer close(s.adminDone)
			if err := s.adminHTTP.Serve(s.adminLn); err != nil {
				s.failed <- fmt.Errorf("admin: %w", err)
			}
		}()
	}
	s.http = s.Front.FastHTTP()
	go func() {
		defer close(s.served)
		if err := s.http.Serve(s.ln); err != nil {
			s.failed <- err
		}
	}()
	return nil
}

// listenAdmin binds the admin API's own listener, once.
func (s *System) listenAdmin(cfg Config) error {
	if cfg.AdminHTTPAddr == "" || s.adminLn != nil {
		return nil
	}
	var err error
	if s.adminLn, err = net.Listen("tcp", cfg.AdminHTTPAddr); err != nil {
		return fmt.Errorf("listen admin %s: %w", cfg.AdminHTTPAddr, err)
	}
	return nil
}

// AdminURL is the admin API's own base URL, empty without one.
func (s *System) AdminURL() string {
	if s.adminLn == nil {
		return ""
	}
	return "http://" + s.adminLn.Addr().String()
}

// openCluster joins the cluster. A clustered node listens first: the
// members list carries its HTTP URL, which a ":0" address only has once
// bound.
func (s *System) openCluster(cfg Config) error {
	var httpURL, peerHTTP string
	if cfg.HTTPAddr != "" {
		var err error
		if s.ln, err = net.Listen("tcp", cfg.HTTPAddr); err != nil {
			return fmt.Errorf("listen %s: %w", cfg.HTTPAddr, err)
		}
		httpURL = "http://" + s.ln.Addr().String()
		// The other nodes call the admin API (views, orders, reconcile):
		// with certificates on a listener of its own on the peer IP, which
		// takes only the cluster's nodes.
		if err := s.listenAdmin(cfg); err != nil {
			return err
		}
		if s.adminLn != nil {
			httpURL = s.AdminURL()
		}
		if cfg.Cluster.Certs != nil {
			if s.peerLn, err = net.Listen("tcp", net.JoinHostPort(peerHost(cfg.Cluster.Peer), "0")); err != nil {
				return fmt.Errorf("listen peer https: %w", err)
			}
			peerHTTP = "https://" + s.peerLn.Addr().String()
		}
	}
	var err error
	s.clu, err = joinCluster(*cfg.Cluster, httpURL, peerHTTP, s.log)
	return err
}

// openOrders connects the stream, opens the order store and starts the
// pipeline.
func (s *System) openOrders(cfg Config) error {
	name := cfg.NATSName
	if name == "" {
		name = "seckill"
	}
	var err error
	if s.Stream, err = OpenStream(cfg.NATSURL, cfg.DataDir, cfg.NATSListen, name, cfg.NATSAuth); err != nil {
		return fmt.Errorf("nats: %w", err)
	}
	s.streamReady.Store(s.Stream)
	if s.Stream.Emb != nil && s.Stream.Emb.ClientURL() != "" {
		s.log.Info("nats", "url", s.Stream.Emb.ClientURL(), "store", filepath.Join(cfg.DataDir, "nats"), "creds", s.Stream.Emb.CredsPath())
	}
	var ostore persistence.OrderStore
	_, statErr := os.Stat(filepath.Join(cfg.DataDir, "orders"))
	freshOrders := errors.Is(statErr, os.ErrNotExist)
	if s.ostore, err = persistence.OpenPebbleOrders(filepath.Join(cfg.DataDir, "orders")); err != nil {
		return err
	}
	s.ostore.Guard(s.guard)
	ostore = s.ostore
	if cfg.WrapOrders != nil {
		ostore = cfg.WrapOrders(ostore)
	}
	busCfg := cfg.Bus
	if cfg.NATSReplicas != 0 {
		busCfg.Replicas = cfg.NATSReplicas
	}
	if cfg.Cluster != nil {
		// This node's lane: its writers write the orders of the grabs it
		// made (bus.GrabSubjectFrom).
		busCfg.Node = cfg.Cluster.Node
	}
	s.Pipeline = Start(s.Node, s.svc.(orders.Stock), s.Stream, ostore, cfg.OrderWriters, busCfg, s.log)
	s.Pipeline.ready = s.ostore.Health
	if cfg.Cluster != nil && cfg.Cluster.Journal {
		p, g, f, self := s.Pipeline, s.grid, s.clu.store, cfg.Cluster.Node
		sup := g.Superseded
		p.superseded.Store(&sup)
		rebuild := func(ctx context.Context, node string) error {
			ctx, cancel := context.WithTimeout(ctx, grid.EtcdTimeout)
			defer cancel()
			return f.RebuildLane(ctx, node, self)
		}
		p.wg.Go(func() {
			ctx, cancel := context.WithTimeout(p.ctx, grid.EtcdTimeout)
			defer cancel()
			p.takeOwnLane(p.ctx, self, freshOrders, func(_ context.Context, node string) (string, error) { return f.TakeLane(ctx, node) }, s.log)
			p.runHeir(p.ctx, self, g.LiveMembers, rebuild, s.log)
		})
	}
	return nil
}

// front builds the HTTP front: the one place that calls its constructor.
func (s *System) front(token string, store persistence.Viewer) *transport.Server {
	f := transport.NewServer(s.frontService(), token, s.log).WithHealth(s.healthStrings)
	if s.Pipeline != nil {
		var o sale.Orders = s.Pipeline.Orders
		rec := s.Pipeline.Reconciler(store, s.Node)
		if s.grid != nil {
			o = s.grid.Orders(s.Pipeline.Orders)
			f = f.WithLocalOrders(s.Pipeline.Orders)
			ostore := s.Pipeline.ostore
			s.grid.SetFacts(func(cfg engine.ItemConfig, shards func(int) bool) (orders.Facts, error) {
				return orders.Gather(store, ostore, cfg, shards)
			})
			rec = s.grid.Reconciler(StreamReader(s.Stream.JS))
		}
		f = f.WithOrders(o, DeadLetters{JS: s.Stream.JS}, rec)
	}
	if s.grid != nil {
		f = f.WithCluster(clusterFront{s.clu, s.grid, s.Stream})
	} else if s.clu != nil {
		f = f.WithCluster(s.clu)
	}
	return f
}

// URL is the HTTP front's base URL ("http://host:port"), empty without a
// listener.
func (s *System) URL() string {
	if s.ln == nil {
		return ""
	}
	return "http://" + s.ln.Addr().String()
}

// Failed receives the HTTP server's error if it stops serving before
// Close; it never receives without a listener.
func (s *System) Failed() <-chan error { return s.failed }

// Close drains the HTTP front (health checks answer 503, requests in flight
// get up to DrainTimeout), then stops the pipeline, the node (whose
// committers finish what they were given), leaves the cluster (revoking
// the lease) and closes the stream, in that order.
// A second Close does nothing.
func (s *System) Close() error {
	if s.closed {
		return nil
	}
	if s.http != nil {
		s.Front.Drain()
		ctx, cancel := context.WithTimeout(context.Background(), DrainTimeout)
		// Requests still running past the drain are cut off; what they
		// had decided is durable or not, as in a crash.
		if err := s.http.ShutdownWithContext(ctx); err != nil {
			s.log.Warn("http shutdown", "err", err)
		}
		if s.adminHTTP != nil {
			if err := s.adminHTTP.ShutdownWithContext(ctx); err != nil {
				s.log.Warn("admin http shutdown", "err", err)
			}
			<-s.adminDone
		}
		if s.peerHTTP != nil {
			if err := s.peerHTTP.ShutdownWithContext(ctx); err != nil {
				s.log.Warn("peer https shutdown", "err", err)
			}
			<-s.peerDone
		}
		cancel()
		<-s.served
	}
	return s.stop()
}

// stop closes everything but the HTTP server, whatever of it is open.
func (s *System) stop() error {
	s.closed = true
	var errs []error
	if s.Pipeline != nil {
		errs = append(errs, s.Pipeline.Stop())
	}
	if s.grid != nil {
		s.grid.Close()
	}
	if s.Node != nil {
		// With snapshots, Close writes the last ones (OnClose).
		errs = append(errs, s.Node.Close())
	}
	if s.journalConn != nil {
		s.journalConn.Close() // after the node: its last rounds append
	}
	if s.tr != nil {
		s.tr.Close()
	}
	if s.snap != nil {
		errs = append(errs, s.snap.close())
	}
	if s.http == nil && s.ln != nil {
		s.ln.Close() // bound by openCluster, never served: Open failed
	}
	if s.adminHTTP == nil && s.adminLn != nil {
		s.adminLn.Close()
	}
	if s.peerHTTP == nil && s.peerLn != nil {
		s.peerLn.Close()
	}
	if s.clu != nil {
		errs = append(errs, s.clu.leave())
	}
	if s.Stream != nil {
		s.Stream.Close()
	}
	s.guard.Close()
	return errors.Join(errs...)
}

// clusterFront is what the front answers about the cluster: membership and
// health from the node's lease, placement and moves from the grid.
type clusterFront struct {
	*cluster
	*grid.Grid
	stream *Stream // nil without an order side
}

// Members lists the members with the grid's numbers.
func (c clusterFront) Members(ctx context.Context) ([]sale.Member, error) {
	ms, err := c.cluster.Members(ctx)
	if err == nil {
		c.Grid.Decorate(ctx, ms)
	}
	return ms, err
}

// Health adds the stream and the shards' availability.
func (c clusterFront) Health(ctx context.Context) sale.Health {
	h := c.cluster.Health(ctx)
	if c.stream != nil {
		h.NATS = "ok"
		if !c.stream.Connected() {
			h.NATS = "unreachable"
		}
	}
	un := c.Grid.Unavailable()
	h.ShardsUnavailable = &un
	if fr, err := c.Grid.Frozen(ctx); err == nil {
		h.UnitsFrozen = &fr
	}
	return h
}

// openTransport starts the remote transport on the peer address; what
// arrives before the grid runs is dropped (the protocol recovers it) or
// answered unavailable.
func (s *System) openTransport(cfg Config) error {
	tr, err := remote.Start(remote.Config{
		Addr:  cfg.Cluster.Peer,
		Certs: cfg.Cluster.Certs,
		Handle: func(from remote.Sender, m engine.Msg) {
			if g := s.gridReady.Load(); g != nil {
				g.Receive(from, m)
			}
		},
		OnRequest: func(r remote.Request) remote.Reply {
			if g := s.gridReady.Load(); g != nil {
				return g.Serve(r)
			}
			return remote.ReplyFromSale(r.ID, sale.Reply{Err: sale.ErrUnavailable})
		},
		Logger: s.log,
	})
	if err != nil {
		return fmt.Errorf("peer %s: %w", cfg.Cluster.Peer, err)
	}
	s.tr = tr
	return nil
}

package bus

import (
	"cmp"
	"crypto/hmac"
	"crypto/sha256"
	"encoding/hex"
	"errors"
	"fmt"
	"log/slog"
	"math/rand/v2"
	"net"
	"net/url"
	"path/filepath"
	"strconv"
	"strings"
	"sync"
	"time"

	"github.com/nats-io/nats-server/v2/server"
	"github.com/nats-io/nats.go"
	"github.com/nats-io/nkeys"
)

// Server and connection settings.
const (
	// StartTimeout bounds StartEmbedded: JetStream recovers its whole store
	// before the server takes connections, seconds for a large one.
	StartTimeout = 30 * time.Second
	// SyncInterval is how often the embedded server fsyncs its streams. An
	// acknowledged message is in the OS page cache at once (a killed process
	// loses nothing) but an OS crash can lose this much; the default, 2 min,
	// is too long for an outbox that is trimmed past acknowledged grabs.
	SyncInterval = time.Second
	// DrainTimeout bounds draining the in-process connections at Shutdown.
	DrainTimeout = 5 * time.Second
	// ReconnectWaitMin and ReconnectWaitMax bound Dial's reconnect backoff:
	// quick after a blip, at most a few reconnect attempts a second per
	// client when the server is down for long.
	ReconnectWaitMin = 100 * time.Millisecond
	ReconnectWaitMax = 2 * time.Second
	// PingInterval lets a client notice a silently dead server (no TCP
	// reset) within two pings instead of the library's default 4 minutes.
	PingInterval = 5 * time.Second
)

// Cluster settings.
const (
	// DefaultClusterName is the JetStream cluster's name when none is given.
	DefaultClusterName = "seckill"
	// routeUser is the user every server of a cluster presents on the
	// route port; the password is derived from the shared client seed.
	routeUser = "seckill-route"
	// routeKeyLabel makes the route password a value of its own, not one a
	// client could be asked to sign.
	routeKeyLabel = "seckill nats route password v1"
)

// ErrNotLoopback refuses a route listener or route URL off loopback: the
// route port has no TLS yet, and a route is trusted with every account.
var ErrNotLoopback = errors.New("not a loopback address (127.0.0.0/8, ::1 or localhost)")

// EmbeddedOptions say how StartEmbeddedWith runs a server. The zero values
// of the optional fields are what StartEmbedded does.
type EmbeddedOptions struct {
	// StoreDir holds the streams; required.
	StoreDir string
	// Listen is the client listener, "host:port" (port 0: any free port);
	// "" opens none: in-process clients only. A listening server admits
	// only the nkey in CredsFile.
	Listen string
	// CredsFile is the client nkey seed file; "" is <StoreDir>/client.nk.
	// It is generated when missing. The servers of a cluster share one, so
	// that a client holding it may connect to any of them.
	CredsFile string
	// Name is the server's name, unique in its cluster; "" is the server's
	// generated ID, which changes at every start. Required with Cluster.
	Name string
	// SyncAlways fsyncs every stream write (and, clustered, every Raft log
	// append) before it is acknowledged; otherwise the server fsyncs every
	// SyncInterval (0: the package's SyncInterval).
	SyncAlways   bool
	SyncInterval time.Duration
	// Cluster, when set, joins the server to a JetStream cluster.
	Cluster *ClusterOptions
}

// ClusterOptions join a server to a JetStream cluster over routes. Every
// server lists the others' route URLs. A new cluster elects its first
// JetStream meta leader only once every listed server is up (seen with
// two of three: none in 40 s); from then on a majority keeps one, and a
// stream of R replicas stays writable while a majority of its R servers
// are up.
//
// The routes are on loopback only and authenticated with a user and a
// password derived from the shared client seed (routes carry every
// account's traffic, so a stranger on the route port would bypass the
// client key); whoever holds the seed may join as a route.
type ClusterOptions struct {
	// Name is the cluster's name, the same on every server; "" is
	// DefaultClusterName.
	Name string
	// Listen is the route listener, "host:port" on loopback (port 0: any
	// free port).
	Listen string
	// Routes are the other servers' route listeners as
	// nats-route://host:port, on loopback. A server's own address may be
	// among them (the server ignores a route to itself).
	Routes []string
}

// Validate reports what is wrong with o before anything starts.
func (o EmbeddedOptions) Validate() error {
	if o.StoreDir == "" {
		return errors.New("empty store dir")
	}
	if o.Listen != "" {
		if _, _, err := hostPort(o.Listen); err != nil {
			return fmt.Errorf("listen %q: %w", o.Listen, err)
		}
	}
	if o.SyncInterval < 0 {
		return fmt.Errorf("sync interval %s", o.SyncInterval)
	}
	if strings.ContainsAny(o.Name, " \t\n") {
		return fmt.Errorf("server name %q has white space", o.Name)
	}
	if o.Cluster == nil {
		return nil
	}
	c := o.Cluster
	switch {
	case o.Name == "":
		return errors.New("a cluster needs a server name")
	case o.Listen == "":
		return errors.New("a cluster needs a client listener")
	case strings.ContainsAny(c.Name, " \t\n"):
		return fmt.Errorf("cluster name %q has white space", c.Name)
	case c.Listen == "":
		return errors.New("a cluster needs a route listener")
	case len(c.Routes) == 0:
		return errors.New("a cluster needs the routes of the other servers")
	}
	host, _, err := hostPort(c.Listen)
	if err != nil {
		return fmt.Errorf("cluster listen %q: %w", c.Listen, err)
	}
	if !loopback(host) {
		return fmt.Errorf("cluster listen %q: %w", c.Listen, ErrNotLoopback)
	}
	for _, r := range c.Routes {
		if _, err := routeURL(r); err != nil {
			return err
		}
	}
	return nil
}

// serverOptions builds the nats-server options of a valid o, and loads
// (or creates) the client key when the server listens.
func (o EmbeddedOptions) serverOptions() (*server.Options, nkeys.KeyPair, error) {
	opts := &server.Options{
		JetStream:    true,
		StoreDir:     o.StoreDir,
		ServerName:   o.Name,
		NoSigs:       true, // the host process owns the signals
		SyncInterval: cmp.Or(o.SyncInterval, SyncInterval),
		SyncAlways:   o.SyncAlways,
		DontListen:   o.Listen == "",
	}
	if o.Listen == "" {
		return opts, nil, nil
	}
	kp, err := seedFile(o.credsPath())
	if err != nil {
		return nil, nil, err
	}
	pub, err := kp.PublicKey()
	if err != nil {
		return nil, nil, err
	}
	opts.Nkeys = []*server.NkeyUser{{Nkey: pub}}
	if opts.Host, opts.Port, err = hostPort(o.Listen); err != nil {
		return nil, nil, err
	}
	if c := o.Cluster; c != nil {
		user, pass, err := routeAuth(kp)
		if err != nil {
			return nil, nil, err
		}
		opts.Cluster = server.ClusterOpts{Name: cmp.Or(c.Name, DefaultClusterName), Username: user, Password: pass}
		if opts.Cluster.Host, opts.Cluster.Port, err = hostPort(c.Listen); err != nil {
			return nil, nil, err
		}
		for _, r := range c.Routes {
			u, err := routeURL(r)
			if err != nil {
				return nil, nil, err
			}
			u.User = url.UserPassword(user, pass)
			opts.Routes = append(opts.Routes, u)
		}
	}
	return opts, kp, nil
}

func (o EmbeddedOptions) credsPath() string {
	return cmp.Or(o.CredsFile, filepath.Join(o.StoreDir, CredsFile))
}

// hostPort splits "host:port" into what server.Options takes: port 0 (any
// free port) becomes server.RANDOM_PORT, since the server reads 0 as its
// default port.
func hostPort(addr string) (string, int, error) {
	host, port, err := net.SplitHostPort(addr)
	if err != nil {
		return "", 0, err
	}
	p, err := strconv.Atoi(port)
	if err != nil || p < 0 || p > 65535 {
		return "", 0, fmt.Errorf("bad port %q", port)
	}
	if p == 0 {
		p = server.RANDOM_PORT
	}
	return host, p, nil
}

// routeURL parses a route URL and checks it is on loopback.
func routeURL(s string) (*url.URL, error) {
	u, err := url.Parse(s)
	switch {
	case err != nil:
		return nil, fmt.Errorf("route %q: %w", s, err)
	case u.Scheme != "nats-route" || u.Port() == "" || u.User != nil || (u.Path != "" && u.Path != "/"):
		return nil, fmt.Errorf("route %q: want nats-route://host:port", s)
	case !loopback(u.Hostname()):
		return nil, fmt.Errorf("route %q: %w", s, ErrNotLoopback)
	}
	return u, nil
}

// loopback reports whether host is a loopback IP or "localhost"; "" and
// unspecified addresses (every interface) are not.
func loopback(host string) bool {
	if host == "localhost" {
		return true
	}
	ip := net.ParseIP(host)
	return ip != nil && ip.IsLoopback()
}

// routeAuth derives the route user and password from the client seed the
// servers share: an HMAC keyed with the seed, so the seed itself never
// crosses the route wire.
func routeAuth(kp nkeys.KeyPair) (user, pass string, err error) {
	seed, err := kp.Seed()
	if err != nil {
		return "", "", err
	}
	mac := hmac.New(sha256.New, seed)
	mac.Write([]byte(routeKeyLabel))
	return routeUser, hex.EncodeToString(mac.Sum(nil)), nil
}

// Embedded is an in-process nats-server with JetStream, the default for a
// single node, and what `seckill nats` runs, alone or as one server of a
// JetStream cluster.
type Embedded struct {
	srv   *server.Server
	addr  *net.TCPAddr  // where it listens, nil when it does not
	kp    nkeys.KeyPair // the one client key it admits; nil when it does not listen
	creds string        // the file holding kp's seed
	route *net.TCPAddr  // its route listener, nil when not clustered

	mu    sync.Mutex
	conns []*nats.Conn // from Connect, drained at Shutdown
}

// StartEmbedded starts a nats-server with JetStream storing under storeDir
// and waits until it takes connections. With listen "" it has no network
// listener at all (clients use Connect); with "host:port" (port 0 for any
// free port) other processes can reach it at ClientURL, and only with
// the nkey in CredsPath (generated on the first start): no client, in
// this process or another, connects without it.
func StartEmbedded(storeDir, listen string) (*Embedded, error) {
	return StartEmbeddedWith(EmbeddedOptions{StoreDir: storeDir, Listen: listen})
}

// StartEmbeddedWith starts a server as o says and waits until it takes
// connections. A clustered server does not wait for its peers: its
// JetStream answers once a meta leader is elected (MetaLeader).
func StartEmbeddedWith(o EmbeddedOptions) (*Embedded, error) {
	if err := o.Validate(); err != nil {
		return nil, fmt.Errorf("start nats: %w", err)
	}
	opts, kp, err := o.serverOptions()
	if err != nil {
		return nil, fmt.Errorf("start nats: %w", err)
	}
	ns, err := server.NewServer(opts)
	if err != nil {
		return nil, fmt.Errorf("start nats: %w", err)
	}
	ns.SetLoggerV2(serverLog{slog.Default().With("component", "nats-server")}, false, false, false)
	go ns.Start()
	if !ns.ReadyForConnections(StartTimeout) {
		ns.Shutdown()
		ns.WaitForShutdown()
		return nil, fmt.Errorf("start nats: not ready after %s (store %s, listen %q)", StartTimeout, o.StoreDir, o.Listen)
	}
	if !ns.JetStreamEnabled() {
		ns.Shutdown()
		ns.WaitForShutdown()
		return nil, fmt.Errorf("start nats: JetStream did not start (store %s)", o.StoreDir)
	}
	e := &Embedded{srv: ns, kp: kp}
	if o.Listen != "" {
		e.addr, _ = ns.Addr().(*net.TCPAddr)
		e.creds = o.credsPath()
	}
	if o.Cluster != nil {
		e.route = ns.ClusterAddr()
	}
	return e, nil
}

// ClientURL is the URL other processes dial, "" when the server does not
// listen. An unspecified host (":4222") is given as 127.0.0.1. It stays
// valid after Shutdown, for a restart on the same address.
func (e *Embedded) ClientURL() string {
	if e.addr == nil {
		return ""
	}
	host := e.addr.IP.String()
	if e.addr.IP.IsUnspecified() {
		host = "127.0.0.1"
	}
	return "nats://" + net.JoinHostPort(host, strconv.Itoa(e.addr.Port))
}

// ClusterURL is the URL the other servers of its cluster route to,
// nats-route://host:port, "" when the server is not clustered.
func (e *Embedded) ClusterURL() string {
	if e.route == nil {
		return ""
	}
	return "nats-route://" + e.route.String()
}

// Name is the server's name.
func (e *Embedded) Name() string { return e.srv.Name() }

// MetaLeader is the name of the server leading the JetStream cluster's
// metadata, "" when there is none (no quorum yet, or an election under
// way) or the server is not clustered. Streams can be created only while
// there is one.
func (e *Embedded) MetaLeader() string {
	if !e.srv.JetStreamIsClustered() {
		return ""
	}
	info, err := e.srv.Jsz(&server.JSzOptions{})
	if err != nil || info.Meta == nil {
		return ""
	}
	return info.Meta.Leader
}

// CredsPath is the file holding the key clients must present, "" when the
// server does not listen (and admits only in-process clients).
func (e *Embedded) CredsPath() string {
	return e.creds
}

// Connect opens an in-process connection (no socket). Shutdown drains it.
func (e *Embedded) Connect(name string) (*nats.Conn, error) {
	opts := []nats.Option{nats.InProcessServer(e.srv), nats.Name(name)}
	if e.kp != nil {
		o, err := Creds{Kind: CredsNkey, kp: e.kp}.Option()
		if err != nil {
			return nil, fmt.Errorf("connect in-process nats: %w", err)
		}
		opts = append(opts, o)
	}
	nc, err := nats.Connect("", opts...)
	if err != nil {
		return nil, fmt.Errorf("connect in-process nats: %w", err)
	}
	e.mu.Lock()
	e.conns = append(e.conns, nc)
	e.mu.Unlock()
	return nc, nil
}

// Shutdown drains the connections made by Connect (so acks in flight
// arrive), stops the server and waits until it has stopped. Stop the
// writers and copiers using those connections first.
func (e *Embedded) Shutdown() {
	e.mu.Lock()
	conns := e.conns
	e.conns = nil
	e.mu.Unlock()
	for _, nc := range conns {
		drain(nc, DrainTimeout)
	}
	e.srv.Shutdown()
	e.srv.WaitForShutdown()
}

// drain drains nc and waits, at most d, until it is closed.
func drain(nc *nats.Conn, d time.Duration) {
	if nc.IsClosed() {
		return
	}
	closed := make(chan struct{})
	nc.SetClosedHandler(func(*nats.Conn) { close(closed) })
	if err := nc.Drain(); err != nil {
		nc.Close()
		return
	}
	select {
	case <-closed:
	case <-time.After(d):
		nc.Close()
	}
}

// serverLog passes the server's warnings and errors to slog; its notices
// (a start-up banner of twenty lines) go to debug.
type serverLog struct{ l *slog.Logger }

func (s serverLog) Noticef(format string, v ...any) { s.l.Debug(fmt.Sprintf(format, v...)) }
func (s serverLog) Warnf(format string, v ...any)   { s.l.Warn(fmt.Sprintf(format, v...)) }
func (s serverLog) Fatalf(format string, v ...any)  { s.l.Error(fmt.Sprintf(format, v...)) }
func (s serverLog) Errorf(format string, v ...any)  { s.l.Error(fmt.Sprintf(format, v...)) }
func (s serverLog) Debugf(string, ...any)           {}
func (s serverLog) Tracef(string, ...any)           {}

// Dial connects to an external server or cluster (comma-separated URLs).
// The connection never gives up: it connects in the background if the
// server is not up yet and reconnects forever with a bounded, jittered
// backoff; publishes made meanwhile wait in the client's reconnect buffer.
// auth's credentials and TLS files are read once, here.
func Dial(url, name string, auth ClientAuth) (*nats.Conn, error) {
	log := slog.Default().With("nats", name)
	opts, err := auth.Options()
	if err != nil {
		return nil, fmt.Errorf("dial nats %s: %w", url, err)
	}
	nc, err := nats.Connect(url, append(opts,
		nats.Name(name),
		nats.MaxReconnects(-1),
		nats.RetryOnFailedConnect(true),
		nats.CustomReconnectDelay(reconnectDelay),
		nats.PingInterval(PingInterval),
		nats.MaxPingsOutstanding(2),
		nats.DisconnectErrHandler(func(_ *nats.Conn, err error) {
			log.Warn("nats disconnected", "err", err)
		}),
		nats.ErrorHandler(func(_ *nats.Conn, _ *nats.Subscription, err error) {
			// An authorization violation (bad or missing --nats-creds)
			// shows up here, once per attempt.
			log.Warn("nats error", "err", err)
		}),
		nats.ReconnectHandler(func(nc *nats.Conn) {
			log.Info("nats reconnected", "url", nc.ConnectedUrlRedacted())
		}),
	)...)
	if err != nil {
		return nil, fmt.Errorf("dial nats %s: %w", url, err)
	}
	return nc, nil
}

// reconnectDelay doubles from ReconnectWaitMin to ReconnectWaitMax, the
// upper half jittered so that many clients do not reconnect in step.
func reconnectDelay(attempts int) time.Duration {
	d := ReconnectWaitMax
	if attempts < 16 {
		d = min(ReconnectWaitMin<<attempts, ReconnectWaitMax)
	}
	return d/2 + rand.N(d/2+1)
}

// JetStreamEnabled reports whether JetStream runs: the server turns it off
// on a storage error it cannot go on from.
func (e *Embedded) JetStreamEnabled() bool { return e.srv.JetStreamEnabled() }

package bus

import (
	"errors"
	"fmt"
	"log/slog"
	"math/rand/v2"
	"net"
	"path/filepath"
	"strconv"
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

// Embedded is an in-process nats-server with JetStream, the default for a
// single node.
type Embedded struct {
	srv  *server.Server
	addr *net.TCPAddr  // where it listens, nil when it does not
	kp   nkeys.KeyPair // the one client key it admits; nil when it does not listen
	dir  string

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
	if storeDir == "" {
		return nil, errors.New("start nats: empty store dir")
	}
	opts := &server.Options{
		JetStream:    true,
		StoreDir:     storeDir,
		NoSigs:       true, // the host process owns the signals
		SyncInterval: SyncInterval,
		DontListen:   listen == "",
	}
	var kp nkeys.KeyPair
	if listen != "" {
		var err error
		if kp, err = EmbeddedCreds(storeDir); err != nil {
			return nil, fmt.Errorf("start nats: %w", err)
		}
		pub, err := kp.PublicKey()
		if err != nil {
			return nil, fmt.Errorf("start nats: %w", err)
		}
		opts.Nkeys = []*server.NkeyUser{{Nkey: pub}}
		host, port, err := net.SplitHostPort(listen)
		if err != nil {
			return nil, fmt.Errorf("start nats: listen %q: %w", listen, err)
		}
		p, err := strconv.Atoi(port)
		if err != nil || p < 0 || p > 65535 {
			return nil, fmt.Errorf("start nats: listen %q: bad port", listen)
		}
		if p == 0 {
			p = server.RANDOM_PORT // the server reads 0 as its default, 4222
		}
		opts.Host, opts.Port = host, p
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
		return nil, fmt.Errorf("start nats: not ready after %s (store %s, listen %q)", StartTimeout, storeDir, listen)
	}
	if !ns.JetStreamEnabled() {
		ns.Shutdown()
		ns.WaitForShutdown()
		return nil, fmt.Errorf("start nats: JetStream did not start (store %s)", storeDir)
	}
	e := &Embedded{srv: ns, kp: kp, dir: storeDir}
	if listen != "" {
		e.addr, _ = ns.Addr().(*net.TCPAddr)
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

// CredsPath is the file holding the key clients must present, "" when the
// server does not listen (and admits only in-process clients).
func (e *Embedded) CredsPath() string {
	if e.kp == nil {
		return ""
	}
	return filepath.Join(e.dir, CredsFile)
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

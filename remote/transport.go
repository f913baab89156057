package remote

import (
	"context"
	"errors"
	"fmt"
	"log/slog"
	"math/rand/v2"
	"net"
	"net/netip"
	"sync"
	"sync/atomic"

	"github.com/asynkron/protoactor-go/actor"
	protoremote "github.com/asynkron/protoactor-go/remote"
	"github.com/seckill/seckill/certs"
	"github.com/seckill/seckill/engine"
	"google.golang.org/grpc"
	"google.golang.org/grpc/credentials"
	"google.golang.org/grpc/credentials/insecure"
	"google.golang.org/protobuf/types/known/wrapperspb"
)

// ReceiverName is the name of the actor every Transport spawns: a peer
// addresses it as actor.NewPID(addr, ReceiverName).
const ReceiverName = "seckill"

const (
	// writerQueueInit is the initial capacity of the queue of envelopes
	// waiting for a peer's connection. Protoactor's queue grows as needed, so
	// this is no limit; its default (1 000 000 slots, 16 MB per peer) only
	// costs memory. A sale's messages come in bursts of a few per shard.
	writerQueueInit = 4096
	// connectAttempts: protoactor retries a failed connection after 2 s,
	// holding every envelope for that peer meanwhile, and drops them all once
	// it gives up. One attempt keeps an unreachable peer from holding
	// envelopes longer than that 2 s; the next send tries again. Loss is the
	// protocol's business (cumulative totals, re-asks), not the wire's.
	connectAttempts = 1
)

// Config says where a Transport listens and who hears what arrives.
type Config struct {
	// Addr is IP:PORT: the address to listen on, the address peers know this
	// node by, and the IP outbound connections dial from (so that rules on
	// source addresses, such as nftables partitions in tests, see each node
	// as itself). Port 0 picks a free port; Addr() tells which.
	Addr string
	// Certs is this node's identity: every connection, both ways, is then
	// TLS 1.3 with certificates of its CA, and a message's Sender.Node is
	// the name the connection proved. nil runs without TLS, where nothing
	// proves who sent what (--insecure-cluster, loopback only).
	Certs *certs.Node
	// Handle receives every protocol message that arrives, with who sent
	// it, one at a time on the receiver actor's goroutine: it must not
	// block.
	Handle func(from Sender, m engine.Msg)
	// OnRequest serves each Request that arrives, on a goroutine of its
	// own, so it may wait (for a shard's answer, say); at most
	// MaxConcurrentRequests run at once, and past that a request is answered
	// Overloaded untried. Its Reply goes to the request's From with the
	// request's ID; one that is not well formed goes as Unavailable. nil
	// answers every request Unavailable.
	OnRequest func(req Request) Reply
	// Logger: nil means slog.Default(). Protoactor's own records go to it
	// from Warn up.
	Logger *slog.Logger

	// maxRequests replaces MaxConcurrentRequests when not 0 (tests).
	maxRequests int
}

// Transport sends protocol messages and requests to peer nodes, hands the
// messages that arrive to Config.Handle and the requests to
// Config.OnRequest.
type Transport struct {
	sys       *actor.ActorSystem
	rem       *protoremote.Remote
	addr      string
	log       *slog.Logger
	handle    func(Sender, engine.Msg)
	onRequest func(Request) Reply
	secure    bool // with certificates: every sender is proven

	// mu orders Send against Close: protoactor's endpoint manager reads its
	// stopped flag without a lock.
	mu     sync.RWMutex
	closed bool
	done   chan struct{} // closed by Close

	// nextID numbers requests. It starts at random, so that a reply to a
	// request of an earlier run of a node on the same address cannot pass
	// for the reply to one of this run.
	nextID  atomic.Uint64
	pending pendingTable
	sem     chan struct{} // one token per request being served

	dropped atomic.Uint64
	late    atomic.Uint64
	refused refusals
}

// Start listens on cfg.Addr and spawns the receiver. Start it before any
// other gRPC client of the process (etcd's): protoactor's Start replaces
// gRPC's global logger, a write that races with every live gRPC connection.
func Start(cfg Config) (*Transport, error) {
	if cfg.Handle == nil {
		return nil, fmt.Errorf("remote: start %s: no handler", cfg.Addr)
	}
	if cfg.Logger == nil {
		cfg.Logger = slog.Default()
	}
	host, port, ip, err := splitAddr(cfg.Addr)
	if err != nil {
		return nil, err
	}
	if cfg.maxRequests == 0 {
		cfg.maxRequests = MaxConcurrentRequests
	}
	t := &Transport{log: cfg.Logger.With("component", "remote"), handle: cfg.Handle, onRequest: cfg.OnRequest,
		done: make(chan struct{}), sem: make(chan struct{}, cfg.maxRequests), secure: cfg.Certs != nil}
	t.refused.log = t.log
	t.nextID.Store(rand.Uint64())
	t.sys = actor.NewActorSystem(actor.WithLoggerFactory(func(*actor.ActorSystem) *slog.Logger {
		return slog.New(minLevel{cfg.Logger.Handler(), slog.LevelWarn}).With("component", "protoactor")
	}))
	dialer := &net.Dialer{LocalAddr: &net.TCPAddr{IP: ip}}
	clientCreds := insecure.NewCredentials()
	if cfg.Certs != nil {
		clientCreds = credentials.NewTLS(cfg.Certs.ClientTLS())
	}
	opts := []protoremote.ConfigOption{
		protoremote.WithServerOptions(t.serverOptions(cfg.Certs)...),
		protoremote.WithDialOptions(
			grpc.WithTransportCredentials(clientCreds),
			grpc.WithContextDialer(func(ctx context.Context, addr string) (net.Conn, error) {
				return dialer.DialContext(ctx, "tcp", addr)
			})),
		protoremote.WithEndpointWriterQueueSize(writerQueueInit),
	}
	if port != 0 {
		// With port 0 protoactor advertises the address it bound.
		opts = append(opts, protoremote.WithAdvertisedHost(cfg.Addr))
	}
	rc := protoremote.Configure(host, port, opts...)
	rc.MaxRetryCount = connectAttempts
	t.rem = protoremote.NewRemote(t.sys, rc)
	if err := startRemote(t.rem); err != nil {
		t.sys.Shutdown()
		return nil, fmt.Errorf("remote: start %s: %w", cfg.Addr, err)
	}
	t.addr = t.sys.Address()
	if !validPeer(t.addr) {
		t.Close()
		return nil, fmt.Errorf("remote: start %s: advertised address %q is not an IP:PORT of at most %d bytes", cfg.Addr, t.addr, MaxPeerAddrLen)
	}
	props := actor.PropsFromFunc(func(c actor.Context) {
		if b, ok := c.Message().(*wrapperspb.BytesValue); ok {
			t.receive(proven(c.MessageHeader()), b.Value)
		}
	})
	if _, err := t.sys.Root.SpawnNamed(props, ReceiverName); err != nil {
		t.Close()
		return nil, fmt.Errorf("remote: spawn receiver: %w", err)
	}
	return t, nil
}

// startRemote turns the panic protoactor's Start raises when it cannot
// listen into an error. Listening is the first thing Start does, so nothing
// is left half started.
func startRemote(r *protoremote.Remote) (err error) {
	defer func() {
		if p := recover(); p != nil {
			err = fmt.Errorf("%v", p)
		}
	}()
	r.Start()
	return nil
}

// splitAddr checks that addr is IP:PORT with an IP a peer can dial back
// and this node can dial from.
func splitAddr(addr string) (host string, port int, ip net.IP, err error) {
	h, p, err := net.SplitHostPort(addr)
	if err == nil {
		ip = net.ParseIP(h)
		_, err = fmt.Sscanf(p, "%d", &port)
	}
	if err != nil || ip == nil || ip.IsUnspecified() || port < 0 || port > 65535 {
		return "", 0, nil, fmt.Errorf("remote: address %q is not IP:PORT with a specific IP", addr)
	}
	return h, port, ip, nil
}

// validPeer reports whether addr is an address a peer can be sent to:
// IP:PORT with a specific IP, no zone and a port, at most MaxPeerAddrLen
// bytes.
func validPeer(addr string) bool {
	if len(addr) > MaxPeerAddrLen {
		return false
	}
	ap, err := netip.ParseAddrPort(addr)
	return err == nil && ap.Port() != 0 && !ap.Addr().IsUnspecified() && ap.Addr().Zone() == ""
}

// errBadFrom: an envelope whose sender address is not a peer address.
var errBadFrom = errors.New("sender address is not IP:PORT")

// errUnproven: with certificates, a payload that did not come through the
// guard (it carries no proven sender).
var errUnproven = errors.New("no proven sender")

// receive runs on the receiver actor's goroutine: it never waits for a
// request to be served. node is the sender the guard proved ("" without
// certificates).
func (t *Transport) receive(node string, b []byte) {
	e, err := DecodeEnvelope(b)
	if err == nil && e.Tag == TagMsgFrom && !validPeer(e.From) {
		err = errBadFrom
	}
	if err == nil && t.secure && node == "" {
		err = errUnproven
	}
	if err != nil {
		t.drop(len(b), err)
		return
	}
	switch e.Tag {
	case TagMsg, TagMsgFrom:
		t.handle(Sender{Node: node, Addr: e.From}, e.Msg)
	case TagRequest:
		t.serve(e.Req, len(b))
	case TagReply:
		t.answer(node, e.Rep)
	}
}

func (t *Transport) drop(n int, err error) {
	t.dropped.Add(1)
	t.refused.add(RefusedPayload, 1, "len", n, "err", err)
}

// Addr is the address peers send to.
func (t *Transport) Addr() string { return t.addr }

// Dropped counts envelopes that arrived and were dropped: they did not
// decode, named a sender (or a request's From) that is not a peer address,
// or, with certificates, came with no proven sender (Refused's "payload").
func (t *Transport) Dropped() uint64 { return t.dropped.Load() }

// Send sends m once to the node at peer (IP:PORT), with this node's
// address as its sender, fire and forget: no future, no retry, no error.
// It may be lost, like any remote send; after Close it does nothing.
func (t *Transport) Send(peer string, m engine.Msg) {
	t.sendValue(peer, wrap(MsgFromEnvelope(t.addr, m)))
}

// sendValue sends v to peer; false when the transport is closed.
func (t *Transport) sendValue(peer string, v *wrapperspb.BytesValue) bool {
	t.mu.RLock()
	defer t.mu.RUnlock()
	if t.closed {
		return false
	}
	t.sys.Root.Send(actor.NewPID(peer, ReceiverName), v)
	return true
}

// Close stops the remote: envelopes still queued for peers are lost,
// requests waiting for replies return ErrClosed, and requests still being
// served are not waited for (their replies are not sent).
func (t *Transport) Close() {
	t.mu.Lock()
	defer t.mu.Unlock()
	if t.closed {
		return
	}
	t.closed = true
	close(t.done)
	t.rem.Shutdown(true)
	t.sys.Shutdown()
}

// minLevel passes on records from level up.
type minLevel struct {
	slog.Handler
	level slog.Level
}

func (h minLevel) Enabled(ctx context.Context, l slog.Level) bool {
	return l >= h.level && h.Handler.Enabled(ctx, l)
}

func (h minLevel) WithAttrs(as []slog.Attr) slog.Handler {
	return minLevel{h.Handler.WithAttrs(as), h.level}
}

func (h minLevel) WithGroup(name string) slog.Handler {
	return minLevel{h.Handler.WithGroup(name), h.level}
}

package remote

import (
	"bytes"
	"context"
	"errors"
	"io"
	"log/slog"
	"net"
	"sync"
	"sync/atomic"
	"time"

	protoremote "github.com/asynkron/protoactor-go/remote"
	"github.com/seckill/seckill/certs"
	"google.golang.org/grpc"
	"google.golang.org/grpc/codes"
	"google.golang.org/grpc/credentials"
	"google.golang.org/grpc/peer"
	"google.golang.org/grpc/status"
	"google.golang.org/protobuf/encoding/protowire"
)

// What guards the peer port. Protoactor's endpoint reader trusts what it
// reads: an envelope's type, target or sender index out of range, or a type
// name it does not know, panics the process (endpoint_reader.go, and
// ListProcesses and GetProcessDiagnostics are `panic("implement me")`).
// Every stream passes through streamGuard, which keeps only envelopes this
// transport sends (a BytesValue to ReceiverName) and stamps each with the
// node name the connection's certificate proved, in a header the sender
// cannot set (it is overwritten).
const (
	// peerHeader carries the proven sender from the guard to the receiver.
	peerHeader = "seckill-peer"
	// receiveMethod is the one gRPC method a peer may call.
	receiveMethod = "/remote.Remoting/Receive"
	// bytesValueType is the one protobuf type a peer may send.
	bytesValueType = "google.protobuf.BytesValue"
	// HandshakeTimeout bounds a connection's TLS handshake (or, without
	// TLS, its HTTP/2 preface): a flood of connections that say nothing
	// holds each for this long at most. gRPC's default is 120 s.
	HandshakeTimeout = 5 * time.Second
	// maxStreamsPerConn: a peer opens one stream per connection; a few more
	// leave room for a reconnect racing the old stream's end.
	maxStreamsPerConn = 8
	// refusedLogEvery: a refusal is logged at most this often (with the
	// count since the last line), so that a flood cannot fill the disk.
	refusedLogEvery = time.Second
)

// Reasons a Transport refuses what arrives, as the metric labels them.
const (
	// RefusedHandshake: a connection without a certificate of the
	// cluster's CA, or whose first bytes were not TLS (or, without TLS,
	// not HTTP/2).
	RefusedHandshake = "handshake"
	// RefusedEnvelope: a protoactor envelope this transport never sends (a
	// type, target or serializer of its own, indexes out of range), or a
	// call of another method.
	RefusedEnvelope = "envelope"
	// RefusedPayload: a payload that is not one of this package's envelopes.
	RefusedPayload = "payload"
	// RefusedReply: a reply from a node other than the one asked.
	RefusedReply = "reply"
)

// refusedReasons lists the reasons Refused reports, always all of them.
var refusedReasons = []string{RefusedHandshake, RefusedEnvelope, RefusedPayload, RefusedReply}

// Sender is who sent what arrived.
type Sender struct {
	// Node is the node name the connection's certificate proved; "" on a
	// transport without certificates, where nothing is proven.
	Node string
	// Addr is the peer address the sender wrote into the envelope (where a
	// reply goes): its claim, proven by nothing.
	Addr string
}

// refusals counts and logs, at most once a refusedLogEvery, what a
// Transport refused.
type refusals struct {
	log    *slog.Logger
	counts sync.Map // reason → *atomic.Uint64
	mu     sync.Mutex
	last   time.Time
	quiet  uint64 // refusals not logged since last
}

func (r *refusals) add(reason string, n int, attrs ...any) {
	c, _ := r.counts.LoadOrStore(reason, new(atomic.Uint64))
	c.(*atomic.Uint64).Add(uint64(n))
	r.mu.Lock()
	now := time.Now()
	if now.Sub(r.last) < refusedLogEvery {
		r.quiet += uint64(n)
		r.mu.Unlock()
		return
	}
	r.last = now
	quiet := r.quiet
	r.quiet = 0
	r.mu.Unlock()
	r.log.Warn("peer port: refused", append([]any{"reason", reason, "count", n, "unlogged_before", quiet}, attrs...)...)
}

func (r *refusals) snapshot() map[string]uint64 {
	m := make(map[string]uint64, len(refusedReasons))
	for _, reason := range refusedReasons {
		m[reason] = 0
		if c, ok := r.counts.Load(reason); ok {
			m[reason] = c.(*atomic.Uint64).Load()
		}
	}
	return m
}

// Refused counts what this transport refused since it started, by reason
// (every reason present, zero or not).
func (t *Transport) Refused() map[string]uint64 { return t.refused.snapshot() }

// serverOptions guard the gRPC server protoactor runs on the peer port.
func (t *Transport) serverOptions(node *certs.Node) []grpc.ServerOption {
	var creds credentials.TransportCredentials = prefaceCreds{t: t}
	if node != nil {
		creds = countedCreds{TransportCredentials: credentials.NewTLS(node.ServerTLS()), t: t}
	}
	return []grpc.ServerOption{
		grpc.Creds(creds),
		grpc.ConnectionTimeout(HandshakeTimeout),
		grpc.MaxConcurrentStreams(maxStreamsPerConn),
		grpc.StreamInterceptor(t.streamGuard),
		grpc.UnaryInterceptor(t.unaryGuard),
	}
}

// unaryGuard refuses every unary call: protoactor's two are unimplemented
// and panic.
func (t *Transport) unaryGuard(ctx context.Context, _ any, info *grpc.UnaryServerInfo, _ grpc.UnaryHandler) (any, error) {
	t.refused.add(RefusedEnvelope, 1, "method", info.FullMethod, "peer", peerAddr(ctx))
	return nil, status.Error(codes.Unimplemented, "not served")
}

// streamGuard lets a peer call Receive only, proven by its certificate when
// the transport has certificates, and screens every batch it sends.
func (t *Transport) streamGuard(srv any, ss grpc.ServerStream, info *grpc.StreamServerInfo, handler grpc.StreamHandler) error {
	if info.FullMethod != receiveMethod {
		t.refused.add(RefusedEnvelope, 1, "method", info.FullMethod, "peer", peerAddr(ss.Context()))
		return status.Error(codes.Unimplemented, "not served")
	}
	name := ""
	if t.secure {
		p, _ := peer.FromContext(ss.Context())
		if p != nil {
			if ti, ok := p.AuthInfo.(credentials.TLSInfo); ok {
				name = certs.PeerName(ti.State)
			}
		}
		if name == "" { // the handshake requires a verified certificate: not reached
			t.refused.add(RefusedHandshake, 1, "peer", peerAddr(ss.Context()))
			return status.Error(codes.Unauthenticated, "no verified certificate")
		}
	}
	return handler(srv, &guardedStream{ServerStream: ss, t: t, name: name, from: peerAddr(ss.Context())})
}

// guardedStream screens each message protoactor's reader reads.
type guardedStream struct {
	grpc.ServerStream
	t    *Transport
	name string // proven sender, "" without certificates
	from string // the connection's remote address, for logs
}

func (g *guardedStream) RecvMsg(m any) error {
	if err := g.ServerStream.RecvMsg(m); err != nil {
		return err
	}
	rm, ok := m.(*protoremote.RemoteMessage)
	if !ok {
		return nil
	}
	if b := rm.GetMessageBatch(); b != nil {
		if n := screenBatch(b, g.name); n > 0 {
			g.t.refused.add(RefusedEnvelope, n, "peer", g.from, "node", g.name)
		}
	}
	return nil
}

// screenBatch keeps in b only the envelopes this package sends, each one a
// BytesValue, by the proto serializer, to ReceiverName, with indexes in
// range, and stamps each with name (the proven sender) in place of any
// header it came with. It returns how many it dropped. What it keeps,
// protoactor's reader takes without a panic or an error (FuzzScreenBatch).
func screenBatch(b *protoremote.MessageBatch, name string) (dropped int) {
	kept := b.Envelopes[:0]
	for _, e := range b.Envelopes {
		if e == nil || !wellFormed(b, e) {
			dropped++
			continue
		}
		e.MessageHeader = nil
		if name != "" {
			e.MessageHeader = &protoremote.MessageHeader{HeaderData: map[string]string{peerHeader: name}}
		}
		kept = append(kept, e)
	}
	clear(b.Envelopes[len(kept):])
	b.Envelopes = kept
	return dropped
}

func wellFormed(b *protoremote.MessageBatch, e *protoremote.MessageEnvelope) bool {
	if e.TypeId < 0 || int(e.TypeId) >= len(b.TypeNames) || b.TypeNames[e.TypeId] != bytesValueType || e.SerializerId != 0 {
		return false
	}
	if e.Target < 0 || int(e.Target) >= len(b.Targets) || b.Targets[e.Target] == nil || b.Targets[e.Target].Id != ReceiverName {
		return false
	}
	if e.Sender < 0 || int(e.Sender) > len(b.Senders) || (e.Sender > 0 && b.Senders[e.Sender-1] == nil) {
		return false
	}
	return isBytesValue(e.MessageData)
}

// isBytesValue reports whether data is a BytesValue in protobuf's wire
// format: field 1, length-delimited, and nothing else.
func isBytesValue(data []byte) bool {
	for len(data) > 0 {
		num, typ, n := protowire.ConsumeTag(data)
		if n < 0 || num != 1 || typ != protowire.BytesType {
			return false
		}
		data = data[n:]
		_, n = protowire.ConsumeBytes(data)
		if n < 0 {
			return false
		}
		data = data[n:]
	}
	return true
}

// proven reads the sender the guard stamped on a message's header.
func proven(h interface{ Get(string) string }) string {
	if h == nil {
		return ""
	}
	return h.Get(peerHeader)
}

func peerAddr(ctx context.Context) string {
	if p, ok := peer.FromContext(ctx); ok && p.Addr != nil {
		return p.Addr.String()
	}
	return ""
}

// countedCreds is TLS that counts the handshakes it refuses.
type countedCreds struct {
	credentials.TransportCredentials
	t *Transport
}

func (c countedCreds) ServerHandshake(conn net.Conn) (net.Conn, credentials.AuthInfo, error) {
	out, info, err := c.TransportCredentials.ServerHandshake(conn)
	if err != nil {
		c.t.refused.add(RefusedHandshake, 1, "peer", conn.RemoteAddr().String(), "err", err)
	}
	return out, info, err
}

func (c countedCreds) Clone() credentials.TransportCredentials {
	return countedCreds{TransportCredentials: c.TransportCredentials.Clone(), t: c.t}
}

// http2Preface is what every HTTP/2 client, gRPC's among them, sends first.
var http2Preface = []byte("PRI * HTTP/2.0\r\n\r\nSM\r\n\r\n")

// prefaceCreds is gRPC's insecure credentials (for --insecure-cluster, on
// loopback only) that refuse, and count, a connection whose first bytes are
// not the HTTP/2 preface, before gRPC reads it.
type prefaceCreds struct{ t *Transport }

func (p prefaceCreds) ServerHandshake(conn net.Conn) (net.Conn, credentials.AuthInfo, error) {
	buf := make([]byte, len(http2Preface))
	conn.SetReadDeadline(time.Now().Add(HandshakeTimeout))
	_, err := io.ReadFull(conn, buf)
	conn.SetReadDeadline(time.Time{})
	if err == nil && !bytes.Equal(buf, http2Preface) {
		err = errors.New("not an HTTP/2 preface")
	}
	if err != nil {
		p.t.refused.add(RefusedHandshake, 1, "peer", conn.RemoteAddr().String(), "err", err)
		return nil, nil, err
	}
	return &replayConn{Conn: conn, head: buf}, noSecurity, nil
}

func (prefaceCreds) ClientHandshake(_ context.Context, _ string, conn net.Conn) (net.Conn, credentials.AuthInfo, error) {
	return conn, noSecurity, nil
}

func (prefaceCreds) Info() credentials.ProtocolInfo {
	return credentials.ProtocolInfo{SecurityProtocol: "insecure"}
}

func (p prefaceCreds) Clone() credentials.TransportCredentials { return p }

func (prefaceCreds) OverrideServerName(string) error { return nil }

type insecureInfo struct{ credentials.CommonAuthInfo }

var noSecurity = insecureInfo{credentials.CommonAuthInfo{SecurityLevel: credentials.NoSecurity}}

func (insecureInfo) AuthType() string { return "insecure" }

// replayConn gives back the bytes read ahead before the rest.
type replayConn struct {
	net.Conn
	head []byte
}

func (c *replayConn) Read(p []byte) (int, error) {
	if len(c.head) > 0 {
		n := copy(p, c.head)
		c.head = c.head[n:]
		return n, nil
	}
	return c.Conn.Read(p)
}

//go:build !race

// Attacks on one Transport from gRPC clients in this process: not under
// -race, for the races inside grpc and protoactor that pair_test.go names
// (a second Transport.Start writes grpc's global logger while the first
// test's connections read it).

package remote_test

import (
	"crypto/tls"
	"log/slog"
	"testing"
	"time"

	"github.com/asynkron/protoactor-go/actor"
	protoremote "github.com/asynkron/protoactor-go/remote"
	"github.com/seckill/seckill/certs"
	"github.com/seckill/seckill/engine"
	"github.com/seckill/seckill/internal/peerattack"
	"github.com/seckill/seckill/remote"
	"google.golang.org/protobuf/proto"
	"google.golang.org/protobuf/types/known/wrapperspb"
)

const guardWait = 10 * time.Second

type heard struct {
	from remote.Sender
	m    engine.Msg
}

// target is one Transport on loopback whose Handle records what it hears.
type target struct {
	*remote.Transport
	got chan heard
}

func startTarget(t *testing.T, node *certs.Node) *target {
	t.Helper()
	tg := &target{got: make(chan heard, 100)}
	tr, err := remote.Start(remote.Config{Addr: "127.0.0.1:0", Certs: node, Logger: slog.New(slog.DiscardHandler),
		Handle: func(from remote.Sender, m engine.Msg) { tg.got <- heard{from, m} }})
	if err != nil {
		t.Fatal(err)
	}
	t.Cleanup(tr.Close)
	tg.Transport = tr
	return tg
}

func (tg *target) next(t *testing.T) heard {
	t.Helper()
	select {
	case h := <-tg.got:
		return h
	case <-time.After(guardWait):
		t.Fatalf("nothing heard within %v", guardWait)
		return heard{}
	}
}

// waitRefused waits until reason's count reaches want.
func (tg *target) waitRefused(t *testing.T, reason string, want uint64) {
	t.Helper()
	deadline := time.Now().Add(guardWait)
	for tg.Refused()[reason] < want {
		if time.Now().After(deadline) {
			t.Fatalf("refused %v, want %s at %d", tg.Refused(), reason, want)
		}
		time.Sleep(10 * time.Millisecond) // polling a counter: nothing to wait on
	}
}

func msg(seq uint64) engine.Msg {
	return engine.Msg{Kind: engine.MsgAsk, From: engine.ShardAddr("it", 1), To: engine.PoolAddr("it"), Want: 1, Seq: seq, Gen: 1}
}

func bytesValue(p []byte) []byte {
	b, _ := proto.Marshal(&wrapperspb.BytesValue{Value: p})
	return b
}

// TestPeerPortRefusesWhatNoNodeSends: each thing an attacker on the peer
// port may send that a node never does is refused and counted, and the
// node goes on hearing what follows on the same stream (which proves the
// refused one was read first). Without certificates (--insecure-cluster),
// so everything reaches the guard.
func TestPeerPortRefusesWhatNoNodeSends(t *testing.T) {
	tg := startTarget(t, nil)
	a, err := peerattack.Dial(tg.Addr(), nil)
	if err != nil {
		t.Fatal(err)
	}
	defer a.Close()
	good := bytesValue(remote.AppendEnvelope(nil, remote.MsgFromEnvelope("127.0.0.2:1", msg(1))))
	goodMsg := remote.AppendEnvelope(nil, remote.MsgFromEnvelope("127.0.0.2:1", msg(1)))
	pid := func(id string) []*actor.PID { return []*actor.PID{{Address: "x", Id: id}} }
	env := func(mod func(*protoremote.MessageEnvelope)) []*protoremote.MessageEnvelope {
		e := &protoremote.MessageEnvelope{MessageData: good}
		mod(e)
		return []*protoremote.MessageEnvelope{e}
	}
	for i, c := range []struct {
		name   string
		send   func() error
		reason string
	}{
		{"unknown protobuf type", func() error { return a.Raw("evil.Type", remote.ReceiverName, good, nil) }, remote.RefusedEnvelope},
		{"another type protoactor knows", func() error { return a.Raw("actor.Stop", remote.ReceiverName, nil, nil) }, remote.RefusedEnvelope},
		{"another actor", func() error { return a.Raw("google.protobuf.BytesValue", "activator", good, nil) }, remote.RefusedEnvelope},
		{"type index out of range", func() error {
			return a.Batch(&protoremote.MessageBatch{TypeNames: []string{"google.protobuf.BytesValue"}, Targets: pid(remote.ReceiverName),
				Envelopes: env(func(e *protoremote.MessageEnvelope) { e.TypeId = 3 })})
		}, remote.RefusedEnvelope},
		{"target index out of range", func() error {
			return a.Batch(&protoremote.MessageBatch{TypeNames: []string{"google.protobuf.BytesValue"}, Targets: pid(remote.ReceiverName),
				Envelopes: env(func(e *protoremote.MessageEnvelope) { e.Target = 7 })})
		}, remote.RefusedEnvelope},
		{"sender index out of range", func() error {
			return a.Batch(&protoremote.MessageBatch{TypeNames: []string{"google.protobuf.BytesValue"}, Targets: pid(remote.ReceiverName),
				Envelopes: env(func(e *protoremote.MessageEnvelope) { e.Sender = 2 })})
		}, remote.RefusedEnvelope},
		{"json serializer", func() error {
			return a.Batch(&protoremote.MessageBatch{TypeNames: []string{"google.protobuf.BytesValue"}, Targets: pid(remote.ReceiverName),
				Envelopes: env(func(e *protoremote.MessageEnvelope) { e.SerializerId = 1 })})
		}, remote.RefusedEnvelope},
		{"not protobuf", func() error {
			return a.Raw("google.protobuf.BytesValue", remote.ReceiverName, []byte{0xff, 0xff, 0xff}, nil)
		}, remote.RefusedEnvelope},
		{"truncated envelope", func() error { return a.Payload(goodMsg[:len(goodMsg)-2], "") }, remote.RefusedPayload},
		{"unknown envelope tag", func() error { return a.Payload([]byte{200, 1, 2}, "") }, remote.RefusedPayload},
		{"empty payload", func() error { return a.Payload(nil, "") }, remote.RefusedPayload},
	} {
		before := tg.Refused()[c.reason]
		if err := c.send(); err != nil {
			t.Fatalf("%s: %v", c.name, err)
		}
		if err := a.Msg("127.0.0.2:1", "", msg(uint64(100+i))); err != nil {
			t.Fatalf("%s: the message after: %v", c.name, err)
		}
		if h := tg.next(t); h.m.Seq != uint64(100+i) {
			t.Fatalf("%s: heard %+v, want only the message after", c.name, h)
		}
		if got := tg.Refused()[c.reason]; got != before+1 {
			t.Fatalf("%s: refused %s %d, want %d", c.name, c.reason, got, before+1)
		}
	}
	// A header claiming a proven sender is overwritten: nothing is proven
	// without certificates.
	if err := a.Msg("127.0.0.2:1", "n1", msg(1)); err != nil {
		t.Fatal(err)
	}
	if h := tg.next(t); h.from.Node != "" {
		t.Fatalf("a forged header passed as proof: %+v", h.from)
	}
	// protoactor's unary calls panic: refused before they run.
	if err := peerattack.ListProcesses(tg.Addr(), nil); err == nil {
		t.Fatal("ListProcesses answered")
	}
	// Bytes that are not HTTP/2, and a flood of silent connections.
	hs := tg.Refused()[remote.RefusedHandshake]
	if err := peerattack.Garbage(tg.Addr(), []byte("GET / HTTP/1.1\r\nHost: x\r\n\r\n garbage garbage garbage")); err != nil {
		t.Fatal(err)
	}
	tg.waitRefused(t, remote.RefusedHandshake, hs+1)
	stop, err := peerattack.Flood(tg.Addr(), 200)
	if err != nil {
		t.Fatal(err)
	}
	defer stop()
	b, err := peerattack.Dial(tg.Addr(), nil)
	if err != nil {
		t.Fatalf("a peer cannot connect during a flood: %v", err)
	}
	defer b.Close()
	if err := b.Msg("127.0.0.2:1", "", msg(999)); err != nil {
		t.Fatal(err)
	}
	if h := tg.next(t); h.m.Seq != 999 {
		t.Fatalf("heard %+v during the flood", h)
	}
}

// TestPeerPortProvesSenders: with certificates, a connection without one,
// or with one of another CA, is refused at the handshake and counted; a
// node of the cluster's CA is heard as the node its certificate names,
// whatever address or header it claims.
func TestPeerPortProvesSenders(t *testing.T) {
	dir, otherDir := t.TempDir(), t.TempDir()
	for _, d := range []string{dir, otherDir} {
		if err := certs.CreateCA(d, false); err != nil {
			t.Fatal(err)
		}
	}
	load := func(dir, name string) *certs.Node {
		if err := certs.CreateNode(dir, name, []string{"127.0.0.1"}, false); err != nil {
			t.Fatal(err)
		}
		n, err := certs.Load(dir, name)
		if err != nil {
			t.Fatal(err)
		}
		return n
	}
	tg := startTarget(t, load(dir, "n2"))
	n1, stranger := load(dir, "n1"), load(otherDir, "n1")
	noCert := n1.ClientTLS()
	noCert.Certificates = nil
	for i, c := range []struct {
		name string
		tc   *tls.Config
	}{
		{"no TLS", nil},
		{"no certificate", noCert},
		{"another CA", stranger.ClientTLS()},
	} {
		before := tg.Refused()[remote.RefusedHandshake]
		if a, err := peerattack.Dial(tg.Addr(), c.tc); err == nil {
			a.Msg("127.0.0.2:1", "n1", msg(uint64(i)))
			a.Close()
			t.Errorf("%s: connected", c.name)
		}
		tg.waitRefused(t, remote.RefusedHandshake, before+1)
	}
	if err := peerattack.ListProcesses(tg.Addr(), nil); err == nil {
		t.Fatal("ListProcesses answered without TLS")
	}
	a, err := peerattack.Dial(tg.Addr(), n1.ClientTLS())
	if err != nil {
		t.Fatal(err)
	}
	defer a.Close()
	if err := a.Msg("127.0.0.9:9", "n3", msg(42)); err != nil {
		t.Fatal(err)
	}
	h := tg.next(t)
	if h.m.Seq != 42 || h.from != (remote.Sender{Node: "n1", Addr: "127.0.0.9:9"}) {
		t.Fatalf("heard %+v from %+v, want seq 42 from proven n1 (claiming 127.0.0.9:9)", h.m, h.from)
	}
	select {
	case h := <-tg.got:
		t.Fatalf("a refused connection was heard: %+v", h)
	default:
	}
}

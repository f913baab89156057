package remote

import (
	"bytes"
	"log/slog"
	"sync"
	"testing"
	"time"

	"github.com/seckill/seckill/engine"
	"google.golang.org/protobuf/types/known/wrapperspb"
)

// Two nodes on distinct loopback addresses, as in a three-node cluster test:
// the whole 127/8 answers on lo.
const (
	hostA = "127.0.0.11"
	hostB = "127.0.0.12"
	// wait bounds every wait for an arrival: generous, for a shared machine.
	wait = 10 * time.Second
)

// node is a Transport whose arrivals go to a channel.
type node struct {
	*Transport
	got chan arrival
	log *syncBuffer
}

// arrival is a message as the handler heard it.
type arrival struct {
	from string // the address the envelope names
	m    engine.Msg
	node string // the node its connection proved ("" without certificates)
}

func startNode(t *testing.T, addr string) *node {
	t.Helper()
	return startNodeCfg(t, Config{Addr: addr})
}

// startNodeCfg starts a node with cfg, its Handle and Logger the node's.
func startNodeCfg(t testing.TB, cfg Config) *node {
	t.Helper()
	n := &node{got: make(chan arrival, 20000), log: &syncBuffer{}}
	cfg.Handle = func(from Sender, m engine.Msg) { n.got <- arrival{from.Addr, m, from.Node} }
	cfg.Logger = slog.New(slog.NewTextHandler(n.log, nil))
	tr, err := Start(cfg)
	if err != nil {
		t.Fatal(err)
	}
	n.Transport = tr
	t.Cleanup(tr.Close)
	return n
}

func (n *node) recv(t *testing.T) engine.Msg {
	t.Helper()
	return n.recvFrom(t).m
}

func (n *node) recvFrom(t *testing.T) arrival {
	t.Helper()
	select {
	case a := <-n.got:
		return a
	case <-time.After(wait):
		t.Fatalf("nothing arrived at %s within %v", n.Addr(), wait)
		return arrival{}
	}
}

func seqMsg(seq uint64) engine.Msg {
	return engine.Msg{Kind: engine.MsgAsk, From: engine.ShardAddr("item-1", 1), To: engine.PoolAddr("item-1"), Want: 1, Seq: seq, Gen: 1}
}

func TestStartRefuses(t *testing.T) {
	h := func(Sender, engine.Msg) {}
	if _, err := Start(Config{Addr: hostA + ":0"}); err == nil {
		t.Error("started without a handler")
	}
	for _, addr := range []string{"", "localhost:0", "0.0.0.0:0", hostA, hostA + ":x", hostA + ":70000"} {
		if tr, err := Start(Config{Addr: addr, Handle: h}); err == nil {
			tr.Close()
			t.Errorf("started on %q", addr)
		}
	}
}

type syncBuffer struct {
	mu sync.Mutex
	b  bytes.Buffer
}

func (s *syncBuffer) Write(p []byte) (int, error) {
	s.mu.Lock()
	defer s.mu.Unlock()
	return s.b.Write(p)
}

func (s *syncBuffer) String() string {
	s.mu.Lock()
	defer s.mu.Unlock()
	return s.b.String()
}

// TestSelfSender: Send names this node as the sender; an envelope of the
// old form arrives with no sender; one whose sender is not IP:PORT is
// dropped.
func TestSelfSender(t *testing.T) {
	n := startNode(t, hostA+":0")
	n.Send(n.Addr(), seqMsg(1))
	if a := n.recvFrom(t); a != (arrival{n.Addr(), seqMsg(1), ""}) {
		t.Fatalf("got %+v, want seq 1 from %s", a, n.Addr())
	}
	for _, from := range []string{"", "x", "127.0.0.1", "127.0.0.1:0", "0.0.0.0:80", "[fe80::1%lo]:80", "localhost:80"} {
		n.sendValue(n.Addr(), wrap(MsgFromEnvelope(from, seqMsg(2))))
	}
	n.sendValue(n.Addr(), wrap(MsgEnvelope(seqMsg(3))))
	// Delivery to oneself is in order: the drops came before.
	if a := n.recvFrom(t); a != (arrival{"", seqMsg(3), ""}) {
		t.Fatalf("got %+v, want seq 3 from nobody", a)
	}
	if d := n.Dropped(); d != 7 {
		t.Fatalf("dropped %d, want 7", d)
	}
	n.Send(n.Addr(), seqMsg(4))
	if a := n.recvFrom(t); a != (arrival{n.Addr(), seqMsg(4), ""}) {
		t.Fatalf("got %+v, want seq 4 from %s", a, n.Addr())
	}
}

// TestSelfConcurrentSendClose runs this package's code under the race
// detector with one Transport (two in one process race inside the
// libraries, see pair_test.go): sends to its own address are delivered
// locally, through the same receiver, while Close runs.
func TestSelfConcurrentSendClose(t *testing.T) {
	n := startNode(t, hostA+":0")
	const senders, each = 4, 500
	var wg sync.WaitGroup
	for g := range senders {
		wg.Go(func() {
			for i := range each {
				n.Send(n.Addr(), seqMsg(uint64(g*each+i)))
				if i%100 == 0 {
					n.sendValue(n.Addr(), &wrapperspb.BytesValue{Value: []byte{byte(TagMsg), 1}})
				}
			}
		})
	}
	for range senders * each {
		n.recv(t)
	}
	wg.Wait()
	if d := n.Dropped(); d != senders*each/100 {
		t.Fatalf("dropped %d, want %d", d, senders*each/100)
	}
	// Sends racing Close: before it they may arrive, after it they do nothing.
	for range senders {
		wg.Go(func() {
			for i := range each {
				n.Send(n.Addr(), seqMsg(uint64(i)))
			}
		})
	}
	n.Close()
	wg.Wait()
	n.Close() // twice is fine
}

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
	got chan engine.Msg
	log *syncBuffer
}

func startNode(t *testing.T, addr string) *node {
	t.Helper()
	n := &node{got: make(chan engine.Msg, 20000), log: &syncBuffer{}}
	tr, err := Start(Config{Addr: addr, Handle: func(m engine.Msg) { n.got <- m },
		Logger: slog.New(slog.NewTextHandler(n.log, nil))})
	if err != nil {
		t.Fatal(err)
	}
	n.Transport = tr
	t.Cleanup(tr.Close)
	return n
}

func (n *node) recv(t *testing.T) engine.Msg {
	t.Helper()
	select {
	case m := <-n.got:
		return m
	case <-time.After(wait):
		t.Fatalf("nothing arrived at %s within %v", n.Addr(), wait)
		return engine.Msg{}
	}
}

func seqMsg(seq uint64) engine.Msg {
	return engine.Msg{Kind: engine.MsgAsk, From: engine.ShardAddr("item-1", 1), To: engine.PoolAddr("item-1"), Want: 1, Seq: seq, Gen: 1}
}

func TestStartRefuses(t *testing.T) {
	h := func(engine.Msg) {}
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

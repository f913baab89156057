//go:build !race

package remote

import (
	"net"
	"runtime"
	"strings"
	"sync"
	"testing"
	"time"

	"github.com/seckill/seckill/engine"
	"google.golang.org/protobuf/types/known/wrapperspb"
)

// Tests with two Transports in one process. They do not run under -race:
// the race detector reports races inside the libraries, never in this
// package's code (that is checked by transport_test.go, one Transport):
//
//   - every protoactor Remote.Start calls grpclog.SetLoggerV2, a write to a
//     grpc global that the grpc goroutines of any other live connection
//     read (protoactor remote/server.go:62; the etcd client's grpc too);
//   - Remote.Shutdown's endpointManager.stop sets connections to nil while
//     the event stream's removeEndpoint reads it (remote/endpoint_manager.go).

func TestEveryKindArrives(t *testing.T) {
	a, b := startNode(t, hostA+":0"), startNode(t, hostB+":0")
	if !strings.HasPrefix(b.Addr(), hostB+":") || strings.HasSuffix(b.Addr(), ":0") {
		t.Fatalf("B advertises %s", b.Addr())
	}
	for _, m := range msgOfEveryKind() {
		t.Run(m.Kind.String(), func(t *testing.T) {
			a.Send(b.Addr(), m)
			if got := b.recvFrom(t); got != (arrival{a.Addr(), m, ""}) {
				t.Fatalf("got %+v from %s, want %+v from %s", got.m, got.from, m, a.Addr())
			}
		})
	}
}

// TestDialsFromOwnAddress: a peer sees a node's connections come from the
// node's own IP, so source-address rules (nftables) can cut one node off.
func TestDialsFromOwnAddress(t *testing.T) {
	l, err := net.Listen("tcp", hostB+":0")
	if err != nil {
		t.Fatal(err)
	}
	defer l.Close()
	a := startNode(t, hostA+":0")
	a.Send(l.Addr().String(), seqMsg(1))
	c, err := l.Accept()
	if err != nil {
		t.Fatal(err)
	}
	c.Close()
	if ip := c.RemoteAddr().(*net.TCPAddr).IP.String(); ip != hostA {
		t.Fatalf("connection from %s, want %s", ip, hostA)
	}
}

func TestManyMessagesArrive(t *testing.T) {
	const senders, each = 8, 1250
	a, b := startNode(t, hostA+":0"), startNode(t, hostB+":0")
	start := time.Now()
	var wg sync.WaitGroup
	for g := range senders {
		wg.Go(func() {
			for i := range each {
				a.Send(b.Addr(), seqMsg(uint64(g*each+i)))
			}
		})
	}
	seen := make([]bool, senders*each)
	for range senders * each {
		m := b.recv(t)
		if seen[m.Seq] {
			t.Fatalf("seq %d arrived twice", m.Seq)
		}
		seen[m.Seq] = true
	}
	d := time.Since(start)
	wg.Wait()
	t.Logf("%d messages from %d goroutines in %v: %.0f msgs/s", senders*each, senders, d, float64(senders*each)/d.Seconds())
}

func TestGarbageIsDropped(t *testing.T) {
	a, b := startNode(t, hostA+":0"), startNode(t, hostB+":0")
	good := AppendEnvelope(nil, MsgEnvelope(seqMsg(7)))
	a.sendValue(b.Addr(), &wrapperspb.BytesValue{Value: []byte{200, 1, 2, 3}})
	a.sendValue(b.Addr(), &wrapperspb.BytesValue{Value: good[:len(good)-2]})
	a.sendValue(b.Addr(), &wrapperspb.BytesValue{})
	// One connection delivers in order: once this arrives the rest was seen.
	a.Send(b.Addr(), seqMsg(8))
	if m := b.recv(t); m.Seq != 8 {
		t.Fatalf("got %+v", m)
	}
	if n := b.Dropped(); n != 3 {
		t.Fatalf("dropped %d, want 3", n)
	}
	if n := b.Refused()[RefusedPayload]; n != 3 {
		t.Fatalf("refused %d payloads, want 3", n)
	}
	// Logged at most once a second, with the count of those not logged.
	if n := strings.Count(b.log.String(), "peer port: refused"); n < 1 || n >= 3 {
		t.Fatalf("%d refusals logged, want 1 (or 2 across a second):\n%s", n, b.log.String())
	}
	a.Send(b.Addr(), seqMsg(9))
	if m := b.recv(t); m.Seq != 9 {
		t.Fatalf("got %+v", m)
	}
}

// TestPeerRestart: after B restarts on its address, A's sends reach it
// again; sends while B was down may be lost, and that is the contract.
func TestPeerRestart(t *testing.T) {
	before := runtime.NumGoroutine()
	a := startNode(t, hostA+":0")
	b := startNode(t, hostB+":0")
	addr := b.Addr()
	a.Send(addr, seqMsg(1))
	b.recv(t)
	b.Close()
	a.Send(addr, seqMsg(2)) // lost, or not: nobody can tell
	b = startNode(t, addr)
	deadline := time.Now().Add(wait)
	for seq := uint64(3); ; seq++ {
		a.Send(addr, seqMsg(seq))
		select {
		case <-b.got:
		case <-time.After(100 * time.Millisecond):
			if time.Now().After(deadline) {
				t.Fatalf("no send reached the restarted peer within %v", wait)
			}
			continue
		}
		t.Logf("the restarted peer heard seq %d, %v after the restart", seq, time.Since(deadline.Add(-wait)))
		break
	}
	for i := range 100 {
		a.Send(addr, seqMsg(uint64(1000+i)))
	}
	for range 100 {
		b.recv(t)
	}
	a.Close()
	b.Close()
	n := runtime.NumGoroutine()
	for end := time.Now().Add(5 * time.Second); n > before+5 && time.Now().Before(end); n = runtime.NumGoroutine() {
		time.Sleep(50 * time.Millisecond)
	}
	t.Logf("goroutines: %d before, %d after closing both", before, n)
	if n > before+5 {
		t.Errorf("%d goroutines left over (%d before)", n-before, before)
	}
}

func TestStartRefusesTakenAddress(t *testing.T) {
	h := func(Sender, engine.Msg) {}
	a := startNode(t, hostA+":0")
	if tr, err := Start(Config{Addr: a.Addr(), Handle: h}); err == nil {
		tr.Close()
		t.Errorf("started twice on %s", a.Addr())
	}
}

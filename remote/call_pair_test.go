//go:build !race

package remote

import (
	"errors"
	"sync"
	"testing"
	"time"
)

// Requests between two Transports (not under -race: see pair_test.go).

func TestRequestReply(t *testing.T) {
	froms := make(chan string, 10)
	a := startNode(t, hostA+":0")
	b := startNodeCfg(t, Config{Addr: hostB + ":0", OnRequest: func(req Request) Reply {
		froms <- req.From
		return echo(req)
	}})
	for i := range 3 {
		req := reqN(i)
		rep, err := a.Request(b.Addr(), req, wait)
		if err != nil {
			t.Fatalf("%s: %v", req.Kind, err)
		}
		checkEcho(t, req, rep)
		if from := <-froms; from != a.Addr() {
			t.Fatalf("the request came from %s, want %s", from, a.Addr())
		}
	}
}

// TestRequestSlowPeer: a peer that answers after the timeout gives
// ErrTimeout; its reply is counted late, not handed to a later request.
func TestRequestSlowPeer(t *testing.T) {
	release := make(chan struct{})
	a := startNode(t, hostA+":0")
	b := startNodeCfg(t, Config{Addr: hostB + ":0", OnRequest: func(req Request) Reply {
		if req.User == "slow" {
			<-release
		}
		return echo(req)
	}})
	const timeout = 200 * time.Millisecond
	start := time.Now()
	rep, err := a.Request(b.Addr(), Request{Kind: ReqGrab, Item: "item-1", User: "slow", Qty: 1}, timeout)
	if d := time.Since(start); !errors.Is(err, ErrTimeout) || d < timeout || d > wait {
		t.Fatalf("got %+v, %v after %v; want ErrTimeout after %v", rep, err, d, timeout)
	}
	close(release)
	waitFor(t, "the slow reply counted late", func() bool { return a.LateReplies() == 1 })
	for i := range 3 {
		req := reqN(i)
		rep, err := a.Request(b.Addr(), req, wait)
		if err != nil {
			t.Fatal(err)
		}
		checkEcho(t, req, rep)
	}
	if p := a.pending.len(); p != 0 {
		t.Errorf("%d requests still pending", p)
	}
}

// TestRequestClosedPeer: a request to a peer that was closed, or was never
// there, times out; nothing panics, and later requests elsewhere work.
func TestRequestClosedPeer(t *testing.T) {
	a := startNode(t, hostA+":0")
	b := startNodeCfg(t, Config{Addr: hostB + ":0", OnRequest: echo})
	c := startNode(t, "127.0.0.13:0")
	gone := c.Addr()
	c.Close()
	if _, err := a.Request(b.Addr(), reqN(0), wait); err != nil {
		t.Fatal(err)
	}
	b.Close()
	const timeout = 300 * time.Millisecond
	for _, peer := range []string{b.Addr(), gone} {
		start := time.Now()
		if rep, err := a.Request(peer, reqN(0), timeout); !errors.Is(err, ErrTimeout) {
			t.Fatalf("to %s: %+v, %v; want ErrTimeout", peer, rep, err)
		}
		t.Logf("to %s: ErrTimeout after %v", peer, time.Since(start))
	}
	if p := a.pending.len(); p != 0 {
		t.Errorf("%d requests still pending", p)
	}
	d := startNodeCfg(t, Config{Addr: "127.0.0.14:0", OnRequest: echo})
	req := reqN(2)
	rep, err := a.Request(d.Addr(), req, wait)
	if err != nil {
		t.Fatal(err)
	}
	checkEcho(t, req, rep)
}

// TestConcurrentRequests: 200 requesters each way at once; each hears its
// own reply.
func TestConcurrentRequests(t *testing.T) {
	a := startNodeCfg(t, Config{Addr: hostA + ":0", OnRequest: echo})
	b := startNodeCfg(t, Config{Addr: hostB + ":0", OnRequest: echo})
	const requesters = 200
	start := time.Now()
	var wg sync.WaitGroup
	for i := range 2 * requesters {
		from, to := a, b
		if i%2 == 1 {
			from, to = b, a
		}
		wg.Go(func() {
			req := reqN(i)
			rep, err := from.Request(to.Addr(), req, wait)
			if err != nil {
				t.Errorf("request %d: %v", i, err)
				return
			}
			checkEcho(t, req, rep)
		})
	}
	wg.Wait()
	t.Logf("%d requests in %v", 2*requesters, time.Since(start))
	for _, n := range []*node{a, b} {
		if p, l := n.pending.len(), n.LateReplies(); p != 0 || l != 0 {
			t.Errorf("%s: %d pending, %d late", n.Addr(), p, l)
		}
	}
}

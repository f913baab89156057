package remote

import (
	"errors"
	"strconv"
	"strings"
	"sync"
	"sync/atomic"
	"testing"
	"time"

	"github.com/seckill/seckill/engine"
)

// These tests run one Transport that requests of itself: a request to its
// own address is delivered locally, through the same receiver, so the
// pending table and the serving side run under the race detector
// (pair_test.go says why two Transports do not).

// echo answers a request with its content, so that a requester can tell
// its reply from any other: a grab is confirmed with the request's item,
// user and key and its Qty as Seq; a release is an unknown grab; a stock
// change's new stock is its Delta.
func echo(req Request) Reply {
	switch req.Kind {
	case ReqGrab:
		return Reply{Code: ReplyOK, Outcome: engine.Confirmed,
			Grab: engine.Grab{Item: req.Item, Shard: 1, Seq: uint64(req.Qty), User: req.User, Qty: 1, Key: req.Key}}
	case ReqStock:
		return Reply{Code: ReplyOK, Stock: req.Delta}
	}
	return Reply{Code: ReplyUnknownGrab, Outcome: engine.UnknownGrab}
}

// reqN is request i of a test: grabs, releases and stock changes in turn,
// each with its own content.
func reqN(i int) Request {
	s := strconv.Itoa(i)
	switch i % 3 {
	case 1:
		return Request{Kind: ReqRelease, Item: "item-" + s, GrabID: "item-" + s + ".0.1"}
	case 2:
		return Request{Kind: ReqStock, Item: "item-" + s, Delta: int64(i)}
	}
	return Request{Kind: ReqGrab, Item: "item-1", User: "user-" + s, Key: "key " + s, Qty: int64(i + 1)}
}

// checkEcho reports a reply that is not echo's answer to req.
func checkEcho(t *testing.T, req Request, rep Reply) {
	t.Helper()
	want := echo(req)
	want.ID = rep.ID
	if rep != want {
		t.Errorf("%s request %+v answered %+v", req.Kind, req, rep)
	}
}

// waitFor polls cond until it holds, for at most wait.
func waitFor(t *testing.T, what string, cond func() bool) {
	t.Helper()
	for end := time.Now().Add(wait); !cond(); time.Sleep(5 * time.Millisecond) {
		if time.Now().After(end) {
			t.Fatalf("%s: not within %v", what, wait)
		}
	}
}

func TestSelfRequests(t *testing.T) {
	n := startNodeCfg(t, Config{Addr: hostA + ":0", OnRequest: echo})
	const requesters = 200
	var wg sync.WaitGroup
	for i := range requesters {
		wg.Go(func() {
			req := reqN(i)
			rep, err := n.Request(n.Addr(), req, wait)
			if err != nil {
				t.Errorf("request %d: %v", i, err)
				return
			}
			checkEcho(t, req, rep)
		})
	}
	wg.Wait()
	if p := n.pending.len(); p != 0 {
		t.Errorf("%d requests still pending", p)
	}
	if l := n.LateReplies(); l != 0 {
		t.Errorf("%d late replies", l)
	}
}

// TestSelfRepliesRaceTimeouts: timeouts of 0 to 15 ms end
// waits while replies arrive. Each request hears its own reply or
// ErrTimeout; each reply is delivered or counted late, never both, never
// to another request.
func TestSelfRepliesRaceTimeouts(t *testing.T) {
	n := startNodeCfg(t, Config{Addr: hostA + ":0", OnRequest: echo})
	const requesters = 400
	var timeouts atomic.Uint64
	var wg sync.WaitGroup
	for i := range requesters {
		wg.Go(func() {
			req := reqN(i)
			rep, err := n.Request(n.Addr(), req, time.Duration(i%16)*time.Millisecond)
			if errors.Is(err, ErrTimeout) {
				timeouts.Add(1)
				return
			}
			if err != nil {
				t.Errorf("request %d: %v", i, err)
				return
			}
			checkEcho(t, req, rep)
		})
	}
	wg.Wait()
	waitFor(t, "every reply to a timed-out request counted late", func() bool { return n.LateReplies() == timeouts.Load() })
	t.Logf("%d of %d requests timed out", timeouts.Load(), requesters)
	if p := n.pending.len(); p != 0 {
		t.Errorf("%d requests still pending", p)
	}
}

func TestSelfSlowHandler(t *testing.T) {
	release := make(chan struct{})
	n := startNodeCfg(t, Config{Addr: hostA + ":0", OnRequest: func(req Request) Reply {
		if req.User == "slow" {
			<-release
		}
		return echo(req)
	}})
	slow := Request{Kind: ReqGrab, Item: "item-1", User: "slow", Qty: 1}
	if rep, err := n.Request(n.Addr(), slow, 50*time.Millisecond); !errors.Is(err, ErrTimeout) {
		t.Fatalf("got %+v, %v; want ErrTimeout", rep, err)
	}
	close(release)
	waitFor(t, "the slow reply counted late", func() bool { return n.LateReplies() == 1 })
	req := reqN(3)
	rep, err := n.Request(n.Addr(), req, wait)
	if err != nil {
		t.Fatal(err)
	}
	checkEcho(t, req, rep)
	if p := n.pending.len(); p != 0 {
		t.Errorf("%d requests still pending", p)
	}
}

func TestSelfOverloaded(t *testing.T) {
	started, release := make(chan struct{}, 2), make(chan struct{})
	n := startNodeCfg(t, Config{Addr: hostA + ":0", maxRequests: 2, OnRequest: func(req Request) Reply {
		started <- struct{}{}
		<-release
		return echo(req)
	}})
	errs := make(chan error, 2)
	for i := range 2 {
		go func() {
			req := reqN(i)
			rep, err := n.Request(n.Addr(), req, wait)
			if err == nil {
				checkEcho(t, req, rep)
			}
			errs <- err
		}()
	}
	<-started
	<-started
	if rep, err := n.Request(n.Addr(), reqN(2), wait); err != nil || rep.Code != ReplyOverloaded || rep.Stock != 0 {
		t.Fatalf("with every slot taken: %+v, %v; want overloaded", rep, err)
	}
	close(release)
	for range 2 {
		if err := <-errs; err != nil {
			t.Fatal(err)
		}
	}
	// The slots are free again.
	go func() { <-started }()
	if rep, err := n.Request(n.Addr(), reqN(5), wait); err != nil || rep.Code != ReplyOK {
		t.Fatalf("after the slots freed: %+v, %v", rep, err)
	}
}

// TestSelfRefusals: a malformed request is refused before it is sent; a
// request with no address to answer to is dropped unserved; a reply no one
// waits for is counted; a malformed reply from the handler is sent as
// unavailable.
func TestSelfRefusals(t *testing.T) {
	var calls atomic.Int64
	n := startNodeCfg(t, Config{Addr: hostA + ":0", OnRequest: func(req Request) Reply {
		calls.Add(1)
		if req.User == "bad" {
			return Reply{Code: ReplyOK, Limit: 3}
		}
		return echo(req)
	}})
	if _, err := n.Request(n.Addr(), Request{Kind: ReqGrab, Item: "item 1", User: "u", Qty: 1}, wait); !errors.Is(err, ErrBadRequest) {
		t.Fatalf("a malformed request: %v", err)
	}
	if _, err := n.Request(n.Addr(), Request{Kind: ReqRelease, Item: "item-1", GrabID: "item-1.x.1"}, wait); !errors.Is(err, ErrBadRequest) {
		t.Fatalf("a malformed grab id: %v", err)
	}
	ok := Request{ID: 1, From: n.Addr(), Kind: ReqGrab, Item: "item-1", User: "u", Qty: 1}
	for _, from := range []string{"", "nowhere", "127.0.0.1:0"} {
		r := ok
		r.From = from
		n.sendValue(n.Addr(), wrap(RequestEnvelope(r)))
	}
	n.sendValue(n.Addr(), wrap(ReplyEnvelope(Reply{ID: n.nextID.Load() - 1000, Code: ReplyOK})))
	// Delivery to oneself is in order: once this message is heard, so were
	// the envelopes before it.
	n.Send(n.Addr(), seqMsg(1))
	n.recv(t)
	if d, c, l := n.Dropped(), calls.Load(), n.LateReplies(); d != 3 || c != 0 || l != 1 {
		t.Fatalf("dropped %d, served %d, late %d; want 3, 0, 1", d, c, l)
	}
	rep, err := n.Request(n.Addr(), Request{Kind: ReqGrab, Item: "item-1", User: "bad", Qty: 1}, wait)
	if err != nil || rep != (Reply{ID: rep.ID, Code: ReplyUnavailable}) {
		t.Fatalf("a malformed reply came as %+v, %v; want unavailable", rep, err)
	}
	if !strings.Contains(n.log.String(), "malformed reply") {
		t.Errorf("the malformed reply was not logged:\n%s", n.log.String())
	}
	if p := n.pending.len(); p != 0 {
		t.Errorf("%d requests still pending", p)
	}
}

// TestSelfNoHandler: a node with no OnRequest answers unavailable.
func TestSelfNoHandler(t *testing.T) {
	n := startNode(t, hostA+":0")
	if rep, err := n.Request(n.Addr(), reqN(0), wait); err != nil || rep != (Reply{ID: rep.ID, Code: ReplyUnavailable}) {
		t.Fatalf("with no handler: %+v, %v; want unavailable", rep, err)
	}
}

// TestSelfClose: a request waiting when Close runs returns ErrClosed at
// once; one after Close sends nothing.
func TestSelfClose(t *testing.T) {
	started, release := make(chan struct{}), make(chan struct{})
	defer close(release)
	n := startNodeCfg(t, Config{Addr: hostA + ":0", OnRequest: func(req Request) Reply {
		close(started)
		<-release
		return echo(req)
	}})
	errs := make(chan error, 1)
	go func() {
		_, err := n.Request(n.Addr(), reqN(0), wait)
		errs <- err
	}()
	<-started
	n.Close()
	select {
	case err := <-errs:
		if !errors.Is(err, ErrClosed) {
			t.Fatalf("waiting through Close: %v", err)
		}
	case <-time.After(wait / 2):
		t.Fatal("a waiting request outlived Close")
	}
	if _, err := n.Request(n.Addr(), reqN(0), wait); !errors.Is(err, ErrClosed) {
		t.Fatalf("after Close: %v", err)
	}
	if p := n.pending.len(); p != 0 {
		t.Errorf("%d requests still pending", p)
	}
}

// TestReplyOnlyFromTheNodeAsked: with certificates a reply is taken only
// from the node the request went to; without (node "") from any.
func TestReplyOnlyFromTheNodeAsked(t *testing.T) {
	for _, c := range []struct {
		waits, from string
		want        delivery
	}{
		{"n2", "n2", delivered},
		{"n2", "n3", wrongNode},
		{"", "n3", delivered},
		{"n2", "", delivered}, // no certificates: nothing proven either way
	} {
		var p pendingTable
		ch := make(chan Reply, 1)
		p.add(7, waiter{ch: ch, node: c.waits})
		if got := p.deliver(c.from, Reply{ID: 7, Code: ReplyOK}); got != c.want {
			t.Errorf("waiting for %q, reply from %q: %v, want %v", c.waits, c.from, got, c.want)
		}
		if got := p.deliver(c.from, Reply{ID: 8}); got != noWaiter {
			t.Errorf("a reply nobody waits for: %v", got)
		}
		if (len(ch) == 1) != (c.want == delivered) || (p.len() == 0) != (c.want == delivered) {
			t.Errorf("waiting for %q, reply from %q: %d in the channel, %d waiting", c.waits, c.from, len(ch), p.len())
		}
	}
}

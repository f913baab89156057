package remote

import (
	"errors"
	"fmt"
	"sync"
	"time"
)

const (
	// MaxConcurrentRequests bounds the requests a node serves at once, each
	// on a goroutine of its own. A served grab waits for its shard's group
	// commit, milliseconds, so this is a full shard queue's worth
	// (actors.MaxInflightPerShard) in flight from peers, while a flood of
	// requests cannot start more than this many goroutines (some 32 MB of
	// stacks). Past it a request is answered Overloaded at once, untried.
	MaxConcurrentRequests = 4096
	// pendingShards spreads the table of requests waiting for replies over
	// this many locks, so that concurrent requesters rarely meet on one; a
	// power of two, picked by the id's low bits.
	pendingShards = 64
)

var (
	// ErrTimeout: no reply came within the timeout. The request may have
	// been served, or not, or may still be: nothing is resent, and a reply
	// that comes later is counted (LateReplies) and dropped.
	ErrTimeout = errors.New("remote: no reply within the timeout")
	// ErrClosed: the transport is closed; a request waiting for its reply
	// when Close runs hears this at once.
	ErrClosed = errors.New("remote: transport closed")
)

// Request sends req once to the node at peer (IP:PORT) and waits up to
// timeout for the Reply. It sets req.ID, a number no other request of this
// transport carries, and req.From, this node's address, where the peer
// sends the reply. It returns ErrBadRequest at once, sending nothing, when
// req is not well formed for its kind (the peer would drop it), and
// ErrTimeout or ErrClosed when no reply came. It uses no protoactor future:
// a request and its reply are two envelopes, matched here by id.
func (t *Transport) Request(peer string, req Request, timeout time.Duration) (Reply, error) {
	return t.RequestNode("", peer, req, timeout)
}

// RequestNode is Request to the node named node at peer: with
// certificates, only a reply from a connection that proved that name
// answers it (a reply from another node is refused, RefusedReply, and the
// request waits on). node "" takes a reply from any node.
func (t *Transport) RequestNode(node, peer string, req Request, timeout time.Duration) (Reply, error) {
	req.ID = t.nextID.Add(1)
	req.From = t.addr
	if !req.valid() {
		return Reply{}, fmt.Errorf("remote: %s request to %s: %w", req.Kind, peer, ErrBadRequest)
	}
	ch := make(chan Reply, 1)
	t.pending.add(req.ID, waiter{ch: ch, node: node})
	if !t.sendValue(peer, wrap(RequestEnvelope(req))) {
		t.pending.remove(req.ID)
		return Reply{}, ErrClosed
	}
	timer := time.NewTimer(timeout)
	defer timer.Stop()
	err := ErrTimeout
	select {
	case r := <-ch:
		return r, nil
	case <-timer.C:
	case <-t.done:
		err = ErrClosed
	}
	if t.pending.remove(req.ID) {
		return Reply{}, err
	}
	// The reply took the entry as the wait ended: it is in ch.
	return <-ch, nil
}

// LateReplies counts replies that arrived for no waiting request: after
// their request's timeout, or for an id this transport never used.
func (t *Transport) LateReplies() uint64 { return t.late.Load() }

// serve answers req, which arrived from a peer, without blocking the
// receiver: the handler runs on a goroutine of its own.
func (t *Transport) serve(req Request, n int) {
	if !validPeer(req.From) {
		t.drop(n, errBadFrom)
		return
	}
	if t.onRequest == nil {
		t.reply(req.From, Reply{ID: req.ID, Code: ReplyUnavailable})
		return
	}
	select {
	case t.sem <- struct{}{}:
	default:
		t.reply(req.From, Reply{ID: req.ID, Code: ReplyOverloaded})
		return
	}
	go func() {
		defer func() { <-t.sem }()
		rep := t.onRequest(req)
		rep.ID = req.ID
		if !rep.valid() {
			t.log.Error("OnRequest gave a malformed reply: answered unavailable", "kind", req.Kind, "item", req.Item, "reply", rep)
			rep = Reply{ID: req.ID, Code: ReplyUnavailable}
		}
		t.reply(req.From, rep)
	}()
}

func (t *Transport) reply(peer string, r Reply) { t.sendValue(peer, wrap(ReplyEnvelope(r))) }

// answer hands a reply that arrived from node (proven, or "") to the
// request waiting for it.
func (t *Transport) answer(node string, r Reply) {
	switch t.pending.deliver(node, r) {
	case delivered:
	case wrongNode:
		t.refused.add(RefusedReply, 1, "id", r.ID, "node", node)
	default:
		t.late.Add(1)
		t.log.Debug("late reply", "id", r.ID, "code", r.Code)
	}
}

// waiter is a request waiting for its reply: a channel of capacity one,
// which exactly one reply fills, and the node it must come from ("" any).
type waiter struct {
	ch   chan Reply
	node string
}

// pendingTable holds the requests waiting for replies by id.
type pendingTable struct {
	shards [pendingShards]struct {
		mu sync.Mutex
		m  map[uint64]waiter
	}
}

func (p *pendingTable) add(id uint64, w waiter) {
	s := &p.shards[id%pendingShards]
	s.mu.Lock()
	if s.m == nil {
		s.m = make(map[uint64]waiter)
	}
	s.m[id] = w
	s.mu.Unlock()
}

// remove takes id's entry out; false when a reply took it first.
func (p *pendingTable) remove(id uint64) bool {
	s := &p.shards[id%pendingShards]
	s.mu.Lock()
	defer s.mu.Unlock()
	_, ok := s.m[id]
	delete(s.m, id)
	return ok
}

type delivery int

const (
	noWaiter delivery = iota
	delivered
	wrongNode
)

// deliver takes r.ID's entry out and puts r in its channel, when r came from
// the node the entry waits for (node is the proven sender, "" when
// nothing is proven).
func (p *pendingTable) deliver(node string, r Reply) delivery {
	s := &p.shards[r.ID%pendingShards]
	s.mu.Lock()
	defer s.mu.Unlock()
	w, ok := s.m[r.ID]
	if !ok {
		return noWaiter
	}
	if w.node != "" && node != "" && w.node != node {
		return wrongNode
	}
	delete(s.m, r.ID)
	w.ch <- r // never blocks: the channel holds one, and only this send fills it
	return delivered
}

// len counts the requests waiting, for tests.
func (p *pendingTable) len() int {
	n := 0
	for i := range p.shards {
		s := &p.shards[i]
		s.mu.Lock()
		n += len(s.m)
		s.mu.Unlock()
	}
	return n
}

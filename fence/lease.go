package fence

import (
	"context"
	"encoding/json"
	"errors"
	"fmt"
	"sync"
	"sync/atomic"
	"time"

	"go.etcd.io/etcd/api/v3/mvccpb"
	"go.etcd.io/etcd/api/v3/v3rpc/rpctypes"
	clientv3 "go.etcd.io/etcd/client/v3"
)

// NodeInfo is what a node publishes under its lease.
type NodeInfo struct {
	ID   string `json:"id"`             // seckill's own node id, persisted in its data directory
	Addr string `json:"addr,omitempty"` // where peers reach it
	HTTP string `json:"http,omitempty"` // its HTTP front's base URL
	// PeerHTTP, with certificates, is where the other nodes call its admin
	// API (views, orders, reconcile): https, a client certificate of the
	// cluster's CA required.
	PeerHTTP string `json:"peer_http,omitempty"`
}

// CallURL is where another node calls this one's admin API: PeerHTTP when
// it has one, else HTTP.
func (n NodeInfo) CallURL() string {
	if n.PeerHTTP != "" {
		return n.PeerHTTP
	}
	return n.HTTP
}

// Lease is a node's membership: its key lives exactly as long as the etcd
// lease, and the node may confirm grabs only while Valid. Validity is kept
// on the monotonic clock from the last successful keep-alive's send time:
// etcd restarts the TTL when it receives that keep-alive, later than we sent
// it, so a node that believes itself valid always is in etcd's eyes too.
type Lease struct {
	cli  *clientv3.Client
	node NodeInfo
	id   clientv3.LeaseID
	ttl  time.Duration
	base time.Time // the monotonic origin of until
	// until is ValidUntil as nanoseconds since base; 0: not valid.
	until atomic.Int64
	stop  chan struct{}
	done  chan struct{}
	once  sync.Once
}

// Join grants a lease of ttl (LeaseTTL unless a test needs shorter), puts
// the node's key under it and keeps it alive every KeepAliveInterval. A key
// of the same node id held by an earlier lease (a restart after SIGKILL, or
// a second process with the same id) is waited out: Join returns once etcd
// expired it, never on its own clock, or ErrNodeTaken, or ctx's error.
func Join(ctx context.Context, cli *clientv3.Client, node NodeInfo, ttl time.Duration) (*Lease, error) {
	if err := CheckNodeID(node.ID); err != nil {
		return nil, err
	}
	if ttl < MinLeaseTTL {
		return nil, fmt.Errorf("fence: lease ttl %v below %v", ttl, MinLeaseTTL)
	}
	val, err := json.Marshal(node)
	if err != nil {
		return nil, err
	}
	base := time.Now()
	secs := int64((ttl + time.Second - 1) / time.Second)
	g, err := cli.Grant(ctx, secs)
	if err != nil {
		return nil, fmt.Errorf("join %s: grant lease: %w", node.ID, err)
	}
	l := &Lease{cli: cli, node: node, id: g.ID, ttl: time.Duration(secs) * time.Second, base: base,
		stop: make(chan struct{}), done: make(chan struct{})}
	l.renewed(base, g.TTL)
	go l.keepAlive()
	if err := l.putKey(ctx, string(val)); err != nil {
		rctx, cancel := context.WithTimeout(context.Background(), KeepAliveTimeout)
		defer cancel()
		_ = l.Leave(rctx)
		return nil, err
	}
	return l, nil
}

// putKey creates the node key under the lease, waiting out an older one.
func (l *Lease) putKey(ctx context.Context, val string) error {
	key := nodeKey(l.node.ID)
	for attempt := 1; ; attempt++ {
		resp, err := l.cli.Txn(ctx).If(clientv3.Compare(clientv3.CreateRevision(key), "=", 0)).
			Then(clientv3.OpPut(key, val, clientv3.WithLease(l.id))).Commit()
		if err != nil {
			return fmt.Errorf("join %s: %w", l.node.ID, err)
		}
		if resp.Succeeded {
			return nil
		}
		if attempt == MaxJoinAttempts {
			return fmt.Errorf("join %s: %w", l.node.ID, ErrNodeTaken)
		}
		if err := waitDeleted(ctx, l.cli, key, resp.Header.Revision+1); err != nil {
			return fmt.Errorf("join %s: wait for the old lease: %w", l.node.ID, err)
		}
	}
}

// waitDeleted returns when key is deleted at or after revision rev.
func waitDeleted(ctx context.Context, cli *clientv3.Client, key string, rev int64) error {
	wctx, cancel := context.WithCancel(ctx)
	defer cancel()
	for wr := range cli.Watch(wctx, key, clientv3.WithRev(rev)) {
		if err := wr.Err(); err != nil {
			return err
		}
		for _, ev := range wr.Events {
			if ev.Type == mvccpb.DELETE {
				return nil
			}
		}
	}
	if err := ctx.Err(); err != nil {
		return err
	}
	return errors.New("watch closed")
}

// keepAlive renews the lease until Close or Leave, or until etcd says it
// is gone. A failed keep-alive is not retried early: validity runs out on
// its own, which is the point.
func (l *Lease) keepAlive() {
	defer close(l.done)
	t := time.NewTicker(KeepAliveInterval)
	defer t.Stop()
	for {
		select {
		case <-l.stop:
			return
		case <-t.C:
		}
		sent := time.Now()
		ctx, cancel := context.WithTimeout(context.Background(), KeepAliveTimeout)
		resp, err := l.cli.KeepAliveOnce(ctx, l.id)
		cancel()
		switch {
		case errors.Is(err, rpctypes.ErrLeaseNotFound):
			l.until.Store(0)
			return
		case err == nil:
			l.renewed(sent, resp.TTL)
		}
	}
}

// renewed moves validity to sent + TTL - margin (never backwards).
func (l *Lease) renewed(sent time.Time, grantedSecs int64) {
	ttl := min(l.ttl, time.Duration(grantedSecs)*time.Second)
	next := int64(sent.Sub(l.base) + ttl - ValidityMargin)
	for {
		cur := l.until.Load()
		if next <= cur || l.until.CompareAndSwap(cur, next) {
			return
		}
	}
}

// ID is the etcd lease id.
func (l *Lease) ID() clientv3.LeaseID { return l.id }

// Node is the node the lease holds.
func (l *Lease) Node() NodeInfo { return l.node }

// ValidUntil is the monotonic instant after which the node must stop
// confirming (the zero Time once the lease is known lost or left).
func (l *Lease) ValidUntil() time.Time {
	u := l.until.Load()
	if u == 0 {
		return time.Time{}
	}
	return l.base.Add(time.Duration(u))
}

// Valid reports whether the node may still confirm at now. Pass a
// time.Now() value: it carries the monotonic reading the comparison uses
// (a time without one compares on the wall clock). One atomic load.
func (l *Lease) Valid(now time.Time) bool {
	u := l.until.Load()
	return u != 0 && int64(now.Sub(l.base)) < u
}

// Done is closed when the keep-alives stop: Close, Leave, or the lease
// found gone in etcd.
func (l *Lease) Done() <-chan struct{} { return l.done }

// Close stops the keep-alives without revoking: the lease expires in etcd
// after its TTL, as it would for a crashed or paused process.
func (l *Lease) Close() {
	l.once.Do(func() { close(l.stop) })
	<-l.done
}

// Leave stops the keep-alives and revokes the lease: the node key goes at
// once and the node is no longer valid.
func (l *Lease) Leave(ctx context.Context) error {
	l.Close()
	l.until.Store(0)
	if _, err := l.cli.Revoke(ctx, l.id); err != nil && !errors.Is(err, rpctypes.ErrLeaseNotFound) {
		return fmt.Errorf("leave %s: revoke: %w", l.node.ID, err)
	}
	return nil
}

// Member is a node with a live lease and the time etcd gives that lease.
type Member struct {
	NodeInfo
	// LeaseLeft is etcd's remaining TTL of the node's lease (whole
	// seconds); 0 when it expired between the listing and the question.
	LeaseLeft time.Duration
}

// MemberLeases lists the nodes whose lease lives with each lease's time
// left: one listing, then one TimeToLive per node (a handful of nodes;
// this is an admin view, never on a grab's path).
func (s *Store) MemberLeases(ctx context.Context) ([]Member, error) {
	resp, err := s.cli.Get(ctx, nodesPrefix, clientv3.WithPrefix())
	if err != nil {
		return nil, fmt.Errorf("members: %w", err)
	}
	out := make([]Member, 0, len(resp.Kvs))
	for _, kv := range resp.Kvs {
		var m Member
		if err := json.Unmarshal(kv.Value, &m.NodeInfo); err != nil {
			return nil, fmt.Errorf("members: %s: %w", kv.Key, err)
		}
		ttl, err := s.cli.TimeToLive(ctx, clientv3.LeaseID(kv.Lease))
		if err != nil {
			return nil, fmt.Errorf("members: lease of %s: %w", m.ID, err)
		}
		m.LeaseLeft = time.Duration(max(ttl.TTL, 0)) * time.Second
		out = append(out, m)
	}
	return out, nil
}

// Members lists the nodes whose lease lives (their keys exist).
func (s *Store) Members(ctx context.Context) ([]NodeInfo, error) {
	resp, err := s.cli.Get(ctx, nodesPrefix, clientv3.WithPrefix())
	if err != nil {
		return nil, fmt.Errorf("members: %w", err)
	}
	nodes := make([]NodeInfo, 0, len(resp.Kvs))
	for _, kv := range resp.Kvs {
		var n NodeInfo
		if err := json.Unmarshal(kv.Value, &n); err != nil {
			return nil, fmt.Errorf("members: %s: %w", kv.Key, err)
		}
		nodes = append(nodes, n)
	}
	return nodes, nil
}

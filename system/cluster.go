package system

import (
	"context"
	"errors"
	"fmt"
	"log/slog"
	"net"
	"os"
	"path/filepath"
	"strconv"
	"strings"
	"sync/atomic"
	"time"

	"github.com/seckill/seckill/certs"
	"github.com/seckill/seckill/fence"
	"github.com/seckill/seckill/sale"
	clientv3 "go.etcd.io/etcd/client/v3"
	"go.uber.org/zap"
	"google.golang.org/grpc"
)

// Cluster membership: the node holds a lease in etcd, is listed among the
// members, and stops confirming when its lease runs out. Where its shards
// run and how they move is the grid's (package grid).
const (
	// EtcdDialTimeout bounds the first answer from etcd at start: a loopback
	// or LAN etcd answers in milliseconds (a 1-member etcd elects itself in
	// about a second), so five seconds of silence means unreachable.
	EtcdDialTimeout = 5 * time.Second
	// JoinTimeout bounds Join at start and on each re-join: a node restarted
	// after SIGKILL waits for etcd to expire its old lease (one TTL), plus
	// slack for a slow machine.
	JoinTimeout = 3 * fence.LeaseTTL
	// RejoinPause is the wait between failed re-join attempts (etcd still
	// cut off): one keep-alive interval, so a healed node is back within a
	// second or two.
	RejoinPause = fence.KeepAliveInterval
)

// ClusterConfig is what a node joins a cluster with.
type ClusterConfig struct {
	// Node is this node's id, kept in its data directory.
	Node string
	// Etcd lists the etcd endpoints ("http://host:port").
	Etcd []string
	// Peer is the node's peer address (HOST:PORT): advertised in etcd, and
	// its host is the source address the node dials etcd from.
	Peer string
	// Auth is how the node proves itself to etcd and Redis.
	Auth StoreAuth
	// LeaseTTL is the node's lease; 0 is fence.LeaseTTL.
	LeaseTTL time.Duration
	// Redis, when set (a redis:// or rediss:// URL, with an ACL user and
	// password in it), is where the node writes its shards' snapshots:
	// every SnapshotInterval for shards that changed (0:
	// DefaultSnapshotInterval), and once more when it stops.
	Redis            string
	SnapshotInterval time.Duration
	// SecondActivation is a test hook (grid.Config.SecondActivation).
	SecondActivation string
	// Journal: every commit round of a shard is appended to the shards'
	// replicated journal on the cluster's NATS (Config.NATSURL) before its
	// 201, and a lost node's shards fail over to the live ones by
	// themselves (grid/failover.go). JournalReplicas is the JOURNAL
	// stream's copies (0: 1; 3 over a three-server NATS cluster).
	Journal         bool
	JournalReplicas int
	// Certs is this node's identity (certs.Load): every connection between
	// nodes is TLS 1.3 with certificates of the cluster's CA, checked both
	// ways, and a message's sender is the node its certificate names.
	Certs *certs.Node
	// Insecure runs the peer wire without TLS, where any process that
	// reaches the peer port can say anything: only with a loopback Peer.
	// Without Certs or Insecure, Open refuses the cluster.
	Insecure bool
}

// ErrInsecureCluster: a cluster without certificates, refused.
var ErrInsecureCluster = errors.New("a cluster needs certificates")

// checkPeerSecurity is the cluster's rule: certificates, or an explicit
// insecure peer wire on loopback only.
func (c *ClusterConfig) checkPeerSecurity() error {
	if c.Certs != nil {
		if c.Certs.Name != c.Node {
			return fmt.Errorf("peer: the certificate names node %q, this node is %q", c.Certs.Name, c.Node)
		}
		return nil
	}
	if !c.Insecure {
		return fmt.Errorf("%w: give --certs-dir DIR holding ca.crt and node.%s.crt (make them with `seckill cert create-ca --certs-dir DIR` once per cluster, then `seckill cert create-node --certs-dir DIR %s %s` for this node), or --insecure-cluster on loopback only", ErrInsecureCluster, c.Node, c.Node, peerHost(c.Peer))
	}
	if !certs.IsLoopback(peerHost(c.Peer)) {
		return fmt.Errorf("%w: --insecure-cluster is refused with peer address %s outside loopback: anyone who reaches the peer port could sell units or stop the sale", ErrInsecureCluster, c.Peer)
	}
	return nil
}

func peerHost(addr string) string {
	h, _, err := net.SplitHostPort(addr)
	if err != nil {
		return addr
	}
	return h
}

// cluster is a node's membership: its etcd client and its current lease,
// re-joined with a new lease whenever etcd expired the old one.
type cluster struct {
	cli   *clientv3.Client
	store *fence.Store
	info  fence.NodeInfo
	ttl   time.Duration
	log   *slog.Logger
	lease atomic.Pointer[fence.Lease]
	stop  chan struct{}
	done  chan struct{}
	// redisPing, when the node writes snapshots, tells whether Redis answers.
	redisPing func(context.Context) error
}

// joinCluster connects to etcd from the peer address's IP and joins.
func joinCluster(cfg ClusterConfig, httpURL, peerHTTP string, log *slog.Logger) (*cluster, error) {
	if err := fence.CheckNodeID(cfg.Node); err != nil {
		return nil, err
	}
	if len(cfg.Etcd) == 0 {
		return nil, errors.New("cluster: no etcd endpoints")
	}
	host, _, err := net.SplitHostPort(cfg.Peer)
	if err != nil {
		return nil, fmt.Errorf("cluster: peer address %q: %w", cfg.Peer, err)
	}
	ip := net.ParseIP(host)
	if ip == nil {
		return nil, fmt.Errorf("cluster: peer address %q: host must be an IP address", cfg.Peer)
	}
	dialer := &net.Dialer{LocalAddr: &net.TCPAddr{IP: ip}}
	etcdCfg := clientv3.Config{
		Endpoints:   cfg.Etcd,
		DialTimeout: EtcdDialTimeout,
		DialOptions: []grpc.DialOption{grpc.WithContextDialer(func(ctx context.Context, addr string) (net.Conn, error) {
			return dialer.DialContext(ctx, "tcp", addr)
		})},
		Logger: zap.NewNop(),
	}
	if err := cfg.Auth.apply(&etcdCfg); err != nil {
		return nil, fmt.Errorf("cluster: %w", err)
	}
	cli, err := clientv3.New(etcdCfg)
	if err != nil {
		return nil, fmt.Errorf("cluster: etcd %s: %w", strings.Join(cfg.Etcd, ","), err)
	}
	// The client dials lazily: ask once, so that an unreachable etcd is
	// an error at start rather than a join that hangs.
	ctx, cancel := context.WithTimeout(context.Background(), EtcdDialTimeout)
	_, err = cli.Get(ctx, "/seckill/", clientv3.WithCountOnly())
	cancel()
	if err != nil {
		cli.Close()
		return nil, fmt.Errorf("cluster: etcd %s unreachable from %s: %w", strings.Join(cfg.Etcd, ","), ip, err)
	}
	c := &cluster{cli: cli, store: fence.New(cli), ttl: cfg.LeaseTTL, log: log,
		info: fence.NodeInfo{ID: cfg.Node, Addr: cfg.Peer, HTTP: httpURL, PeerHTTP: peerHTTP},
		stop: make(chan struct{}), done: make(chan struct{})}
	if c.ttl == 0 {
		c.ttl = fence.LeaseTTL
	}
	l, err := c.join()
	if err != nil {
		cli.Close()
		return nil, fmt.Errorf("cluster: etcd %s: %w", strings.Join(cfg.Etcd, ","), err)
	}
	c.lease.Store(l)
	log.Info("joined", "node", cfg.Node, "peer", cfg.Peer, "lease", fmt.Sprintf("%x", l.ID()), "ttl", c.ttl)
	go c.keep()
	return c, nil
}

func (c *cluster) join() (*fence.Lease, error) {
	ctx, cancel := context.WithTimeout(context.Background(), JoinTimeout)
	defer cancel()
	go func() {
		select {
		case <-c.stop:
			cancel()
		case <-ctx.Done():
		}
	}()
	return fence.Join(ctx, c.cli, c.info, c.ttl)
}

// keep re-joins whenever etcd expired the lease (the keep-alives stop
// when etcd answers that the lease is gone: after a partition or a pause
// longer than the TTL). Until then the fence has been saying no on its
// own clock.
func (c *cluster) keep() {
	defer close(c.done)
	for {
		l := c.lease.Load()
		select {
		case <-c.stop:
			return
		case <-l.Done():
		}
		c.log.Warn("lease expired in etcd: re-joining", "node", c.info.ID, "lease", fmt.Sprintf("%x", l.ID()))
		for {
			nl, err := c.join()
			if err == nil {
				c.lease.Store(nl)
				c.log.Info("re-joined", "node", c.info.ID, "lease", fmt.Sprintf("%x", nl.ID()))
				break
			}
			c.log.Warn("re-join failed", "node", c.info.ID, "err", err)
			select {
			case <-c.stop:
				return
			case <-time.After(RejoinPause):
			}
		}
	}
}

// leaseID is the current lease's id.
func (c *cluster) leaseID() int64 {
	if l := c.lease.Load(); l != nil {
		return int64(l.ID())
	}
	return 0
}

// valid is the committers' fence: two atomic loads (the current lease,
// then its validity).
func (c *cluster) valid(now time.Time) bool {
	l := c.lease.Load()
	return l != nil && l.Valid(now)
}

// leave stops re-joining, revokes the lease (the node key goes at once)
// and closes the client. Called after the node has drained.
func (c *cluster) leave() error {
	close(c.stop)
	<-c.done
	ctx, cancel := context.WithTimeout(context.Background(), fence.KeepAliveTimeout)
	defer cancel()
	err := c.lease.Load().Leave(ctx)
	if err == nil {
		c.log.Info("left", "node", c.info.ID)
	}
	return errors.Join(err, c.cli.Close())
}

// Members implements sale.Cluster.
func (c *cluster) Members(ctx context.Context) ([]sale.Member, error) {
	ms, err := c.store.MemberLeases(ctx)
	if err != nil {
		return nil, err
	}
	now := time.Now()
	out := make([]sale.Member, 0, len(ms))
	for _, m := range ms {
		v := sale.Member{Node: m.ID, Peer: m.Addr, HTTP: m.HTTP, PeerHTTP: m.PeerHTTP, LeaseLeftMs: m.LeaseLeft.Milliseconds(), State: "alive"}
		if m.ID == c.info.ID {
			// Our own view is what fences us: until we must stop confirming.
			v.State, v.LeaseLeftMs = "self", 0
			if l := c.lease.Load(); l.Valid(now) {
				v.LeaseLeftMs = l.ValidUntil().Sub(now).Milliseconds()
			} else {
				v.State = "expired"
			}
		}
		out = append(out, v)
	}
	return out, nil
}

// Health implements sale.Cluster.
func (c *cluster) Health(ctx context.Context) sale.Health {
	h := sale.Health{Etcd: "ok", Lease: "valid", Node: c.info.ID}
	if _, err := c.cli.Get(ctx, "/seckill/", clientv3.WithCountOnly()); err != nil {
		h.Etcd = "unreachable"
	}
	if !c.valid(time.Now()) {
		h.Lease = "expired"
	}
	if c.redisPing != nil {
		h.Redis = "ok"
		if c.redisPing(ctx) != nil {
			h.Redis = "unreachable"
		}
	}
	return h
}

// nextBoot counts this start of the node in <dir>/boot and returns the
// count: a clustered shard's incarnation includes it, so a node restarted
// after a crash outranks its earlier process (actors.GenShift). The new
// count is on disk (written, synced, renamed, directory synced) before
// anything runs.
func nextBoot(dir string) (uint64, error) {
	path := filepath.Join(dir, "boot")
	var n uint64
	if b, err := os.ReadFile(path); err == nil {
		if n, err = strconv.ParseUint(strings.TrimSpace(string(b)), 10, 64); err != nil {
			return 0, fmt.Errorf("boot count %s: %w", path, err)
		}
	} else if !errors.Is(err, os.ErrNotExist) {
		return 0, err
	}
	n++
	if err := os.MkdirAll(dir, 0o755); err != nil {
		return 0, err
	}
	tmp := path + ".tmp"
	f, err := os.Create(tmp)
	if err != nil {
		return 0, err
	}
	_, err = f.WriteString(strconv.FormatUint(n, 10) + "\n")
	if err == nil {
		err = f.Sync()
	}
	if cerr := f.Close(); err == nil {
		err = cerr
	}
	if err == nil {
		err = os.Rename(tmp, path)
	}
	if err == nil {
		var d *os.File
		if d, err = os.Open(dir); err == nil {
			err = d.Sync()
			d.Close()
		}
	}
	if err != nil {
		return 0, fmt.Errorf("boot count %s: %w", path, err)
	}
	return n, nil
}

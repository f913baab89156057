package main

// Harness of the three-node cluster tests (cluster3_test.go): a real etcd,
// redis-server and `seckill nats`, three `seckill serve --cluster` nodes on
// 127.0.0.11-13 (each dialing etcd, Redis and its peers from its own IP), a
// sale driver whose buyers retry their one key until they have a final
// answer, an auditor of the admin item view during the sale, and the checks
// made once the sale is over.

import (
	"context"
	"encoding/json"
	"fmt"
	"net/http"
	"os"
	"path/filepath"
	"regexp"
	"slices"
	"sort"
	"strconv"
	"strings"
	"sync"
	"sync/atomic"
	"testing"
	"time"

	"github.com/seckill/seckill/bus"
	"github.com/seckill/seckill/certs"
	"github.com/seckill/seckill/engine"
	"github.com/seckill/seckill/fence"
	"github.com/seckill/seckill/internal/testproc"
	"github.com/seckill/seckill/persistence"
)

const (
	c3Stock  = 10_000
	c3Shards = 64
	// c3Buyers: every scenario's crowd, five buyers for each unit.
	c3Buyers = 50_000
	// c3Workers: requests in flight at once.
	c3Workers = 64
	// c3Fault is how long a node stays stopped or cut off: three leases.
	c3Fault = 3 * fence.LeaseTTL
	// c3MaxTries and c3BuyerDeadline bound one buyer's tries of its key:
	// a node restarted after SIGKILL waits for its old lease to expire
	// (one TTL) before it serves, a healed TCP connection resumes after its
	// retransmission backoff; both are well within these.
	c3MaxTries      = 2000
	c3BuyerDeadline = 150 * time.Second
	// c3RetryPause is the pause between two tries of a key, growing with
	// the tries up to c3RetryPauseMax (pacing, like a client honouring
	// Retry-After, not synchronisation).
	c3RetryPause    = 20 * time.Millisecond
	c3RetryPauseMax = 500 * time.Millisecond
	// c3AuditEvery paces the auditor's reads of the admin item view.
	c3AuditEvery = 100 * time.Millisecond
	// c3SaleTimeout bounds a whole sale.
	c3SaleTimeout = 4 * time.Minute
	// c3Table is the partition test's own nftables table.
	c3Table = "seckill_cluster3_test"
)

var (
	// c3NoJournal runs the nodes without the replicated journal: shards
	// move through Redis snapshots only, a lost node's shards wait for it
	// or for a forced move (the scenarios of that mode).
	c3NoJournal = map[string][]string{"n1": {"SECKILL_JOURNAL=0"}, "n2": {"SECKILL_JOURNAL=0"}, "n3": {"SECKILL_JOURNAL=0"}}
	c3IPs       = []string{"127.0.0.11", "127.0.0.12", "127.0.0.13"}
	c3NATSLine  = regexp.MustCompile(`^seckill nats: listening on (nats://[^,\s]+)`)
)

// ---------------------------------------------------------------------------
// The cluster.

type c3Node struct {
	idx      int
	name, ip string
	dir      string
	httpPort int
	peerPort int
	env      []string
	proc     *seckillProc
	starts   int
}

func (n *c3Node) url() string { return "http://" + n.ip + ":" + strconv.Itoa(n.httpPort) }

type c3Cluster struct {
	t        *testing.T
	started  time.Time
	bin      string
	client   *http.Client
	etcdURL  string
	etcdPort int
	redisURL string
	natsURL  string
	// natsCreds is the key `seckill nats` admits (the nodes' --nats-creds).
	natsCreds string
	// certsDir holds the cluster's CA and n1-n3's certificates (--certs-dir).
	certsDir string
	nodes    []*c3Node
	// lost: nodes killed and not started again (their machine is gone).
	lost map[*c3Node]bool
	// nats: the NATS servers of a JetStream cluster (newC3With), and the
	// replicas the nodes keep their streams in.
	nats         []*seckillProc
	natsReplicas int
}

// live is every node not lost.
func (c *c3Cluster) live() []*c3Node {
	var out []*c3Node
	for _, n := range c.nodes {
		if !c.lost[n] {
			out = append(out, n)
		}
	}
	return out
}

// lose SIGKILLs n and takes its machine away: its data directory is
// removed, and the node is not started again unless the test does.
func (c *c3Cluster) lose(n *c3Node) {
	c.t.Helper()
	n.proc.kill(c.t)
	if err := os.RemoveAll(n.dir); err != nil {
		c.t.Fatal(err)
	}
	if err := os.MkdirAll(n.dir, 0o700); err != nil {
		c.t.Fatal(err)
	}
	if c.lost == nil {
		c.lost = map[*c3Node]bool{}
	}
	c.lost[n] = true
}

// c3Skip skips where the servers the harness runs are missing.
func c3Skip(t *testing.T) {
	t.Helper()
	skipFaultTest(t)
	for _, b := range [][2]string{{"etcd", "/usr/bin/etcd"}, {"redis-server", "/usr/bin/redis-server"}} {
		if testproc.Bin(b[0], b[1]) == "" {
			t.Skipf("%s is not installed: run `make deps`", b[0])
		}
	}
}

// newC3 starts etcd, redis, `seckill nats` and the three nodes n1-n3; env
// gives a node more environment variables.
func newC3(t *testing.T, env map[string][]string) *c3Cluster { return newC3With(t, env, 1) }

// newC3With is newC3 with natsServers `seckill nats` servers: 3 form one
// JetStream cluster, and the nodes keep every stream on all three.
func newC3With(t *testing.T, env map[string][]string, natsServers int) *c3Cluster {
	t.Helper()
	c3Skip(t)
	c := &c3Cluster{t: t}
	c.started, c.bin, c.client = startFaultTest(t)
	c.client = newTestHTTPClient(c3Workers)
	t.Cleanup(c.client.CloseIdleConnections)
	c.etcdURL, c.etcdPort = testproc.Etcd(t)
	c.redisURL = testproc.Redis(t)
	natsDir := filepath.Join(t.TempDir(), "nats")
	c.natsCreds = filepath.Join(natsDir, bus.CredsFile)
	if natsServers == 1 {
		_, m := startChild(t, "nats", c3NATSLine, false, faultToken, c.bin,
			"nats", "--listen", "127.0.0.1:"+strconv.Itoa(freePort(t)), "--dir", natsDir)
		c.natsURL = m[1]
	} else {
		c.startNATSCluster(natsDir, natsServers)
	}
	c.certsDir = filepath.Join(t.TempDir(), "certs")
	if err := certs.CreateCA(c.certsDir, false); err != nil {
		t.Fatal(err)
	}
	for i, ip := range c3IPs {
		if err := certs.CreateNode(c.certsDir, fmt.Sprintf("n%d", i+1), []string{ip}, false); err != nil {
			t.Fatal(err)
		}
	}
	for i, ip := range c3IPs {
		name := fmt.Sprintf("n%d", i+1)
		n := &c3Node{idx: i, name: name, ip: ip, dir: t.TempDir(), httpPort: freePortOn(t, ip), peerPort: freePortOn(t, ip), env: env[name]}
		c.nodes = append(c.nodes, n)
		c.start(n)
	}
	c.waitMembers(c.nodes...)
	return c
}

// startNATSCluster starts n `seckill nats` servers as one JetStream
// cluster on 127.0.0.1, sharing one client key.
func (c *c3Cluster) startNATSCluster(dir string, n int) {
	c.t.Helper()
	client, route := make([]int, n), make([]int, n)
	for i := range n {
		client[i], route[i] = freePort(c.t), freePort(c.t)
	}
	var urls []string
	for i := range n {
		var routes []string
		for j := range n {
			if j != i {
				routes = append(routes, "nats-route://127.0.0.1:"+strconv.Itoa(route[j]))
			}
		}
		name := fmt.Sprintf("nats%d", i+1)
		p, m := startChild(c.t, name, c3NATSLine, false, faultToken, c.bin, "nats", "--name", name,
			"--listen", "127.0.0.1:"+strconv.Itoa(client[i]), "--dir", filepath.Join(dir, name), "--creds", c.natsCreds,
			"--sync", "always", "--cluster-listen", "127.0.0.1:"+strconv.Itoa(route[i]), "--routes", strings.Join(routes, ","))
		c.nats = append(c.nats, p)
		urls = append(urls, m[1])
	}
	c.natsURL = strings.Join(urls, ",")
	c.natsReplicas = n
}

// start runs node n (again) on its data directory, ports and name; it
// returns once n printed its address.
func (c *c3Cluster) start(n *c3Node) {
	c.t.Helper()
	delete(c.lost, n)
	n.starts++
	args := []string{"serve", "--data", n.dir, "--http", n.ip + ":" + strconv.Itoa(n.httpPort), "--nats", c.natsURL,
		"--nats-creds", c.natsCreds, "--cluster", "--node", n.name, "--etcd", c.etcdURL, "--peer", n.ip + ":" + strconv.Itoa(n.peerPort), "--redis", c.redisURL,
		"--certs-dir", c.certsDir}
	if c.natsReplicas > 1 {
		args = append(args, "--nats-replicas", strconv.Itoa(c.natsReplicas))
	}
	p, m := startChildEnv(c.t, fmt.Sprintf("%s#%d", n.name, n.starts), serveLine, false, faultToken, n.env, c.bin, args...)
	if m[1] != n.url() {
		c.t.Fatalf("%s serves %s, want %s", n.name, m[1], n.url())
	}
	p.URL = m[1]
	n.proc = p
}

// waitMembers waits until every node in ns lists all three with a lease.
func (c *c3Cluster) waitMembers(ns ...*c3Node) {
	c.t.Helper()
	want := map[string]bool{}
	for _, n := range c.nodes {
		want[n.name] = true
	}
	for _, n := range ns {
		listed(c.t, c.client, n.proc, want)
	}
}

func (c *c3Cluster) node(name string) *c3Node {
	for _, n := range c.nodes {
		if n.name == name {
			return n
		}
	}
	c.t.Fatalf("no node %s", name)
	return nil
}

// createItem creates item (c3Stock over c3Shards, limit 1) through n1.
func (c *c3Cluster) createItem(item string) {
	c.t.Helper()
	v := adminDo(c.t, c.client, http.MethodPut, c.nodes[0].url()+"/admin/v1/items/"+item, faultToken,
		fmt.Sprintf(`{"stock":%d,"shards":%d,"per_user_limit":1}`, c3Stock, c3Shards), http.StatusCreated)
	if v.Stock != c3Stock || v.Sold != 0 {
		c.t.Fatalf("created %s: %+v", item, v)
	}
	// Every node knows the item and runs what etcd placed on it.
	waitFor(c.t, item+" placed and running", func() (bool, string) {
		for _, n := range c.nodes {
			ps, raw := c.placement(n, item)
			if ps == nil {
				return false, n.name + ": " + raw
			}
			for _, p := range ps {
				if p.State != "active" || p.Remaining == nil {
					return false, n.name + ": " + raw
				}
			}
		}
		return true, ""
	})
}

type c3Placement struct {
	Shard    int    `json:"shard"`
	Node     string `json:"node"`
	Epoch    uint64 `json:"epoch"`
	State    string `json:"state"`
	MovingTo string `json:"moving_to"`
	// Remaining and Sold are nil when the owner did not answer.
	Remaining *int64 `json:"remaining"`
	Sold      *int64 `json:"sold"`
}

// placement reads item's placement through n (nil and what came back
// unless 200).
func (c *c3Cluster) placement(n *c3Node, item string) ([]c3Placement, string) {
	code, raw, err := adminGet(c.client, n.url()+"/admin/v1/cluster/placement?item="+item)
	if err != nil || code != http.StatusOK {
		return nil, fmt.Sprintf("%d %s %v", code, raw, err)
	}
	var v struct {
		Shards []c3Placement `json:"shards"`
	}
	if err := json.Unmarshal(raw, &v); err != nil || len(v.Shards) != c3Shards {
		return nil, fmt.Sprintf("%s %v", raw, err)
	}
	return v.Shards, string(raw)
}

// owners is shard -> node name as n reads it.
func (c *c3Cluster) owners(n *c3Node, item string) []string {
	c.t.Helper()
	var ps []c3Placement
	waitFor(c.t, "placement of "+item, func() (bool, string) {
		var raw string
		ps, raw = c.placement(n, item)
		return ps != nil, raw
	})
	out := make([]string, c3Shards)
	for _, p := range ps {
		out[p.Shard] = p.Node
	}
	return out
}

// itemView reads the admin item view through n.
func (c *c3Cluster) itemView(n *c3Node, item string) (itemAdmin, string, bool) {
	code, raw, err := adminGet(c.client, n.url()+"/admin/v1/items/"+item)
	if err != nil || code != http.StatusOK {
		return itemAdmin{}, fmt.Sprintf("%d %s %v", code, raw, err), false
	}
	var v itemAdmin
	if err := json.Unmarshal(raw, &v); err != nil {
		return itemAdmin{}, fmt.Sprintf("decode %s: %v", raw, err), false
	}
	return v, string(raw), true
}

// waitSettled waits until every node's view shows the whole stock sold.
func (c *c3Cluster) waitSettled(item string) {
	c.t.Helper()
	for _, n := range c.live() {
		waitFor(c.t, n.name+" shows "+item+" sold out", func() (bool, string) {
			v, raw, ok := c.itemView(n, item)
			return ok && v.Stock == c3Stock && v.Sold == c3Stock && v.Remaining == 0, raw
		})
	}
}

// stopAll SIGTERMs every node (each must exit 0).
func (c *c3Cluster) stopAll() {
	c.t.Helper()
	c.client.CloseIdleConnections()
	var took []string
	for _, n := range c.live() {
		start := time.Now()
		n.proc.stop(c.t)
		took = append(took, fmt.Sprintf("%s %v", n.name, time.Since(start).Round(time.Millisecond)))
	}
	c.t.Logf("SIGTERM: every node exited 0 (%s)", strings.Join(took, ", "))
}

// ---------------------------------------------------------------------------
// The admin view auditor.

type c3Audit struct {
	polls atomic.Int64
	mu    sync.Mutex
	bad   []string
	stop  chan struct{}
	wg    sync.WaitGroup
}

// audit reads item's admin view from every node until stopped, requiring
// sold <= stock and sold + remaining == stock in every answer (a node that
// does not answer is skipped).
func (c *c3Cluster) audit(item string) *c3Audit {
	a := &c3Audit{stop: make(chan struct{})}
	for _, n := range c.nodes {
		a.wg.Go(func() {
			tk := time.NewTicker(c3AuditEvery)
			defer tk.Stop()
			for {
				select {
				case <-a.stop:
					return
				case <-tk.C: // pacing of the reads
				}
				v, _, ok := c.itemView(n, item)
				if !ok {
					continue
				}
				a.polls.Add(1)
				if v.Stock != c3Stock || v.Sold > v.Stock || v.Sold+v.Remaining != v.Stock || v.Sold < 0 || v.Remaining < 0 {
					a.mu.Lock()
					a.bad = append(a.bad, fmt.Sprintf("%s: stock %d sold %d remaining %d (pool %d in transit %d)",
						n.name, v.Stock, v.Sold, v.Remaining, v.Pool, v.InTransit))
					a.mu.Unlock()
				}
			}
		})
	}
	return a
}

// finish stops the auditor and fails the test on any bad answer.
func (a *c3Audit) finish(t *testing.T) {
	t.Helper()
	close(a.stop)
	a.wg.Wait()
	a.mu.Lock()
	defer a.mu.Unlock()
	if len(a.bad) > 0 {
		t.Errorf("admin item view broke the ledger in %d of %d answers, e.g.:\n%s", len(a.bad), a.polls.Load(),
			strings.Join(a.bad[:min(len(a.bad), 10)], "\n"))
	}
	if a.polls.Load() == 0 {
		t.Errorf("auditor read no item view during the sale")
	}
	t.Logf("auditor: %d item views read during the sale, each with sold <= stock and sold + remaining == stock", a.polls.Load())
}

// ---------------------------------------------------------------------------
// The sale.

// c3Try is one request of a buyer's key.
type c3Try struct {
	front            int
	issued, answered time.Duration // since the sale started
	code             int           // 0: no HTTP answer
	status           string
	grabID           string
}

type c3Buyer struct {
	i         int
	user, key string
	shard     int
	front     int // the front its first try goes to
	tries     []c3Try
	grabID    string // of its 201
	final     int    // index in tries of its final answer; -1: none
}

func (b *c3Buyer) result() *c3Try {
	if b.final < 0 {
		return nil
	}
	return &b.tries[b.final]
}

type c3Sale struct {
	c      *c3Cluster
	item   string
	fronts []int // nodes whose fronts the buyers go to, round robin
	buyers []*c3Buyer
	// route picks the front of a buyer's try (nil: its own front).
	route func(b *c3Buyer, try int) int
	// noReplay, when set, names the fronts a buyer's key is not replayed
	// through by replayAll.
	noReplay func(b *c3Buyer, front int) bool
	start    time.Time
	took     time.Duration

	confirmed atomic.Int64
	mu        sync.Mutex
	order     []*c3Buyer // buyers in the order of their 201s
	waiters   []c3Waiter
	wrong     []string
	done      chan struct{}
}

type c3Waiter struct {
	n  int64
	ch chan struct{}
}

// newSale prepares n buyers of item over the fronts of the nodes given
// (by index), round robin.
func (c *c3Cluster) newSale(item string, n int, fronts ...int) *c3Sale {
	s := &c3Sale{c: c, item: item, fronts: fronts, done: make(chan struct{})}
	for i := range n {
		u := fmt.Sprintf("%s-buyer-%05d", item, i)
		s.buyers = append(s.buyers, &c3Buyer{i: i, user: u, key: "k-" + u, shard: engine.ShardFor(item, u, c3Shards),
			front: fronts[i%len(fronts)], final: -1})
	}
	return s
}

// afterConfirmed is closed once n buyers got their 201.
func (s *c3Sale) afterConfirmed(n int64) <-chan struct{} {
	s.mu.Lock()
	defer s.mu.Unlock()
	ch := make(chan struct{})
	if s.confirmed.Load() >= n {
		close(ch)
		return ch
	}
	s.waiters = append(s.waiters, c3Waiter{n, ch})
	return ch
}

// waitConfirmed waits (bounded) for n 201s.
func (s *c3Sale) waitConfirmed(n int64) {
	s.c.t.Helper()
	select {
	case <-s.afterConfirmed(n):
	case <-s.done:
		s.c.t.Fatalf("sale of %s ended with %d confirmed, before %d", s.item, s.confirmed.Load(), n)
	case <-time.After(c3SaleTimeout):
		s.c.t.Fatalf("sale of %s: %d confirmed after %v, waiting for %d", s.item, s.confirmed.Load(), c3SaleTimeout, n)
	}
}

// run starts the workers; done is closed once every buyer is through.
// A worker sends one request of a buyer at a time: a buyer without a final
// answer is queued again after a pause and the worker takes the next, so a
// stalled part of the cluster does not hold up the rest of the crowd.
func (s *c3Sale) run() {
	s.start = time.Now()
	jobs := make(chan *c3Buyer)
	retry := make(chan *c3Buyer, len(s.buyers))
	allDone := make(chan struct{})
	var finished atomic.Int64
	through := func() {
		if finished.Add(1) == int64(len(s.buyers)) {
			close(allDone)
		}
	}
	go func() {
		defer close(jobs)
		i := 0
		for {
			var fresh chan<- *c3Buyer
			var next *c3Buyer
			if i < len(s.buyers) {
				fresh, next = jobs, s.buyers[i]
			}
			select {
			case <-allDone:
				return
			case b := <-retry:
				select {
				case jobs <- b:
				case <-allDone:
					return
				}
			case fresh <- next:
				i++
			}
		}
	}()
	var wg sync.WaitGroup
	for range c3Workers {
		wg.Go(func() {
			for b := range jobs {
				switch pause, again := s.try(b); {
				case !again:
					through()
				default:
					time.AfterFunc(pause, func() { retry <- b }) // pacing of retries
				}
			}
		})
	}
	go func() {
		wg.Wait()
		s.took = time.Since(s.start)
		close(s.done)
	}()
}

// wait waits (bounded) for every buyer to be through.
func (s *c3Sale) wait() {
	s.c.t.Helper()
	select {
	case <-s.done:
	case <-time.After(c3SaleTimeout):
		s.c.t.Fatalf("sale of %s not over after %v (%d confirmed)", s.item, c3SaleTimeout, s.confirmed.Load())
	}
}

func (s *c3Sale) wrongf(format string, args ...any) {
	s.mu.Lock()
	s.wrong = append(s.wrong, fmt.Sprintf(format, args...))
	s.mu.Unlock()
}

// try sends b's key once. again: no final answer (201, sold_out,
// limit_reached) yet and tries are left: try again after pause.
func (s *c3Sale) try(b *c3Buyer) (pause time.Duration, again bool) {
	n := len(b.tries)
	f := b.front
	if s.route != nil {
		f = s.route(b, n)
	}
	tr := c3Try{front: f, issued: time.Since(s.start)}
	a, err := postGrab(s.c.client, s.c.nodes[f].url(), s.item, b.user, b.key)
	tr.answered = time.Since(s.start)
	if err == nil {
		tr.code, tr.status, tr.grabID = a.Code, a.Status, a.GrabID
	}
	b.tries = append(b.tries, tr)
	switch {
	case err != nil || a.Code == http.StatusServiceUnavailable:
		if spent := tr.answered - b.tries[0].issued; n+1 >= c3MaxTries || spent > c3BuyerDeadline {
			s.wrongf("%s: no final answer after %d tries in %v (last %+v)", b.user, n+1, spent.Round(time.Millisecond), tr)
			return 0, false
		}
		return min(c3RetryPauseMax, time.Duration(n+1)*c3RetryPause), true
	case a.Code == http.StatusCreated:
		item, shard, _, ok := engine.ParseGrabID(a.GrabID)
		if a.Status != "confirmed" || a.Item != s.item || a.UserID != b.user || a.Qty != 1 || !ok || item != s.item || shard != b.shard {
			s.wrongf("%s via %s: malformed 201 %v", b.user, s.c.nodes[f].name, a)
		}
		b.grabID, b.final = a.GrabID, n
		c := s.confirmed.Add(1)
		s.mu.Lock()
		s.order = append(s.order, b)
		kept := s.waiters[:0]
		for _, w := range s.waiters {
			if c >= w.n {
				close(w.ch)
			} else {
				kept = append(kept, w)
			}
		}
		s.waiters = kept
		s.mu.Unlock()
	case a.Code == http.StatusConflict && a.Status == "sold_out":
		b.final = n
	case a.Code == http.StatusConflict && a.Status == "limit_reached":
		// A buyer with one key and no other grab: its key's grab was
		// decided and is not replayed.
		s.wrongf("%s (one key, no other grab) via %s: limit_reached", b.user, s.c.nodes[f].name)
		b.final = n
	default:
		s.wrongf("%s via %s: unexpected answer %v", b.user, s.c.nodes[f].name, a)
		b.final = n
	}
	return 0, false
}

// confirmedSoFar returns the buyers confirmed so far (safe during the sale:
// a buyer is not written once confirmed).
func (s *c3Sale) confirmedSoFar() []*c3Buyer {
	s.mu.Lock()
	defer s.mu.Unlock()
	return slices.Clone(s.order)
}

// grabs is grab id -> user of every 201.
func (s *c3Sale) grabs() map[string]string {
	out := map[string]string{}
	for _, b := range s.buyers {
		if b.grabID != "" {
			out[b.grabID] = b.user
		}
	}
	return out
}

// check is what every sale must show once over: every buyer had a final
// answer and none was wrong; exactly the stock was confirmed, to distinct
// grab ids; no buyer first tried after a sold_out was answered got a 201.
func (s *c3Sale) check() {
	t := s.c.t
	t.Helper()
	s.mu.Lock()
	wrong := slices.Clone(s.wrong)
	s.mu.Unlock()
	if len(wrong) > 0 {
		t.Fatalf("%s: %d wrong or missing answers, e.g.:\n%s", s.item, len(wrong), strings.Join(wrong[:min(len(wrong), 20)], "\n"))
	}
	var confirmed, soldOut, retried, tries int
	firstSoldOut := time.Duration(-1)
	ids := map[string]string{}
	for _, b := range s.buyers {
		tries += len(b.tries)
		if len(b.tries) > 1 {
			retried++
		}
		for _, tr := range b.tries {
			if tr.code == http.StatusConflict && tr.status == "sold_out" && (firstSoldOut < 0 || tr.answered < firstSoldOut) {
				firstSoldOut = tr.answered
			}
		}
		switch r := b.result(); {
		case r == nil:
			t.Fatalf("%s has no final answer", b.user)
		case r.code == http.StatusCreated:
			confirmed++
			if other, dup := ids[b.grabID]; dup {
				t.Fatalf("grab %s confirmed to %s and to %s", b.grabID, other, b.user)
			}
			ids[b.grabID] = b.user
		case r.status == "sold_out":
			soldOut++
		}
	}
	if confirmed != c3Stock || len(ids) != confirmed || confirmed+soldOut != len(s.buyers) {
		t.Fatalf("%s: %d buyers confirmed (%d distinct grab ids), %d sold out, of %d buyers: want the stock of %d confirmed and the rest sold out",
			s.item, confirmed, len(ids), soldOut, len(s.buyers), c3Stock)
	}
	// sold_out is final: a 201 to a key first tried after a sold_out was
	// answered is a unit sold after the item was said to be sold out. (A
	// key tried before may replay a grab decided then.)
	late, replays := 0, 0
	for _, b := range s.buyers {
		r := b.result()
		if r.code != http.StatusCreated || firstSoldOut < 0 || r.issued <= firstSoldOut {
			continue
		}
		if b.tries[0].issued > firstSoldOut {
			late++
			if late <= 10 {
				t.Errorf("%s first tried %v after a sold_out was answered, then got 201 %s", b.user, b.tries[0].issued-firstSoldOut, b.grabID)
			}
		} else {
			replays++
		}
	}
	if late > 0 {
		t.Fatalf("%s: %d buyers got a unit after the item was answered sold_out", s.item, late)
	}
	t.Logf("%s: %d buyers through fronts %v in %v (%.0f buyers/s, %d requests): %d confirmed, %d sold out, %d retried a key; "+
		"first sold_out answered at %v; %d 201s to keys first tried before it answered after it",
		s.item, len(s.buyers), s.frontNames(), s.took.Round(time.Millisecond), float64(len(s.buyers))/s.took.Seconds(), tries,
		confirmed, soldOut, retried, firstSoldOut.Round(time.Millisecond), replays)
}

func (s *c3Sale) frontNames() []string {
	var out []string
	for _, f := range s.fronts {
		out = append(out, s.c.nodes[f].name)
	}
	return out
}

// replayAll sends every confirmed key again, starting at another front
// than its own and going on to the next on 503 or no answer: each must
// replay its grab id; anything else fails the test.
// bs are the buyers to replay (nil: every buyer of the sale, once it is
// over); those without a 201 are skipped.
func (s *c3Sale) replayAll(bs []*c3Buyer) int {
	t := s.c.t
	t.Helper()
	if bs == nil {
		bs = s.buyers
	}
	var todo []string
	byUser := map[string]*c3Buyer{}
	for _, b := range bs {
		if b.grabID != "" {
			todo = append(todo, b.user)
			byUser[b.user] = b
		}
	}
	var bad atomic.Int64
	var mu sync.Mutex
	var msgs []string
	forEachParallel(c3Workers, todo, func(u string) {
		b := byUser[u]
		for try := range 300 {
			if try > 0 {
				time.Sleep(min(c3RetryPauseMax, time.Duration(try)*c3RetryPause)) // pacing of retries
			}
			f := (b.front + 1 + try) % len(s.c.nodes)
			if s.noReplay != nil && s.noReplay(b, f) {
				continue
			}
			n := s.c.nodes[f]
			a, err := postGrab(s.c.client, n.url(), s.item, b.user, b.key)
			if err != nil || a.Code == http.StatusServiceUnavailable {
				continue
			}
			if a.Code != http.StatusCreated || a.GrabID != b.grabID {
				bad.Add(1)
				mu.Lock()
				msgs = append(msgs, fmt.Sprintf("replay of %s via %s: %v, want 201 %s", b.user, n.name, a, b.grabID))
				mu.Unlock()
			}
			return
		}
		bad.Add(1)
		mu.Lock()
		msgs = append(msgs, fmt.Sprintf("replay of %s: no answer but 503 in 300 tries", b.user))
		mu.Unlock()
	})
	if bad.Load() > 0 {
		sort.Strings(msgs)
		t.Fatalf("%s: %d of %d confirmed keys do not replay their grab:\n%s", s.item, bad.Load(), len(todo), strings.Join(msgs[:min(len(msgs), 20)], "\n"))
	}
	return len(todo)
}

// waitOrders waits until every confirmed grab's order is found through
// some front (an order is written by the node whose writer took it).
func (s *c3Sale) waitOrders() {
	t := s.c.t
	t.Helper()
	grabs := s.grabs()
	pending := slices.Sorted(func(yield func(string) bool) {
		for id := range grabs {
			if !yield(id) {
				return
			}
		}
	})
	started := time.Now()
	for {
		var mu sync.Mutex
		var still, bad []string
		forEachParallel(c3Workers, pending, func(id string) {
			for _, n := range s.c.nodes {
				code, o, raw, err := getOrder(s.c.client, n.url(), id)
				if err != nil || code != http.StatusOK {
					continue
				}
				if o.GrabID != id || o.Item != s.item || o.UserID != grabs[id] || o.Qty != 1 || o.Status != "pending_payment" {
					mu.Lock()
					bad = append(bad, fmt.Sprintf("order of %s via %s: %s", id, n.name, raw))
					mu.Unlock()
				}
				return
			}
			mu.Lock()
			still = append(still, id)
			mu.Unlock()
		})
		if len(bad) > 0 {
			t.Fatalf("%d orders differ from their grab:\n%s", len(bad), strings.Join(bad[:min(len(bad), 10)], "\n"))
		}
		if len(still) == 0 {
			t.Logf("%s: every one of %d confirmed grabs has its order (%v after the sale)", s.item, len(grabs), time.Since(started).Round(time.Millisecond))
			return
		}
		if time.Since(started) > faultDrainTimeout {
			t.Fatalf("%d of %d confirmed grabs have no order after %v, e.g. %v", len(still), len(grabs), faultDrainTimeout, still[:min(len(still), 10)])
		}
		pending = still
		time.Sleep(faultPollEvery) // poll interval
	}
}

// checkOrderStores opens every (stopped) node's order store and requires
// exactly one order across them for each confirmed grab of the sales, and
// none other.
func (c *c3Cluster) checkOrderStores(sales ...*c3Sale) {
	t := c.t
	t.Helper()
	for _, s := range sales {
		grabs := s.grabs()
		where := map[string][]string{}
		var bad []string
		perNode := map[string]int{}
		for _, n := range c.nodes {
			st, err := persistence.OpenPebbleOrders(filepath.Join(n.dir, "orders"))
			if err != nil {
				t.Fatalf("%s orders: %v", n.name, err)
			}
			err = st.Scan(s.item, func(o engine.Order) error {
				where[o.GrabID] = append(where[o.GrabID], n.name+" written "+time.UnixMilli(o.CreatedMs).UTC().Format("15:04:05.000"))
				perNode[n.name]++
				switch u, ok := grabs[o.GrabID]; {
				case !ok:
					bad = append(bad, fmt.Sprintf("%s: order %s (user %s) of no confirmed grab", n.name, o.GrabID, o.User))
				case o.User != u || o.Qty != 1 || o.Item != s.item:
					bad = append(bad, fmt.Sprintf("%s: order %+v differs from its grab (user %s)", n.name, o, u))
				}
				return nil
			})
			st.Close()
			if err != nil {
				t.Fatalf("%s orders: %v", n.name, err)
			}
		}
		var inStream map[string]int
		for id, ns := range where {
			if len(ns) == 1 {
				continue
			}
			if inStream == nil {
				inStream = c.streamCopies()
			}
			bad = append(bad, fmt.Sprintf("grab %s has %d orders (%v); GRABS holds it %d times", id, len(ns), ns, inStream[id]))
		}
		for id, u := range grabs {
			if len(where[id]) == 0 {
				bad = append(bad, fmt.Sprintf("confirmed grab %s (user %s) has no order", id, u))
			}
		}
		if len(bad) > 0 {
			sort.Strings(bad)
			t.Fatalf("%s: %d problems in the order stores:\n%s", s.item, len(bad), strings.Join(bad[:min(len(bad), 20)], "\n"))
		}
		t.Logf("%s: each of %d confirmed grabs has exactly one order across the stores (per node %v)", s.item, len(grabs), perNode)
	}
}

// streamCopies counts how many times each grab id is in the GRABS stream
// (a diagnosis: published twice, or delivered twice).
func (c *c3Cluster) streamCopies() map[string]int {
	w := watchStream(c.t, c.natsURL, c.natsCreds) // cluster lanes have no "orders" consumer
	si, err := w.str.Info(context.Background())
	if err != nil {
		c.t.Fatalf("stream info: %v", err)
	}
	out := map[string]int{}
	for _, id := range w.grabIDsUpTo(c.t, si.State.LastSeq) {
		out[id]++
	}
	return out
}

// finishSale is the end of every scenario: the sale is over, every view
// settles sold out, every 201 replays, every grab has its order; then all
// nodes stop and the order stores are read.
func (c *c3Cluster) finishSale(s *c3Sale, a *c3Audit) {
	c.t.Helper()
	c.endSale(s, a)
	c.stopAndCheckOrders(s)
}

// endSale: the sale is over, every view settles sold out, every 201
// replays, every grab has its order.
func (c *c3Cluster) endSale(s *c3Sale, a *c3Audit) {
	c.t.Helper()
	s.wait()
	if a != nil {
		a.finish(c.t)
	}
	s.check()
	c.waitSettled(s.item)
	n := s.replayAll(nil)
	c.t.Logf("%s: all %d confirmed keys replay their grab id", s.item, n)
	s.waitOrders()
	// The cluster's reconcile, asked of one node for every node's stores,
	// the ledger in etcd and the shared stream: clean, one order a grab.
	live := c.live()
	front := live[len(live)-1]
	r := waitLiveReconcile(c.t, c.client, front.url(), s.item, c3Stock, int(s.confirmed.Load()), true)
	c.t.Logf("%s: the cluster reconcile through %s is clean: %d grabs, %d in the stream, orders %v", s.item, front.name, r.Grabs, r.InStream, r.Orders)
}

// stopAndCheckOrders stops every node and reads the order stores.
func (c *c3Cluster) stopAndCheckOrders(s *c3Sale) {
	c.t.Helper()
	c.stopAll()
	c.checkOrderStores(s)
	c.t.Logf("took %v", time.Since(c.started).Round(time.Millisecond))
}

// ---------------------------------------------------------------------------
// Measuring.

func pct(ds []time.Duration, p float64) time.Duration {
	if len(ds) == 0 {
		return 0
	}
	ds = slices.Clone(ds)
	slices.Sort(ds)
	i := int(p * float64(len(ds)-1))
	return ds[i]
}

// latencies returns the latency of every try answered with code (0: any
// answer), split by whether the buyer's shard ran on the front's node.
func (s *c3Sale) latencies(code int, owners []string) (all, local, remote []time.Duration) {
	for _, b := range s.buyers {
		for _, tr := range b.tries {
			if tr.code == 0 || (code != 0 && tr.code != code) {
				continue
			}
			d := tr.answered - tr.issued
			all = append(all, d)
			if owners == nil {
				continue
			}
			if owners[b.shard] == s.c.nodes[tr.front].name {
				local = append(local, d)
			} else {
				remote = append(remote, d)
			}
		}
	}
	return all, local, remote
}

// triesOf counts the tries of the sale.
func (s *c3Sale) triesOf() int {
	n := 0
	for _, b := range s.buyers {
		n += len(b.tries)
	}
	return n
}

// logLine finds the first line of a node's log matching re.
func logLine(p *seckillProc, re *regexp.Regexp) []string {
	for _, l := range strings.Split(p.stderr.String(), "\n") {
		if m := re.FindStringSubmatch(l); m != nil {
			return m
		}
	}
	return nil
}

package bench

import (
	"bufio"
	"context"
	"crypto/rand"
	"crypto/tls"
	"encoding/hex"
	"errors"
	"fmt"
	"net"
	"net/http"
	"os"
	"os/exec"
	"path/filepath"
	"strconv"
	"strings"
	"sync"
	"syscall"
	"time"

	"github.com/redis/go-redis/v9"
	"github.com/seckill/seckill/certs"
	clientv3 "go.etcd.io/etcd/client/v3"
	"go.uber.org/zap"
)

// TargetCluster is the three-node cluster --cluster-compare measures
// beside one node.
const TargetCluster = "seckill-cluster"

// ClusterIPs are the cluster's nodes, as `make cluster` runs them: each on
// its own loopback address.
var ClusterIPs = []string{"127.0.0.11", "127.0.0.12", "127.0.0.13"}

const (
	// clusterNATS: the journal and the order stream on three NATS servers,
	// kept on all three (R3), fsync before every ack, as make cluster.
	clusterNATS = 3
	// clusterReadyTimeout bounds each process's start.
	clusterReadyTimeout = time.Minute
	// clusterPoll is how often a start is checked for what has no event
	// (etcd answering, Redis answering, every member listed).
	clusterPoll      = 100 * time.Millisecond
	clusterRedisUser = "seckill"
)

// clusterProc is one process of the cluster.
type clusterProc struct {
	name   string
	env    []string
	argv   []string
	cmd    *exec.Cmd
	exited chan struct{}
	lines  chan string // stdout lines, until the first match is read
}

// cluster is what StartCluster runs, in start order.
type cluster struct {
	dir   string
	procs []*clusterProc
	// nodes and nats are each node's and NATS server's process now (a
	// restart replaces it); etcdPort and natsPorts are their client ports
	// on 127.0.0.1 (what a partition cuts).
	nodes     []*clusterProc
	nats      []*clusterProc
	etcdPort  int
	natsPorts []int
}

func (c *cluster) start(name string, env []string, argv ...string) (*clusterProc, error) {
	cmd := exec.Command(argv[0], argv[1:]...)
	cmd.Env = append(os.Environ(), env...)
	cmd.SysProcAttr = &syscall.SysProcAttr{Setpgid: true}
	logf, err := os.OpenFile(filepath.Join(c.dir, name+".log"), os.O_CREATE|os.O_WRONLY|os.O_APPEND, 0o644)
	if err != nil {
		return nil, err
	}
	cmd.Stderr = logf
	out, err := cmd.StdoutPipe()
	if err != nil {
		logf.Close()
		return nil, err
	}
	if err := cmd.Start(); err != nil {
		logf.Close()
		return nil, fmt.Errorf("start %s: %w", name, err)
	}
	p := &clusterProc{name: name, env: env, argv: argv, cmd: cmd, exited: make(chan struct{}), lines: make(chan string, 64)}
	c.procs = append(c.procs, p)
	go func() {
		sc := bufio.NewScanner(out)
		for sc.Scan() {
			fmt.Fprintln(logf, sc.Text())
			select {
			case p.lines <- sc.Text():
			default: // nobody waits for lines any more
			}
		}
		cmd.Wait()
		logf.Close()
		close(p.exited)
	}()
	return p, nil
}

// waitLine waits for a stdout line starting with prefix and returns it.
func (p *clusterProc) waitLine(prefix string) (string, error) {
	deadline := time.After(clusterReadyTimeout)
	for {
		select {
		case l := <-p.lines:
			if strings.HasPrefix(l, prefix) {
				return l, nil
			}
		case <-p.exited:
			return "", fmt.Errorf("%s exited before %q", p.name, prefix)
		case <-deadline:
			return "", fmt.Errorf("%s: no %q within %v", p.name, prefix, clusterReadyTimeout)
		}
	}
}

// waitUntil polls ok until it holds; a process's exit ends the wait.
func (p *clusterProc) waitUntil(what string, ok func() error) error {
	deadline := time.Now().Add(clusterReadyTimeout)
	for {
		err := ok()
		if err == nil {
			return nil
		}
		select {
		case <-p.exited:
			return fmt.Errorf("%s exited before %s", p.name, what)
		case <-time.After(clusterPoll):
		}
		if time.Now().After(deadline) {
			return fmt.Errorf("%s: not %s within %v: %w", p.name, what, clusterReadyTimeout, err)
		}
	}
}

// stop SIGTERMs the processes, the nodes together first, then the others
// in reverse start order, and waits for each (SIGKILL past
// childStopTimeout).
func (c *cluster) stop() error {
	var nodes, rest []*clusterProc
	for _, p := range c.procs {
		if strings.HasPrefix(p.name, "n") && !strings.HasPrefix(p.name, "nats") {
			nodes = append(nodes, p)
		} else {
			rest = append(rest, p)
		}
	}
	errs := make([]error, len(nodes))
	var wg sync.WaitGroup
	for i, p := range nodes {
		wg.Go(func() { errs[i] = p.stop() })
	}
	wg.Wait()
	for i := len(rest) - 1; i >= 0; i-- {
		errs = append(errs, rest[i].stop())
	}
	return errors.Join(errs...)
}

func (p *clusterProc) stop() error {
	_ = p.cmd.Process.Signal(syscall.SIGTERM)
	select {
	case <-p.exited:
		return nil
	case <-time.After(childStopTimeout):
		_ = p.cmd.Process.Kill()
		<-p.exited
		return fmt.Errorf("%s did not stop within %v: killed", p.name, childStopTimeout)
	}
}

// StartCluster runs, under dir, what `make cluster` runs: the cluster's
// certificates, etcd over TLS with client certificates, redis-server with
// an ACL user, three `seckill nats` servers as one JetStream cluster (fsync
// before every ack), and three `seckill serve --cluster` nodes on
// ClusterIPs with their journal and streams on all three NATS servers.
// exe runs this binary. It returns once every node lists all three.
// natsSync is the NATS servers' --sync ("": always).
func StartCluster(exe, dir, token, natsSync string) (*Target, error) {
	t, _, err := startCluster(exe, dir, token, natsSync)
	return t, err
}

func startCluster(exe, dir, token, natsSync string) (_ *Target, _ *cluster, err error) {
	if natsSync == "" {
		natsSync = "always"
	}
	c := &cluster{dir: dir}
	defer func() {
		if err != nil {
			c.stop()
		}
	}()
	certsDir := filepath.Join(dir, "certs")
	if err := certs.CreateCA(certsDir, false); err != nil {
		return nil, nil, err
	}
	if err := certs.CreateNode(certsDir, "etcd", []string{"127.0.0.1", "localhost"}, false); err != nil {
		return nil, nil, err
	}
	for i, ip := range ClusterIPs {
		if err := certs.CreateNode(certsDir, nodeName(i), []string{ip, "localhost"}, false); err != nil {
			return nil, nil, err
		}
	}

	// etcd, TLS only, clients with a certificate of the CA.
	etcdPort, etcdPeer := freePortOn("127.0.0.1"), freePortOn("127.0.0.1")
	etcdURL := "https://127.0.0.1:" + strconv.Itoa(etcdPort)
	peerURL := "http://127.0.0.1:" + strconv.Itoa(etcdPeer)
	etcd, err := c.start("etcd", nil, "etcd", "--name", "bench", "--data-dir", filepath.Join(dir, "etcd"),
		"--listen-client-urls", etcdURL, "--advertise-client-urls", etcdURL,
		"--listen-peer-urls", peerURL, "--initial-advertise-peer-urls", peerURL, "--initial-cluster", "bench="+peerURL,
		"--logger", "zap", "--log-level", "error", "--client-cert-auth",
		"--trusted-ca-file", filepath.Join(certsDir, certs.CACert),
		"--cert-file", filepath.Join(certsDir, certs.NodeCert("etcd")), "--key-file", filepath.Join(certsDir, certs.NodeKey("etcd")))
	if err != nil {
		return nil, nil, err
	}
	en, err := certs.Load(certsDir, "etcd")
	if err != nil {
		return nil, nil, err
	}
	cli, err := clientv3.New(clientv3.Config{Endpoints: []string{etcdURL}, DialTimeout: clusterReadyTimeout, Logger: zap.NewNop(),
		TLS: &tls.Config{MinVersion: tls.VersionTLS12, Certificates: []tls.Certificate{en.Certificate()}, RootCAs: en.Pool()}})
	if err != nil {
		return nil, nil, err
	}
	defer cli.Close()
	if err := etcd.waitUntil("answering", func() error {
		ctx, cancel := context.WithTimeout(context.Background(), time.Second)
		defer cancel()
		_, err := cli.Get(ctx, "ping")
		return err
	}); err != nil {
		return nil, nil, err
	}

	// redis-server: protected mode on, the default user off, one ACL user.
	redisDir := filepath.Join(dir, "redis")
	if err := os.MkdirAll(redisDir, 0o700); err != nil {
		return nil, nil, err
	}
	raw := make([]byte, 16)
	rand.Read(raw)
	pass := hex.EncodeToString(raw)
	conf := filepath.Join(redisDir, "redis.conf")
	if err := os.WriteFile(conf, []byte("user default off resetpass nocommands\nuser "+clusterRedisUser+" on >"+pass+" ~* &* +@all\n"), 0o600); err != nil {
		return nil, nil, err
	}
	redisPort := freePortOn("127.0.0.1")
	redisAddr := "127.0.0.1:" + strconv.Itoa(redisPort)
	rp, err := c.start("redis", nil, "redis-server", conf, "--port", strconv.Itoa(redisPort), "--bind", "127.0.0.1",
		"--protected-mode", "yes", "--save", "", "--appendonly", "no", "--dir", redisDir)
	if err != nil {
		return nil, nil, err
	}
	rdb := redis.NewClient(&redis.Options{Addr: redisAddr, Username: clusterRedisUser, Password: pass})
	defer rdb.Close()
	if err := rp.waitUntil("answering", func() error {
		ctx, cancel := context.WithTimeout(context.Background(), time.Second)
		defer cancel()
		return rdb.Ping(ctx).Err()
	}); err != nil {
		return nil, nil, err
	}

	// Three NATS servers, one JetStream cluster, one client key.
	natsDir := filepath.Join(dir, "nats")
	creds := filepath.Join(natsDir, "client.nk")
	clientPorts, routePorts := make([]int, clusterNATS), make([]int, clusterNATS)
	for i := range clusterNATS {
		clientPorts[i], routePorts[i] = freePortOn("127.0.0.1"), freePortOn("127.0.0.1")
	}
	var natsURLs []string
	var natsProcs []*clusterProc
	for i := range clusterNATS {
		var routes []string
		for j := range clusterNATS {
			if j != i {
				routes = append(routes, "nats-route://127.0.0.1:"+strconv.Itoa(routePorts[j]))
			}
		}
		name := "nats" + strconv.Itoa(i+1)
		p, err := c.start(name, nil, exe, "nats", "--name", name, "--listen", "127.0.0.1:"+strconv.Itoa(clientPorts[i]),
			"--dir", filepath.Join(natsDir, name), "--creds", creds, "--sync", natsSync,
			"--cluster-listen", "127.0.0.1:"+strconv.Itoa(routePorts[i]), "--routes", strings.Join(routes, ","))
		if err != nil {
			return nil, nil, err
		}
		if _, err := p.waitLine("seckill nats: listening on "); err != nil {
			return nil, nil, err
		}
		natsProcs = append(natsProcs, p)
		natsURLs = append(natsURLs, "nats://127.0.0.1:"+strconv.Itoa(clientPorts[i]))
	}
	for _, p := range natsProcs {
		if _, err := p.waitLine("seckill nats: JetStream meta leader"); err != nil {
			return nil, nil, err
		}
	}

	// The nodes.
	t := &Target{Name: TargetCluster, Replays: true}
	var nodes []*clusterProc
	for i, ip := range ClusterIPs {
		name := nodeName(i)
		p, err := c.start(name, []string{"SECKILL_ADMIN_TOKEN=" + token,
			"SECKILL_REDIS=redis://" + clusterRedisUser + ":" + pass + "@" + redisAddr},
			exe, "serve", "--data", filepath.Join(dir, name), "--http", net.JoinHostPort(ip, strconv.Itoa(freePortOn(ip))),
			"--cluster", "--node", name, "--etcd", etcdURL, "--peer", net.JoinHostPort(ip, strconv.Itoa(freePortOn(ip))),
			"--certs-dir", certsDir, "--nats", strings.Join(natsURLs, ","), "--nats-creds", creds,
			"--nats-replicas", strconv.Itoa(clusterNATS))
		if err != nil {
			return nil, nil, err
		}
		nodes = append(nodes, p)
	}
	for _, p := range nodes {
		l, err := p.waitLine("seckill: serving ")
		if err != nil {
			return nil, nil, err
		}
		u := strings.Fields(strings.TrimPrefix(l, "seckill: serving "))[0]
		t.Fronts = append(t.Fronts, u)
		t.Views = append(t.Views, NewSeckillAdmin(u, token))
	}
	t.URL, t.Admin = t.Fronts[0], t.Views[0]
	if err := nodes[0].waitUntil("listing every node", func() error { return allMembers(t.Fronts[0], token) }); err != nil {
		return nil, nil, err
	}
	for _, p := range c.procs {
		t.Procs = append(t.Procs, Proc{Name: p.name, Pid: p.cmd.Process.Pid})
	}
	t.Stop = func() error { return errors.Join(c.stop(), os.RemoveAll(dir)) }
	c.nodes, c.nats, c.etcdPort, c.natsPorts = nodes, natsProcs, etcdPort, clientPorts
	return t, c, nil
}

func nodeName(i int) string { return "n" + strconv.Itoa(i+1) }

// allMembers reports whether the front lists every node with a lease.
func allMembers(front, token string) error {
	a := &seckillAdmin{base: front, token: token, http: &http.Client{Timeout: clientTimeout}}
	ms, err := a.members(context.Background())
	if err != nil {
		return err
	}
	if len(ms) < len(ClusterIPs) {
		return fmt.Errorf("%d members listed", len(ms))
	}
	return nil
}

// freePortOn is a port free on ip now (the kernel's pick, released).
func freePortOn(ip string) int {
	l, err := net.Listen("tcp", net.JoinHostPort(ip, "0"))
	if err != nil {
		return 0
	}
	defer l.Close()
	return l.Addr().(*net.TCPAddr).Port
}

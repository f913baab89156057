package fence

import (
	"context"
	"errors"
	"net"
	"os"
	"os/exec"
	"path/filepath"
	"testing"
	"time"

	"go.etcd.io/etcd/api/v3/mvccpb"
	clientv3 "go.etcd.io/etcd/client/v3"
	"go.uber.org/zap"
)

// etcdStartTimeout bounds how long a fresh single-member etcd may take to
// answer (it elects itself in about a second here).
const etcdStartTimeout = 15 * time.Second

// startEtcd runs a real etcd on free loopback ports with its data in a
// temporary directory, killed when the test ends, and returns its address.
func startEtcd(t *testing.T) string {
	t.Helper()
	bin, err := exec.LookPath("etcd")
	if err != nil {
		bin = "/usr/bin/etcd"
		if _, statErr := os.Stat(bin); statErr != nil {
			t.Fatalf("etcd is not installed (%v): run `make deps` or `apt-get install etcd-server`", err)
		}
	}
	dir := t.TempDir()
	clientURL, peerURL := "http://"+freeAddr(t), "http://"+freeAddr(t)
	logf, err := os.Create(filepath.Join(dir, "etcd.log"))
	if err != nil {
		t.Fatal(err)
	}
	cmd := exec.Command(bin, "--name", "fence", "--data-dir", filepath.Join(dir, "data"),
		"--listen-client-urls", clientURL, "--advertise-client-urls", clientURL,
		"--listen-peer-urls", peerURL, "--initial-advertise-peer-urls", peerURL,
		"--initial-cluster", "fence="+peerURL, "--logger", "zap", "--log-level", "error")
	cmd.Stdout, cmd.Stderr = logf, logf
	if err := cmd.Start(); err != nil {
		t.Fatalf("start etcd: %v", err)
	}
	exited := make(chan struct{})
	go func() { _ = cmd.Wait(); close(exited) }()
	t.Cleanup(func() {
		_ = cmd.Process.Kill()
		<-exited
		_ = logf.Close()
	})
	cli := dial(t, clientURL)
	deadline := time.Now().Add(etcdStartTimeout)
	for {
		ctx, cancel := context.WithTimeout(context.Background(), 500*time.Millisecond)
		_, err := cli.Get(ctx, "ping")
		cancel()
		if err == nil {
			return clientURL
		}
		select {
		case <-exited:
			log, _ := os.ReadFile(logf.Name())
			t.Fatalf("etcd exited: %s", log)
		default:
		}
		if time.Now().After(deadline) {
			log, _ := os.ReadFile(logf.Name())
			t.Fatalf("etcd did not answer in %v: %v\n%s", etcdStartTimeout, err, log)
		}
		time.Sleep(50 * time.Millisecond) // polling a process that is starting: nothing to watch yet
	}
}

// dial returns a client of the etcd at url, closed when the test ends
// (before the etcd is killed: cleanups run last-in first-out).
func dial(t *testing.T, url string) *clientv3.Client {
	t.Helper()
	cli, err := clientv3.New(clientv3.Config{Endpoints: []string{url}, DialTimeout: 2 * time.Second, Logger: zap.NewNop()})
	if err != nil {
		t.Fatalf("dial etcd: %v", err)
	}
	t.Cleanup(func() { _ = cli.Close() })
	return cli
}

func freeAddr(t *testing.T) string {
	t.Helper()
	l, err := net.Listen("tcp", "127.0.0.1:0")
	if err != nil {
		t.Fatal(err)
	}
	defer l.Close()
	return l.Addr().String()
}

// ctxFor is a context bounded for one test step.
func ctxFor(t *testing.T, d time.Duration) context.Context {
	ctx, cancel := context.WithTimeout(context.Background(), d)
	t.Cleanup(cancel)
	return ctx
}

// waitKeyDeleted returns once key is deleted at or after rev, as a watch
// reports it; it fails the test after d.
func waitKeyDeleted(t *testing.T, cli *clientv3.Client, key string, rev int64, d time.Duration) {
	t.Helper()
	ctx, cancel := context.WithTimeout(context.Background(), d)
	defer cancel()
	for wr := range cli.Watch(ctx, key, clientv3.WithRev(rev)) {
		for _, ev := range wr.Events {
			if ev.Type == mvccpb.DELETE {
				return
			}
		}
	}
	t.Fatalf("%s not deleted within %v", key, d)
}

// join makes a node with the shortest lease the rules allow.
func join(t *testing.T, cli *clientv3.Client, id string) *Lease {
	t.Helper()
	l, err := Join(ctxFor(t, 10*time.Second), cli, NodeInfo{ID: id, Addr: "127.0.0.1:1"}, MinLeaseTTL)
	if err != nil {
		t.Fatalf("join %s: %v", id, err)
	}
	t.Cleanup(func() {
		ctx, cancel := context.WithTimeout(context.Background(), time.Second)
		defer cancel()
		_ = l.Leave(ctx)
	})
	return l
}

// expire stops l's keep-alives (as a crash would) and returns once etcd has
// deleted its node key.
func expire(t *testing.T, cli *clientv3.Client, l *Lease) {
	t.Helper()
	resp, err := cli.Get(ctxFor(t, time.Second), nodeKey(l.Node().ID))
	if err != nil {
		t.Fatal(err)
	}
	l.Close()
	waitKeyDeleted(t, cli, nodeKey(l.Node().ID), resp.Header.Revision+1, MinLeaseTTL+5*time.Second)
}

func wantErr(t *testing.T, what string, err, want error) {
	t.Helper()
	if want == nil && err != nil || want != nil && !errors.Is(err, want) {
		t.Fatalf("%s: err %v, want %v", what, err, want)
	}
}

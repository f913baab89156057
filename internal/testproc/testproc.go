// Package testproc starts the real servers seckill's tests run against
// (etcd, redis-server) on free loopback ports, each in a temporary
// directory and killed when its test ends. It is imported by tests only.
package testproc

import (
	"context"
	"fmt"
	"net"
	"os"
	"os/exec"
	"path/filepath"
	"strconv"
	"syscall"
	"testing"
	"time"

	"github.com/redis/go-redis/v9"
	clientv3 "go.etcd.io/etcd/client/v3"
	"go.uber.org/zap"
)

const (
	// StartTimeout bounds how long a fresh server may take to answer: a
	// single-member etcd elects itself in about a second here.
	StartTimeout = 15 * time.Second
	// poll is the pause between two probes of a server that is starting:
	// there is nothing to watch before it answers.
	poll = 50 * time.Millisecond
)

// Bin returns the path of a server binary, or "" when it is not installed
// (`make deps` installs them).
func Bin(name, fallback string) string {
	if p, err := exec.LookPath(name); err == nil {
		return p
	}
	if _, err := os.Stat(fallback); err == nil {
		return fallback
	}
	return ""
}

// FreePort returns a TCP port free on 127.0.0.1 at the time of the call.
func FreePort(t testing.TB) int {
	t.Helper()
	ln, err := net.Listen("tcp", "127.0.0.1:0")
	if err != nil {
		t.Fatal(err)
	}
	defer ln.Close()
	return ln.Addr().(*net.TCPAddr).Port
}

// start runs cmd with its output in dir/name.log, killed at the end of the
// test (continued first, should the test have paused it), and probes until
// ready returns nil.
func start(t testing.TB, cmd *exec.Cmd, dir, name string, ready func() error) {
	t.Helper()
	logf, err := os.Create(filepath.Join(dir, name+".log"))
	if err != nil {
		t.Fatal(err)
	}
	cmd.Stdout, cmd.Stderr = logf, logf
	if err := cmd.Start(); err != nil {
		t.Fatalf("start %s: %v", name, err)
	}
	exited := make(chan struct{})
	go func() { _ = cmd.Wait(); close(exited) }()
	t.Cleanup(func() {
		_ = cmd.Process.Signal(syscall.SIGCONT)
		_ = cmd.Process.Kill()
		<-exited
		_ = logf.Close()
	})
	deadline := time.Now().Add(StartTimeout)
	for {
		err := ready()
		if err == nil {
			return
		}
		select {
		case <-exited:
			log, _ := os.ReadFile(logf.Name())
			t.Fatalf("%s exited: %s", name, log)
		default:
		}
		if time.Now().After(deadline) {
			log, _ := os.ReadFile(logf.Name())
			t.Fatalf("%s did not answer in %v: %v\n%s", name, StartTimeout, err, log)
		}
		time.Sleep(poll)
	}
}

// Etcd runs a single-member etcd on free ports of 127.0.0.1 and returns
// its client URL and port. It fails the test when etcd is not installed.
func Etcd(t testing.TB) (url string, port int) {
	t.Helper()
	bin := Bin("etcd", "/usr/bin/etcd")
	if bin == "" {
		t.Fatal("etcd is not installed: run `make deps` (apt-get install etcd-server)")
	}
	dir := t.TempDir()
	port = FreePort(t)
	url = "http://127.0.0.1:" + strconv.Itoa(port)
	peer := fmt.Sprintf("http://127.0.0.1:%d", FreePort(t))
	cmd := exec.Command(bin, "--name", "seckill-test", "--data-dir", filepath.Join(dir, "data"),
		"--listen-client-urls", url, "--advertise-client-urls", url,
		"--listen-peer-urls", peer, "--initial-advertise-peer-urls", peer,
		"--initial-cluster", "seckill-test="+peer, "--logger", "zap", "--log-level", "error")
	cli, err := clientv3.New(clientv3.Config{Endpoints: []string{url}, DialTimeout: StartTimeout, Logger: zap.NewNop()})
	if err != nil {
		t.Fatal(err)
	}
	defer cli.Close()
	start(t, cmd, dir, "etcd", func() error {
		ctx, cancel := context.WithTimeout(context.Background(), 500*time.Millisecond)
		defer cancel()
		_, err := cli.Get(ctx, "ping")
		return err
	})
	return url, port
}

// Redis runs redis-server on a free port of 127.0.0.1 (appendonly, no RDB
// saves, protected mode off so that nodes on other loopback addresses
// reach it) and returns its redis:// URL. extra are more server options.
func Redis(t testing.TB, extra ...string) string {
	t.Helper()
	url, _ := RedisProc(t, extra...)
	return url
}

// RedisProc is Redis, also returning the server's process, for tests that
// pause or kill it.
func RedisProc(t testing.TB, extra ...string) (string, *os.Process) {
	t.Helper()
	bin := Bin("redis-server", "/usr/bin/redis-server")
	if bin == "" {
		t.Fatal("redis-server is not installed: run `make deps`")
	}
	dir, port := t.TempDir(), FreePort(t)
	args := append([]string{"--bind", "127.0.0.1", "--port", strconv.Itoa(port), "--dir", dir,
		"--appendonly", "yes", "--save", "", "--protected-mode", "no"}, extra...)
	url := "redis://127.0.0.1:" + strconv.Itoa(port)
	rdb := redis.NewClient(&redis.Options{Addr: "127.0.0.1:" + strconv.Itoa(port)})
	defer rdb.Close()
	cmd := exec.Command(bin, args...)
	start(t, cmd, dir, "redis", func() error {
		ctx, cancel := context.WithTimeout(context.Background(), 500*time.Millisecond)
		defer cancel()
		return rdb.Ping(ctx).Err()
	})
	return url, cmd.Process
}

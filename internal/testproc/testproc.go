// Package testproc starts the real servers seckill's tests run against
// (etcd, redis-server) on free loopback ports, each in a temporary
// directory and killed when its test ends: open (Etcd, Redis) or asking
// for credentials (SecureEtcd: TLS with client certificates; SecureRedis:
// an ACL user and password, protected mode on). It is imported by tests
// only.
package testproc

import (
	"context"
	"crypto/tls"
	"errors"
	"fmt"
	"net"
	"os"
	"os/exec"
	"path/filepath"
	"strconv"
	"strings"
	"syscall"
	"testing"
	"time"

	"github.com/redis/go-redis/v9"
	"github.com/seckill/seckill/certs"
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

// EtcdServerName is the name of the certificate SecureEtcd serves with, in
// its certificates directory (certs.NodeCert(EtcdServerName)): it also
// serves as a client certificate from the same CA.
const EtcdServerName = "etcd"

// SecureEtcd runs a single-member etcd like Etcd, but serving its clients
// only over TLS with a client certificate from the CA in certsDir (made
// there if missing): --client-cert-auth, its own certificate
// certsDir/node.etcd.crt (made if missing, for 127.0.0.1 and localhost).
// It returns its https:// client URL and port.
func SecureEtcd(t testing.TB, certsDir string) (url string, port int) {
	t.Helper()
	bin := Bin("etcd", "/usr/bin/etcd")
	if bin == "" {
		t.Fatal("etcd is not installed: run `make deps` (apt-get install etcd-server)")
	}
	ensureCert(t, certsDir, EtcdServerName)
	dir := t.TempDir()
	port = FreePort(t)
	url = "https://127.0.0.1:" + strconv.Itoa(port)
	peer := fmt.Sprintf("http://127.0.0.1:%d", FreePort(t))
	cmd := exec.Command(bin, "--name", "seckill-test", "--data-dir", filepath.Join(dir, "data"),
		"--listen-client-urls", url, "--advertise-client-urls", url,
		"--listen-peer-urls", peer, "--initial-advertise-peer-urls", peer,
		"--initial-cluster", "seckill-test="+peer, "--logger", "zap", "--log-level", "error",
		"--client-cert-auth", "--trusted-ca-file", filepath.Join(certsDir, certs.CACert),
		"--cert-file", filepath.Join(certsDir, certs.NodeCert(EtcdServerName)),
		"--key-file", filepath.Join(certsDir, certs.NodeKey(EtcdServerName)))
	node, err := certs.Load(certsDir, EtcdServerName)
	if err != nil {
		t.Fatal(err)
	}
	tlsCfg := &tls.Config{MinVersion: tls.VersionTLS12, Certificates: []tls.Certificate{node.Certificate()}, RootCAs: node.Pool()}
	cli, err := clientv3.New(clientv3.Config{Endpoints: []string{url}, DialTimeout: StartTimeout, TLS: tlsCfg, Logger: zap.NewNop()})
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

// ensureCert makes the CA in dir unless it is there, and name's
// certificate for 127.0.0.1 and localhost unless it is there.
func ensureCert(t testing.TB, dir, name string) {
	t.Helper()
	if _, err := os.Stat(filepath.Join(dir, certs.CACert)); errors.Is(err, os.ErrNotExist) {
		if err := certs.CreateCA(dir, false); err != nil {
			t.Fatal(err)
		}
	}
	if _, err := os.Stat(filepath.Join(dir, certs.NodeCert(name))); errors.Is(err, os.ErrNotExist) {
		if err := certs.CreateNode(dir, name, []string{"127.0.0.1", "localhost"}, false); err != nil {
			t.Fatal(err)
		}
	}
}

// SecureRedis runs redis-server like Redis, but with protected mode on
// and one ACL user: the default user is off (and has no password, so
// that protected mode does not turn away the clients on other loopback
// addresses that authenticate), user has password pass and every key,
// channel and command. It returns redis://user:pass@127.0.0.1:PORT.
func SecureRedis(t testing.TB, user, pass string) string {
	t.Helper()
	port := FreePort(t)
	addr := "127.0.0.1:" + strconv.Itoa(port)
	startSecureRedis(t, user, pass, &redis.Options{Addr: addr, Username: user, Password: pass},
		"--port", strconv.Itoa(port))
	return "redis://" + user + ":" + pass + "@" + addr
}

// SecureRedisTLS is SecureRedis serving only TLS, with a certificate
// certsDir/node.redis.crt (made, and the CA, if missing) for 127.0.0.1 and
// localhost; clients need no certificate of their own. It returns
// rediss://user:pass@127.0.0.1:PORT.
func SecureRedisTLS(t testing.TB, certsDir, user, pass string) string {
	t.Helper()
	const name = "redis"
	ensureCert(t, certsDir, name)
	node, err := certs.Load(certsDir, name)
	if err != nil {
		t.Fatal(err)
	}
	port := FreePort(t)
	addr := "127.0.0.1:" + strconv.Itoa(port)
	startSecureRedis(t, user, pass,
		&redis.Options{Addr: addr, Username: user, Password: pass, TLSConfig: &tls.Config{MinVersion: tls.VersionTLS12, RootCAs: node.Pool(), ServerName: "127.0.0.1"}},
		"--port", "0", "--tls-port", strconv.Itoa(port), "--tls-auth-clients", "no",
		"--tls-cert-file", filepath.Join(certsDir, certs.NodeCert(name)),
		"--tls-key-file", filepath.Join(certsDir, certs.NodeKey(name)),
		"--tls-ca-cert-file", filepath.Join(certsDir, certs.CACert))
	return "rediss://" + user + ":" + pass + "@" + addr
}

func startSecureRedis(t testing.TB, user, pass string, probe *redis.Options, listen ...string) {
	t.Helper()
	bin := Bin("redis-server", "/usr/bin/redis-server")
	if bin == "" {
		t.Fatal("redis-server is not installed: run `make deps`")
	}
	if !certs.ValidName(user) || pass == "" || strings.ContainsAny(pass, " \t\n\"'") {
		t.Fatalf("SecureRedis: user %q must be a plain name, the password non-empty without spaces or quotes", user)
	}
	dir := t.TempDir()
	// The ACL goes in a config file, not in redis-server's arguments,
	// where ps would show the password.
	conf := filepath.Join(dir, "redis.conf")
	acl := fmt.Sprintf("user default off resetpass nocommands\nuser %s on >%s ~* &* +@all\n", user, pass)
	if err := os.WriteFile(conf, []byte(acl), 0o600); err != nil {
		t.Fatal(err)
	}
	args := append([]string{conf, "--bind", "127.0.0.1", "--dir", dir,
		"--appendonly", "yes", "--save", "", "--protected-mode", "yes"}, listen...)
	rdb := redis.NewClient(probe)
	defer rdb.Close()
	start(t, exec.Command(bin, args...), dir, "redis", func() error {
		ctx, cancel := context.WithTimeout(context.Background(), 500*time.Millisecond)
		defer cancel()
		return rdb.Ping(ctx).Err()
	})
}

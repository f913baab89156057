package system

import (
	"context"
	"log/slog"
	"net"
	"os"
	"os/exec"
	"path/filepath"
	"strings"
	"testing"

	"github.com/seckill/seckill/certs"
	"github.com/seckill/seckill/internal/testproc"
	"github.com/seckill/seckill/persistence"
	clientv3 "go.etcd.io/etcd/client/v3"
	"go.uber.org/zap"
)

const (
	storeUser = "seckill"
	// storePass is recognisable in any output it should not be in.
	storePass = "pw-9f3a1c7e"
)

// storeCerts makes a CA in a new directory with node n1's certificate
// (the node's client certificate to etcd), and another CA with its own n1:
// a stranger with a well-formed certificate.
func storeCerts(t *testing.T) (dir, stranger string) {
	t.Helper()
	dir, stranger = t.TempDir(), t.TempDir()
	for _, d := range []string{dir, stranger} {
		if err := certs.CreateCA(d, false); err != nil {
			t.Fatal(err)
		}
		if err := certs.CreateNode(d, "n1", []string{"127.0.0.1"}, false); err != nil {
			t.Fatal(err)
		}
	}
	return dir, stranger
}

// TestStoresRefuseStrangers: the real etcdctl and redis-cli against the
// etcd and Redis a secure cluster runs: etcd takes only a client with a
// certificate from the cluster's CA, Redis only its ACL user with the
// password.
func TestStoresRefuseStrangers(t *testing.T) {
	etcdctl := testproc.Bin("etcdctl", "/usr/bin/etcdctl")
	cli := testproc.Bin("redis-cli", "/usr/bin/redis-cli")
	if etcdctl == "" || cli == "" {
		t.Fatal("etcdctl and redis-cli are needed: run `make deps` (apt-get install etcd-client redis-tools)")
	}
	dir, stranger := storeCerts(t)
	etcdURL, _ := testproc.SecureEtcd(t, dir)
	ca := filepath.Join(dir, certs.CACert)
	for _, c := range []struct {
		name string
		cert string // certs directory of the client's n1, "" for none
		ok   bool
	}{
		{"no certificate", "", false},
		{"certificate of another CA", stranger, false},
		{"node certificate", dir, true},
	} {
		t.Run("etcdctl/"+c.name, func(t *testing.T) {
			args := []string{"--endpoints", etcdURL, "--cacert", ca, "--dial-timeout", "2s", "--command-timeout", "3s"}
			if c.cert != "" {
				args = append(args, "--cert", filepath.Join(c.cert, certs.NodeCert("n1")), "--key", filepath.Join(c.cert, certs.NodeKey("n1")))
			}
			out, err := run(etcdctl, append(args, "put", "/auth-test/k", "v")...)
			if !c.ok {
				if err == nil {
					t.Fatalf("etcd took a put from a client with %s: %s", c.name, out)
				}
				return
			}
			if err != nil {
				t.Fatalf("put with the node certificate: %v: %s", err, out)
			}
			if out, err = run(etcdctl, append(args, "get", "--print-value-only", "/auth-test/k")...); err != nil || strings.TrimSpace(out) != "v" {
				t.Fatalf("get with the node certificate: %v: %q", err, out)
			}
		})
	}

	redisURL := testproc.SecureRedis(t, storeUser, storePass)
	opts, err := persistence.RedisOptions(redisURL, "")
	if err != nil {
		t.Fatal(err)
	}
	host, port, _ := net.SplitHostPort(opts.Addr)
	for _, c := range []struct {
		name string
		args []string
		want string // in redis-cli's output
	}{
		{"no credentials PING", []string{"PING"}, "NOAUTH"},
		{"no credentials GET", []string{"GET", "k"}, "NOAUTH"},
		{"default user with the password", []string{"--pass", storePass, "PING"}, "WRONGPASS"},
		{"wrong password", []string{"--user", storeUser, "--pass", "nope", "PING"}, "WRONGPASS"},
		{"user and password PING", []string{"--user", storeUser, "--pass", storePass, "PING"}, "PONG"},
		{"user and password SET", []string{"--user", storeUser, "--pass", storePass, "SET", "k", "v"}, "OK"},
	} {
		t.Run("redis-cli/"+c.name, func(t *testing.T) {
			out, _ := run(cli, append([]string{"-h", host, "-p", port, "--no-auth-warning"}, c.args...)...)
			if !strings.Contains(out, c.want) {
				t.Fatalf("redis-cli %s: %q, want %s", strings.Join(c.args, " "), out, c.want)
			}
		})
	}
}

// run runs a client tool with no ETCDCTL_ or REDISCLI_ settings from the
// test's own environment, and returns its output.
func run(bin string, args ...string) (string, error) {
	cmd := exec.Command(bin, args...)
	for _, kv := range os.Environ() {
		if !strings.HasPrefix(kv, "ETCDCTL_") && !strings.HasPrefix(kv, "REDISCLI_") {
			cmd.Env = append(cmd.Env, kv)
		}
	}
	out, err := cmd.CombinedOutput()
	return string(out), err
}

// TestJoinSecureEtcd: a node joins an etcd that asks for client
// certificates with its own certificate, and not without one or with one
// of another CA; settings that would not be used are refused before any
// dial.
func TestJoinSecureEtcd(t *testing.T) {
	dir, stranger := storeCerts(t)
	etcdURL, _ := testproc.SecureEtcd(t, dir)
	node := func(d string) StoreAuth {
		return StoreAuth{EtcdCert: filepath.Join(d, certs.NodeCert("n1")), EtcdKey: filepath.Join(d, certs.NodeKey("n1")),
			EtcdCA: filepath.Join(dir, certs.CACert)}
	}
	caOnly := StoreAuth{EtcdCA: filepath.Join(dir, certs.CACert)}
	certOnly := node(dir)
	certOnly.EtcdKey = ""
	for _, c := range []struct {
		name     string
		endpoint string
		auth     StoreAuth
		want     string // in the error; "" joins
	}{
		{"node certificate", etcdURL, node(dir), ""},
		{"no certificate", etcdURL, caOnly, "unreachable"},
		{"certificate of another CA", etcdURL, node(stranger), "unreachable"},
		{"certificate without its key", etcdURL, certOnly, "both its certificate and its key"},
		{"user without password", etcdURL, StoreAuth{EtcdUser: "root"}, "both its name and its password"},
		{"TLS to http://", strings.Replace(etcdURL, "https", "http", 1), node(dir), "for https:// endpoints"},
		{"mixed endpoints", etcdURL + ",http://127.0.0.1:1", node(dir), "all https:// or none"},
	} {
		t.Run(c.name, func(t *testing.T) {
			cfg := ClusterConfig{Node: "n1", Etcd: strings.Split(c.endpoint, ","), Peer: "127.0.0.1:0", Auth: c.auth}
			clu, err := joinCluster(cfg, "", "", slog.New(slog.DiscardHandler))
			if c.want == "" {
				if err != nil {
					t.Fatal(err)
				}
				if err := clu.leave(); err != nil {
					t.Fatal(err)
				}
				return
			}
			if err == nil {
				clu.leave()
				t.Fatalf("joined, want an error with %q", c.want)
			}
			if !strings.Contains(err.Error(), c.want) {
				t.Fatalf("%v, want %q in it", err, c.want)
			}
		})
	}
}

// TestOpenRedisACL: a node reaches Redis as its ACL user, over TLS too,
// and its errors never show the password.
func TestOpenRedisACL(t *testing.T) {
	dir, stranger := storeCerts(t)
	plain := testproc.SecureRedis(t, storeUser, storePass)
	secure := testproc.SecureRedisTLS(t, dir, storeUser, storePass)
	ca, strangerCA := filepath.Join(dir, certs.CACert), filepath.Join(stranger, certs.CACert)
	hostOf := func(u string) string { return u[strings.LastIndexByte(u, '@')+1:] }
	for _, c := range []struct {
		name, url, ca string
		want          string // in the error; "" answers
	}{
		{"user and password", plain, "", ""},
		{"no credentials", "redis://" + hostOf(plain), "", "NOAUTH"},
		{"wrong password", strings.Replace(plain, storePass, storePass+"x", 1), "", "WRONGPASS"},
		{"rediss with the CA", secure, ca, ""},
		{"rediss with another CA", secure, strangerCA, "certificate"},
		{"rediss, wrong password", strings.Replace(secure, storePass, storePass+"x", 1), ca, "WRONGPASS"},
	} {
		t.Run(c.name, func(t *testing.T) {
			rdb, err := openRedis(c.url, c.ca, net.IPv4(127, 0, 0, 1))
			if c.want == "" {
				if err != nil {
					t.Fatal(err)
				}
				defer rdb.Close()
				if err := rdb.Set(context.Background(), "k", "v", 0).Err(); err != nil {
					t.Fatal(err)
				}
				return
			}
			if err == nil {
				rdb.Close()
				t.Fatalf("answered, want an error with %q", c.want)
			}
			if msg := err.Error(); !strings.Contains(msg, c.want) || strings.Contains(msg, storePass) {
				t.Fatalf("%q: want %q in it and no password", msg, c.want)
			}
		})
	}
}

// TestJoinEtcdUser: with etcd's own auth enabled, a node joins as a user
// with its password, and not without them.
func TestJoinEtcdUser(t *testing.T) {
	url, _ := testproc.Etcd(t)
	cli, err := clientv3.New(clientv3.Config{Endpoints: []string{url}, DialTimeout: EtcdDialTimeout, Logger: zap.NewNop()})
	if err != nil {
		t.Fatal(err)
	}
	defer cli.Close()
	ctx := context.Background()
	// etcd enables auth only with a root user; a node may be root here.
	if _, err := cli.UserAdd(ctx, "root", storePass); err != nil {
		t.Fatal(err)
	}
	if _, err := cli.UserGrantRole(ctx, "root", "root"); err != nil {
		t.Fatal(err)
	}
	if _, err := cli.AuthEnable(ctx); err != nil {
		t.Fatal(err)
	}
	for _, c := range []struct {
		name string
		auth StoreAuth
		want string // in the error; "" joins
	}{
		{"user and password", StoreAuth{EtcdUser: "root", EtcdPassword: storePass}, ""},
		{"no user", StoreAuth{}, "user name is empty"},
		{"wrong password", StoreAuth{EtcdUser: "root", EtcdPassword: "nope"}, "authentication failed"},
	} {
		t.Run(c.name, func(t *testing.T) {
			clu, err := joinCluster(ClusterConfig{Node: "n1", Etcd: []string{url}, Peer: "127.0.0.1:0", Auth: c.auth}, "", "", slog.New(slog.DiscardHandler))
			if c.want == "" {
				if err != nil {
					t.Fatal(err)
				}
				if err := clu.leave(); err != nil {
					t.Fatal(err)
				}
				return
			}
			if err == nil {
				clu.leave()
				t.Fatalf("joined, want an error with %q", c.want)
			}
			if !strings.Contains(err.Error(), c.want) || strings.Contains(err.Error(), storePass) {
				t.Fatalf("%v, want %q in it and no password", err, c.want)
			}
		})
	}
}

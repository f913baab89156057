package main

import (
	"bytes"
	"context"
	"flag"
	"fmt"
	"net/http"
	"os"
	"os/exec"
	"strings"
	"testing"

	"github.com/redis/go-redis/v9"
	"github.com/seckill/seckill/certs"
	"github.com/seckill/seckill/internal/testproc"
	"github.com/seckill/seckill/persistence"
	"github.com/seckill/seckill/system"
)

// TestStoreAuthFlags: what a node presents to etcd and Redis, from the
// flags, the environment and the certificates directory.
func TestStoreAuthFlags(t *testing.T) {
	const dir = "/c"
	nodeCert := system.StoreAuth{EtcdCert: "/c/node.n1.crt", EtcdKey: "/c/node.n1.key", EtcdCA: "/c/ca.crt"}
	tlsEtcd, plainEtcd := "https://127.0.0.1:2379", "http://127.0.0.1:2379"
	for _, c := range []struct {
		name     string
		args     []string
		certsDir string
		etcd     string
		redis    string
		user     string // SECKILL_ETCD_USER and, with "-pw", SECKILL_ETCD_PASSWORD
		want     system.StoreAuth
		err      string
	}{
		{name: "plain etcd, nothing", etcd: plainEtcd},
		{name: "plain etcd, certs dir: no TLS", etcd: plainEtcd, certsDir: dir},
		{name: "TLS etcd, certs dir: the node's own", etcd: tlsEtcd, certsDir: dir, want: nodeCert},
		{name: "TLS etcd, flags win", etcd: tlsEtcd, certsDir: dir,
			args: []string{"--etcd-cert", "/x/a.crt", "--etcd-key", "/x/a.key"},
			want: system.StoreAuth{EtcdCert: "/x/a.crt", EtcdKey: "/x/a.key", EtcdCA: "/c/ca.crt"}},
		{name: "TLS etcd, CA flag, the node's key pair", etcd: tlsEtcd, certsDir: dir, args: []string{"--etcd-ca", "/x/ca.pem"},
			want: system.StoreAuth{EtcdCert: "/c/node.n1.crt", EtcdKey: "/c/node.n1.key", EtcdCA: "/x/ca.pem"}},
		{name: "TLS etcd, flags alone", etcd: tlsEtcd,
			args: []string{"--etcd-cert", "a.crt", "--etcd-key", "a.key", "--etcd-ca", "ca.crt"},
			want: system.StoreAuth{EtcdCert: "a.crt", EtcdKey: "a.key", EtcdCA: "ca.crt"}},
		{name: "TLS etcd, a user", etcd: tlsEtcd, user: "root",
			want: system.StoreAuth{EtcdUser: "root", EtcdPassword: "root-pw"}},
		{name: "TLS etcd, nothing", etcd: tlsEtcd, err: "seckill cert create-node --certs-dir DIR n1"},
		{name: "rediss, certs dir", etcd: plainEtcd, certsDir: dir, redis: "rediss://u:p@127.0.0.1:6380",
			want: system.StoreAuth{RedisCA: "/c/ca.crt"}},
		{name: "redis, certs dir: no CA", etcd: plainEtcd, certsDir: dir, redis: "redis://u:p@127.0.0.1:6379"},
		{name: "redis CA without rediss", etcd: plainEtcd, redis: "redis://u:p@127.0.0.1:6379", args: []string{"--redis-ca", "ca.crt"}, err: "rediss://"},
	} {
		t.Run(c.name, func(t *testing.T) {
			t.Setenv("SECKILL_ETCD_USER", c.user)
			t.Setenv("SECKILL_ETCD_PASSWORD", "")
			if c.user != "" {
				t.Setenv("SECKILL_ETCD_PASSWORD", c.user+"-pw")
			}
			for _, env := range []string{"SECKILL_ETCD_CERT", "SECKILL_ETCD_KEY", "SECKILL_ETCD_CA", "SECKILL_REDIS_CA"} {
				t.Setenv(env, "")
			}
			fs := flag.NewFlagSet("serve", flag.ContinueOnError)
			f := addStoreAuthFlags(fs)
			if err := fs.Parse(c.args); err != nil {
				t.Fatal(err)
			}
			got, err := f.auth(c.certsDir, "n1", []string{c.etcd}, c.redis)
			if c.err != "" {
				if err == nil || !strings.Contains(err.Error(), c.err) {
					t.Fatalf("%v, want an error with %q", err, c.err)
				}
				return
			}
			if err != nil || got != c.want {
				t.Fatalf("%+v %v, want %+v", got, err, c.want)
			}
		})
	}
}

// TestRedisFlagHidesPassword: --help shows SECKILL_REDIS's URL without its
// password.
func TestRedisFlagHidesPassword(t *testing.T) {
	fs := flag.NewFlagSet("serve", flag.ContinueOnError)
	var out bytes.Buffer
	fs.SetOutput(&out)
	u := redisURLFlag(fs, "redis://seckill:hunter2@127.0.0.1:6379", "Redis")
	fs.PrintDefaults()
	if strings.Contains(out.String(), "hunter2") || !strings.Contains(out.String(), "seckill:xxxxx@") {
		t.Fatalf("help: %s", out.String())
	}
	if err := fs.Parse([]string{"--redis", "rediss://a:b@h:1"}); err != nil || *u != "rediss://a:b@h:1" {
		t.Fatalf("%q %v", *u, err)
	}
}

// TestServeSecureStores: a real `seckill serve --cluster` against an etcd
// that asks for client certificates and a Redis with protected mode on and
// an ACL user: with --certs-dir it joins with its own certificate, sells
// and writes its snapshots; without a certificate, or with a wrong Redis
// password, it is refused with an error that says why and never shows the
// password.
func TestServeSecureStores(t *testing.T) {
	skipFaultTest(t)
	_, bin, client := startFaultTest(t)
	const user, pass = "seckill", "pw-5be0d2a4"
	certsDir := t.TempDir()
	if err := certs.CreateCA(certsDir, false); err != nil {
		t.Fatal(err)
	}
	for _, n := range []struct{ name, ip string }{{"n1", nodeAIP}, {"n2", nodeBIP}} {
		if err := certs.CreateNode(certsDir, n.name, []string{n.ip, "localhost"}, false); err != nil {
			t.Fatal(err)
		}
	}
	etcdURL, _ := testproc.SecureEtcd(t, certsDir)
	redisURL := testproc.SecureRedis(t, user, pass)

	refused := func(what, want string, args ...string) {
		t.Helper()
		cmd := exec.Command(bin, append([]string{"serve", "--data", t.TempDir(), "--http", nodeBIP + ":0", "--nats-listen", "",
			"--cluster", "--etcd", etcdURL, "--peer", fmt.Sprintf("%s:%d", nodeBIP, freePortOn(t, nodeBIP))}, args...)...)
		cmd.Env = append(os.Environ(), "SECKILL_ADMIN_TOKEN="+faultToken, "SECKILL_REDIS=", "SECKILL_CERTS_DIR=",
			"SECKILL_ETCD_CERT=", "SECKILL_ETCD_KEY=", "SECKILL_ETCD_CA=", "SECKILL_ETCD_USER=", "SECKILL_ETCD_PASSWORD=")
		out, err := cmd.CombinedOutput()
		if err == nil || !strings.Contains(string(out), want) || strings.Contains(string(out), pass) {
			t.Fatalf("%s: %v, want a refusal with %q and no password:\n%s", what, err, want, out)
		}
		t.Logf("%s: refused: %s", what, bytes.TrimSpace(out))
	}
	refused("TLS etcd, no certificate", "seckill cert create-node", "--node", "n2")
	refused("wrong Redis password", "WRONGPASS", "--node", "n2", "--certs-dir", certsDir,
		"--redis", strings.Replace(redisURL, pass, pass+"-wrong", 1))

	// The password reaches the node through its environment, out of ps.
	a, m := startChildEnv(t, "n1", serveLine, false, faultToken, []string{"SECKILL_REDIS=" + redisURL}, bin,
		"serve", "--data", t.TempDir(), "--http", nodeAIP+":0", "--nats-listen", "", "--cluster", "--node", "n1",
		"--etcd", etcdURL, "--peer", fmt.Sprintf("%s:%d", nodeAIP, freePortOn(t, nodeAIP)),
		"--certs-dir", certsDir, "--snapshot-interval", "100ms")
	a.URL = m[1]
	const item, stock, sold = "secure", 100, 10
	createItem(t, client, a.URL, item, stock)
	for n := range sold {
		ans, err := postGrab(client, a.URL, item, fmt.Sprintf("buyer-%d", n), fmt.Sprintf("key-%d", n))
		if err != nil || ans.Code != http.StatusCreated {
			t.Fatalf("grab %d: %s %v", n, ans, err)
		}
	}
	code, raw, err := adminGet(client, a.URL+"/admin/v1/cluster/health")
	if err != nil || code != http.StatusOK || !strings.Contains(string(raw), `"etcd":"ok"`) || !strings.Contains(string(raw), `"redis":"ok"`) {
		t.Fatalf("health: %d %s %v", code, raw, err)
	}
	opts, err := persistence.RedisOptions(redisURL, "")
	if err != nil {
		t.Fatal(err)
	}
	rdb := redis.NewClient(opts)
	defer rdb.Close()
	snaps := persistence.NewRedisSnapshots(rdb)
	waitFor(t, "the node's snapshots in Redis", func() (bool, string) {
		var got int64
		for i := range faultShards {
			s, ok, err := snaps.LoadSnapshot(context.Background(), item, i)
			if err != nil {
				return false, err.Error()
			}
			if ok {
				got += s.Counters.Sold
			}
		}
		return got == sold, fmt.Sprintf("snapshots hold %d sold of %d", got, sold)
	})
	client.CloseIdleConnections()
	a.stop(t)
	if strings.Contains(a.stdout.String()+a.stderr.String(), pass) {
		t.Fatalf("the node printed the Redis password:\n%s\n%s", a.stdout.String(), a.stderr.String())
	}
}

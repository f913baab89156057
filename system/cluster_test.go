package system

import (
	"github.com/seckill/seckill/certs"
	"log/slog"
	"net"
	"os"
	"path/filepath"
	"strings"
	"testing"
)

// TestClusterEtcdUnreachable: with nothing listening at the etcd address,
// Open fails, naming the endpoint, and leaves nothing bound.
func TestClusterEtcdUnreachable(t *testing.T) {
	ln, err := net.Listen("tcp", "127.0.0.1:0")
	if err != nil {
		t.Fatal(err)
	}
	endpoint := "http://" + ln.Addr().String()
	ln.Close()
	httpLn, err := net.Listen("tcp", "127.0.0.1:0")
	if err != nil {
		t.Fatal(err)
	}
	httpAddr := httpLn.Addr().String()
	httpLn.Close()
	_, err = Open(Config{DataDir: t.TempDir(), HTTPAddr: httpAddr, AdminToken: "t", NoOrders: true,
		Logger:  slog.New(slog.DiscardHandler),
		Cluster: &ClusterConfig{Node: "n1", Etcd: []string{endpoint}, Peer: "127.0.0.1:0", Insecure: true}})
	if err == nil || !strings.Contains(err.Error(), endpoint) || !strings.Contains(err.Error(), "unreachable") {
		t.Fatalf("open with etcd down: %v, want an error naming %s", err, endpoint)
	}
	// The HTTP address was released again.
	again, err := net.Listen("tcp", httpAddr)
	if err != nil {
		t.Fatalf("HTTP address still bound after a failed Open: %v", err)
	}
	again.Close()
}

func TestClusterConfigRefused(t *testing.T) {
	for _, c := range []ClusterConfig{
		{Node: "a/b", Etcd: []string{"http://127.0.0.1:1"}, Peer: "127.0.0.1:1"},
		{Node: "a", Peer: "127.0.0.1:1"},
		{Node: "a", Etcd: []string{"http://127.0.0.1:1"}, Peer: "localhost:1"},
		{Node: "a", Etcd: []string{"http://127.0.0.1:1"}, Peer: "127.0.0.1"},
	} {
		if _, err := joinCluster(c, "", "", slog.New(slog.DiscardHandler)); err == nil {
			t.Errorf("%+v accepted", c)
		}
	}
}

// TestClusterPeerSecurity: a cluster runs with certificates naming its
// node, or with an explicit insecure peer wire on loopback only; the
// refusal says how to make certificates.
func TestClusterPeerSecurity(t *testing.T) {
	dir := t.TempDir()
	if err := certs.CreateCA(dir, false); err != nil {
		t.Fatal(err)
	}
	if err := certs.CreateNode(dir, "n1", []string{"127.0.0.1"}, false); err != nil {
		t.Fatal(err)
	}
	n1, err := certs.Load(dir, "n1")
	if err != nil {
		t.Fatal(err)
	}
	for _, c := range []struct {
		cfg  ClusterConfig
		want string // "" accepted, else in the error
	}{
		{ClusterConfig{Node: "n1", Peer: "127.0.0.11:7946", Certs: n1}, ""},
		{ClusterConfig{Node: "n1", Peer: "10.1.2.3:7946", Certs: n1}, ""},
		{ClusterConfig{Node: "n2", Peer: "127.0.0.11:7946", Certs: n1}, `names node "n1"`},
		{ClusterConfig{Node: "n1", Peer: "127.0.0.11:7946"}, "seckill cert create-node --certs-dir DIR n1 127.0.0.11"},
		{ClusterConfig{Node: "n1", Peer: "127.0.0.11:7946", Insecure: true}, ""},
		{ClusterConfig{Node: "n1", Peer: "[::1]:7946", Insecure: true}, ""},
		{ClusterConfig{Node: "n1", Peer: "10.1.2.3:7946", Insecure: true}, "outside loopback"},
		{ClusterConfig{Node: "n1", Peer: "0.0.0.0:7946", Insecure: true}, "outside loopback"},
	} {
		err := c.cfg.checkPeerSecurity()
		if c.want == "" && err != nil || c.want != "" && (err == nil || !strings.Contains(err.Error(), c.want)) {
			t.Errorf("node %s peer %s certs %v insecure %v: %v, want %q", c.cfg.Node, c.cfg.Peer, c.cfg.Certs != nil, c.cfg.Insecure, err, c.want)
		}
	}
}

// TestNextBootCounts: each start of a node counts one more, kept on disk;
// a count that is not a number is refused, not reset.
func TestNextBootCounts(t *testing.T) {
	dir := t.TempDir()
	for want := uint64(1); want <= 3; want++ {
		n, err := nextBoot(dir)
		if err != nil || n != want {
			t.Fatalf("start %d: %d, %v", want, n, err)
		}
	}
	if err := os.WriteFile(filepath.Join(dir, "boot"), []byte("x\n"), 0o644); err != nil {
		t.Fatal(err)
	}
	if _, err := nextBoot(dir); err == nil {
		t.Fatal("a broken boot count was taken")
	}
}

package main

import (
	"flag"
	"fmt"
	"os"
	"path/filepath"
	"strings"

	"github.com/seckill/seckill/certs"
	"github.com/seckill/seckill/persistence"
	"github.com/seckill/seckill/system"
)

// storeAuthFlags are the flags that say how a clustered node proves itself
// to etcd and Redis and checks them; read them after Parse with auth.
type storeAuthFlags struct {
	etcdCert, etcdKey, etcdCA string
	redisCA                   string
}

// addStoreAuthFlags adds --etcd-cert, --etcd-key, --etcd-ca and --redis-ca.
// The etcd user and password come from the environment only, never a flag
// that ps would show.
func addStoreAuthFlags(fs *flag.FlagSet) *storeAuthFlags {
	f := &storeAuthFlags{}
	fs.StringVar(&f.etcdCert, "etcd-cert", envOr("SECKILL_ETCD_CERT", ""), "PEM client certificate presented to an https:// --etcd run with --client-cert-auth, with --etcd-key; default with --certs-dir DIR: DIR/node.NAME.crt, the node's own (env SECKILL_ETCD_CERT)")
	fs.StringVar(&f.etcdKey, "etcd-key", envOr("SECKILL_ETCD_KEY", ""), "PEM key of --etcd-cert; default with --certs-dir DIR: DIR/node.NAME.key (env SECKILL_ETCD_KEY)")
	fs.StringVar(&f.etcdCA, "etcd-ca", envOr("SECKILL_ETCD_CA", ""), "PEM CA certificates that verify an https:// --etcd; default with --certs-dir DIR: DIR/ca.crt, else the system's roots (env SECKILL_ETCD_CA). An etcd user: env SECKILL_ETCD_USER and SECKILL_ETCD_PASSWORD")
	fs.StringVar(&f.redisCA, "redis-ca", envOr("SECKILL_REDIS_CA", ""), "PEM CA certificates that verify a rediss:// --redis; default with --certs-dir DIR: DIR/ca.crt, else the system's roots (env SECKILL_REDIS_CA)")
	return f
}

// auth is what node presents to etcd (endpoints) and Redis (redisURL, ""
// for none): the flags, the etcd user from SECKILL_ETCD_USER and
// SECKILL_ETCD_PASSWORD, and for what the flags leave out, the node's own
// certificates in certsDir ("" for none; nodeStoreCerts). A TLS etcd with
// neither a client certificate nor a user is refused here, with how to
// make one: etcd would only say that the handshake failed.
func (f *storeAuthFlags) auth(certsDir, node string, endpoints []string, redisURL string) (system.StoreAuth, error) {
	a := system.StoreAuth{EtcdCert: f.etcdCert, EtcdKey: f.etcdKey, EtcdCA: f.etcdCA, RedisCA: f.redisCA,
		EtcdUser: os.Getenv("SECKILL_ETCD_USER"), EtcdPassword: os.Getenv("SECKILL_ETCD_PASSWORD")}
	if f.redisCA != "" && !strings.HasPrefix(redisURL, "rediss://") {
		return a, fmt.Errorf("--redis-ca verifies a TLS Redis: give --redis rediss://…")
	}
	etcdTLS := len(endpoints) > 0 && strings.HasPrefix(endpoints[0], "https://")
	a = nodeStoreCerts(a, certsDir, node, etcdTLS, strings.HasPrefix(redisURL, "rediss://"))
	if etcdTLS && a.EtcdCert == "" && a.EtcdUser == "" {
		dir := certsDir
		if dir == "" {
			dir = "DIR"
		}
		return a, fmt.Errorf("etcd %s speaks TLS and node %s has no client certificate for it: give --etcd-cert and --etcd-key (and --etcd-ca), "+
			"or --certs-dir %s for %s; make them with `seckill cert create-ca --certs-dir %s` (once per cluster) and `seckill cert create-node --certs-dir %s %s HOST...`",
			strings.Join(endpoints, ","), node, dir, filepath.Join(dir, certs.NodeCert(node)), dir, dir, node)
	}
	return a, nil
}

// nodeStoreCerts fills in what a leaves out from the certificates directory
// dir of node (nothing when dir is ""): for a TLS etcd the node's own key
// pair, dir/node.NAME.crt and .key (both, and only when neither was given),
// which serves client connections too, and dir/ca.crt to verify etcd; for a
// TLS Redis dir/ca.crt. A cluster's etcd and Redis then need no
// certificates of their own beyond one made by `seckill cert create-node`.
func nodeStoreCerts(a system.StoreAuth, dir, node string, etcdTLS, redisTLS bool) system.StoreAuth {
	if dir == "" {
		return a
	}
	ca := filepath.Join(dir, certs.CACert)
	if etcdTLS {
		if a.EtcdCert == "" && a.EtcdKey == "" && node != "" {
			a.EtcdCert, a.EtcdKey = filepath.Join(dir, certs.NodeCert(node)), filepath.Join(dir, certs.NodeKey(node))
		}
		if a.EtcdCA == "" {
			a.EtcdCA = ca
		}
	}
	if redisTLS && a.RedisCA == "" {
		a.RedisCA = ca
	}
	return a
}

// redisURLFlag adds --redis: a URL that may hold a password, which --help
// and flag errors show redacted.
func redisURLFlag(fs *flag.FlagSet, def, usage string) *string {
	v := &secretURL{s: new(string)}
	*v.s = def
	fs.Var(v, "redis", usage)
	return v.s
}

// secretURL is a flag value printed without its password.
type secretURL struct{ s *string }

func (v *secretURL) String() string {
	if v == nil || v.s == nil {
		return ""
	}
	return persistence.RedactURL(*v.s)
}

func (v *secretURL) Set(s string) error { *v.s = s; return nil }

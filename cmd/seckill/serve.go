package main

import (
	"context"
	"crypto/rand"
	"encoding/hex"
	"errors"
	"flag"
	"fmt"
	"os"
	"os/signal"
	"path/filepath"
	"strings"
	"syscall"

	"github.com/seckill/seckill/certs"
	"github.com/seckill/seckill/system"
)

func envOr(name, def string) string {
	if v := os.Getenv(name); v != "" {
		return v
	}
	return def
}

func serve(ctx context.Context, args []string) error {
	fs := flag.NewFlagSet("serve", flag.ContinueOnError)
	dataDir := fs.String("data", envOr("SECKILL_DATA", "./data"), "data directory (env SECKILL_DATA)")
	httpAddr := fs.String("http", envOr("SECKILL_HTTP", "127.0.0.1:8080"), "HTTP listen address (env SECKILL_HTTP)")
	natsURL := fs.String("nats", envOr("SECKILL_NATS", ""), "external NATS server or cluster URL (with --cluster, the nodes' shared stream, e.g. from seckill nats); empty runs one in-process (env SECKILL_NATS)")
	natsListen := fs.String("nats-listen", envOr("SECKILL_NATS_LISTEN", "127.0.0.1:4222"), "where the in-process NATS server listens for order writers in other processes; empty: in-process only (env SECKILL_NATS_LISTEN)")
	writers := fs.Int("order-writers", 1, "order writers to run in this process (0: orders are written by `seckill orders` elsewhere)")
	clustered := fs.Bool("cluster", os.Getenv("SECKILL_CLUSTER") == "1", "spread the sale over the nodes etcd lists: items exist on every node, each shard runs on the node etcd places it on, any front takes any grab; the node holds a lease and stops confirming when it runs out; shards move (admin move, drain) through --redis (env SECKILL_CLUSTER=1)")
	node := fs.String("node", envOr("SECKILL_NODE", ""), "this node's name with --cluster; kept in <data>/node.id after the first start, generated when neither is given (env SECKILL_NODE)")
	etcd := fs.String("etcd", envOr("SECKILL_ETCD", "http://127.0.0.1:2379"), "etcd endpoints with --cluster, comma-separated (env SECKILL_ETCD)")
	peer := fs.String("peer", envOr("SECKILL_PEER", "127.0.0.1:7946"), "this node's peer address HOST:PORT with --cluster: advertised in etcd, where the other nodes reach it (protoactor remote), and the source address it dials etcd and Redis from (env SECKILL_PEER)")
	redisURL := redisURLFlag(fs, envOr("SECKILL_REDIS", ""), "with --cluster: Redis (redis://[USER:PASSWORD@]HOST:PORT, an ACL user; rediss:// for TLS) for shard snapshots, written in the background, on SIGTERM and on every move; empty: none, and shards cannot move (env SECKILL_REDIS: a password there stays out of ps)")
	journal := fs.Bool("journal", envOr("SECKILL_JOURNAL", "1") != "0", "with --cluster and --nats: append every commit round to the shards' replicated journal on that NATS before its 201, and fail a lost node's shards over to the live nodes by themselves (env SECKILL_JOURNAL=0 turns it off)")
	certsDir := fs.String("certs-dir", envOr("SECKILL_CERTS_DIR", ""), "with --cluster: the directory holding ca.crt and node.<NAME>.crt/.key (`seckill cert`): every connection between nodes is then TLS 1.3 checked both ways against that CA, and the node proves itself to an https etcd with the same certificate (env SECKILL_CERTS_DIR)")
	insecureCluster := fs.Bool("insecure-cluster", os.Getenv("SECKILL_INSECURE_CLUSTER") == "1", "with --cluster and no --certs-dir: run the peer wire without TLS, where anyone who reaches the peer port can sell units or stop the sale; refused unless --peer is on loopback (env SECKILL_INSECURE_CLUSTER=1)")
	natsAuth := natsAuthFlags(fs)
	storeAuth := addStoreAuthFlags(fs)
	natsReplicas := natsReplicasFlag(fs)
	snapEvery := fs.Duration("snapshot-interval", system.DefaultSnapshotInterval, "with --redis: how often changed shards are snapshotted")
	adminHTTP := fs.String("admin-http", envOr("SECKILL_ADMIN_HTTP", ""), "serve the admin API on its own listener ADDR (the --http one then answers it 404); with --cluster the other nodes call this one (env SECKILL_ADMIN_HTTP)")
	secFlags := addSecurityFlags(fs)
	logf := addLogFlags(fs)
	if err := fs.Parse(args); err != nil {
		return err
	}
	if err := checkNATSReplicas(*natsReplicas, *natsURL); err != nil {
		return err
	}
	security, err := secFlags.build(*httpAddr)
	if err != nil {
		return err
	}
	log, err := logf.logger(os.Stderr)
	if err != nil {
		return err
	}
	if err := os.MkdirAll(*dataDir, 0o700); err != nil {
		return fmt.Errorf("data dir: %w", err)
	}
	token, err := adminToken(*dataDir)
	if err != nil {
		return err
	}
	if *redisURL != "" && !*clustered {
		return fmt.Errorf("--redis needs --cluster: a single node keeps no snapshots")
	}
	var clu *system.ClusterConfig
	if *clustered {
		name, err := nodeName(*dataDir, *node)
		if err != nil {
			return err
		}
		var node *certs.Node
		if *certsDir != "" {
			if node, err = certs.Load(*certsDir, name); err != nil {
				return err
			}
		}
		auth, err := storeAuth.auth(*certsDir, name, strings.Split(*etcd, ","), *redisURL)
		if err != nil {
			return err
		}
		clu = &system.ClusterConfig{Node: name, Etcd: strings.Split(*etcd, ","), Peer: *peer, Auth: auth, Certs: node, Insecure: *insecureCluster && node == nil,
			Redis: *redisURL, SnapshotInterval: *snapEvery, Journal: *journal && *natsURL != "", JournalReplicas: *natsReplicas,
			// A test hook, left out of --help: the fault tests start a
			// second activation of one shard with it.
			SecondActivation: os.Getenv("SECKILL_TEST_SECOND_ACTIVATION")}
	}
	sys, err := system.Open(system.Config{
		Cluster:       clu,
		DataDir:       *dataDir,
		HTTPAddr:      *httpAddr,
		AdminToken:    token,
		AdminHTTPAddr: *adminHTTP,
		Security:      security,
		NATSURL:       *natsURL,
		NATSListen:    *natsListen,
		NATSAuth:      *natsAuth,
		NATSReplicas:  *natsReplicas,
		NATSName:      "seckill",
		OrderWriters:  *writers,
		Logger:        log,
	})
	if err != nil {
		return err
	}
	// The address line is what scripts and tests wait for.
	if u := sys.AdminURL(); u != "" {
		fmt.Printf("seckill: admin API on %s\n", u)
	}
	fmt.Printf("seckill: serving %s data=%s\n", sys.URL(), *dataDir)

	sig := make(chan os.Signal, 1)
	signal.Notify(sig, syscall.SIGTERM, syscall.SIGINT)
	select {
	case err := <-sys.Failed():
		sys.Close()
		return fmt.Errorf("http: %w", err)
	case s := <-sig:
		log.Info("draining", "signal", s.String())
	case <-ctx.Done():
	}
	if err := sys.Close(); err != nil {
		return fmt.Errorf("close: %w", err)
	}
	log.Info("stopped")
	return nil
}

// adminToken is SECKILL_ADMIN_TOKEN, or the token in <data>/admin.token,
// or a new random one written there (mode 0600) and printed once.
func adminToken(dataDir string) (string, error) {
	if t := os.Getenv("SECKILL_ADMIN_TOKEN"); t != "" {
		return t, nil
	}
	path := filepath.Join(dataDir, "admin.token")
	if b, err := os.ReadFile(path); err == nil {
		if t := strings.TrimSpace(string(b)); t != "" {
			return t, nil
		}
	} else if !errors.Is(err, os.ErrNotExist) {
		return "", fmt.Errorf("admin token: %w", err)
	}
	raw := make([]byte, 24)
	if _, err := rand.Read(raw); err != nil {
		return "", err
	}
	t := hex.EncodeToString(raw)
	if err := os.WriteFile(path, []byte(t+"\n"), 0o600); err != nil {
		return "", fmt.Errorf("admin token: %w", err)
	}
	fmt.Printf("seckill: admin token %s (saved in %s)\n", t, path)
	return t, nil
}

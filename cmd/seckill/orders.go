package main

import (
	"cmp"
	"context"
	"encoding/json"
	"errors"
	"flag"
	"fmt"
	"math"
	"os"
	"os/signal"
	"path/filepath"
	"strings"
	"sync"
	"syscall"
	"time"

	"github.com/seckill/seckill/bus"
	"github.com/seckill/seckill/orders"
	"github.com/seckill/seckill/persistence"
	"github.com/seckill/seckill/sale"
	"github.com/seckill/seckill/system"
)

// runOrders runs order writers as their own process: they share the
// "orders" consumer with any other writer and write to their own store.
func runOrders(ctx context.Context, args []string) error {
	fs := flag.NewFlagSet("orders", flag.ContinueOnError)
	natsURL := fs.String("nats", envOr("SECKILL_NATS", "nats://127.0.0.1:4222"), "NATS server or cluster URL (env SECKILL_NATS)")
	dir := fs.String("orders", envOr("SECKILL_ORDERS", "./orders"), "order store directory (env SECKILL_ORDERS)")
	writers := fs.Int("writers", 1, "writers in this process")
	node := fs.String("node", envOr("SECKILL_NODE", ""), "a cluster node whose lane of the stream to write (its relay's grabs); empty: a single node's stream. On a cluster, never run writers without --node beside the nodes' own: they would write orders the nodes write too (env SECKILL_NODE)")
	dataDir := fs.String("data", envOr("SECKILL_DATA", "./data"), "the data directory of the node whose embedded NATS this dials: without --nats-creds, its <data>/nats/"+bus.CredsFile+" is presented when it exists (env SECKILL_DATA)")
	auth := natsAuthFlags(fs)
	replicas := natsReplicasFlag(fs)
	logf := addLogFlags(fs)
	if err := fs.Parse(args); err != nil {
		return err
	}
	if err := checkNATSReplicas(*replicas, *natsURL); err != nil {
		return err
	}
	if auth.CredsFile == "" {
		var err error
		if auth.CredsFile, err = embeddedCreds(*dataDir); err != nil {
			return err
		}
	}
	log, err := logf.logger(os.Stderr)
	if err != nil {
		return err
	}
	store, err := persistence.OpenPebbleOrders(*dir)
	if err != nil {
		return err
	}
	defer store.Close()
	// A full disk pauses the writers (they fetch nothing) until space is back.
	guard := persistence.NewDiskGuard(*dir, persistence.StoreReserveBytes, log)
	defer guard.Close()
	store.Guard(guard)
	st, err := system.OpenStream(*natsURL, "", "", "seckill-orders", *auth)
	if err != nil {
		return err
	}
	defer st.Close()
	ctx, stop := signal.NotifyContext(ctx, os.Interrupt, syscall.SIGTERM)
	defer stop()
	if err := st.Ensure(ctx, bus.Config{Node: *node, Replicas: *replicas}, log); err != nil {
		return err
	}
	o := orders.New(nil, store, log)
	fmt.Printf("seckill orders: writing from %s to %s with %d writers\n", *natsURL, *dir, *writers)
	var wg sync.WaitGroup
	for range *writers {
		wg.Go(func() {
			bus.RunWriterWhen(ctx, st.JS, *node, system.WriterBatch, system.WriterHandler(o), store.Health)
		})
	}
	wg.Wait()
	log.Info("stopped")
	return nil
}

// errMismatch makes `seckill reconcile` exit non-zero.
var errMismatch = errors.New("reconcile found mismatches")

// runReconcile compares, offline on a stopped node's data directory, the
// confirmed grabs, the stream, the orders and the counters of every item.
func runReconcile(ctx context.Context, args []string) error {
	fs := flag.NewFlagSet("reconcile", flag.ContinueOnError)
	dataDir := fs.String("data", envOr("SECKILL_DATA", "./data"), "the stopped node's data directory")
	ordersDir := fs.String("orders", "", "order store directory (default <data>/orders)")
	natsURL := fs.String("nats", envOr("SECKILL_NATS", ""), "NATS URL when the stream is not the one embedded under <data>/nats")
	item := fs.String("item", "", "only this item")
	auth := natsAuthFlags(fs)
	if err := fs.Parse(args); err != nil {
		return err
	}
	if *ordersDir == "" {
		*ordersDir = filepath.Join(*dataDir, "orders")
	}
	store, err := persistence.OpenPebble(filepath.Join(*dataDir, "pebble"))
	if err != nil {
		return err
	}
	defer store.Close()
	ostore, err := persistence.OpenPebbleOrders(*ordersDir)
	if err != nil {
		return err
	}
	defer ostore.Close()
	st, err := system.OpenStream(*natsURL, *dataDir, "", "seckill-reconcile", *auth)
	if err != nil {
		return err
	}
	defer st.Close()
	cfgs, err := store.Items()
	if err != nil {
		return err
	}
	var reports []sale.Report
	clean := true
	for _, cfg := range cfgs {
		if *item != "" && cfg.Item != *item {
			continue
		}
		// Offline nothing is in flight: every grab is old enough to count.
		rep, err := orders.Reconcile(ctx, store, ostore, system.StreamReader(st.JS), cfg, math.MaxInt64/2, false)
		if err != nil {
			return fmt.Errorf("reconcile %s: %w", cfg.Item, err)
		}
		clean = clean && rep.Clean
		reports = append(reports, rep)
	}
	enc := json.NewEncoder(os.Stdout)
	enc.SetIndent("", "  ")
	if err := enc.Encode(struct {
		Clean bool          `json:"clean"`
		Items []sale.Report `json:"items"`
	}{clean, reports}); err != nil {
		return err
	}
	if !clean {
		return errMismatch
	}
	return nil
}

// runNATS runs the embedded NATS server on its own: the stream a cluster's
// nodes share (`make cluster`), so that no node's death takes it along.
// It admits only the key in --creds (default <dir>/client.nk, generated
// on the first start): give the nodes --nats-creds with that file. With
// --cluster-listen and --routes it is one server of a JetStream cluster,
// whose streams the nodes replicate with --nats-replicas.
func runNATS(ctx context.Context, args []string) error {
	opts, err := natsFlags(args)
	if err != nil {
		return err
	}
	emb, err := bus.StartEmbeddedWith(opts)
	if err != nil {
		return err
	}
	defer emb.Shutdown()
	// The address line is what scripts and tests wait for.
	fmt.Printf("seckill nats: listening on %s, store %s, credentials %s\n", emb.ClientURL(), opts.StoreDir, emb.CredsPath())
	ctx, stop := signal.NotifyContext(ctx, os.Interrupt, syscall.SIGTERM)
	defer stop()
	if opts.Cluster != nil {
		fmt.Printf("seckill nats: server %s of cluster %s, routes on %s to %s\n", emb.Name(),
			cmp.Or(opts.Cluster.Name, bus.DefaultClusterName), emb.ClusterURL(), strings.Join(opts.Cluster.Routes, ","))
		watchMetaLeader(ctx, emb)
	}
	<-ctx.Done()
	return nil
}

// metaLeaderPoll is how often `seckill nats` looks at who leads the
// JetStream cluster: a failover shows in its output within that.
const metaLeaderPoll = 500 * time.Millisecond

// watchMetaLeader prints every change of the JetStream cluster's meta
// leader until ctx ends; the first leader's line is what scripts wait for.
func watchMetaLeader(ctx context.Context, emb *bus.Embedded) {
	t := time.NewTicker(metaLeaderPoll)
	defer t.Stop()
	last := ""
	for {
		if l := emb.MetaLeader(); l != last {
			if l == "" {
				fmt.Println("seckill nats: no JetStream meta leader (waiting for a majority of the servers)")
			} else {
				fmt.Printf("seckill nats: JetStream meta leader %s\n", l)
			}
			last = l
		}
		select {
		case <-ctx.Done():
			return
		case <-t.C:
		}
	}
}

// natsFlags parses `seckill nats`'s flags into the server's options and
// checks them, before anything starts.
func natsFlags(args []string) (bus.EmbeddedOptions, error) {
	fs := flag.NewFlagSet("nats", flag.ContinueOnError)
	listen := fs.String("listen", envOr("SECKILL_NATS_LISTEN", "127.0.0.1:4222"), "where the server listens for clients (env SECKILL_NATS_LISTEN)")
	dir := fs.String("dir", envOr("SECKILL_NATS_DIR", "./nats"), "the stream's store directory (env SECKILL_NATS_DIR)")
	creds := fs.String("creds", "", "the client nkey seed file the server admits, generated there when missing (default <dir>/"+bus.CredsFile+"); give every server of a cluster the same one")
	name := fs.String("name", "", "this server's name, unique in its cluster (required with --cluster-listen)")
	clusterListen := fs.String("cluster-listen", "", "join a JetStream cluster: the route listener HOST:PORT, on loopback only (with --name and --routes)")
	routes := fs.String("routes", "", "the other servers' route listeners, nats-route://HOST:PORT, comma-separated, on loopback only")
	clusterName := fs.String("cluster-name", bus.DefaultClusterName, "the cluster's name, the same on every server")
	syncFlag := fs.String("sync", bus.SyncInterval.String(), "when streams are fsynced: always (before every ack) or an interval (an OS crash or power loss can lose the acks of the last one)")
	if err := fs.Parse(args); err != nil {
		return bus.EmbeddedOptions{}, err
	}
	if fs.NArg() > 0 {
		return bus.EmbeddedOptions{}, fmt.Errorf("nats: unexpected arguments %q", fs.Args())
	}
	opts := bus.EmbeddedOptions{StoreDir: *dir, Listen: *listen, CredsFile: *creds, Name: *name}
	switch {
	case *syncFlag == "always":
		opts.SyncAlways = true
	default:
		d, err := time.ParseDuration(*syncFlag)
		if err != nil || d <= 0 {
			return opts, fmt.Errorf("nats: --sync %q: want always or a positive duration", *syncFlag)
		}
		opts.SyncInterval = d
	}
	if *clusterListen != "" {
		opts.Cluster = &bus.ClusterOptions{Name: *clusterName, Listen: *clusterListen}
		if *routes != "" {
			opts.Cluster.Routes = strings.Split(*routes, ",")
		}
	} else if *routes != "" {
		return opts, errors.New("nats: --routes needs --cluster-listen")
	}
	if err := opts.Validate(); err != nil {
		return opts, fmt.Errorf("nats: %w", err)
	}
	return opts, nil
}

package main

import (
	"context"
	"flag"
	"fmt"
	"io"
	"log/slog"
	"os"
	"os/signal"
	"runtime/pprof"
	"strings"
	"syscall"
	"time"

	"github.com/seckill/seckill/auth"
	"github.com/seckill/seckill/bench"
	"github.com/seckill/seckill/system"
	"github.com/seckill/seckill/transport"
)

func runBench(ctx context.Context, args []string) error {
	return benchMain(ctx, args, os.Stdout)
}

// benchMain is `seckill bench`: flags, output files, then bench.Run.
func benchMain(ctx context.Context, args []string, out io.Writer) error {
	if bench.IsChild() { // started by a bench to serve one target
		serverGC()
		return bench.ServeChild(ctx, benchTarget, os.Stdin, out)
	}
	fs := flag.NewFlagSet("bench", flag.ContinueOnError)
	cfg := bench.Config{Local: benchTarget}
	var workloads []string
	for _, w := range bench.Workloads {
		workloads = append(workloads, w.Name+" ("+w.About+")")
	}
	fs.StringVar(&cfg.Workload, "workload", "soldout", strings.Join(workloads, " | "))
	fs.StringVar(&cfg.Mode, "mode", "", "closed (default: fixed concurrency, the saturation point) | open (--rate requests/s on a schedule); flash is always open")
	fs.Float64Var(&cfg.Rate, "rate", 0, "open loop: requests per second")
	fs.IntVar(&cfg.Conns, "conns", 64, "connections per target")
	fs.DurationVar(&cfg.Duration, "duration", 10*time.Second, "measuring time per target (not flash: see --arrival)")
	fs.Int64Var(&cfg.Users, "users", 0, "flash: buyers arriving (default 1000000); others: distinct users (default: every request a new one)")
	fs.Int64Var(&cfg.Stock, "stock", 0, "units per item (default: soldout 100, durable 10⁹, flash 10000, multi 1000)")
	fs.IntVar(&cfg.Items, "items", 0, "items on sale at once (default: multi 100, others 1)")
	fs.DurationVar(&cfg.Arrival, "arrival", 0, "flash: every buyer arrives within this (default 10s)")
	fs.IntVar(&cfg.Shards, "shards", bench.DefaultShards, "shards per item on seckill")
	fs.BoolVar(&cfg.Keys, "keys", false, "send an Idempotency-Key with every grab (flash always does)")
	fs.BoolVar(&cfg.Compare, "compare", false, "also measure the seeds' whole design (local sold-out flag, Redis+Lua grab, order message acknowledged by NATS JetStream before the 201, order consumer writing a Pebble order store), Redis+Lua alone and a bare fasthttp handler (the HTTP ceiling)")
	fs.IntVar(&cfg.Rounds, "rounds", bench.DefaultRounds, "closed loop: measure in this many slices per target, the targets taking turns, so that drift in the machine's speed is shared (1: each target in one piece)")
	fs.BoolVar(&cfg.ClusterCompare, "cluster-compare", false, "measure one node and a three-node cluster (etcd, Redis, three NATS servers and three nodes on 127.0.0.11-13, as make cluster runs them, started here) with the same workload in alternating rounds, the cluster's buyers round robin over its three fronts; report both, the ratios, and audit both")
	fs.StringVar(&cfg.Route, "route", bench.RouteAny, "how buyers pick a cluster's front: any (round robin over --url's fronts, as a load balancer that knows nothing of shards) or owner (each grab to the front of its shard's owner, read from the cluster's placement with the admin token: no grab takes a remote hop)")
	fs.StringVar(&cfg.ClusterNATSSync, "cluster-nats-sync", "always", "with --cluster-compare: when the cluster's NATS servers fsync, always (before every ack, as make cluster) or an interval such as 1s (an ack is then in the memory of a majority of the servers, on disk within the interval)")
	fs.StringVar(&cfg.ClusterExe, "cluster-bin", "", "with --cluster-compare: the seckill binary the cluster's processes run (default: this one)")
	urls := fs.String("url", "", "measure the seckill at this URL (http://host:port), or a cluster at these comma-separated fronts, instead of one started in-process: items are created through the first, buyers spread round robin over all, the audit reads every front")
	fs.StringVar(&cfg.Token, "token", os.Getenv("SECKILL_ADMIN_TOKEN"), "admin token of --url (env SECKILL_ADMIN_TOKEN)")
	fs.StringVar(&cfg.BuyerSecret, "buyer-secret", os.Getenv("SECKILL_BUYER_SECRET"), "the target's buyer token secret (serve --buyer-auth jwt --buyer-secret): every grab carries its buyer's HS256 token, minted before the run; the in-process seckill then runs with buyer auth (env SECKILL_BUYER_SECRET)")
	fs.StringVar(&cfg.DataDir, "data", "", "data directory for the in-process server (default: a fresh temp dir)")
	fs.BoolVar(&cfg.NoOrders, "no-orders", false, "run the in-process server without its order pipeline (NATS, relay, order writer): the engine and HTTP alone")
	fs.StringVar(&cfg.Redis, "redis", "", "Redis URL for Redis+Lua (default: start redis-server on a free port)")
	fs.StringVar(&cfg.AppendFsync, "redis-appendfsync", "everysec", "appendfsync of the redis-server started here: "+strings.Join(bench.AppendFsyncPolicies, " | "))
	inProcess := fs.Bool("in-process", false, "run the targets inside the bench process instead of each in a child process; no CPU time is then reported")
	jsonPath := fs.String("json", "", "also write results as JSON to this file")
	svgPath := fs.String("svg", "", "also draw achieved rate and p99 per second of each target as SVG to this file")
	traceFile := fs.String("trace", "", "write a runtime execution trace (go tool trace) of each target's child process to this file.<target>: where a request waits")
	cpuProfile := fs.String("cpuprofile", "", "write a CPU profile of the bench process (the load generator; the servers too with --in-process) to this file, and one of each target's child process to this file.<target>")
	if err := fs.Parse(args); err != nil {
		return err
	}
	if fs.NArg() > 0 {
		return fmt.Errorf("bench: unexpected arguments %q", fs.Args())
	}
	for _, u := range strings.Split(*urls, ",") {
		if u = strings.TrimSpace(u); u != "" {
			cfg.URLs = append(cfg.URLs, u)
		}
	}
	if cfg.BuyerSecret != "" {
		secret := cfg.BuyerSecret
		cfg.Local = func(dataDir, token string, orders bool) (*bench.Target, error) {
			return benchTargetAuth(dataDir, token, orders, secret)
		}
	}
	if len(cfg.URLs) > 0 && cfg.Token == "" {
		return fmt.Errorf("bench: --url needs the server's admin token (--token or SECKILL_ADMIN_TOKEN) for the audit")
	}
	for _, f := range []struct {
		path string
		dst  *io.Writer
	}{{*jsonPath, &cfg.JSON}, {*svgPath, &cfg.SVG}} {
		if f.path == "" {
			continue
		}
		file, err := os.Create(f.path)
		if err != nil {
			return fmt.Errorf("bench: %w", err)
		}
		defer file.Close()
		*f.dst = file
	}
	if *cpuProfile != "" {
		f, err := os.Create(*cpuProfile)
		if err != nil {
			return fmt.Errorf("bench: %w", err)
		}
		defer f.Close()
		if err := pprof.StartCPUProfile(f); err != nil {
			return fmt.Errorf("bench: cpu profile: %w", err)
		}
		defer pprof.StopCPUProfile()
	}
	if *traceFile != "" && *inProcess {
		return fmt.Errorf("bench: --trace traces the targets' child processes; it does not go with --in-process")
	}
	if !*inProcess && len(cfg.URLs) == 0 || !*inProcess && (cfg.Compare || cfg.ClusterCompare) {
		exe, err := os.Executable()
		if err != nil {
			return fmt.Errorf("bench: find this binary to run targets in child processes (or give --in-process): %w", err)
		}
		cfg.Exec, cfg.CPUProfile, cfg.Trace = []string{exe, "bench"}, *cpuProfile, *traceFile
	}
	ctx, stop := signal.NotifyContext(ctx, os.Interrupt, syscall.SIGTERM)
	defer stop()
	fmt.Fprintf(out, "seckill bench: workload=%s conns=%d", cfg.Workload, cfg.Conns)
	switch {
	case cfg.Workload == "flash":
		fmt.Fprint(out, " mode=open (flash arrivals)")
	case cfg.Mode == "open":
		fmt.Fprintf(out, " mode=open rate=%g/s duration=%v per target", cfg.Rate, cfg.Duration)
	default:
		fmt.Fprintf(out, " mode=closed duration=%v per target", cfg.Duration)
	}
	if len(cfg.URLs) > 0 {
		fmt.Fprintf(out, " url=%s", strings.Join(cfg.URLs, ","))
	}
	fmt.Fprintln(out)
	_, err := bench.Run(ctx, cfg, out)
	return err
}

// benchTarget runs a whole node for `seckill bench`'s in-process target
// (bench.LocalFunc): as `seckill serve` runs it, on a loopback port, with
// or without the order side.
func benchTarget(dataDir, token string, orders bool) (*bench.Target, error) {
	return benchTargetAuth(dataDir, token, orders, "")
}

// benchTargetAuth is benchTarget with buyer tokens signed with
// buyerSecret ("": none, buyers named in the body).
func benchTargetAuth(dataDir, token string, orders bool, buyerSecret string) (*bench.Target, error) {
	var sec transport.Security
	if buyerSecret != "" {
		var err error
		if sec.Buyers, err = auth.HS256([]byte(buyerSecret)); err != nil {
			return nil, fmt.Errorf("bench: --buyer-secret: %w", err)
		}
	}
	sys, err := system.Open(system.Config{
		Security:     sec,
		DataDir:      dataDir,
		HTTPAddr:     "127.0.0.1:0",
		AdminToken:   token,
		NATSName:     "bench",
		OrderWriters: 1,
		NoOrders:     !orders,
		Logger:       slog.New(slog.NewTextHandler(os.Stderr, &slog.HandlerOptions{Level: slog.LevelWarn})),
	})
	if err != nil {
		return nil, fmt.Errorf("start seckill in %s: %w", dataDir, err)
	}
	return bench.LocalTarget(sys.URL(), token, sys.Close), nil
}

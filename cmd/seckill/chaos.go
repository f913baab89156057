package main

import (
	"context"
	"flag"
	"fmt"
	"io"
	"os"
	"os/signal"
	"syscall"

	"github.com/seckill/seckill/bench"
)

func runChaos(ctx context.Context, args []string) error {
	return chaosMain(ctx, args, os.Stdout)
}

// chaosMain is `seckill chaos`: flags, then bench.Chaos.
func chaosMain(ctx context.Context, args []string, out io.Writer) error {
	fs := flag.NewFlagSet("chaos", flag.ContinueOnError)
	var cfg bench.ChaosConfig
	fs.Uint64Var(&cfg.Seed, "seed", 1, "the first schedule's seed; schedule i runs seed+i (its fault's kind is seed mod 5: kill -9 a node, SIGSTOP a node past its lease, partition a node from etcd and NATS, wipe a node's disk and restart it empty, kill -9 a NATS server)")
	fs.IntVar(&cfg.Schedules, "schedules", bench.DefaultChaosSchedules, "schedules to run, one after the other, each on a fresh item during its own flash, each audited")
	fs.IntVar(&cfg.Buyers, "buyers", bench.DefaultChaosBuyers, "buyers per flash, each with one Idempotency-Key, retrying through the next front until a final answer")
	fs.Int64Var(&cfg.Stock, "stock", bench.DefaultChaosStock, "units per flash")
	fs.IntVar(&cfg.Shards, "shards", bench.DefaultChaosShards, "shards per item")
	fs.DurationVar(&cfg.Arrival, "arrival", bench.DefaultChaosArrival, "every buyer of a flash arrives within this")
	fs.StringVar(&cfg.Dir, "dir", "", "where the cluster runs and logs (default: a temporary directory, removed after a clean run)")
	fs.StringVar(&cfg.Exe, "bin", "", "the seckill binary the cluster runs (default: this one)")
	if err := fs.Parse(args); err != nil {
		return err
	}
	if fs.NArg() > 0 {
		return fmt.Errorf("chaos: unexpected arguments %q", fs.Args())
	}
	if cfg.Exe == "" {
		exe, err := os.Executable()
		if err != nil {
			return fmt.Errorf("chaos: find this binary to run the cluster: %w", err)
		}
		cfg.Exe = exe
	}
	ctx, stop := signal.NotifyContext(ctx, os.Interrupt, syscall.SIGTERM)
	defer stop()
	_, err := bench.Chaos(ctx, cfg, out)
	return err
}

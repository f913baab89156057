package main

import (
	"context"
	"flag"
	"fmt"
	"os"
	"os/signal"
	"runtime/pprof"
	"syscall"

	"github.com/seckill/seckill/bench"
)

func runBench(ctx context.Context, args []string) error {
	fs := flag.NewFlagSet("bench", flag.ContinueOnError)
	cfg := bench.Config{}
	fs.StringVar(&cfg.Workload, "workload", "soldout", "soldout | durable")
	fs.IntVar(&cfg.Conns, "conns", 64, "connections")
	fs.DurationVar(&cfg.Duration, "duration", 10e9, "measuring time per target")
	fs.BoolVar(&cfg.Compare, "compare", false, "also measure a bare fasthttp handler (the HTTP ceiling)")
	fs.BoolVar(&cfg.Keys, "keys", false, "send an Idempotency-Key with every grab")
	fs.StringVar(&cfg.DataDir, "data", "", "data directory for the in-process server (default: a fresh temp dir)")
	jsonPath := fs.String("json", "", "also write results as JSON to this file")
	cpuProfile := fs.String("cpuprofile", "", "write a CPU profile of the whole run to this file")
	if err := fs.Parse(args); err != nil {
		return err
	}
	if *jsonPath != "" {
		f, err := os.Create(*jsonPath)
		if err != nil {
			return err
		}
		defer f.Close()
		cfg.JSON = f
	}
	if *cpuProfile != "" {
		f, err := os.Create(*cpuProfile)
		if err != nil {
			return err
		}
		defer f.Close()
		if err := pprof.StartCPUProfile(f); err != nil {
			return err
		}
		defer pprof.StopCPUProfile()
	}
	ctx, stop := signal.NotifyContext(ctx, os.Interrupt, syscall.SIGTERM)
	defer stop()
	fmt.Printf("seckill bench: workload=%s conns=%d duration=%v per target\n", cfg.Workload, cfg.Conns, cfg.Duration)
	_, err := bench.Run(ctx, cfg, os.Stdout)
	return err
}

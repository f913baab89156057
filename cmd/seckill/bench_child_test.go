package main

import (
	"context"
	"fmt"
	"os"
	"testing"

	"github.com/seckill/seckill/bench"
)

// TestMain lets the test binary serve one bench target as a child
// process: `seckill bench` re-runs its own binary (here the test binary)
// for each target it measures, as benchMain does in the real one.
func TestMain(m *testing.M) {
	if bench.IsChild() {
		if err := bench.ServeChild(context.Background(), benchTarget, os.Stdin, os.Stdout); err != nil {
			fmt.Fprintln(os.Stderr, err)
			os.Exit(1)
		}
		os.Exit(0)
	}
	os.Exit(m.Run())
}

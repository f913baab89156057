package main

import (
	"bytes"
	"context"
	"strings"
	"testing"
)

// TestChaos runs `seckill chaos` as a user would, on two schedules: seed 3
// (a node killed, its data directory wiped, restarted empty) and seed 4 (a
// NATS server killed), each during its own flash and audited: every buyer
// answered, exactly the stock confirmed to distinct grab ids, views sold
// out, every 201 replayed through another front, the reconcile clean. The
// ten schedules of the note are `seckill chaos` with its defaults.
func TestChaos(t *testing.T) {
	c3Skip(t)
	bin := buildSeckill(t)
	var out bytes.Buffer
	err := chaosMain(context.Background(), []string{"--bin", bin, "--seed", "3", "--schedules", "2",
		"--buyers", "2400", "--stock", "1900", "--arrival", "8s", "--dir", t.TempDir()}, &out)
	t.Logf("seckill chaos:\n%s", out.String())
	if err != nil {
		t.Fatalf("chaos: %v", err)
	}
	for _, want := range []string{"seed 3: kill -9 node, wipe its disk, restart it empty", "seed 4: kill -9 NATS server", "2 schedules, every audit clean"} {
		if !strings.Contains(out.String(), want) {
			t.Fatalf("no %q in the report", want)
		}
	}
	if strings.Contains(out.String(), "skipped") {
		t.Fatalf("a fault was not put in")
	}
}

package system

import (
	"log/slog"
	"net/http"
	"testing"

	"github.com/seckill/seckill/engine"
)

// TestOpenCloseReopen: a node opened, given an item and closed opens again
// over the same directory with the item, with and without its order side,
// and answers HTTP on the address it reports.
func TestOpenCloseReopen(t *testing.T) {
	dir := t.TempDir()
	for i, noOrders := range []bool{false, true, false} {
		sys, err := Open(Config{DataDir: dir, HTTPAddr: "127.0.0.1:0", AdminToken: "t", NATSName: "test",
			OrderWriters: 1, NoOrders: noOrders, Logger: slog.New(slog.DiscardHandler)})
		if err != nil {
			t.Fatalf("open %d: %v", i, err)
		}
		if (sys.Pipeline == nil) != noOrders || (sys.Stream == nil) != noOrders {
			t.Fatalf("open %d: no orders %v, pipeline %v", i, noOrders, sys.Pipeline)
		}
		if i == 0 {
			if err := sys.Node.CreateItem(engine.ItemConfig{Item: "x", Stock: 5, Shards: 2, PerUserLimit: 1}); err != nil {
				t.Fatal(err)
			}
		}
		if _, ok := sys.Node.Item("x"); !ok {
			t.Fatalf("open %d: item x missing", i)
		}
		resp, err := http.Get(sys.URL() + "/healthz")
		if err != nil {
			t.Fatalf("open %d: %v", i, err)
		}
		resp.Body.Close()
		if resp.StatusCode != http.StatusOK {
			t.Fatalf("open %d: healthz %d", i, resp.StatusCode)
		}
		if err := sys.Close(); err != nil {
			t.Fatalf("close %d: %v", i, err)
		}
		if err := sys.Close(); err != nil {
			t.Fatalf("second close %d: %v", i, err)
		}
	}
}

// TestOpenFailsCleanly: a listen error closes what Open had opened, so the
// directory opens again at once (Pebble holds a lock on it while open).
func TestOpenFailsCleanly(t *testing.T) {
	dir := t.TempDir()
	cfg := Config{DataDir: dir, HTTPAddr: "127.0.0.1:-1", NATSName: "test", Logger: slog.New(slog.DiscardHandler)}
	if _, err := Open(cfg); err == nil {
		t.Fatal("open with a bad address succeeded")
	}
	cfg.HTTPAddr = ""
	sys, err := Open(cfg)
	if err != nil {
		t.Fatalf("reopen: %v", err)
	}
	if sys.URL() != "" {
		t.Fatalf("URL without a listener: %q", sys.URL())
	}
	if err := sys.Close(); err != nil {
		t.Fatal(err)
	}
}

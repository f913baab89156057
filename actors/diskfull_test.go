package actors

import (
	"errors"
	"fmt"
	"os"
	"os/exec"
	"path/filepath"
	"strings"
	"syscall"
	"testing"
	"time"

	"github.com/seckill/seckill/engine"
	"github.com/seckill/seckill/persistence"
)

const (
	// diskTmpfs is too small for Pebble's preallocated WAL, which it then
	// writes without; the filler leaves diskLeft of it.
	diskTmpfs = 48 << 20
	diskLeft  = 1 << 20
	// diskGuardReserve is the guard's reserve once space is back (the
	// tmpfs is far smaller than persistence.StoreReserveBytes).
	diskGuardReserve = 4 << 20
	// diskReopenWait bounds the wait for the store to reopen itself.
	diskReopenWait = 30 * time.Second
)

// TestNodeSurvivesPebbleFailure: the grab store's Pebble meets a full disk
// with no guard before it. The grab whose commit failed answers 503, the
// node goes on answering (503 for grabs, item views), and once space is
// back the store reopens by itself, every shard reloads from it, grabs
// succeed again, and every grab answered confirmed is on disk with shard
// counters that add up.
func TestNodeSurvivesPebbleFailure(t *testing.T) {
	dir := t.TempDir()
	if out, err := exec.Command("mount", "-t", "tmpfs", "-o", fmt.Sprintf("size=%d", diskTmpfs), "tmpfs", dir).CombinedOutput(); err != nil {
		if os.Getenv("CI") == "" {
			t.Skipf("cannot mount a tmpfs: %v: %s", err, strings.TrimSpace(string(out)))
		}
		t.Fatalf("mount: %v: %s", err, out)
	}
	t.Cleanup(func() { exec.Command("umount", "-l", dir).Run() })
	db := filepath.Join(dir, "db")
	store, err := persistence.OpenPebble(db)
	if err != nil {
		t.Fatal(err)
	}
	n := startNode(t, store)
	store.OnReopen(func() { n.ReloadAll() })
	cfg := engine.ItemConfig{Item: "full", Stock: 1 << 20, Shards: 4, PerUserLimit: 1}
	if err := n.CreateItem(cfg); err != nil {
		t.Fatal(err)
	}
	avail, _, err := persistence.FreeBytes(dir)
	if err != nil {
		t.Fatal(err)
	}
	filler := filepath.Join(dir, "filler")
	f, err := os.Create(filler)
	if err != nil {
		t.Fatal(err)
	}
	if err := syscall.Fallocate(int(f.Fd()), 0, 0, int64(avail-diskLeft)); err != nil {
		t.Fatal(err)
	}
	f.Close()

	confirmed := map[string]string{} // grab id -> user
	user := func(i int) string { return fmt.Sprintf("u%0120d", i) }
	i := 0
	for ; ; i++ {
		r := n.Grab("full", user(i), 1, "k")
		if errors.Is(r.Err, ErrUnavailable) {
			break
		}
		if r.Outcome != engine.Confirmed {
			t.Fatalf("grab %d: %v %v", i, r.Outcome, r.Err)
		}
		confirmed[r.Grab.ID()] = r.Grab.User
		if i > 200_000 {
			t.Fatal("the disk never filled")
		}
	}
	if !errors.Is(store.Health(), persistence.ErrStoreFailed) {
		t.Fatalf("store health after the 503: %v", store.Health())
	}
	for j := range 20 {
		if r := n.Grab("full", user(i+1+j), 1, "k"); !errors.Is(r.Err, ErrUnavailable) {
			t.Fatalf("grab on the failed store: %v %v", r.Outcome, r.Err)
		}
	}
	if it, ok := n.Item("full"); !ok || it.Balance().Sold < int64(len(confirmed)) {
		t.Fatalf("item view on the failed store: %v", ok)
	}
	t.Logf("%d grabs confirmed before the disk filled", len(confirmed))

	g := persistence.NewDiskGuard(dir, diskGuardReserve, nil)
	defer g.Close()
	store.Guard(g)
	if err := os.Remove(filler); err != nil {
		t.Fatal(err)
	}
	for deadline := time.Now().Add(diskReopenWait); store.Health() != nil; {
		if time.Now().After(deadline) {
			t.Fatalf("store not reopened %v after space came back: %v", diskReopenWait, store.Health())
		}
		time.Sleep(10 * time.Millisecond) // poll interval
	}
	after := 0
	for j := range 200 {
		// The buyer whose grab failed retries with the same key; the rest
		// are new.
		r := n.Grab("full", user(i+j), 1, "k")
		if r.Outcome != engine.Confirmed {
			t.Fatalf("grab after reopening: %v %v", r.Outcome, r.Err)
		}
		confirmed[r.Grab.ID()] = r.Grab.User
		after++
	}
	if err := n.Close(); err != nil {
		t.Fatal(err)
	}
	if err := store.Close(); err != nil {
		t.Fatal(err)
	}
	s2, err := persistence.OpenPebble(db)
	if err != nil {
		t.Fatal(err)
	}
	defer s2.Close()
	onDisk := map[string]string{}
	var sold int64
	for sh := range cfg.Shards {
		shard, err := persistence.LoadShard(s2, cfg, sh) // checks counters against the grabs
		if err != nil {
			t.Fatalf("shard %d after the outage: %v", sh, err)
		}
		sold += shard.Counters().Sold
		if err := s2.ShardGrabs("full", sh, func(g engine.Grab) error { onDisk[g.ID()] = g.User; return nil }); err != nil {
			t.Fatal(err)
		}
	}
	for id, u := range confirmed {
		if onDisk[id] != u {
			t.Errorf("confirmed grab %s of %s: on disk %q", id, u[:8], onDisk[id])
		}
	}
	if sold != int64(len(onDisk)) {
		t.Fatalf("counters say %d sold, %d grabs on disk", sold, len(onDisk))
	}
	t.Logf("%d confirmed after reopening; %d grabs on disk (%d confirmed in all)", after, len(onDisk), len(confirmed))
}

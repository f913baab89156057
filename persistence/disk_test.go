package persistence

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
)

const (
	// fullDiskSize is a tmpfs too small for Pebble's preallocated WAL
	// (which it then writes without), filled to fullDiskLeft by a filler.
	fullDiskSize = 48 << 20
	fullDiskLeft = 1 << 20
	// fullDiskReopenWait bounds the wait for a failed store to reopen
	// once space is back (ReopenEvery, plus StoreCloseWait at worst).
	fullDiskReopenWait = 30 * time.Second
	// fullDiskReserve is the guard's reserve here, where the tmpfs is far
	// smaller than StoreReserveBytes.
	fullDiskReserve = 4 << 20
)

// tinyTmpfs mounts a tmpfs on a fresh directory, unmounted when t ends;
// skipped without the right to mount unless CI is set.
func tinyTmpfs(t *testing.T, size int) string {
	t.Helper()
	dir := t.TempDir()
	if out, err := exec.Command("mount", "-t", "tmpfs", "-o", fmt.Sprintf("size=%d", size), "tmpfs", dir).CombinedOutput(); err != nil {
		if os.Getenv("CI") == "" {
			t.Skipf("cannot mount a tmpfs: %v: %s", err, strings.TrimSpace(string(out)))
		}
		t.Fatalf("mount: %v: %s", err, out)
	}
	t.Cleanup(func() {
		if out, err := exec.Command("umount", "-l", dir).CombinedOutput(); err != nil {
			t.Errorf("umount %s: %v: %s", dir, err, out)
		}
	})
	return dir
}

// fillTo fallocates a file in dir until left bytes are free.
func fillTo(t *testing.T, dir string, left uint64) string {
	t.Helper()
	avail, _, err := FreeBytes(dir)
	if err != nil || avail <= left {
		t.Fatalf("free %d: %v", avail, err)
	}
	path := filepath.Join(dir, "filler")
	f, err := os.Create(path)
	if err != nil {
		t.Fatal(err)
	}
	defer f.Close()
	if err := syscall.Fallocate(int(f.Fd()), 0, 0, int64(avail-left)); err != nil {
		t.Fatal(err)
	}
	return path
}

// TestPebbleOnFullDisk: without a guard, Pebble meets a full disk. Neither
// store panics or exits (the "pebble: fatal commit error" in the
// order store): the write that failed returns an error, the store reports
// itself failed and refuses every later write, and reads go on. Once space
// is back the store reopens itself, holding every write it acknowledged
// (nothing confirmed is lost), and takes writes again.
func TestPebbleOnFullDisk(t *testing.T) {
	for _, store := range []string{"grabs", "orders"} {
		t.Run(store, func(t *testing.T) {
			dir := tinyTmpfs(t, fullDiskSize)
			db := filepath.Join(dir, "db")
			var write func(i int) error
			var health func() error
			var closeStore func() error
			var count func() int
			var reopen func()
			var guard func(*DiskGuard)
			switch store {
			case "grabs":
				var p *Pebble
				reopen = func() {
					var err error
					if p, err = OpenPebble(db); err != nil {
						t.Fatal(err)
					}
				}
				reopen()
				cfg := engine.ItemConfig{Item: "full", Stock: 1 << 30, Shards: 1, PerUserLimit: 1}
				var b Batch
				b.PutItem(cfg)
				if err := p.Apply(&b); err != nil {
					t.Fatal(err)
				}
				write = func(i int) error {
					var b Batch
					for j := range 100 {
						seq := uint64(i*100 + j + 1)
						b.PutGrab(engine.Grab{Item: "full", Seq: seq, User: fmt.Sprintf("user-%0120d", seq), Qty: 1, AtMs: 1},
							engine.Counters{Allocated: 1 << 30, Sold: int64(seq), NextSeq: seq + 1})
					}
					return p.Apply(&b)
				}
				health, closeStore = func() error { return p.Health() }, func() error { return p.Close() }
				guard = func(g *DiskGuard) { p.Guard(g) }
				count = func() int {
					n := 0
					if err := p.ShardGrabs("full", 0, func(engine.Grab) error { n++; return nil }); err != nil {
						t.Fatal(err)
					}
					return n / 100
				}
			case "orders":
				var o *PebbleOrders
				reopen = func() {
					var err error
					if o, err = OpenPebbleOrders(db); err != nil {
						t.Fatal(err)
					}
				}
				reopen()
				write = func(i int) error {
					var os []engine.Order
					for j := range 100 {
						g := engine.Grab{Item: "full", Seq: uint64(i*100 + j + 1), User: fmt.Sprintf("user-%0120d", j), Qty: 1}
						os = append(os, engine.NewOrder(g, 1, 1000))
					}
					_, err := o.WriteNew(os)
					return err
				}
				health, closeStore = func() error { return o.Health() }, func() error { return o.Close() }
				guard = func(g *DiskGuard) { o.Guard(g) }
				count = func() int {
					n := 0
					if err := o.Scan("full", func(engine.Order) error { n++; return nil }); err != nil {
						t.Fatal(err)
					}
					return n / 100
				}
			}
			filler := fillTo(t, dir, fullDiskLeft)
			acked := 0
			var werr error
			for i := 0; ; i++ {
				if werr = write(i); werr != nil {
					break
				}
				acked++
				if i > 100_000 {
					t.Fatal("the disk never filled")
				}
			}
			if !errors.Is(health(), ErrStoreFailed) {
				t.Fatalf("after %v: health %v, want ErrStoreFailed", werr, health())
			}
			if err := write(acked + 1); !errors.Is(err, ErrStoreFailed) {
				t.Fatalf("write after the failure: %v, want ErrStoreFailed", err)
			}
			if n := count(); n < acked {
				t.Fatalf("reads on the failed store: %d batches, want at least the %d acknowledged", n, acked)
			}
			t.Logf("%d batches acknowledged, then %v", acked, werr)
			defer func() { closeStore() }()
			// The tmpfs is smaller than StoreReserveBytes: a guard with a
			// reserve that fits says when space is back.
			g := NewDiskGuard(dir, fullDiskReserve, nil)
			defer g.Close()
			guard(g)
			if err := os.Remove(filler); err != nil {
				t.Fatal(err)
			}
			for deadline := time.Now().Add(fullDiskReopenWait); health() != nil; {
				if time.Now().After(deadline) {
					t.Fatalf("not reopened %v after space came back: %v", fullDiskReopenWait, health())
				}
				time.Sleep(10 * time.Millisecond) // poll interval
			}
			if n := count(); n < acked {
				t.Fatalf("reopened: %d batches, want at least the %d acknowledged", n, acked)
			}
			if err := write(acked + 2); err != nil {
				t.Fatalf("write after reopening: %v", err)
			}
		})
	}
}

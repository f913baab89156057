package persistence

import (
	"fmt"
	"io"
	"os"
	"path/filepath"
	"syscall"
	"testing"

	"github.com/seckill/seckill/engine"
)

// TestWALFillCrashCopy: the grab store's WAL is written with zeros ahead of
// its records, and a copy of the directory taken while the store is open
// (what a crash leaves: every synced write, nothing closed) opens with
// every synced grab, reading the zeroed tail as the end of the log.
func TestWALFillCrashCopy(t *testing.T) {
	dir := t.TempDir()
	p, err := OpenPebble(dir)
	if err != nil {
		t.Fatal(err)
	}
	defer p.Close()
	const grabs = 3000 // several WAL blocks, well inside one fill step
	var b Batch
	b.PutItem(engine.ItemConfig{Item: "w", Stock: grabs, Shards: 1, PerUserLimit: 1})
	if err := p.Apply(&b); err != nil {
		t.Fatal(err)
	}
	for i := range grabs {
		b.Reset()
		b.PutGrab(engine.Grab{Item: "w", Shard: 0, Seq: uint64(i + 1), User: fmt.Sprint("u", i), Qty: 1},
			engine.Counters{Allocated: grabs, Sold: int64(i + 1)})
		if err := p.Apply(&b); err != nil {
			t.Fatal(err)
		}
	}
	if size, _ := walStat(t, dir); size < walFillStep {
		t.Fatalf("WAL is %d bytes long: not zero-filled ahead (step %d)", size, walFillStep)
	}
	crash := t.TempDir()
	copyDir(t, dir, crash)
	q, err := OpenPebble(crash)
	if err != nil {
		t.Fatalf("open after the crash: %v", err)
	}
	defer q.Close()
	n := 0
	if err := q.ShardGrabs("w", 0, func(g engine.Grab) error {
		n++
		if g.Seq != uint64(n) {
			return fmt.Errorf("grab %d has seq %d", n, g.Seq)
		}
		return nil
	}); err != nil {
		t.Fatal(err)
	}
	if n != grabs {
		t.Fatalf("%d grabs after the crash, want %d", n, grabs)
	}
}

// TestOpenWarmsWAL: once open, the grab store's WAL already holds its
// preallocation, so a sale's first commit does not pay for it.
func TestOpenWarmsWAL(t *testing.T) {
	dir := t.TempDir()
	p, err := OpenPebble(dir)
	if err != nil {
		t.Fatal(err)
	}
	defer p.Close()
	if _, allocated := walStat(t, dir); allocated < pebbleMemTable {
		t.Fatalf("WAL has %d bytes allocated, want at least the memtable's %d", allocated, pebbleMemTable)
	}
}

// walStat is the largest length and the largest allocation on disk of the
// WAL files in dir.
func walStat(t *testing.T, dir string) (size, allocated int64) {
	t.Helper()
	logs, err := filepath.Glob(filepath.Join(dir, "*.log"))
	if err != nil || len(logs) == 0 {
		t.Fatalf("no WAL in %s: %v", dir, err)
	}
	for _, l := range logs {
		var st syscall.Stat_t
		if err := syscall.Stat(l, &st); err != nil {
			t.Fatal(err)
		}
		size, allocated = max(size, st.Size), max(allocated, st.Blocks*512)
	}
	return size, allocated
}

func copyDir(t *testing.T, from, to string) {
	t.Helper()
	ents, err := os.ReadDir(from)
	if err != nil {
		t.Fatal(err)
	}
	for _, e := range ents {
		if e.IsDir() {
			continue
		}
		src, err := os.Open(filepath.Join(from, e.Name()))
		if err != nil {
			t.Fatal(err)
		}
		dst, err := os.Create(filepath.Join(to, e.Name()))
		if err != nil {
			t.Fatal(err)
		}
		if _, err := io.Copy(dst, src); err != nil {
			t.Fatal(err)
		}
		src.Close()
		dst.Close()
	}
}

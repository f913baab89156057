package actors

import (
	"archive/tar"
	"bufio"
	"compress/gzip"
	"encoding/json"
	"io"
	"os"
	"path/filepath"
	"testing"

	"github.com/seckill/seckill/engine"
	"github.com/seckill/seckill/persistence"
)

// TestLoadsDataDirOfEarlierMain: a data directory written by main at
// 329000a (before the protocol moved into engine/) loads as it was. The
// fixture was made with that commit's `seckill serve`: two items, 36
// confirmed grabs (their 201 bodies in the .grabs.jsonl beside it), a
// release, a cancelled and a paid order, stock added and taken back, then
// SIGTERM. Every confirmed grab must replay to the same grab id, the
// released one must answer released, and the item's numbers must be those
// the old node showed before it stopped.
func TestLoadsDataDirOfEarlierMain(t *testing.T) {
	dir := t.TempDir()
	untar(t, "testdata/datadir-329000a.tar.gz", dir)
	store, err := persistence.OpenPebble(filepath.Join(dir, "pebble"))
	if err != nil {
		t.Fatal(err)
	}
	n, err := Start(store, Options{})
	if err != nil {
		t.Fatal(err)
	}
	defer n.Close()

	var before struct {
		Stock, Remaining, Sold, Pool int64
		Shards                       []struct{ Allocated, Sold int64 }
	}
	readJSON(t, "testdata/datadir-329000a.phone-x.json", &before)
	it, ok := n.Item("phone-x")
	if !ok {
		t.Fatal("phone-x not loaded")
	}
	b, shards := it.View()
	if b.Stock != before.Stock || b.Sold != before.Sold || b.Remaining() != before.Remaining || b.Pool != before.Pool || b.InTransit != 0 {
		t.Fatalf("phone-x balance %v, the old node showed %+v", b, before)
	}
	for i, s := range shards {
		if s.Allocated != before.Shards[i].Allocated || s.Sold != before.Shards[i].Sold {
			t.Errorf("shard %d: %+v, the old node showed %+v", i, s, before.Shards[i])
		}
	}

	f, err := os.Open("testdata/datadir-329000a.grabs.jsonl")
	if err != nil {
		t.Fatal(err)
	}
	defer f.Close()
	sc := bufio.NewScanner(f)
	keys := map[string]int{"phone-x": 0, "cup.v2": 0}
	replayed := 0
	for sc.Scan() {
		var g struct {
			Status, GrabID, Item, UserID string
			Qty                          int64
		}
		if err := json.Unmarshal(sc.Bytes(), &g); err != nil {
			t.Fatal(err)
		}
		g.GrabID, g.UserID = jsonField(sc.Bytes(), "grab_id"), jsonField(sc.Bytes(), "user_id")
		if g.Status != "confirmed" {
			continue
		}
		item, _, seq, ok := engine.ParseGrabID(g.GrabID)
		if !ok {
			t.Fatalf("bad grab id %q", g.GrabID)
		}
		// The fixture's keys: phone-x k<n> (u1's second grab k1b), cup.v2 c<n>.
		key := map[string]string{"phone-x": "k", "cup.v2": "c"}[item] + g.UserID[1:]
		if g.UserID == "u1" && item == "phone-x" && seq > 1 {
			key = "k1b"
		}
		keys[item]++
		r := n.Grab(item, g.UserID, g.Qty, key)
		want := engine.Replayed
		if g.GrabID == "phone-x.0.1" || g.GrabID == "phone-x.1.1" { // released by the admin API, and by the cancel of its order
			want = engine.Released
		}
		if r.Err != nil || r.Outcome != want || r.Grab.ID() != g.GrabID {
			t.Errorf("replay of %s (user %s key %s): %+v, want %v of the same id", g.GrabID, g.UserID, key, r, want)
		}
		replayed++
	}
	if replayed != 36 {
		t.Fatalf("replayed %d confirmed grabs of the fixture, want 36", replayed)
	}
	// The per-user limit survived: u1 (limit 2) held two grabs, one of
	// them released, so one more unit and no further.
	if r := n.Grab("phone-x", "u1", 1, "new"); r.Err != nil || r.Outcome != engine.Confirmed {
		t.Errorf("u1 after reload: %+v, want confirmed", r)
	}
	if r := n.Grab("phone-x", "u1", 1, "newer"); r.Outcome != engine.LimitReached {
		t.Errorf("u1 again: %+v, want limit_reached", r)
	}
	// Selling goes on from where the old node stopped.
	if r := n.Grab("phone-x", "fresh-buyer", 1, ""); r.Err != nil || r.Outcome != engine.Confirmed {
		t.Errorf("new buyer: %+v", r)
	}
}

func untar(t *testing.T, path, dir string) {
	t.Helper()
	f, err := os.Open(path)
	if err != nil {
		t.Fatal(err)
	}
	defer f.Close()
	zr, err := gzip.NewReader(f)
	if err != nil {
		t.Fatal(err)
	}
	tr := tar.NewReader(zr)
	for {
		h, err := tr.Next()
		if err == io.EOF {
			return
		}
		if err != nil {
			t.Fatal(err)
		}
		p := filepath.Join(dir, filepath.Clean(h.Name))
		switch h.Typeflag {
		case tar.TypeDir:
			if err := os.MkdirAll(p, 0o755); err != nil {
				t.Fatal(err)
			}
		case tar.TypeReg, tar.TypeGNUSparse:
			if err := os.MkdirAll(filepath.Dir(p), 0o755); err != nil {
				t.Fatal(err)
			}
			w, err := os.Create(p)
			if err != nil {
				t.Fatal(err)
			}
			if _, err := io.Copy(w, tr); err != nil {
				t.Fatal(err)
			}
			w.Close()
		}
	}
}

func readJSON(t *testing.T, path string, v any) {
	t.Helper()
	b, err := os.ReadFile(path)
	if err != nil {
		t.Fatal(err)
	}
	if err := json.Unmarshal(b, v); err != nil {
		t.Fatal(err)
	}
}

func jsonField(b []byte, name string) string {
	var m map[string]any
	_ = json.Unmarshal(b, &m)
	s, _ := m[name].(string)
	return s
}

package main

import (
	"encoding/json"
	"fmt"
	"io"
	"net/http"
	"os"
	"os/exec"
	"path/filepath"
	"strings"
	"syscall"
	"testing"
	"time"

	"github.com/seckill/seckill/persistence"
)

const (
	// diskFullSize is the tmpfs the data directory lives on: the node's
	// write reserve (two Pebble stores and the stream, about 320 MiB),
	// the WALs Pebble preallocates (about 140 MiB) and room to sell.
	diskFullSize = 640 << 20
	// diskFullStep is how much the filler grows while the sale goes on,
	// each diskFullEvery grabs, until writes stop.
	diskFullStep  = 1 << 20
	diskFullEvery = 50
	// diskFullOutage is how long the test keeps the disk full, checking
	// that the node stays up and answers what needs no write.
	diskFullOutage = 3 * time.Second
)

// mountTmpfs mounts a tmpfs of size bytes on a fresh directory and
// unmounts it when t ends. Without the right to mount it skips, unless CI
// is set: there the test must run.
func mountTmpfs(t *testing.T, size int64) string {
	t.Helper()
	dir := t.TempDir()
	out, err := exec.Command("mount", "-t", "tmpfs", "-o", fmt.Sprintf("size=%d", size), "tmpfs", dir).CombinedOutput()
	if err != nil {
		if os.Getenv("CI") == "" {
			t.Skipf("cannot mount a tmpfs (%v: %s); needs root (CI must run it)", err, strings.TrimSpace(string(out)))
		}
		t.Fatalf("mount tmpfs on %s: %v: %s", dir, err, out)
	}
	t.Cleanup(func() {
		if out, err := exec.Command("umount", dir).CombinedOutput(); err != nil {
			t.Errorf("umount %s: %v: %s", dir, err, out)
		}
	})
	return dir
}

// filler takes disk space on purpose (fallocate: a tmpfs gives a sparse
// file none).
type filler struct {
	t    *testing.T
	f    *os.File
	size int64
}

func newFiller(t *testing.T, path string) *filler {
	t.Helper()
	f, err := os.Create(path)
	if err != nil {
		t.Fatal(err)
	}
	t.Cleanup(func() { f.Close() }) // a second Close only errs
	return &filler{t: t, f: f}
}

// grow takes n more bytes; false when the file system has none left.
func (f *filler) grow(n int64) bool {
	if err := syscall.Fallocate(int(f.f.Fd()), 0, f.size, n); err != nil {
		if err == syscall.ENOSPC {
			return false
		}
		f.t.Fatalf("fallocate: %v", err)
	}
	f.size += n
	return true
}

// remove deletes the filler (closed first: an open file keeps its space).
func (f *filler) remove() {
	f.t.Helper()
	name := f.f.Name()
	if err := f.f.Close(); err != nil {
		f.t.Fatal(err)
	}
	if err := os.Remove(name); err != nil {
		f.t.Fatal(err)
	}
}

// httpAnswer is one answer with what the test looks at.
type httpAnswer struct {
	code       int
	retryAfter string
	body       string
}

func doHTTP(t *testing.T, c *http.Client, method, url, body string, hdr map[string]string) httpAnswer {
	t.Helper()
	req, err := http.NewRequest(method, url, strings.NewReader(body))
	if err != nil {
		t.Fatal(err)
	}
	for k, v := range hdr {
		req.Header.Set(k, v)
	}
	resp, err := c.Do(req)
	if err != nil {
		t.Fatalf("%s %s: %v (is the node down?)", method, url, err)
	}
	defer resp.Body.Close()
	raw, _ := io.ReadAll(resp.Body)
	return httpAnswer{resp.StatusCode, resp.Header.Get("Retry-After"), strings.TrimSpace(string(raw))}
}

// TestDiskFullSale: the data directory on a small tmpfs, a sale runs while
// a filler file takes the rest of the disk. Once the free space is below
// the node's write reserve, the node stays up: grabs answer 503 with
// Retry-After, sold-out, item reads and /healthz answer 200, and /healthz
// names the stores that cannot write and why. Once the filler is deleted
// grabs succeed again by themselves, the sale sells out, every 201 has its
// order, and the live and the offline reconcile are clean.
func TestDiskFullSale(t *testing.T) {
	skipFaultTest(t)
	const (
		item  = "diskfull"
		stock = 1500
	)
	mnt := mountTmpfs(t, diskFullSize)
	started, bin, client := startFaultTest(t)
	dataDir := filepath.Join(mnt, "data")
	srv := startServe(t, bin, dataDir, "server", "--nats-listen", "")
	createItem(t, client, srv.URL, item, stock)
	// A second item, sold out before the disk fills: its buyers must still
	// hear sold out.
	adminDo(t, client, http.MethodPut, srv.URL+"/admin/v1/items/gone", faultToken, `{"stock":1,"shards":1,"per_user_limit":1}`, http.StatusCreated)
	if a, err := postGrab(client, srv.URL, "gone", "early", "k"); err != nil || a.Code != http.StatusCreated {
		t.Fatalf("grab of gone: %v %v", a, err)
	}

	// Fill the disk to just above the reserve, then sell, growing the
	// filler as the sale goes, until grabs stop.
	fill := newFiller(t, filepath.Join(mnt, "filler"))
	avail, _, err := persistence.FreeBytes(mnt)
	if err != nil {
		t.Fatal(err)
	}
	reserve := int64(2*persistence.StoreReserveBytes + 32<<20)
	if int64(avail) < reserve+diskFullStep {
		t.Fatalf("tmpfs has %d MiB free after start, want more than the reserve %d MiB", avail>>20, reserve>>20)
	}
	fill.grow(int64(avail) - reserve - diskFullStep)

	grabs := map[string]string{} // grab id -> user
	buyer := 0
	var refused httpAnswer
	for {
		user := fmt.Sprintf("buyer-%05d", buyer)
		a, err := postGrab(client, srv.URL, item, user, "k-"+user)
		if err != nil {
			t.Fatalf("grab %s: %v (is the node down?)", user, err)
		}
		if a.Code == http.StatusServiceUnavailable {
			refused = doHTTP(t, client, http.MethodPost, srv.URL+"/v1/items/"+item+"/grab", fmt.Sprintf(`{"user_id":%q}`, user),
				map[string]string{"Idempotency-Key": "k-" + user})
			break
		}
		if a.Code != http.StatusCreated {
			t.Fatalf("grab %s before the disk filled: %s", user, a)
		}
		grabs[a.GrabID] = user
		buyer++
		if buyer == stock {
			t.Fatalf("sold out before the disk filled (filler %d MiB)", fill.size>>20)
		}
		if buyer%diskFullEvery == 0 && !fill.grow(diskFullStep) {
			t.Fatalf("the disk filled up without a 503 from the node")
		}
	}
	soldBefore := len(grabs)
	t.Logf("disk full after %d grabs, filler %d MiB", soldBefore, fill.size>>20)
	if refused.code != http.StatusServiceUnavailable || refused.retryAfter == "" {
		t.Fatalf("grab on a full disk: %d Retry-After %q %s, want 503 with Retry-After", refused.code, refused.retryAfter, refused.body)
	}

	// The outage: writes refused, the node up and answering the rest.
	for deadline := time.Now().Add(diskFullOutage); time.Now().Before(deadline); {
		if a := doHTTP(t, client, http.MethodPost, srv.URL+"/v1/items/"+item+"/grab", `{"user_id":"outage"}`,
			map[string]string{"Idempotency-Key": "k-outage"}); a.code != http.StatusServiceUnavailable || a.retryAfter == "" {
			t.Fatalf("grab during the outage: %d Retry-After %q %s", a.code, a.retryAfter, a.body)
		}
		if a := doHTTP(t, client, http.MethodPost, srv.URL+"/v1/items/gone/grab", `{"user_id":"late"}`, nil); a.code != http.StatusConflict || !strings.Contains(a.body, "sold_out") {
			t.Fatalf("sold-out item during the outage: %d %s", a.code, a.body)
		}
		if a := doHTTP(t, client, http.MethodGet, srv.URL+"/v1/items/"+item, "", nil); a.code != http.StatusOK {
			t.Fatalf("item read during the outage: %d %s", a.code, a.body)
		}
		h := doHTTP(t, client, http.MethodGet, srv.URL+"/healthz", "", nil)
		var hb struct {
			Status string            `json:"status"`
			Stores map[string]string `json:"stores"`
		}
		if err := json.Unmarshal([]byte(h.body), &hb); err != nil || h.code != http.StatusOK || hb.Status != "degraded" ||
			!strings.Contains(hb.Stores["grabs"], "disk space below the reserve") || !strings.Contains(hb.Stores["orders"], "disk space below the reserve") {
			t.Fatalf("healthz during the outage: %d %s", h.code, h.body)
		}
		time.Sleep(faultPollEvery) // poll interval
	}
	select {
	case <-srv.done:
		t.Fatalf("the node exited on a full disk: %v", srv.err)
	default:
	}

	// Space back: the refused buyer's retry with the same key succeeds by
	// itself, and the sale sells out.
	fill.remove()
	for deadline := time.Now().Add(faultDrainTimeout); ; {
		user := fmt.Sprintf("buyer-%05d", buyer)
		a, err := postGrab(client, srv.URL, item, user, "k-"+user)
		if err == nil && a.Code == http.StatusCreated {
			grabs[a.GrabID] = user
			buyer++
			break
		}
		if time.Now().After(deadline) {
			t.Fatalf("grabs still refused %v after space was freed: %v %v", faultDrainTimeout, a, err)
		}
		time.Sleep(faultPollEvery) // poll interval
	}
	for ; ; buyer++ {
		user := fmt.Sprintf("buyer-%05d", buyer)
		a, err := postGrab(client, srv.URL, item, user, "k-"+user)
		if err != nil {
			t.Fatalf("grab %s after the outage: %v", user, err)
		}
		if a.Code == http.StatusConflict && a.Status == "sold_out" {
			break
		}
		if a.Code != http.StatusCreated {
			t.Fatalf("grab %s after the outage: %s", user, a)
		}
		grabs[a.GrabID] = user
	}
	if len(grabs) != stock {
		t.Fatalf("%d grabs confirmed, want the whole stock %d", len(grabs), stock)
	}
	h := doHTTP(t, client, http.MethodGet, srv.URL+"/healthz", "", nil)
	if h.code != http.StatusOK || !strings.Contains(h.body, `"status":"ok"`) {
		t.Fatalf("healthz after the outage: %d %s", h.code, h.body)
	}
	checkAllSold(t, client, srv.URL, item, stock)
	waitOrders(t, client, srv.URL, grabs, faultDrainTimeout)
	waitLiveReconcile(t, client, srv.URL, item, stock, stock, true)
	t.Logf("%d sold before the disk filled, %d after; every grab has its order, reconcile clean", soldBefore, stock-soldBefore)
	stopAndAudit(t, client, srv, bin, item, stock, filepath.Join(dataDir, "orders"), grabs, started, "--data", dataDir, "--item", item)
}

package main

// Helpers for tests that run the real seckill binary as a child process and
// talk to it over HTTP.

import (
	"bytes"
	"encoding/json"
	"errors"
	"fmt"
	"io"
	"net"
	"net/http"
	"os/exec"
	"path/filepath"
	"regexp"
	"strings"
	"sync"
	"syscall"
	"testing"
	"time"
)

const (
	// procReadyTimeout bounds the wait for the "serving" line of a child.
	procReadyTimeout = 60 * time.Second
	// procExitTimeout bounds the wait for a signalled child to exit.
	procExitTimeout = 60 * time.Second
	// httpRequestTimeout bounds every request a test sends to a child.
	httpRequestTimeout = 5 * time.Second
)

// buildSeckill builds this package's binary into a directory removed when t
// ends. Later builds in the same run are mostly served by the build cache.
func buildSeckill(t *testing.T) string {
	t.Helper()
	return goBuild(t, "seckill", ".")
}

// goBuild builds pkg (at the version go.mod pins) into a temporary binary.
func goBuild(t *testing.T, name, pkg string) string {
	t.Helper()
	goTool, err := exec.LookPath("go")
	if err != nil {
		t.Fatalf("the go command is needed to build %s: %v", name, err)
	}
	bin := filepath.Join(t.TempDir(), name)
	if out, err := exec.Command(goTool, "build", "-o", bin, pkg).CombinedOutput(); err != nil {
		t.Fatalf("go build %s: %v\n%s", name, err, out)
	}
	return bin
}

// syncBuffer is a bytes.Buffer safe for a writer and concurrent readers.
type syncBuffer struct {
	mu  sync.Mutex
	buf bytes.Buffer
}

func (b *syncBuffer) Write(p []byte) (int, error) {
	b.mu.Lock()
	defer b.mu.Unlock()
	return b.buf.Write(p)
}

func (b *syncBuffer) String() string {
	b.mu.Lock()
	defer b.mu.Unlock()
	return b.buf.String()
}

// serveLine is what `seckill serve` prints to stdout once it accepts.
var serveLine = regexp.MustCompile(`^seckill: serving (http://\S+) data=`)

// stdoutWatcher keeps a child's stdout and hands over the base URL from the
// first "serving" line.
type stdoutWatcher struct {
	mu      sync.Mutex
	buf     bytes.Buffer
	scanned int
	found   bool
	ready   chan string // buffered 1
}

func (w *stdoutWatcher) Write(p []byte) (int, error) {
	w.mu.Lock()
	defer w.mu.Unlock()
	w.buf.Write(p)
	for !w.found {
		data := w.buf.Bytes()[w.scanned:]
		i := bytes.IndexByte(data, '\n')
		if i < 0 {
			break
		}
		w.scanned += i + 1
		if m := serveLine.FindSubmatch(data[:i]); m != nil {
			w.found = true
			w.ready <- string(m[1])
		}
	}
	return len(p), nil
}

func (w *stdoutWatcher) String() string {
	w.mu.Lock()
	defer w.mu.Unlock()
	return w.buf.String()
}

// seckillProc is one running `seckill serve`.
type seckillProc struct {
	name   string
	cmd    *exec.Cmd
	URL    string // base URL, e.g. http://127.0.0.1:41234
	stdout *stdoutWatcher
	stderr *syncBuffer
	done   chan struct{} // closed once the child has exited
	err    error         // cmd.Wait's result; read only after done
}

// startSeckill runs `seckill serve` on dataDir with the admin token, a
// kernel-chosen port and an in-process-only NATS server, and returns once
// the child printed its address. The child is killed when t ends if it
// still runs; its output is logged if t failed.
func startSeckill(t *testing.T, bin, dataDir, token, name string) *seckillProc {
	t.Helper()
	p, m := startChild(t, name, serveLine, false, token, bin,
		"serve", "--data", dataDir, "--http", "127.0.0.1:0", "--nats-listen", "")
	p.URL = m[1]
	return p
}

// waitExit waits (bounded) for the child to exit and returns cmd.Wait's
// result.
func (p *seckillProc) waitExit(t *testing.T) error {
	t.Helper()
	select {
	case <-p.done:
		return p.err
	case <-time.After(procExitTimeout):
		t.Fatalf("%s did not exit within %v", p.name, procExitTimeout)
		return nil
	}
}

// kill SIGKILLs the child and waits until it is gone.
func (p *seckillProc) kill(t *testing.T) {
	t.Helper()
	if err := p.cmd.Process.Signal(syscall.SIGKILL); err != nil {
		t.Fatalf("SIGKILL %s: %v", p.name, err)
	}
	err := p.waitExit(t)
	var ee *exec.ExitError
	if !errors.As(err, &ee) {
		t.Fatalf("%s after SIGKILL: exit %v, want killed by SIGKILL", p.name, err)
	}
	if ws, ok := ee.Sys().(syscall.WaitStatus); !ok || !ws.Signaled() || ws.Signal() != syscall.SIGKILL {
		t.Fatalf("%s after SIGKILL: %v, want killed by SIGKILL", p.name, err)
	}
}

// stop SIGTERMs the child and requires a clean exit (status 0).
func (p *seckillProc) stop(t *testing.T) {
	t.Helper()
	if err := p.cmd.Process.Signal(syscall.SIGTERM); err != nil {
		t.Fatalf("SIGTERM %s: %v", p.name, err)
	}
	if err := p.waitExit(t); err != nil {
		t.Fatalf("%s after SIGTERM: %v, want exit status 0\nstderr:\n%s", p.name, err, p.stderr.String())
	}
}

// newTestHTTPClient returns a client for many concurrent requests to one
// host, each bounded by httpRequestTimeout. It never uses a proxy. Idle
// connections are dropped well before the server's 10 s first-byte read
// timeout, after which the server writes an unsolicited 400 on a connection
// the client opened but never used: a request sent at that moment would get
// that 400 as its answer.
func newTestHTTPClient(conns int) *http.Client {
	return &http.Client{
		Timeout: httpRequestTimeout,
		Transport: &http.Transport{
			DialContext:         (&net.Dialer{Timeout: httpRequestTimeout}).DialContext,
			MaxIdleConns:        2 * conns,
			MaxIdleConnsPerHost: 2 * conns,
			IdleConnTimeout:     5 * time.Second,
			DisableCompression:  true,
		},
	}
}

// grabAnswer is the decoded answer to POST /v1/items/{item}/grab.
type grabAnswer struct {
	Code    int
	Status  string `json:"status"`
	GrabID  string `json:"grab_id"`
	Item    string `json:"item"`
	UserID  string `json:"user_id"`
	Qty     int64  `json:"qty"`
	Error   string `json:"error"`
	RawBody string
}

func (a grabAnswer) String() string {
	return fmt.Sprintf("%d %s", a.Code, strings.TrimSpace(a.RawBody))
}

// postGrab sends one grab of qty 1. err is set only when no HTTP answer came
// back (connection refused or reset, timeout, truncated body); a body that
// is not JSON leaves Status empty.
func postGrab(c *http.Client, base, item, user, key string) (grabAnswer, error) {
	body := fmt.Sprintf(`{"user_id":%q,"qty":1}`, user)
	req, err := http.NewRequest(http.MethodPost, base+"/v1/items/"+item+"/grab", strings.NewReader(body))
	if err != nil {
		return grabAnswer{}, err
	}
	req.Header.Set("Content-Type", "application/json")
	req.Header.Set("Idempotency-Key", key)
	resp, err := c.Do(req)
	if err != nil {
		return grabAnswer{}, err
	}
	defer resp.Body.Close()
	raw, err := io.ReadAll(resp.Body)
	if err != nil {
		return grabAnswer{}, fmt.Errorf("read answer (status %d): %w", resp.StatusCode, err)
	}
	var a grabAnswer
	_ = json.Unmarshal(raw, &a)
	a.Code = resp.StatusCode
	a.RawBody = string(raw)
	return a, nil
}

// shardAdmin and itemAdmin are the parts of the admin item view tests use.
type shardAdmin struct {
	Shard     int   `json:"shard"`
	Allocated int64 `json:"allocated"`
	Remaining int64 `json:"remaining"`
	Sold      int64 `json:"sold"`
}

type itemAdmin struct {
	Item      string       `json:"item"`
	Stock     int64        `json:"stock"`
	Remaining int64        `json:"remaining"`
	Sold      int64        `json:"sold"`
	Pool      int64        `json:"pool"`
	InTransit int64        `json:"in_transit"`
	Shards    []shardAdmin `json:"shards"`
}

// adminDo sends an admin request and decodes the item view, requiring the
// wanted status code.
func adminDo(t *testing.T, c *http.Client, method, url, token, body string, want int) itemAdmin {
	t.Helper()
	req, err := http.NewRequest(method, url, strings.NewReader(body))
	if err != nil {
		t.Fatal(err)
	}
	req.Header.Set("Authorization", "Bearer "+token)
	if body != "" {
		req.Header.Set("Content-Type", "application/json")
	}
	resp, err := c.Do(req)
	if err != nil {
		t.Fatalf("%s %s: %v", method, url, err)
	}
	defer resp.Body.Close()
	raw, err := io.ReadAll(resp.Body)
	if err != nil {
		t.Fatalf("%s %s: read: %v", method, url, err)
	}
	if resp.StatusCode != want {
		t.Fatalf("%s %s: %d %s, want %d", method, url, resp.StatusCode, raw, want)
	}
	var v itemAdmin
	if err := json.Unmarshal(raw, &v); err != nil {
		t.Fatalf("%s %s: decode %q: %v", method, url, raw, err)
	}
	return v
}

// forEachParallel calls fn for every element of items from n goroutines.
func forEachParallel(n int, items []string, fn func(string)) {
	ch := make(chan string)
	var wg sync.WaitGroup
	for range n {
		wg.Go(func() {
			for s := range ch {
				fn(s)
			}
		})
	}
	for _, s := range items {
		ch <- s
	}
	close(ch)
	wg.Wait()
}

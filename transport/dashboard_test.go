package transport

import (
	"context"
	"fmt"
	"io"
	"net"
	"net/http"
	"os"
	"os/exec"
	"path/filepath"
	"strings"
	"sync"
	"testing"
	"time"

	"github.com/chromedp/chromedp"
	"github.com/seckill/seckill/actors"
	"github.com/seckill/seckill/metrics"
	"github.com/seckill/seckill/persistence"
)

// chromiumPath finds Debian's chromium (make deps installs it).
func chromiumPath() string {
	for _, name := range []string{"chromium", "chromium-browser", "google-chrome"} {
		if p, err := exec.LookPath(name); err == nil {
			return p
		}
	}
	return ""
}

// startObservedServer is startServer with metrics and the dashboard's
// sources on, as system wires them.
func startObservedServer(t *testing.T) *testServer {
	t.Helper()
	store, err := persistence.OpenPebble(t.TempDir())
	if err != nil {
		t.Fatal(err)
	}
	node, err := actors.Start(store, actors.Options{})
	if err != nil {
		t.Fatal(err)
	}
	reg := metrics.NewRegistry()
	hm := NewHTTPMetrics()
	grabs := metrics.CountGrabs(actors.NewLocal(node))
	reg.MustRegister(hm, grabs)
	board := &Board{Outcomes: func() map[string]uint64 {
		m := map[string]uint64{}
		for k, v := range grabs.Totals() {
			m[metrics.KindNames[k]] = v
		}
		return m
	}}
	front := NewServer(grabs, testToken, nil).WithMetrics(reg, hm).WithBoard(board)
	srv := front.FastHTTP()
	ln, err := net.Listen("tcp", "127.0.0.1:0")
	if err != nil {
		t.Fatal(err)
	}
	done := make(chan error, 1)
	go func() { done <- srv.Serve(ln) }()
	t.Cleanup(func() {
		front.Drain() // ends the event streams
		if err := srv.Shutdown(); err != nil {
			t.Error(err)
		}
		<-done
		if err := node.Close(); err != nil {
			t.Error(err)
		}
	})
	return &testServer{url: "http://" + ln.Addr().String(), node: node}
}

// artifactDir is where tests leave what a person should look at:
// $SECKILL_ARTIFACTS, else the test's temp dir (logged).
func artifactDir(t *testing.T) string {
	if d := os.Getenv("SECKILL_ARTIFACTS"); d != "" {
		if err := os.MkdirAll(d, 0o755); err != nil {
			t.Fatal(err)
		}
		return d
	}
	return t.TempDir()
}

// TestDashboardInChromium opens the dashboard in headless Chromium, enters
// the token on the page, runs a sale in waves against the node, and
// checks that the page shows the item's remaining stock and its sold count
// following each wave, to sold out. It saves a screenshot (dashboard.png).
func TestDashboardInChromium(t *testing.T) {
	chromium := chromiumPath()
	if chromium == "" {
		if os.Getenv("CI") == "" {
			t.Skip("chromium not installed (make deps installs it); CI runs this test")
		}
		t.Fatal("chromium not found: make deps installs it")
	}
	const stock, wave = 3000, 500
	ts := startObservedServer(t)
	ts.create(t, "phone-x", fmt.Sprintf(`{"stock":%d,"shards":8,"per_user_limit":1}`, stock))

	opts := append(chromedp.DefaultExecAllocatorOptions[:], chromedp.ExecPath(chromium), chromedp.NoSandbox,
		chromedp.WindowSize(1400, 1000), chromedp.Flag("disable-gpu", true), chromedp.Flag("disable-dev-shm-usage", true))
	alloc, cancelAlloc := chromedp.NewExecAllocator(context.Background(), opts...)
	defer cancelAlloc()
	browser, cancelBrowser := chromedp.NewContext(alloc)
	defer cancelBrowser()
	ctx, cancel := context.WithTimeout(browser, 90*time.Second)
	defer cancel()

	card := `[data-item="phone-x"]`
	if err := chromedp.Do(ctx,
		chromedp.Navigate(ts.url+"/admin/dashboard"),
		chromedp.WaitVisible(chromedp.ID("token")),
		chromedp.SendKeys(chromedp.ID("token"), testToken),
		chromedp.Click(chromedp.ID("connect")),
		chromedp.WaitVisible(chromedp.CSS(card+" .remaining")),
	); err != nil {
		t.Fatalf("open the dashboard: %v", err)
	}
	// waitText polls the page until sel's text is want (the page updates
	// once a second).
	waitText := func(sel, want string) {
		t.Helper()
		var got string
		deadline := time.Now().Add(15 * time.Second)
		for time.Now().Before(deadline) {
			var err error
			if got, err = chromedp.Run(ctx, chromedp.Text(chromedp.CSS(sel))); err != nil {
				t.Fatalf("read %s: %v", sel, err)
			}
			if got == want {
				return
			}
			time.Sleep(100 * time.Millisecond)
		}
		t.Fatalf("page shows %s = %q, want %q", sel, got, want)
	}
	num := func(n int) string { return strings.TrimSpace(fmt.Sprintf("%d,%03d", n/1000, n%1000)) }
	show := func(n int) string {
		if n < 1000 {
			return fmt.Sprint(n)
		}
		return num(n)
	}
	waitText(card+" .remaining", show(stock))
	waitText(card+" .sold", "0")
	waitText("#state", "live")

	user := 0
	for w := 1; w <= stock/wave; w++ {
		var wg sync.WaitGroup
		users := make(chan int, wave)
		for range wave {
			user++
			users <- user
		}
		close(users)
		for range 8 {
			wg.Go(func() {
				for u := range users {
					for {
						r := ts.do(t, "POST", "/v1/items/phone-x/grab", fmt.Sprintf(`{"user_id":"d%d"}`, u), nil)
						if r.code == 201 {
							break
						}
						if r.code != 503 {
							t.Errorf("grab: %d %s", r.code, r.raw)
							return
						}
					}
				}
			})
		}
		wg.Wait()
		waitText(card+" .sold", show(w*wave))
		waitText(card+" .remaining", show(stock-w*wave))
	}
	// The answers chart has seen confirmed grabs, and p50 is a number.
	legend, err := chromedp.Run(ctx, chromedp.Text(chromedp.ID("l-answers")))
	if err != nil {
		t.Fatal(err)
	}
	p50, err := chromedp.Run(ctx, chromedp.Text(chromedp.ID("p50")))
	if err != nil {
		t.Fatal(err)
	}
	if !strings.Contains(legend, "confirmed") {
		t.Errorf("answers legend %q has no confirmed", legend)
	}
	png, err := chromedp.Run(ctx, chromedp.FullScreenshot(100))
	if err != nil {
		t.Fatalf("screenshot: %v", err)
	}
	out := filepath.Join(artifactDir(t), "dashboard.png")
	if err := os.WriteFile(out, png, 0o644); err != nil {
		t.Fatal(err)
	}
	t.Logf("screenshot: %s (p50 %s, answers %s)", out, p50, legend)
}

// TestEventsNeedToken: the event stream is an admin call, and the page is
// served whole, from the binary.
func TestEventsNeedToken(t *testing.T) {
	ts := startObservedServer(t)
	if r := ts.do(t, "GET", "/admin/v1/events", "", nil); r.code != http.StatusUnauthorized {
		t.Fatalf("events without token: %d", r.code)
	}
	resp, err := http.Get(ts.url + "/admin/dashboard")
	if err != nil {
		t.Fatal(err)
	}
	page, _ := io.ReadAll(resp.Body)
	resp.Body.Close()
	raw := string(page)
	if resp.StatusCode != 200 || !strings.HasPrefix(resp.Header.Get("Content-Type"), "text/html") ||
		!strings.Contains(raw, "/admin/v1/events") || strings.Contains(raw, "http://") || strings.Contains(raw, "https://") {
		t.Fatalf("dashboard: %d, %d bytes, loads from elsewhere or lacks the stream", resp.StatusCode, len(raw))
	}
}

// TestOpsEndpoints: metrics, readiness and profiles answer as the OpenAPI
// document says (TestMain checks every answer against it).
func TestOpsEndpoints(t *testing.T) {
	ts := startObservedServer(t)
	auth := map[string]string{"Authorization": "Bearer " + testToken}
	for _, c := range []struct {
		path string
		hdr  map[string]string
		code int
	}{
		{"/readyz", nil, 200},
		{"/metrics", nil, 401},
		{"/debug/pprof/", nil, 401},
		{"/admin/v1/events", nil, 401},
	} {
		if r := ts.do(t, "GET", c.path, "", c.hdr); r.code != c.code {
			t.Errorf("%s: %d, want %d", c.path, r.code, c.code)
		}
	}
	for _, p := range []string{"/metrics", "/debug/pprof/", "/debug/pprof/cmdline"} {
		req, _ := http.NewRequest("GET", ts.url+p, nil)
		req.Header.Set("Authorization", auth["Authorization"])
		resp, err := http.DefaultClient.Do(req)
		if err != nil {
			t.Fatal(err)
		}
		resp.Body.Close()
		if resp.StatusCode != 200 {
			t.Errorf("%s with token: %d", p, resp.StatusCode)
		}
	}
}

package system

import (
	"fmt"
	"io"
	"log/slog"
	"net/http"
	"os"
	"regexp"
	"strings"
	"sync"
	"sync/atomic"
	"testing"
	"time"

	dto "github.com/prometheus/client_model/go"
	"github.com/prometheus/common/expfmt"
	"github.com/prometheus/common/model"
)

const metricsToken = "metrics-token"

// scrape reads /metrics with the admin token and parses the whole
// exposition with Prometheus's text parser.
func scrape(t *testing.T, url string) map[string]*dto.MetricFamily {
	t.Helper()
	req, _ := http.NewRequest("GET", url+"/metrics", nil)
	req.Header.Set("Authorization", "Bearer "+metricsToken)
	resp, err := http.DefaultClient.Do(req)
	if err != nil {
		t.Fatal(err)
	}
	defer resp.Body.Close()
	if resp.StatusCode != 200 {
		b, _ := io.ReadAll(resp.Body)
		t.Fatalf("metrics: %d %s", resp.StatusCode, b)
	}
	p := expfmt.NewTextParser(model.UTF8Validation)
	fams, err := p.TextToMetricFamilies(resp.Body)
	if err != nil {
		t.Fatalf("parse exposition: %v", err)
	}
	return fams
}

// value is the sample of family name whose labels include want (nil when
// there is none).
func value(fams map[string]*dto.MetricFamily, name string, want ...string) *float64 {
	f := fams[name]
	if f == nil {
		return nil
	}
next:
	for _, m := range f.GetMetric() {
		for i := 0; i+1 < len(want); i += 2 {
			found := false
			for _, l := range m.GetLabel() {
				if l.GetName() == want[i] && l.GetValue() == want[i+1] {
					found = true
				}
			}
			if !found {
				continue next
			}
		}
		var v float64
		switch {
		case m.Counter != nil:
			v = m.Counter.GetValue()
		case m.Gauge != nil:
			v = m.Gauge.GetValue()
		case m.Histogram != nil:
			v = float64(m.Histogram.GetSampleCount())
		default:
			v = m.GetUntyped().GetValue()
		}
		return &v
	}
	return nil
}

func mustValue(t *testing.T, fams map[string]*dto.MetricFamily, name string, want ...string) float64 {
	t.Helper()
	v := value(fams, name, want...)
	if v == nil {
		t.Fatalf("no sample %s %v", name, want)
	}
	return *v
}

// TestMetricsDuringSale runs a sale on a whole node over loopback (Pebble,
// embedded NATS, an order writer) and scrapes /metrics during and after
// it: every scrape parses, the item's numbers add up mid-sale, and at the
// end confirmed grabs, units left, orders written and HTTP answers match
// what the buyers saw.
func TestMetricsDuringSale(t *testing.T) {
	const stock, buyers, clients = 300, 900, 16
	sys, err := Open(Config{DataDir: t.TempDir(), HTTPAddr: "127.0.0.1:0", AdminToken: metricsToken, NATSName: "test",
		OrderWriters: 1, Logger: slog.New(slog.DiscardHandler)})
	if err != nil {
		t.Fatal(err)
	}
	defer sys.Close()
	url := sys.URL()
	put, _ := http.NewRequest("PUT", url+"/admin/v1/items/m1", strings.NewReader(
		fmt.Sprintf(`{"stock":%d,"shards":8,"per_user_limit":1}`, stock)))
	put.Header.Set("Authorization", "Bearer "+metricsToken)
	if resp, err := http.DefaultClient.Do(put); err != nil || resp.StatusCode != 201 {
		t.Fatalf("create: %v %v", resp, err)
	}

	// No token, no metrics.
	if resp, err := http.Get(url + "/metrics"); err != nil || resp.StatusCode != 401 {
		t.Fatalf("metrics without token: %v %v", resp, err)
	}

	// A 503 (a shard waiting for a refill past its bound) is retried, as a
	// buyer would; it is counted so the HTTP metrics can be checked.
	var confirmed, soldOut, unavailable, other atomic.Int64
	var next atomic.Int64
	var wg sync.WaitGroup
	for range clients {
		wg.Go(func() {
			for {
				n := next.Add(1)
				if n > buyers {
					return
				}
				for attempt := 0; attempt < 50; attempt++ {
					resp, err := http.Post(url+"/v1/items/m1/grab", "application/json",
						strings.NewReader(fmt.Sprintf(`{"user_id":"b%d"}`, n)))
					if err != nil {
						other.Add(1)
						break
					}
					io.Copy(io.Discard, resp.Body)
					resp.Body.Close()
					if resp.StatusCode == 503 {
						unavailable.Add(1)
						continue
					}
					switch resp.StatusCode {
					case 201:
						confirmed.Add(1)
					case 409:
						soldOut.Add(1)
					default:
						other.Add(1)
					}
					break
				}
			}
		})
	}
	// Scrape while the buyers run: every exposition parses and the item's
	// numbers add up in each.
	mid := 0
	for next.Load() < buyers {
		fams := scrape(t, url)
		sold := mustValue(t, fams, "seckill_item_sold_units", "item", "m1")
		left := mustValue(t, fams, "seckill_item_remaining_units", "item", "m1")
		if sold+left != stock {
			t.Fatalf("mid-sale: sold %v + remaining %v != %d", sold, left, stock)
		}
		mid++
	}
	wg.Wait()
	if other.Load() != 0 || confirmed.Load() != stock || confirmed.Load()+soldOut.Load() != buyers {
		t.Fatalf("sale: %d confirmed, %d sold out, %d other", confirmed.Load(), soldOut.Load(), other.Load())
	}

	// Orders are written behind the sale: poll until the writer is done.
	deadline := time.Now().Add(30 * time.Second)
	var fams map[string]*dto.MetricFamily
	for {
		fams = scrape(t, url)
		if v := value(fams, "seckill_orders_written_total"); v != nil && *v == stock {
			break
		}
		if time.Now().After(deadline) {
			t.Fatalf("orders written: %v, want %d", value(fams, "seckill_orders_written_total"), stock)
		}
		time.Sleep(50 * time.Millisecond)
	}
	checks := []struct {
		name   string
		labels []string
		want   float64
	}{
		{"seckill_grabs_total", []string{"item", "m1", "outcome", "confirmed"}, stock},
		{"seckill_grabs_total", []string{"item", "m1", "outcome", "sold_out"}, float64(soldOut.Load())},
		{"seckill_item_sold_units", []string{"item", "m1"}, stock},
		{"seckill_item_remaining_units", []string{"item", "m1"}, 0},
		{"seckill_item_stock_units", []string{"item", "m1"}, stock},
		{"seckill_item_sold_out", []string{"item", "m1"}, 1},
		{"seckill_http_requests_total", []string{"route", "grab", "code", "201"}, stock},
		{"seckill_http_requests_total", []string{"route", "grab", "code", "409"}, float64(soldOut.Load())},
		{"seckill_http_request_duration_seconds", []string{"route", "grab"}, float64(buyers + unavailable.Load())},
		{"seckill_grabs_total", []string{"item", "m1", "outcome", "unavailable"}, float64(unavailable.Load())},
		{"seckill_relay_lag_grabs", nil, 0},
		{"seckill_relayed_grabs_total", nil, stock},
		{"seckill_order_backlog_messages", nil, 0},
		{"seckill_dead_letters", nil, 0},
		{"seckill_nats_publish_errors_total", nil, 0},
	}
	for _, c := range checks {
		got := 0.0 // a counter never incremented has no series
		if v := value(fams, c.name, c.labels...); v != nil {
			got = *v
		} else if !strings.HasSuffix(c.name, "_total") {
			t.Errorf("no sample %s %v", c.name, c.labels)
		}
		if got != c.want {
			t.Errorf("%s %v = %v, want %v", c.name, c.labels, got, c.want)
		}
	}
	// Present and moving: group commits, Pebble's own, the runtime.
	for _, name := range []string{"seckill_commit_round_records", "seckill_commit_durable_seconds",
		"seckill_pebble_wal_fsync_seconds", "seckill_pebble_wal_written_bytes_total"} {
		if v := mustValue(t, fams, name); v <= 0 {
			t.Errorf("%s = %v, want > 0", name, v)
		}
	}
	records := fams["seckill_commit_round_records"].GetMetric()[0].GetHistogram().GetSampleSum()
	if records < stock {
		t.Errorf("group commits wrote %v records, want at least the %d grabs", records, stock)
	}
	for _, name := range []string{"seckill_pebble_disk_usage_bytes", "seckill_pebble_memtable_bytes",
		"seckill_pebble_compactions_total", "seckill_item_refills_total", "seckill_item_waiting_buyers",
		"go_goroutines", "process_resident_memory_bytes"} {
		mustValue(t, fams, name)
	}
	// Every metric the Grafana dashboard plots is one the node exports.
	board, err := os.ReadFile("../deploy/grafana/seckill.json")
	if err != nil {
		t.Fatal(err)
	}
	names := regexp.MustCompile(`\b(seckill|go|process)_[a-z_]+`).FindAllString(string(board), -1)
	for _, n := range names {
		base := strings.TrimSuffix(strings.TrimSuffix(strings.TrimSuffix(n, "_bucket"), "_sum"), "_count")
		if fams[base] == nil && fams[n] == nil {
			t.Errorf("deploy/grafana/seckill.json plots %s, which /metrics does not have", n)
		}
	}
	// No label may carry a buyer.
	for name, f := range fams {
		for _, m := range f.GetMetric() {
			for _, l := range m.GetLabel() {
				if strings.HasPrefix(l.GetValue(), "b") && l.GetName() != "route" {
					t.Errorf("%s has label %s=%q", name, l.GetName(), l.GetValue())
				}
			}
		}
	}
	t.Logf("%d scrapes during the sale; %d confirmed, %d sold out", mid, confirmed.Load(), soldOut.Load())
}

// TestReadyzAndPprof: /readyz is 200 on a serving node and 503 naming the
// cause once it drains, while /healthz stays 200 until then; profiles need
// the admin token.
func TestReadyzAndPprof(t *testing.T) {
	sys, err := Open(Config{DataDir: t.TempDir(), HTTPAddr: "127.0.0.1:0", AdminToken: metricsToken, NATSName: "test",
		OrderWriters: 1, Logger: slog.New(slog.DiscardHandler)})
	if err != nil {
		t.Fatal(err)
	}
	defer sys.Close()
	get := func(path, token string) (int, string) {
		req, _ := http.NewRequest("GET", sys.URL()+path, nil)
		if token != "" {
			req.Header.Set("Authorization", "Bearer "+token)
		}
		resp, err := http.DefaultClient.Do(req)
		if err != nil {
			t.Fatal(err)
		}
		defer resp.Body.Close()
		b, _ := io.ReadAll(resp.Body)
		return resp.StatusCode, string(b)
	}
	// The stream connects in the background: ready within a bound.
	deadline := time.Now().Add(10 * time.Second)
	for {
		code, body := get("/readyz", "")
		if code == 200 && body == `{"status":"ready"}` {
			break
		}
		if time.Now().After(deadline) {
			t.Fatalf("readyz: %d %s", code, body)
		}
		time.Sleep(20 * time.Millisecond)
	}
	for _, c := range []struct {
		path, token string
		code        int
		has         string
	}{
		{"/debug/pprof/", "", 401, "unauthorized"},
		{"/debug/pprof/", metricsToken, 200, "goroutine"},
		{"/debug/pprof/goroutine?debug=1", metricsToken, 200, "goroutine profile"},
		{"/debug/pprof/cmdline", metricsToken, 200, ""},
		{"/debug/pprof/heap", "wrong", 401, "unauthorized"},
	} {
		if code, body := get(c.path, c.token); code != c.code || !strings.Contains(body, c.has) {
			t.Errorf("%s: %d %.200s, want %d with %q", c.path, code, body, c.code, c.has)
		}
	}
	sys.Front.Drain()
	if code, body := get("/readyz", ""); code != 503 || !strings.Contains(body, `"draining"`) {
		t.Fatalf("readyz draining: %d %s", code, body)
	}
	if code, _ := get("/healthz", ""); code != 503 {
		t.Fatalf("healthz draining: %d", code)
	}
}

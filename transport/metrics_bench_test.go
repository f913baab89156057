package transport

import (
	"net"
	"strconv"
	"sync"
	"sync/atomic"
	"testing"
	"time"

	"github.com/seckill/seckill/actors"
	"github.com/seckill/seckill/engine"
	"github.com/seckill/seckill/metrics"
	"github.com/seckill/seckill/persistence"
	"github.com/valyala/fasthttp"
)

// Sold-out answers over loopback, in one run: the bare handler (the HTTP
// ceiling), the front without metrics and the front with metrics on,
// measured in interleaved slices because this machine's speed drifts.
const (
	soldOutSlice  = time.Second
	soldOutRounds = 5
	soldOutConns  = 64
)

// BenchmarkSoldOutMetrics reports each target's sold-out answers per
// second and metrics-on as a percentage of bare and of metrics-off.
// Run it alone: go test -run '^$' -bench SoldOutMetrics ./transport
func BenchmarkSoldOutMetrics(b *testing.B) {
	store, err := persistence.OpenPebble(b.TempDir())
	if err != nil {
		b.Fatal(err)
	}
	node, err := actors.Start(store, actors.Options{})
	if err != nil {
		b.Fatal(err)
	}
	defer node.Close()
	if err := node.CreateItem(engine.ItemConfig{Item: "gone", Stock: 1, Shards: 4, PerUserLimit: 1}); err != nil {
		b.Fatal(err)
	}
	svc := actors.NewLocal(node)
	if r := svc.Grab("gone", "first", 1, ""); r.Outcome != engine.Confirmed {
		b.Fatalf("first grab: %+v", r)
	}
	bare := func(ctx *fasthttp.RequestCtx) { writeJSON(ctx, fasthttp.StatusConflict, respSoldOut) }
	reg := metrics.NewRegistry()
	hm := NewHTTPMetrics()
	grabs := metrics.CountGrabs(svc)
	reg.MustRegister(hm, grabs)
	targets := []struct {
		name string
		srv  *fasthttp.Server
	}{
		{"bare", NewFastHTTP("bare", bare)},
		{"front", NewServer(svc, testToken, nil).FastHTTP()},
		{"metrics", NewServer(grabs, testToken, nil).WithMetrics(reg, hm).FastHTTP()},
	}
	addrs := make([]string, len(targets))
	for i, t := range targets {
		ln, err := net.Listen("tcp", "127.0.0.1:0")
		if err != nil {
			b.Fatal(err)
		}
		addrs[i] = ln.Addr().String()
		go t.srv.Serve(ln)
		defer t.srv.Shutdown()
	}
	var user atomic.Int64
	rates := make([]float64, len(targets))
	b.ResetTimer()
	for round := range soldOutRounds {
		for j := range targets {
			i := j
			if round%2 == 1 {
				i = len(targets) - 1 - j // alternate the order
			}
			n, took := soldOutSliceRun(b, addrs[i], &user)
			rates[i] += float64(n) / took.Seconds() / soldOutRounds
		}
	}
	b.StopTimer()
	for i, t := range targets {
		b.ReportMetric(rates[i], t.name+"_answers/s")
	}
	b.ReportMetric(100*rates[2]/rates[0], "metrics_%_of_bare")
	b.ReportMetric(100*rates[1]/rates[0], "front_%_of_bare")
	b.ReportMetric(100*rates[2]/rates[1], "metrics_%_of_front")
	if c := grabs.Totals()[metrics.KindSoldOut]; c == 0 {
		b.Fatal("metrics counted no sold-out answer")
	}
}

func soldOutSliceRun(b *testing.B, addr string, user *atomic.Int64) (int64, time.Duration) {
	c := &fasthttp.HostClient{Addr: addr, MaxConns: soldOutConns}
	var n atomic.Int64
	var wg sync.WaitGroup
	start := time.Now()
	stop := start.Add(soldOutSlice)
	for range soldOutConns {
		wg.Go(func() {
			req, resp := fasthttp.AcquireRequest(), fasthttp.AcquireResponse()
			defer fasthttp.ReleaseRequest(req)
			defer fasthttp.ReleaseResponse(resp)
			req.SetRequestURI("http://" + addr + "/v1/items/gone/grab")
			req.Header.SetMethod("POST")
			var body []byte
			for time.Now().Before(stop) {
				body = append(body[:0], `{"user_id":"u`...)
				body = strconv.AppendInt(body, user.Add(1), 10)
				req.SetBody(append(body, `"}`...))
				if err := c.Do(req, resp); err != nil || resp.StatusCode() != 409 {
					b.Errorf("answer %d %v", resp.StatusCode(), err)
					return
				}
				n.Add(1)
			}
		})
	}
	wg.Wait()
	return n.Load(), time.Since(start)
}

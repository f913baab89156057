package transport

import (
	"bytes"
	"math"
	"slices"
	"sync/atomic"
	"time"

	"github.com/prometheus/client_golang/prometheus"
	"github.com/prometheus/client_golang/prometheus/promhttp"
	"github.com/valyala/fasthttp"
	"github.com/valyala/fasthttp/fasthttpadaptor"
)

// route is what a request is counted under: a fixed set, never the path
// itself (item ids and grab ids are the client's choice).
type route uint8

const (
	routeGrab route = iota
	routeItem
	routeTime
	routeHealthz
	routeReadyz
	routeOrder
	routeOrderPay
	routeOrderCancel
	routeAdminItems
	routeAdminOrders
	routeAdminReconcile
	routeAdminCluster
	routeAdminDashboard
	routeAdminEvents
	routeMetrics
	routeOpenAPI
	routePprof
	routeOther
	numRoutes
)

var routeNames = [numRoutes]string{"grab", "item", "time", "healthz", "readyz", "order", "order_pay", "order_cancel",
	"admin_items", "admin_orders_dead", "admin_reconcile", "admin_cluster", "admin_dashboard", "admin_events",
	"metrics", "openapi", "pprof", "other"}

// statusCodes are the codes counted under their own label; any other is
// counted as "other".
var statusCodes = [...]int{200, 201, 202, 400, 401, 403, 404, 405, 408, 409, 413, 429, 431, 500, 503}

const numStatus = len(statusCodes) + 1

func statusIndex(code int) int {
	for i, c := range statusCodes {
		if c == code {
			return i
		}
	}
	return len(statusCodes)
}

var (
	pathDebugPprof = []byte("/debug/pprof")
	suffixCancel   = []byte("/cancel")
)

func routeOf(path []byte) route {
	switch {
	case bytes.HasPrefix(path, pathV1Items):
		if bytes.HasSuffix(path, suffixGrab) {
			return routeGrab
		}
		return routeItem
	case bytes.HasPrefix(path, pathV1Orders):
		switch {
		case bytes.HasSuffix(path, suffixPay):
			return routeOrderPay
		case bytes.HasSuffix(path, suffixCancel):
			return routeOrderCancel
		}
		return routeOrder
	case bytes.HasPrefix(path, pathAdminItems):
		return routeAdminItems
	case bytes.HasPrefix(path, pathAdminOrders):
		return routeAdminOrders
	case bytes.HasPrefix(path, pathAdminCluster):
		return routeAdminCluster
	case bytes.HasPrefix(path, pathDebugPprof):
		return routePprof
	}
	switch string(path) {
	case "/v1/time":
		return routeTime
	case pathHealthz:
		return routeHealthz
	case pathReadyz:
		return routeReadyz
	case pathReconcile:
		return routeAdminReconcile
	case pathDashboard:
		return routeAdminDashboard
	case pathEvents:
		return routeAdminEvents
	case pathMetrics:
		return routeMetrics
	case pathOpenAPI:
		return routeOpenAPI
	}
	return routeOther
}

// HTTPMetrics counts answers by route and status and times them. The hot
// path costs a route lookup (a few prefix compares), a bucket search over
// 16 bounds and three uncontended atomic adds: the counters are striped by
// connection (httpStripes), so the two cores serving two connections do not
// bounce one cache line between them, and the latency sum is kept in
// integer nanoseconds (client_golang's float sum is a compare-and-swap
// loop, which contends). Collect sums the stripes.
type HTTPMetrics struct {
	stripes [httpStripes]httpStripe
}

// httpStripes is a power of two; a request's stripe is its connection's id
// modulo it.
const httpStripes = 16

type httpStripe struct {
	counts  [numRoutes][numStatus]atomic.Uint64
	buckets [numRoutes][numBuckets + 1]atomic.Uint64 // per bucket (not cumulative), the last +Inf
	sumNs   [numRoutes]atomic.Uint64
}

// LatencyBuckets (seconds) span a sold-out answer on an idle machine
// (100 µs) to the longest a buyer is kept (10 s).
var LatencyBuckets = []float64{0.0001, 0.00025, 0.0005, 0.001, 0.0025, 0.005, 0.01, 0.025, 0.05, 0.1, 0.25, 0.5, 1, 2.5, 5, 10}

const numBuckets = 16

var bucketNs = func() (b [numBuckets]int64) {
	for i, v := range LatencyBuckets {
		b[i] = int64(v * 1e9)
	}
	return b
}()

// NewHTTPMetrics returns the HTTP front's metrics, to register and to give
// to Server.WithMetrics.
func NewHTTPMetrics() *HTTPMetrics { return &HTTPMetrics{} }

var (
	httpRequestsDesc = prometheus.NewDesc("seckill_http_requests_total", "HTTP answers by route and status code.",
		[]string{"route", "code"}, nil)
	httpDurationDesc = prometheus.NewDesc("seckill_http_request_duration_seconds",
		"Time from reading a request to handing its answer to the connection, by route.", []string{"route"}, nil)
)

func (m *HTTPMetrics) observe(conn uint64, r route, status int, d time.Duration) {
	st := &m.stripes[conn&(httpStripes-1)]
	st.counts[r][statusIndex(status)].Add(1)
	if r == routeAdminEvents { // a stream: its duration is the viewer's
		return
	}
	ns := int64(d)
	i := 0
	for i < numBuckets && ns > bucketNs[i] {
		i++
	}
	st.buckets[r][i].Add(1)
	st.sumNs[r].Add(uint64(max(ns, 0)))
}

// Describe implements prometheus.Collector.
func (m *HTTPMetrics) Describe(ch chan<- *prometheus.Desc) {
	ch <- httpRequestsDesc
	ch <- httpDurationDesc
}

// Collect implements prometheus.Collector.
func (m *HTTPMetrics) Collect(ch chan<- prometheus.Metric) {
	for r := range numRoutes {
		for i := range numStatus {
			var v uint64
			for s := range m.stripes {
				v += m.stripes[s].counts[r][i].Load()
			}
			if v == 0 {
				continue
			}
			code := "other"
			if i < len(statusCodes) {
				code = itoa(statusCodes[i])
			}
			ch <- prometheus.MustNewConstMetric(httpRequestsDesc, prometheus.CounterValue, float64(v), routeNames[r], code)
		}
		bounds, cum, sum := m.histogram(route(r))
		if cum[len(cum)-1] == 0 {
			continue
		}
		buckets := make(map[float64]uint64, numBuckets)
		for i := range numBuckets {
			buckets[bounds[i]] = cum[i]
		}
		ch <- prometheus.MustNewConstHistogram(httpDurationDesc, cum[len(cum)-1], sum, buckets, routeNames[r])
	}
}

// histogram sums route r's stripes: bucket upper bounds (seconds, the last
// +Inf), cumulative counts, and the sum in seconds.
func (m *HTTPMetrics) histogram(r route) (bounds []float64, cum []uint64, sum float64) {
	cum = make([]uint64, numBuckets+1)
	var ns uint64
	for s := range m.stripes {
		st := &m.stripes[s]
		for i := range cum {
			cum[i] += st.buckets[r][i].Load()
		}
		ns += st.sumNs[r].Load()
	}
	for i := 1; i < len(cum); i++ {
		cum[i] += cum[i-1]
	}
	return append(slices.Clone(LatencyBuckets), math.Inf(1)), cum, float64(ns) / 1e9
}

// grabLatency returns the grab route's cumulative histogram: bucket upper
// bounds (seconds, the last +Inf) and counts, for the dashboard's quantiles.
func (m *HTTPMetrics) grabLatency() (bounds []float64, counts []uint64) {
	bounds, counts, _ = m.histogram(routeGrab)
	return bounds, counts
}

// answers sums the answers of route r by status class (2xx, 4xx, 5xx).
func (m *HTTPMetrics) answers(r route) (ok, client, server uint64) {
	for s := range m.stripes {
		for i := range m.stripes[s].counts[r] {
			v := m.stripes[s].counts[r][i].Load()
			switch {
			case i == len(statusCodes):
				server += v
			case statusCodes[i] < 300:
				ok += v
			case statusCodes[i] < 500:
				client += v
			default:
				server += v
			}
		}
	}
	return ok, client, server
}

func itoa(n int) string {
	var b [8]byte
	return string(fasthttp.AppendUint(b[:0], n))
}

// WithMetrics makes the front count its answers in hm and serve g (which
// should hold hm) at GET /metrics, behind the admin token.
func (s *Server) WithMetrics(g prometheus.Gatherer, hm *HTTPMetrics) *Server {
	s.httpMetrics = hm
	s.metricsHandler = fasthttpadaptor.NewFastHTTPHandler(promhttp.HandlerFor(g, promhttp.HandlerOpts{
		ErrorHandling: promhttp.ContinueOnError, MaxRequestsInFlight: MaxScrapesInFlight}))
	return s
}

// MaxScrapesInFlight bounds concurrent /metrics scrapes: a scrape reads
// every item's view and asks the stream, so a loop of them must not take
// the node's CPU from buyers.
const MaxScrapesInFlight = 4

// handler is h (Handle, or HandleAdmin on the admin listener), with failed
// answers logged (rate-limited) and, when metrics are on, every answer
// counted.
func (s *Server) handler(h fasthttp.RequestHandler) fasthttp.RequestHandler {
	hm := s.httpMetrics
	return func(ctx *fasthttp.RequestCtx) {
		h(ctx)
		status := ctx.Response.StatusCode()
		if hm != nil {
			hm.observe(ctx.ConnID(), routeOf(ctx.Path()), status, time.Since(ctx.Time()))
		}
		if status >= 400 && status != 409 {
			s.failed(ctx, status)
		}
	}
}

// Package bench measures seckill over HTTP: load generators, the targets to
// compare it with (a bare fasthttp handler, the ceiling of the machine), and
// the report.
package bench

import (
	"context"
	"fmt"
	"strconv"
	"sync"
	"sync/atomic"
	"time"

	"github.com/HdrHistogram/hdrhistogram-go"
	"github.com/valyala/fasthttp"
)

const (
	// MaxConns bounds the connections one run opens.
	MaxConns = 4096
	// histMaxMicros is the largest latency recorded (60 s); slower answers
	// are clamped to it rather than dropped.
	histMaxMicros = 60_000_000
	// clientTimeout bounds one request; a timeout counts as an error.
	clientTimeout = 10 * time.Second
)

// Request is one request a workload wants sent.
type Request struct {
	Path string
	Body []byte
	Key  string // Idempotency-Key, empty for none
}

// Workload builds the i-th request (i counts from 0 across all connections).
// It appends to body to avoid allocation.
type Workload func(i int64, body []byte) Request

// Result is what one run measured.
type Result struct {
	Target   string
	Workload string
	Conns    int
	Elapsed  time.Duration
	Requests int64
	Errors   int64 // transport errors and timeouts
	ByStatus map[int]int64
	Latency  *hdrhistogram.Histogram // microseconds
}

// Rate is achieved requests per second.
func (r Result) Rate() float64 { return float64(r.Requests) / r.Elapsed.Seconds() }

// RateOf is achieved answers per second with the given HTTP status.
func (r Result) RateOf(status int) float64 { return float64(r.ByStatus[status]) / r.Elapsed.Seconds() }

// Quantile returns a latency quantile (0..100).
func (r Result) Quantile(q float64) time.Duration {
	return time.Duration(r.Latency.ValueAtQuantile(q)) * time.Microsecond
}

// ClosedLoop sends requests on conns connections, each waiting for its
// answer before sending again, for d or until max requests (0: no limit).
// Closed loop finds the saturation point; its latencies are per answer.
func ClosedLoop(ctx context.Context, addr string, conns int, d time.Duration, max int64, w Workload) (Result, error) {
	if conns < 1 || conns > MaxConns {
		return Result{}, fmt.Errorf("conns must be 1..%d", MaxConns)
	}
	client := &fasthttp.HostClient{
		Addr:                addr,
		MaxConns:            conns,
		ReadTimeout:         clientTimeout,
		WriteTimeout:        clientTimeout,
		MaxIdleConnDuration: time.Minute,
	}
	defer client.CloseIdleConnections()
	ctx, cancel := context.WithTimeout(ctx, d)
	defer cancel()
	var (
		next   atomic.Int64
		mu     sync.Mutex
		res    = Result{Conns: conns, ByStatus: map[int]int64{}, Latency: newHist()}
		wg     sync.WaitGroup
		hostHd = []byte(addr)
	)
	start := time.Now()
	for range conns {
		wg.Go(func() {
			h := newHist()
			status := map[int]int64{}
			var errs, n int64
			req, resp := fasthttp.AcquireRequest(), fasthttp.AcquireResponse()
			defer fasthttp.ReleaseRequest(req)
			defer fasthttp.ReleaseResponse(resp)
			body := make([]byte, 0, 256)
			for ctx.Err() == nil {
				i := next.Add(1) - 1
				if max > 0 && i >= max {
					break
				}
				r := w(i, body[:0])
				body = r.Body[:0]
				req.Reset()
				req.Header.SetMethod(fasthttp.MethodPost)
				req.SetRequestURI(r.Path)
				req.Header.SetHostBytes(hostHd)
				req.Header.SetContentType("application/json")
				if r.Key != "" {
					req.Header.Set("Idempotency-Key", r.Key)
				}
				req.SetBodyRaw(r.Body)
				t0 := time.Now()
				err := client.DoTimeout(req, resp, clientTimeout)
				lat := time.Since(t0).Microseconds()
				n++
				if err != nil {
					errs++
					continue
				}
				status[resp.StatusCode()]++
				_ = h.RecordValue(min(lat, histMaxMicros))
			}
			mu.Lock()
			res.Requests += n
			res.Errors += errs
			for k, v := range status {
				res.ByStatus[k] += v
			}
			res.Latency.Merge(h)
			mu.Unlock()
		})
	}
	wg.Wait()
	res.Elapsed = time.Since(start)
	return res, nil
}

func newHist() *hdrhistogram.Histogram { return hdrhistogram.New(1, histMaxMicros, 3) }

// GrabBody appends {"user_id":"<prefix><n>","qty":1} to b.
func GrabBody(b []byte, prefix string, n int64) []byte {
	b = append(b, `{"user_id":"`...)
	b = append(b, prefix...)
	b = strconv.AppendInt(b, n, 10)
	return append(b, `","qty":1}`...)
}

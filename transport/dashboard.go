package transport

import (
	"bufio"
	"context"
	_ "embed"
	"encoding/json"
	"math"
	"time"

	"github.com/valyala/fasthttp"
)

// The live dashboard: GET /admin/dashboard is one page, embedded, that
// asks for the admin token once (kept in the tab's sessionStorage, never
// in a URL) and reads GET /admin/v1/events, a server-sent event stream of
// one JSON frame every BoardInterval, with fetch() so that the token goes
// in the Authorization header (EventSource cannot send one).
const (
	// BoardInterval is how often a frame is sent: the issue asks for at
	// least once a second.
	BoardInterval = time.Second
	// MaxEventStreams bounds open event streams: each reads every item's
	// view and asks the stream once a second.
	MaxEventStreams = 16
	// MaxEventStreamAge ends a stream after this long; the page reconnects
	// (a stream must not outlive a token change forever).
	MaxEventStreamAge = time.Hour
	// MaxBoardItems bounds the items a frame carries.
	MaxBoardItems = 50
	// boardAskTimeout bounds a frame's questions to the stream.
	boardAskTimeout = 500 * time.Millisecond
)

//go:embed dashboard.html
var dashboardPage []byte

// Board is where the dashboard's event stream reads what the front alone
// does not know. Any func may be nil.
type Board struct {
	// Outcomes: grab outcomes so far, summed over items, by kind.
	Outcomes func() map[string]uint64
	// RelayLag: confirmed grabs not yet in the stream.
	RelayLag func() int64
	// Backlog: stream messages not yet orders; Dead: dead letters.
	Backlog, Dead func(ctx context.Context) (int64, error)
}

// WithBoard gives the event stream its sources.
func (s *Server) WithBoard(b *Board) *Server {
	s.board = b
	return s
}

func (s *Server) dashboard(ctx *fasthttp.RequestCtx) {
	ctx.SetStatusCode(fasthttp.StatusOK)
	ctx.SetContentType("text/html; charset=utf-8")
	ctx.Response.Header.Set("Cache-Control", "no-cache")
	// The page loads nothing from elsewhere and runs only its own script.
	ctx.Response.Header.Set("Content-Security-Policy",
		"default-src 'none'; script-src 'unsafe-inline'; style-src 'unsafe-inline'; connect-src 'self'; img-src data:")
	ctx.SetBody(dashboardPage)
}

// frame is one event of the stream.
type frame struct {
	T        int64             `json:"t"`
	Items    []boardItem       `json:"items"`
	Answers  map[string]uint64 `json:"answers"` // cumulative, by kind
	HTTP     [3]uint64         `json:"http"`    // grab answers 2xx, 4xx, 5xx, cumulative
	P50      *float64          `json:"p50"`     // seconds, grabs answered since the last frame
	P99      *float64          `json:"p99"`
	RelayLag *int64            `json:"relay_lag"`
	Backlog  *int64            `json:"backlog"`
	Dead     *int64            `json:"dead"`
}

type boardItem struct {
	Item      string `json:"item"`
	Status    string `json:"status"`
	Stock     int64  `json:"stock"`
	Remaining int64  `json:"remaining"`
	Sold      int64  `json:"sold"`
	Pool      int64  `json:"pool"`
	InTransit int64  `json:"in_transit"`
}

func (s *Server) events(ctx *fasthttp.RequestCtx) {
	if s.streams.Add(1) > MaxEventStreams {
		s.streams.Add(-1)
		writeError(ctx, fasthttp.StatusTooManyRequests, "too_many_streams", "at most 16 event streams at once")
		return
	}
	ctx.SetStatusCode(fasthttp.StatusOK)
	ctx.SetContentType("text/event-stream")
	ctx.Response.Header.Set("Cache-Control", "no-cache")
	conn := ctx.Conn()
	started := time.Now()
	ctx.SetBodyStreamWriter(func(w *bufio.Writer) {
		defer s.streams.Add(-1)
		var last []uint64
		tick := time.NewTicker(BoardInterval)
		defer tick.Stop()
		for {
			f := s.frame(&last)
			b, _ := json.Marshal(f)
			// The server's write timeout counts from the answer's start: a
			// stream moves it on before each frame.
			conn.SetWriteDeadline(time.Now().Add(WriteTimeout))
			w.WriteString("data: ")
			w.Write(b)
			w.WriteString("\n\n")
			if w.Flush() != nil {
				return
			}
			<-tick.C
			if s.draining.Load() || time.Since(started) > MaxEventStreamAge {
				return
			}
		}
	})
}

// frame reads the sale once; last carries the grab latency histogram's
// counts from the previous frame, for this interval's quantiles.
func (s *Server) frame(last *[]uint64) frame {
	f := frame{T: s.svc.Now()}
	for i, it := range s.svc.Items() {
		if i == MaxBoardItems {
			break
		}
		f.Items = append(f.Items, boardItem{Item: it.Config.Item, Status: itemStatus(it, f.T), Stock: it.Balance.Stock,
			Remaining: it.Balance.Remaining(), Sold: it.Balance.Sold, Pool: it.Balance.Pool, InTransit: it.Balance.InTransit})
	}
	if hm := s.httpMetrics; hm != nil {
		f.HTTP[0], f.HTTP[1], f.HTTP[2] = hm.answers(routeGrab)
		bounds, counts := hm.grabLatency()
		if len(*last) == len(counts) {
			delta := make([]uint64, len(counts))
			for i := range counts {
				delta[i] = counts[i] - (*last)[i]
			}
			f.P50, f.P99 = quantile(bounds, delta, 0.5), quantile(bounds, delta, 0.99)
		}
		*last = counts
	}
	b := s.board
	if b == nil {
		return f
	}
	if b.Outcomes != nil {
		f.Answers = b.Outcomes()
	}
	if b.RelayLag != nil {
		v := b.RelayLag()
		f.RelayLag = &v
	}
	ask := func(q func(context.Context) (int64, error)) *int64 {
		if q == nil {
			return nil
		}
		c, cancel := context.WithTimeout(context.Background(), boardAskTimeout)
		defer cancel()
		v, err := q(c)
		if err != nil {
			return nil
		}
		return &v
	}
	f.Backlog, f.Dead = ask(b.Backlog), ask(b.Dead)
	return f
}

// quantile estimates the q-quantile of a cumulative histogram by linear
// interpolation within the bucket that holds it, as Prometheus's
// histogram_quantile does; nil when the histogram is empty.
func quantile(bounds []float64, cum []uint64, q float64) *float64 {
	if len(cum) == 0 || cum[len(cum)-1] == 0 {
		return nil
	}
	rank := q * float64(cum[len(cum)-1])
	for i, c := range cum {
		if float64(c) < rank {
			continue
		}
		lo, below := 0.0, uint64(0)
		if i > 0 {
			lo, below = bounds[i-1], cum[i-1]
		}
		in := c - below
		v := bounds[i]
		if math.IsInf(v, 1) {
			return &lo // past the last bound: say the last bound, as Prometheus does
		}
		if in > 0 {
			v = lo + (bounds[i]-lo)*(rank-float64(below))/float64(in)
		}
		return &v
	}
	return nil
}

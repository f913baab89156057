package transport

import (
	"log/slog"
	"sync/atomic"
	"time"

	"github.com/valyala/fasthttp"
)

// Failed requests are logged one line per kind per FailedLogInterval at
// most; the next line says how many were left out. A flood of bad or
// refused requests (a bot, a broken client, an outage) thus writes a few
// lines a second, not one per request, and cannot fill the disk.
const (
	FailedLogInterval = time.Second
	// maxLoggedPath bounds the path written in a line (it is the client's).
	maxLoggedPath = 128
)

// failKind groups failed answers: 409 and 404 are answers of the sale
// (sold out, unknown item), not failures, and are not logged.
type failKind uint8

const (
	failBadRequest   failKind = iota // 400, 405, 408, 413, 431
	failUnauthorized                 // 401, 403
	failUnavailable                  // 503
	failInternal                     // 500 and any other 5xx
	failTooMany                      // 429
	numFailKinds
)

var failNames = [numFailKinds]string{"bad_request", "unauthorized", "unavailable", "internal", "too_many"}

func failKindOf(status int) (failKind, bool) {
	switch {
	case status < 400, status == 404, status == 409:
		return 0, false
	case status == 401, status == 403:
		return failUnauthorized, true
	case status == 429:
		return failTooMany, true
	case status == 503:
		return failUnavailable, true
	case status >= 500:
		return failInternal, true
	}
	return failBadRequest, true
}

type failLog struct {
	kinds [numFailKinds]struct {
		next       atomic.Int64 // unix nanos before which lines are left out
		suppressed atomic.Int64
	}
}

// failed logs ctx's failed answer unless its kind logged one within the
// interval.
func (s *Server) failed(ctx *fasthttp.RequestCtx, status int) {
	k, ok := failKindOf(status)
	if !ok {
		return
	}
	st := &s.fails.kinds[k]
	now := time.Now().UnixNano()
	next := st.next.Load()
	if now < next || !st.next.CompareAndSwap(next, now+int64(FailedLogInterval)) {
		st.suppressed.Add(1)
		return
	}
	path := ctx.Path()
	if len(path) > maxLoggedPath {
		path = path[:maxLoggedPath]
	}
	body := ctx.Response.Body()
	if len(body) > 256 {
		body = body[:256]
	}
	level := slog.LevelInfo
	if status >= 500 {
		level = slog.LevelWarn
	}
	s.log.Log(nil, level, "request failed", "kind", failNames[k], "status", status, "method", string(ctx.Method()),
		"path", string(path), "remote", ctx.RemoteIP().String(), "answer", string(body),
		"suppressed", st.suppressed.Swap(0))
}

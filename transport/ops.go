package transport

import (
	"net/http/pprof"
	"strings"
	"sync/atomic"

	"github.com/valyala/fasthttp"
	"github.com/valyala/fasthttp/fasthttpadaptor"
)

// Paths of the operator's endpoints (ops): readiness, metrics, the API's
// own description, profiles, the live dashboard and its event stream.
const (
	pathHealthz   = "/healthz"
	pathReadyz    = "/readyz"
	pathMetrics   = "/metrics"
	pathOpenAPI   = "/openapi.json"
	pathDashboard = "/admin/dashboard"
	pathEvents    = "/admin/v1/events"
)

// opsState is what the operator's endpoints need, set by the With* calls
// before serving.
type opsState struct {
	httpMetrics    *HTTPMetrics // nil: metrics off
	metricsHandler fasthttp.RequestHandler
	readiness      Readiness
	board          *Board // nil: the event stream has only what the front knows
	streams        atomic.Int32
	fails          failLog
}

// Readiness returns what stops the node from confirming grabs now, empty
// when nothing does.
type Readiness func() []string

// WithReadiness makes GET /readyz answer from r.
func (s *Server) WithReadiness(r Readiness) *Server {
	s.readiness = r
	return s
}

var (
	pprofIndex   = fasthttpadaptor.NewFastHTTPHandlerFunc(pprof.Index)
	pprofCmdline = fasthttpadaptor.NewFastHTTPHandlerFunc(pprof.Cmdline)
	pprofProfile = fasthttpadaptor.NewFastHTTPHandlerFunc(pprof.Profile)
	pprofSymbol  = fasthttpadaptor.NewFastHTTPHandlerFunc(pprof.Symbol)
	pprofTrace   = fasthttpadaptor.NewFastHTTPHandlerFunc(pprof.Trace)
)

// ops answers the public operator's endpoints (readiness and the API's own
// description); false when path is none of them. Those that show the
// node's insides (metrics, profiles, the dashboard and its event stream)
// are admin paths (isAdminPath): they need the admin token like every
// admin call and go wherever the admin API is served (adminOps).
func (s *Server) ops(ctx *fasthttp.RequestCtx, path []byte) bool {
	switch string(path) {
	case pathReadyz:
		if s.method(ctx, fasthttp.MethodGet) {
			s.ready(ctx)
		}
	case pathOpenAPI:
		if s.method(ctx, fasthttp.MethodGet) {
			ctx.Response.Header.Set("Cache-Control", "no-cache")
			writeJSON(ctx, fasthttp.StatusOK, openAPIDoc)
		}
	default:
		return false
	}
	return true
}

// isOpsAdminPath: the operator's endpoints outside /admin/ that are admin
// ones all the same.
func isOpsAdminPath(path []byte) bool {
	p := string(path)
	return p == pathMetrics || p == "/debug/pprof" || strings.HasPrefix(p, "/debug/pprof/")
}

// adminOps answers the operator's admin endpoints once the token was
// checked; false when path is none of them.
func (s *Server) adminOps(ctx *fasthttp.RequestCtx, path []byte) bool {
	switch p := string(path); {
	case p == pathMetrics:
		if !s.method(ctx, fasthttp.MethodGet) {
			return true
		}
		if s.metricsHandler == nil {
			writeError(ctx, fasthttp.StatusNotFound, "not_found", "metrics are off")
			return true
		}
		s.metricsHandler(ctx)
	case p == pathEvents:
		if s.method(ctx, fasthttp.MethodGet) {
			s.events(ctx)
		}
	case p == "/debug/pprof" || strings.HasPrefix(p, "/debug/pprof/"):
		s.pprof(ctx, strings.TrimPrefix(strings.TrimPrefix(p, "/debug/pprof"), "/"))
	default:
		return false
	}
	return true
}

func (s *Server) pprof(ctx *fasthttp.RequestCtx, name string) {
	switch name {
	case "cmdline":
		pprofCmdline(ctx)
	case "profile":
		pprofProfile(ctx)
	case "symbol":
		pprofSymbol(ctx)
	case "trace":
		pprofTrace(ctx)
	default:
		if ctx.URI().Path()[len(ctx.URI().Path())-1] != '/' && name == "" {
			ctx.Redirect("/debug/pprof/", fasthttp.StatusMovedPermanently)
			return
		}
		pprofIndex(ctx)
	}
}

// ready answers 200 when the node can confirm grabs now, else 503 with
// every reason.
func (s *Server) ready(ctx *fasthttp.RequestCtx) {
	var problems []string
	if s.draining.Load() {
		problems = append(problems, "draining")
	}
	if s.readiness != nil {
		problems = append(problems, s.readiness()...)
	}
	if len(problems) == 0 {
		writeJSON(ctx, fasthttp.StatusOK, []byte(`{"status":"ready"}`))
		return
	}
	b := append([]byte(nil), `{"status":"not_ready","problems":[`...)
	for i, p := range problems {
		if i > 0 {
			b = append(b, ',')
		}
		b = appendJSONString(b, p)
	}
	ctx.Response.Header.Set("Retry-After", RetryAfterSeconds)
	writeJSON(ctx, fasthttp.StatusServiceUnavailable, append(b, "]}"...))
}

// Package transport is seckill's HTTP front: a fasthttp server that decodes
// and bounds every request, hands it to the sale (a sale.Service, the local
// node or a cluster) and writes the v1 JSON contract. It knows nothing of
// how a sale runs: it imports sale and engine, never actors. Who may ask
// (buyer tokens, payment signatures) and how often (rate limits) it asks
// of auth and limit before the sale sees anything (security.go); the
// admin API's routes are in one place (admin.go).
package transport

import (
	"bytes"
	"errors"
	"log/slog"
	"net"
	"os"
	"strconv"
	"sync/atomic"
	"time"

	"github.com/seckill/seckill/engine"
	"github.com/seckill/seckill/sale"
	"github.com/valyala/fasthttp"
)

const (
	// MaxHeaderBytes bounds the request line and headers; a purchase needs
	// a few hundred bytes.
	MaxHeaderBytes = 8 << 10
	// MaxConns bounds open connections so a flood cannot exhaust memory.
	MaxConns = 100_000
	// ReadTimeout and WriteTimeout drop clients that trickle bytes.
	ReadTimeout  = 10 * time.Second
	WriteTimeout = 10 * time.Second
	// IdleTimeout closes keep-alive connections nobody uses.
	IdleTimeout = 60 * time.Second
	// RetryAfterSeconds is what a 503 asks clients to wait.
	RetryAfterSeconds = "1"
)

// Server answers the v1 HTTP contract.
type Server struct {
	svc         sale.Service
	adminDigest [32]byte // SHA-256 of "Bearer <admin token>"
	adminApart  bool     // the admin API has its own listener
	log         *slog.Logger
	draining    atomic.Bool
	sec         security
	orders      sale.Orders
	// localOrders answers the order calls other nodes of the cluster
	// make (admin calls, under pathPeerOrders).
	localOrders sale.Orders
	dead        sale.DeadLetters
	reconcile   sale.Reconciler
	cluster     sale.Cluster // nil on a single node
	opsState                 // metrics, readiness, dashboard (ops.go)
	storeHealth StoreHealth  // nil: /healthz names no stores
}

// NewServer returns the HTTP front of svc. Admin calls must carry
// "Authorization: Bearer <adminToken>".
func NewServer(svc sale.Service, adminToken string, log *slog.Logger) *Server {
	if log == nil {
		log = slog.Default()
	}
	s := &Server{svc: svc, log: log}
	s.sec.Now = time.Now
	s.setAdminToken(adminToken)
	return s
}

// FastHTTP returns a fasthttp server configured with seckill's limits.
func (s *Server) FastHTTP() *fasthttp.Server {
	srv := NewFastHTTP("seckill", s.handler(s.Handle))
	srv.ErrorHandler = s.transportError
	srv.Logger = fasthttpLogger{s.log}
	return srv
}

// NewFastHTTP returns a fasthttp server running h with seckill's limits
// and timeouts: the front's settings, which the bench harness's bare
// handler shares so that it measures the same HTTP ceiling.
func NewFastHTTP(name string, h fasthttp.RequestHandler) *fasthttp.Server {
	return &fasthttp.Server{
		Handler:                      h,
		Name:                         name,
		MaxRequestBodySize:           MaxBodyBytes,
		ReadBufferSize:               MaxHeaderBytes,
		ReadTimeout:                  ReadTimeout,
		WriteTimeout:                 WriteTimeout,
		IdleTimeout:                  IdleTimeout,
		Concurrency:                  MaxConns,
		NoDefaultContentType:         true,
		DisablePreParseMultipartForm: true,
		// On SIGTERM, idle keep-alive connections are closed at once rather
		// than holding the drain until they time out.
		CloseOnShutdown: true,
	}
}

// Drain makes /healthz answer 503 so balancers stop sending traffic.
func (s *Server) Drain() { s.draining.Store(true) }

var (
	pathV1Items    = []byte("/v1/items/")
	pathAdminItems = []byte("/admin/v1/items")
	suffixGrab     = []byte("/grab")
)

func (s *Server) recoverPanic(ctx *fasthttp.RequestCtx) {
	if p := recover(); p != nil {
		s.log.Error("handler panic", "path", string(ctx.Path()), "panic", p)
		ctx.ResetBody()
		writeError(ctx, fasthttp.StatusInternalServerError, "internal", "internal error")
	}
}

// Handle routes one request of the public listener.
func (s *Server) Handle(ctx *fasthttp.RequestCtx) {
	defer s.recoverPanic(ctx)
	path := ctx.Path()
	if isAdminPath(path) {
		if s.adminApart {
			writeError(ctx, fasthttp.StatusNotFound, "not_found", "no such path")
			return
		}
		s.handleAdmin(ctx, path)
		return
	}
	if !s.admitClient(ctx, path) {
		return
	}
	switch {
	case bytes.HasPrefix(path, pathV1Items):
		rest := path[len(pathV1Items):]
		if item, ok := bytes.CutSuffix(rest, suffixGrab); ok {
			if !s.method(ctx, fasthttp.MethodPost) {
				return
			}
			s.grab(ctx, item)
			return
		}
		if !s.method(ctx, fasthttp.MethodGet) {
			return
		}
		s.publicItem(ctx, rest)
	case string(path) == "/v1/time":
		if s.method(ctx, fasthttp.MethodGet) {
			b := append(make([]byte, 0, 32), `{"now_ms":`...)
			b = strconv.AppendInt(b, s.svc.Now(), 10)
			writeJSON(ctx, fasthttp.StatusOK, append(b, '}'))
		}
	case string(path) == "/healthz":
		s.healthz(ctx)
	case bytes.HasPrefix(path, pathV1Orders):
		s.order(ctx, path[len(pathV1Orders):])
	default:
		if !s.ops(ctx, path) {
			writeError(ctx, fasthttp.StatusNotFound, "not_found", "no such path")
		}
	}
}

func (s *Server) method(ctx *fasthttp.RequestCtx, m string) bool {
	if string(ctx.Method()) == m {
		return true
	}
	ctx.Response.Header.Set("Allow", m)
	writeError(ctx, fasthttp.StatusMethodNotAllowed, "method_not_allowed", "use "+m)
	return false
}

var (
	respSoldOut      = []byte(`{"status":"sold_out"}`)
	respLimitReached = []byte(`{"status":"limit_reached"}`)
	respNotStarted   = []byte(`{"status":"not_started"}`)
	respEnded        = []byte(`{"status":"ended"}`)
	respUnknownItem  = []byte(`{"status":"unknown_item"}`)
	respUnavailable  = []byte(`{"status":"unavailable"}`)
	respOverloaded   = []byte(`{"status":"unavailable","error":"shard queue full"}`)
	respOK           = []byte(`{"status":"ok"}`)
	respDraining     = []byte(`{"status":"draining"}`)

	errBadItemID = "item id must be 1-" + strconv.Itoa(MaxIDLen) + " bytes of [A-Za-z0-9_.:-]"
	errBadKey    = "Idempotency-Key must be 1-" + strconv.Itoa(engine.MaxKeyLen) + " printable ASCII bytes"
	errKeyReused = "Idempotency-Key was already used by this user with a different qty"
)

func (s *Server) grab(ctx *fasthttp.RequestCtx, itemB []byte) {
	if !ValidID(itemB) {
		writeError(ctx, fasthttp.StatusBadRequest, "bad_request", errBadItemID)
		return
	}
	body, err := s.decodeBuyerBody(ctx.PostBody())
	if err != nil {
		writeError(ctx, fasthttp.StatusBadRequest, "bad_request", err.Error())
		return
	}
	user, ok := s.buyerOf(ctx, body.UserID)
	if !ok {
		return
	}
	var key string
	if k := ctx.Request.Header.Peek("Idempotency-Key"); k != nil {
		key = string(k)
		if !engine.ValidKey(key) {
			writeError(ctx, fasthttp.StatusBadRequest, "bad_request", errBadKey)
			return
		}
	}
	r := s.svc.Grab(string(itemB), user, body.Qty, key)
	if r.Err != nil {
		s.grabError(ctx, r.Err)
		return
	}
	switch r.Outcome {
	case engine.Confirmed, engine.Replayed:
		var buf [512]byte
		writeJSON(ctx, fasthttp.StatusCreated, appendConfirmed(buf[:0], r.Grab))
	case engine.SoldOut:
		writeJSON(ctx, fasthttp.StatusConflict, respSoldOut)
	case engine.LimitReached:
		writeJSON(ctx, fasthttp.StatusConflict, respLimitReached)
	case engine.NotStarted:
		writeJSON(ctx, fasthttp.StatusConflict, respNotStarted)
	case engine.Ended:
		writeJSON(ctx, fasthttp.StatusConflict, respEnded)
	case engine.Released:
		var buf [256]byte
		b := append(buf[:0], `{"status":"released","grab_id":"`...)
		b = engine.AppendGrabID(b, r.Grab.Item, r.Grab.Shard, r.Grab.Seq)
		writeJSON(ctx, fasthttp.StatusConflict, append(b, `"}`...))
	case engine.KeyReused:
		writeError(ctx, fasthttp.StatusBadRequest, "bad_request", errKeyReused)
	case engine.BadQty:
		writeError(ctx, fasthttp.StatusBadRequest, "bad_request", "qty is out of range")
	default:
		s.log.Error("grab refused by a broken invariant", "item", string(itemB), "outcome", r.Outcome.String())
		ctx.Response.Header.Set("Retry-After", RetryAfterSeconds)
		writeJSON(ctx, fasthttp.StatusServiceUnavailable, respUnavailable)
	}
}

// grabError answers a grab that was not decided. It is out of grab so
// that errors.As's target is not allocated on every grab.
func (s *Server) grabError(ctx *fasthttp.RequestCtx, err error) {
	var qty *sale.QtyError
	switch {
	case errors.Is(err, sale.ErrUnknownItem):
		writeJSON(ctx, fasthttp.StatusNotFound, respUnknownItem)
	case errors.As(err, &qty):
		writeError(ctx, fasthttp.StatusBadRequest, "bad_request",
			"qty must be 1.."+strconv.FormatInt(qty.Limit, 10)+" (the item's per-user limit)")
	case errors.Is(err, sale.ErrOverloaded):
		ctx.Response.Header.Set("Retry-After", RetryAfterSeconds)
		writeJSON(ctx, fasthttp.StatusServiceUnavailable, respOverloaded)
	default:
		ctx.Response.Header.Set("Retry-After", RetryAfterSeconds)
		writeJSON(ctx, fasthttp.StatusServiceUnavailable, respUnavailable)
	}
}

// appendConfirmed writes the 201 body. Ids are of [A-Za-z0-9_.:-] and the
// key is not echoed, so nothing needs escaping.
func appendConfirmed(b []byte, g engine.Grab) []byte {
	b = append(b, `{"status":"confirmed","grab_id":"`...)
	b = engine.AppendGrabID(b, g.Item, g.Shard, g.Seq)
	b = append(b, `","item":"`...)
	b = append(b, g.Item...)
	b = append(b, `","user_id":"`...)
	b = append(b, g.User...)
	b = append(b, `","qty":`...)
	b = strconv.AppendInt(b, g.Qty, 10)
	return append(b, '}')
}

func writeJSON(ctx *fasthttp.RequestCtx, status int, body []byte) {
	ctx.SetStatusCode(status)
	ctx.SetContentType("application/json")
	ctx.SetBody(body)
}

func writeError(ctx *fasthttp.RequestCtx, status int, code, msg string) {
	b := make([]byte, 0, 64+len(msg))
	b = append(b, `{"status":`...)
	b = strconv.AppendQuote(b, code)
	b = append(b, `,"error":`...)
	b = appendJSONString(b, msg)
	writeJSON(ctx, status, append(b, '}'))
}

// appendJSONString quotes s as a JSON string (strconv.Quote's escapes are
// not all valid JSON).
func appendJSONString(b []byte, s string) []byte {
	const hex = "0123456789abcdef"
	b = append(b, '"')
	for i := 0; i < len(s); i++ {
		c := s[i]
		switch {
		case c == '"' || c == '\\':
			b = append(b, '\\', c)
		case c < 0x20 || c == 0x7f:
			b = append(b, '\\', 'u', '0', '0', hex[c>>4], hex[c&0xf])
		default:
			b = append(b, c)
		}
	}
	return append(b, '"')
}

// transportError answers what fasthttp rejects before the handler runs
// (body too large, malformed request line, timeouts) in the same JSON form.
func (s *Server) transportError(ctx *fasthttp.RequestCtx, err error) {
	var small *fasthttp.ErrSmallBuffer
	var netErr net.Error
	defer func() { s.failed(ctx, ctx.Response.StatusCode()) }()
	switch {
	case errors.Is(err, fasthttp.ErrBodyTooLarge):
		writeError(ctx, fasthttp.StatusRequestEntityTooLarge, "bad_request", "body exceeds "+strconv.Itoa(MaxBodyBytes)+" bytes")
	case errors.As(err, &small):
		writeError(ctx, fasthttp.StatusRequestHeaderFieldsTooLarge, "bad_request", "request headers exceed "+strconv.Itoa(MaxHeaderBytes)+" bytes")
	case errors.Is(err, os.ErrDeadlineExceeded), errors.As(err, &netErr) && netErr.Timeout():
		writeError(ctx, fasthttp.StatusRequestTimeout, "timeout", "request not received in time")
	default:
		writeError(ctx, fasthttp.StatusBadRequest, "bad_request", "malformed HTTP request")
	}
}

type fasthttpLogger struct{ l *slog.Logger }

func (f fasthttpLogger) Printf(format string, args ...any) {
	f.l.Debug("fasthttp", "msg", format, "args", args)
}

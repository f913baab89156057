package transport

import (
	"errors"
	"net"
	"net/netip"
	"strconv"
	"sync"
	"time"

	"github.com/seckill/seckill/auth"
	"github.com/seckill/seckill/limit"
	"github.com/valyala/fasthttp"
)

// Security is what the front checks before a request reaches the sale:
// who the buyer is, who may call the payment callback, and how often a
// client address and a buyer may ask.
type Security struct {
	// Buyers verifies buyer tokens; nil: the buyer is whoever the body's
	// user_id names (`--buyer-auth none`, on loopback only).
	Buyers *auth.Buyers
	// PaymentSecret signs the payment provider's callbacks; nil: the pay
	// endpoint answers 404.
	PaymentSecret []byte
	// AddrLimit and BuyerLimit are the token buckets per client address
	// and per buyer; nil: no limit.
	AddrLimit  *limit.Limiter[netip.Addr]
	BuyerLimit *limit.Limiter[string]
	// TrustedProxies are the peers whose X-Forwarded-For names the client.
	TrustedProxies []netip.Prefix
	// Now is the clock of limits and signatures; nil: time.Now.
	Now func() time.Time
}

type security struct {
	Security
	payOffOnce sync.Once
}

// WithSecurity sets the front's checks.
func (s *Server) WithSecurity(sec Security) *Server {
	if sec.Now == nil {
		sec.Now = time.Now
	}
	s.sec = security{Security: sec}
	return s
}

var (
	suffixPay            = []byte("/pay")
	respForbiddenUser    = []byte(`{"status":"forbidden","error":"user_id differs from the buyer of the token"}`)
	errTokenSub          = "the token's sub must be 1-" + strconv.Itoa(MaxIDLen) + " bytes of [A-Za-z0-9_.:-]"
	wwwAuthenticateBuyer = `Bearer realm="seckill"`
)

// clientAddr is the address the request is counted against.
func (s *Server) clientAddr(ctx *fasthttp.RequestCtx) netip.Addr {
	var peer netip.Addr
	if a, ok := ctx.RemoteAddr().(*net.TCPAddr); ok {
		peer = a.AddrPort().Addr()
	}
	var xff [][]byte
	if len(s.sec.TrustedProxies) > 0 {
		xff = ctx.Request.Header.PeekAll("X-Forwarded-For")
	}
	return limit.ClientAddr(peer, xff, s.sec.TrustedProxies)
}

// admitClient charges a public request to its client address's bucket,
// before anything else is done for it; false (answered 429) when empty.
// A loopback client is not charged.
// Payment callbacks are not charged: they are the provider's, one
// address for every buyer, and their signature is checked first thing.
func (s *Server) admitClient(ctx *fasthttp.RequestCtx, path []byte) bool {
	l := s.sec.AddrLimit
	if l.Off() || len(path) < 4 || string(path[:4]) != "/v1/" {
		return true
	}
	if len(path) > len(suffixPay) && string(path[len(path)-len(suffixPay):]) == string(suffixPay) {
		return true
	}
	a := s.clientAddr(ctx)
	if a.IsLoopback() {
		// This machine: a tool, or a proxy not listed as trusted (every
		// buyer behind it would share one bucket).
		return true
	}
	ok, wait := l.Allow(a, s.sec.Now())
	if !ok {
		writeLimited(ctx, wait, "too many requests from this address")
	}
	return ok
}

// writeLimited answers 429 with Retry-After in whole seconds (at least 1).
func writeLimited(ctx *fasthttp.RequestCtx, wait time.Duration, what string) {
	secs := int64((wait + time.Second - 1) / time.Second)
	secs = max(secs, 1)
	ctx.Response.Header.Set("Retry-After", strconv.FormatInt(secs, 10))
	writeError(ctx, fasthttp.StatusTooManyRequests, "rate_limited", what+"; retry after "+strconv.FormatInt(secs, 10)+" s")
}

// buyerAuth reports whether buyers are identified by tokens.
func (s *Server) buyerAuth() bool { return s.sec.Buyers != nil }

// tokenBuyer is the buyer of the request's bearer token; it answers 401
// and returns false when there is none or it does not verify.
func (s *Server) tokenBuyer(ctx *fasthttp.RequestCtx) (string, bool) {
	tok := auth.BearerToken(ctx.Request.Header.Peek("Authorization"))
	user, err := s.sec.Buyers.Verify(tok)
	if err == nil && !ValidID([]byte(user)) {
		err = errors.New(errTokenSub)
	}
	if err != nil {
		ctx.Response.Header.Set("WWW-Authenticate", wwwAuthenticateBuyer)
		writeError(ctx, fasthttp.StatusUnauthorized, "unauthorized", err.Error())
		return "", false
	}
	return user, true
}

// buyerOf is who a grab or a cancel is from: with buyer auth the token's
// buyer (a body naming anyone else is answered 403, and the buyer's
// bucket is charged), else bodyUser. False: answered.
func (s *Server) buyerOf(ctx *fasthttp.RequestCtx, bodyUser string) (string, bool) {
	user := bodyUser
	if s.buyerAuth() {
		var ok bool
		if user, ok = s.tokenBuyer(ctx); !ok {
			return "", false
		}
		if bodyUser != "" && bodyUser != user {
			writeJSON(ctx, fasthttp.StatusForbidden, respForbiddenUser)
			return "", false
		}
		// Only a proven buyer is charged: a name in a body costs nothing
		// to change, so its bucket would bind nobody.
		if ok, wait := s.sec.BuyerLimit.Allow(user, s.sec.Now()); !ok {
			writeLimited(ctx, wait, "too many requests from this buyer")
			return "", false
		}
	}
	return user, true
}

// decodeBuyerBody decodes a grab or cancel body: with buyer auth a grab or cancel body may leave out
// user_id, or be empty.
func (s *Server) decodeBuyerBody(body []byte) (GrabBody, error) {
	if s.buyerAuth() && len(trimWS(body)) == 0 {
		return GrabBody{Qty: 1}, nil
	}
	return decodeGrabBody(body, !s.buyerAuth())
}

func trimWS(b []byte) []byte {
	i := gbSkipWS(b, 0)
	return b[i:]
}

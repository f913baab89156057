package transport

import (
	"github.com/valyala/fasthttp"
)

// StoreHealth says, per store ("grabs", "orders", "nats"), why it cannot
// write now; a store missing from the map, or mapped to "", is fine.
type StoreHealth func() map[string]string

// WithHealth makes /healthz name the stores that cannot write and why. The
// status stays 200 while the node serves (/healthz is liveness: a node on a
// full disk still answers sold-out, reads and health, and resumes by
// itself); the body says "degraded" and lists each store as "ok" or its
// error.
func (s *Server) WithHealth(h StoreHealth) *Server {
	s.storeHealth = h
	return s
}

// healthz answers GET /healthz.
func (s *Server) healthz(ctx *fasthttp.RequestCtx) {
	if s.draining.Load() {
		writeJSON(ctx, fasthttp.StatusServiceUnavailable, respDraining)
		return
	}
	if s.storeHealth == nil {
		writeJSON(ctx, fasthttp.StatusOK, respOK)
		return
	}
	stores := s.storeHealth()
	status := "ok"
	out := make(map[string]string, len(stores))
	for name, err := range stores {
		if err == "" {
			out[name] = "ok"
			continue
		}
		out[name] = err
		status = "degraded"
	}
	writeValue(ctx, fasthttp.StatusOK, struct {
		Status string            `json:"status"`
		Stores map[string]string `json:"stores"`
	}{status, out})
}

package transport

import (
	"bytes"
	"crypto/sha256"
	"crypto/subtle"

	"github.com/valyala/fasthttp"
)

// The admin API's routing, in one place: which paths are admin ones
// (isAdminPath) and where each goes (handleAdmin). The public listener
// serves them too unless the admin API has a listener of its own
// (AdminFastHTTP, `serve --admin-http`): then it answers them 404.

var pathAdmin = []byte("/admin/")

// isAdminPath reports whether path belongs to the admin API: /admin/...,
// and the operator's /metrics and /debug/pprof/.
func isAdminPath(path []byte) bool {
	return bytes.HasPrefix(path, pathAdmin) || isOpsAdminPath(path)
}

// handleAdmin routes one admin request. Every admin call needs the admin
// token, checked here before any route (and again by the older routes),
// except the dashboard's page: it holds no data (the token is entered on
// it, and its data comes through the event stream, which needs it).
func (s *Server) handleAdmin(ctx *fasthttp.RequestCtx, path []byte) {
	if string(path) == pathDashboard {
		if s.method(ctx, fasthttp.MethodGet) {
			s.dashboard(ctx)
		}
		return
	}
	if !s.auth(ctx) {
		return
	}
	if s.adminOps(ctx, path) {
		return
	}
	switch {
	case bytes.HasPrefix(path, pathAdminItems):
		s.admin(ctx, path[len(pathAdminItems):])
	case bytes.HasPrefix(path, pathAdminOrders):
		s.adminDead(ctx, path[len(pathAdminOrders):])
	case bytes.HasPrefix(path, pathPeerOrders):
		s.peerOrder(ctx, path[len(pathPeerOrders):])
	case bytes.HasPrefix(path, pathAdminCluster):
		s.adminCluster(ctx, string(path[len(pathAdminCluster):]))
	case string(path) == pathReconcile:
		s.adminReconcile(ctx)
	default:
		writeError(ctx, fasthttp.StatusNotFound, "not_found", "no such path")
	}
}

// AdminFastHTTP returns the admin API's own server (`--admin-http`): it
// answers the admin paths (metrics, profiles and the dashboard included),
// /healthz and /readyz, and from then on the public
// server answers the admin paths 404. Call it before serving.
func (s *Server) AdminFastHTTP() *fasthttp.Server {
	s.adminApart = true
	return s.adminServer("seckill-admin")
}

// PeerFastHTTP serves the admin API (with its token) to the other nodes of
// a cluster, beside the main listener's, which keeps serving it too: run
// it on a listener that takes only the cluster's nodes (TLS with client
// certificates).
func (s *Server) PeerFastHTTP() *fasthttp.Server { return s.adminServer("seckill-peer") }

func (s *Server) adminServer(name string) *fasthttp.Server {
	srv := NewFastHTTP(name, s.handler(s.HandleAdmin))
	srv.ErrorHandler = s.transportError
	srv.Logger = fasthttpLogger{s.log}
	return srv
}

// HandleAdmin routes one request of the admin listener.
func (s *Server) HandleAdmin(ctx *fasthttp.RequestCtx) {
	defer s.recoverPanic(ctx)
	path := ctx.Path()
	switch {
	case string(path) == pathHealthz:
		s.healthz(ctx)
	case string(path) == pathReadyz:
		if s.method(ctx, fasthttp.MethodGet) {
			s.ready(ctx)
		}
	case isAdminPath(path):
		s.handleAdmin(ctx, path)
	default:
		writeError(ctx, fasthttp.StatusNotFound, "not_found", "no such path")
	}
}

// setAdminToken keeps the digest of what admin calls must carry.
func (s *Server) setAdminToken(tok string) {
	s.adminDigest = sha256.Sum256([]byte("Bearer " + tok))
}

// auth checks the admin token. Digests of the same length are compared,
// in constant time, so neither the token's bytes nor its length show in
// the time an answer takes.
func (s *Server) auth(ctx *fasthttp.RequestCtx) bool {
	got := sha256.Sum256(ctx.Request.Header.Peek("Authorization"))
	if subtle.ConstantTimeCompare(got[:], s.adminDigest[:]) == 1 {
		return true
	}
	ctx.Response.Header.Set("WWW-Authenticate", `Bearer realm="seckill-admin"`)
	writeError(ctx, fasthttp.StatusUnauthorized, "unauthorized", "admin calls need Authorization: Bearer <token>")
	return false
}

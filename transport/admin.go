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

// isAdminPath reports whether path belongs to the admin API.
func isAdminPath(path []byte) bool {
	return bytes.HasPrefix(path, pathAdmin)
}

// handleAdmin routes one admin request. Every admin call needs the admin
// token, checked here before any route (and again by the older routes).
func (s *Server) handleAdmin(ctx *fasthttp.RequestCtx, path []byte) {
	if !s.auth(ctx) {
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
// answers the admin paths and /healthz, and from then on the public
// server answers the admin paths 404. Call it before serving.
func (s *Server) AdminFastHTTP() *fasthttp.Server {
	s.adminApart = true
	srv := NewFastHTTP("seckill-admin", s.HandleAdmin)
	srv.ErrorHandler = s.transportError
	srv.Logger = fasthttpLogger{s.log}
	return srv
}

// HandleAdmin routes one request of the admin listener.
func (s *Server) HandleAdmin(ctx *fasthttp.RequestCtx) {
	defer s.recoverPanic(ctx)
	path := ctx.Path()
	switch {
	case string(path) == "/healthz":
		s.health(ctx)
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

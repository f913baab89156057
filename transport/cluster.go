package transport

import (
	"context"
	"time"

	"github.com/seckill/seckill/sale"
	"github.com/valyala/fasthttp"
)

// ClusterCallTimeout bounds one cluster admin call: it reads etcd (one
// range and a TimeToLive per member, milliseconds each); an etcd cut off
// answers nothing, and a health check must answer 503 well before a
// balancer's own timeout.
const ClusterCallTimeout = 2 * time.Second

var pathAdminCluster = []byte("/admin/v1/cluster/")

var respNotClustered = []byte(`{"status":"not_clustered"}`)

// WithCluster makes the front answer the cluster admin calls from c.
func (s *Server) WithCluster(c sale.Cluster) *Server {
	s.cluster = c
	return s
}

// adminCluster routes /admin/v1/cluster/{members,health}; rest is what
// follows the prefix.
func (s *Server) adminCluster(ctx *fasthttp.RequestCtx, rest string) {
	if !s.auth(ctx) {
		return
	}
	if rest != "members" && rest != "health" {
		writeError(ctx, fasthttp.StatusNotFound, "not_found", "no such path")
		return
	}
	if !s.method(ctx, fasthttp.MethodGet) {
		return
	}
	if s.cluster == nil {
		writeJSON(ctx, fasthttp.StatusNotFound, respNotClustered)
		return
	}
	cctx, cancel := context.WithTimeout(context.Background(), ClusterCallTimeout)
	defer cancel()
	if rest == "health" {
		h := s.cluster.Health(cctx)
		status := fasthttp.StatusOK
		if !h.OK() {
			status = fasthttp.StatusServiceUnavailable
			ctx.Response.Header.Set("Retry-After", RetryAfterSeconds)
		}
		writeValue(ctx, status, h)
		return
	}
	ms, err := s.cluster.Members(cctx)
	if err != nil {
		ctx.Response.Header.Set("Retry-After", RetryAfterSeconds)
		writeError(ctx, fasthttp.StatusServiceUnavailable, "unavailable", err.Error())
		return
	}
	writeValue(ctx, fasthttp.StatusOK, struct {
		Members []sale.Member `json:"members"`
	}{ms})
}

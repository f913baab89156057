package transport

import (
	"context"
	"encoding/json"
	"errors"
	"strconv"
	"strings"
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
		s.adminClusterOps(ctx, rest)
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

// MaxMoveBody bounds a move's JSON body: {"to": a node id, "force": bool}.
const MaxMoveBody = 1024

// adminClusterOps routes placement, drain, undrain, move and the local
// report other nodes' views read.
func (s *Server) adminClusterOps(ctx *fasthttp.RequestCtx, rest string) {
	adm, ok := s.cluster.(sale.ClusterAdmin)
	parts := strings.Split(rest, "/")
	if s.cluster == nil || !ok {
		if s.cluster == nil {
			writeJSON(ctx, fasthttp.StatusNotFound, respNotClustered)
		} else {
			writeError(ctx, fasthttp.StatusNotFound, "not_found", "no such path")
		}
		return
	}
	cctx, cancel := context.WithTimeout(context.Background(), ClusterCallTimeout)
	defer cancel()
	switch {
	case len(parts) == 1 && parts[0] == "placement":
		if !s.method(ctx, fasthttp.MethodGet) {
			return
		}
		item := string(ctx.QueryArgs().Peek("item"))
		if item == "" {
			writeError(ctx, fasthttp.StatusBadRequest, "missing_item", "placement needs ?item=ITEM")
			return
		}
		ps, err := adm.Placement(cctx, item)
		if err != nil {
			writeAdminErr(ctx, err)
			return
		}
		writeValue(ctx, fasthttp.StatusOK, struct {
			Item   string                `json:"item"`
			Shards []sale.ShardPlacement `json:"shards"`
		}{item, ps})
	case len(parts) == 2 && parts[0] == "local":
		if !s.method(ctx, fasthttp.MethodGet) {
			return
		}
		r, ok := adm.LocalReport(parts[1])
		if !ok {
			writeError(ctx, fasthttp.StatusNotFound, "unknown_item", "no such item")
			return
		}
		writeValue(ctx, fasthttp.StatusOK, r)
	case len(parts) == 1 && parts[0] == "self":
		if !s.method(ctx, fasthttp.MethodGet) {
			return
		}
		writeValue(ctx, fasthttp.StatusOK, adm.Self())
	case len(parts) == 2 && parts[0] == "facts":
		if !s.method(ctx, fasthttp.MethodGet) {
			return
		}
		f, err := adm.LocalFacts(parts[1])
		if err != nil {
			writeAdminErr(ctx, err)
			return
		}
		writeValue(ctx, fasthttp.StatusOK, f)
	case len(parts) == 3 && parts[0] == "nodes" && (parts[2] == "drain" || parts[2] == "undrain"):
		if !s.method(ctx, fasthttp.MethodPost) {
			return
		}
		moves, err := adm.Drain(cctx, parts[1], parts[2] == "drain")
		if err != nil {
			writeAdminErr(ctx, err)
			return
		}
		if moves == nil {
			moves = []sale.MoveAsked{}
		}
		writeValue(ctx, fasthttp.StatusOK, struct {
			Node     string           `json:"node"`
			Draining bool             `json:"draining"`
			Moves    []sale.MoveAsked `json:"moves"`
		}{parts[1], parts[2] == "drain", moves})
	case len(parts) == 4 && parts[0] == "shards" && parts[3] == "move":
		if !s.method(ctx, fasthttp.MethodPost) {
			return
		}
		shard, err := strconv.Atoi(parts[2])
		if err != nil || shard < 0 || strconv.Itoa(shard) != parts[2] {
			writeError(ctx, fasthttp.StatusBadRequest, "bad_shard", "shard must be a number")
			return
		}
		var body struct {
			To    *string `json:"to"`
			Force bool    `json:"force"`
		}
		b := ctx.PostBody()
		if len(b) > MaxMoveBody {
			writeError(ctx, fasthttp.StatusRequestEntityTooLarge, "body_too_large", "a move body is at most "+strconv.Itoa(MaxMoveBody)+" bytes")
			return
		}
		dec := json.NewDecoder(strings.NewReader(string(b)))
		dec.DisallowUnknownFields()
		if err := dec.Decode(&body); err != nil || body.To == nil || *body.To == "" {
			writeError(ctx, fasthttp.StatusBadRequest, "bad_body", `body must be {"to":"NODE"} with an optional "force":true`)
			return
		}
		m, err := adm.Move(cctx, parts[1], shard, *body.To, body.Force)
		if err != nil {
			writeAdminErr(ctx, err)
			return
		}
		writeValue(ctx, fasthttp.StatusAccepted, m)
	default:
		writeError(ctx, fasthttp.StatusNotFound, "not_found", "no such path")
	}
}

func writeAdminErr(ctx *fasthttp.RequestCtx, err error) {
	var ae *sale.AdminError
	if errors.As(err, &ae) {
		writeError(ctx, ae.Status, ae.Code, ae.Msg)
		return
	}
	ctx.Response.Header.Set("Retry-After", RetryAfterSeconds)
	writeError(ctx, fasthttp.StatusServiceUnavailable, "unavailable", err.Error())
}

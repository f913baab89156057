package transport

import (
	"context"
	"encoding/json"
	"errors"
	"testing"

	"github.com/seckill/seckill/sale"
	"github.com/valyala/fasthttp"
)

type fakeCluster struct {
	members []sale.Member
	err     error
	health  sale.Health
}

func (f fakeCluster) Members(context.Context) ([]sale.Member, error) { return f.members, f.err }
func (f fakeCluster) Health(context.Context) sale.Health             { return f.health }

// call runs one request through s.Handle in memory.
func call(s *Server, method, path, token string) (int, map[string]any) {
	var ctx fasthttp.RequestCtx
	ctx.Request.Header.SetMethod(method)
	ctx.Request.SetRequestURI(path)
	if token != "" {
		ctx.Request.Header.Set("Authorization", "Bearer "+token)
	}
	s.Handle(&ctx)
	var body map[string]any
	_ = json.Unmarshal(ctx.Response.Body(), &body)
	return ctx.Response.StatusCode(), body
}

func TestClusterAdmin(t *testing.T) {
	single := NewServer(nil, testToken, nil)
	ok := fakeCluster{
		members: []sale.Member{{Node: "a", Peer: "127.0.0.11:7000", LeaseLeftMs: 3500, State: "self"}},
		health:  sale.Health{Etcd: "ok", Lease: "valid", Node: "a"},
	}
	down := fakeCluster{err: errors.New("etcd cut off"), health: sale.Health{Etcd: "unreachable", Lease: "expired", Node: "a"}}
	for _, tc := range []struct {
		name   string
		srv    *Server
		method string
		path   string
		token  string
		code   int
		check  func(map[string]any) bool
	}{
		{"no token", NewServer(nil, testToken, nil).WithCluster(ok), "GET", "/admin/v1/cluster/members", "", 401, nil},
		{"single node members", single, "GET", "/admin/v1/cluster/members", testToken, 404,
			func(b map[string]any) bool { return b["status"] == "not_clustered" }},
		{"single node health", single, "GET", "/admin/v1/cluster/health", testToken, 404,
			func(b map[string]any) bool { return b["status"] == "not_clustered" }},
		{"unknown path", NewServer(nil, testToken, nil).WithCluster(ok), "GET", "/admin/v1/cluster/nope", testToken, 404,
			func(b map[string]any) bool { return b["status"] == "not_found" }},
		{"placement, one node", single, "GET", "/admin/v1/cluster/placement?item=x", testToken, 404,
			func(b map[string]any) bool { return b["status"] == "not_clustered" }},
		{"post", NewServer(nil, testToken, nil).WithCluster(ok), "POST", "/admin/v1/cluster/health", testToken, 405, nil},
		{"members", NewServer(nil, testToken, nil).WithCluster(ok), "GET", "/admin/v1/cluster/members", testToken, 200,
			func(b map[string]any) bool {
				ms, _ := b["members"].([]any)
				m, _ := ms[0].(map[string]any)
				return len(ms) == 1 && m["node"] == "a" && m["peer"] == "127.0.0.11:7000" && m["lease_left_ms"] == 3500.0 && m["state"] == "self"
			}},
		{"health", NewServer(nil, testToken, nil).WithCluster(ok), "GET", "/admin/v1/cluster/health", testToken, 200,
			func(b map[string]any) bool { return b["etcd"] == "ok" && b["lease"] == "valid" && b["node"] == "a" }},
		{"members, etcd down", NewServer(nil, testToken, nil).WithCluster(down), "GET", "/admin/v1/cluster/members", testToken, 503,
			func(b map[string]any) bool { return b["status"] == "unavailable" }},
		{"health, etcd down", NewServer(nil, testToken, nil).WithCluster(down), "GET", "/admin/v1/cluster/health", testToken, 503,
			func(b map[string]any) bool { return b["etcd"] == "unreachable" && b["lease"] == "expired" }},
	} {
		code, body := call(tc.srv, tc.method, tc.path, tc.token)
		if code != tc.code || (tc.check != nil && !tc.check(body)) {
			t.Errorf("%s: %d %v, want %d", tc.name, code, body, tc.code)
		}
	}
}

package transport

import (
	"net"
	"net/netip"
	"strconv"
	"testing"
	"time"

	"github.com/seckill/seckill/actors"
	"github.com/seckill/seckill/auth"
	"github.com/seckill/seckill/limit"
	"github.com/seckill/seckill/persistence"
	"github.com/valyala/fasthttp"
)

// BenchmarkFrontChecks: one grab of a sold-out item (answered at the
// front, no shard) through Handle, with each of the front's checks added:
// what the checks cost beside the rest of a request.
func BenchmarkFrontChecks(b *testing.B) {
	store, err := persistence.OpenPebble(b.TempDir())
	if err != nil {
		b.Fatal(err)
	}
	node, err := actors.Start(store, actors.Options{})
	if err != nil {
		b.Fatal(err)
	}
	defer node.Close()
	svc := actors.NewLocal(node)
	plain := NewServer(svc, testToken, nil)
	do := func(s *Server, path, body, authz string, from net.Addr) int {
		var req fasthttp.Request
		req.Header.SetMethod("POST")
		req.SetRequestURI(path)
		req.SetBodyString(body)
		if authz != "" {
			req.Header.Set("Authorization", authz)
		}
		var ctx fasthttp.RequestCtx
		ctx.Init(&req, from, nil)
		s.Handle(&ctx)
		return ctx.Response.StatusCode()
	}
	local := &net.TCPAddr{IP: net.IPv4(127, 0, 0, 1), Port: 1}
	var c fasthttp.RequestCtx
	c.Init(&fasthttp.Request{}, local, nil)
	{
		var req fasthttp.Request
		req.Header.SetMethod("PUT")
		req.SetRequestURI("/admin/v1/items/bench")
		req.SetBodyString(`{"stock":1,"shards":1}`)
		req.Header.Set("Authorization", "Bearer "+testToken)
		var ctx fasthttp.RequestCtx
		ctx.Init(&req, local, nil)
		plain.Handle(&ctx)
		if ctx.Response.StatusCode() != 201 {
			b.Fatalf("create: %s", ctx.Response.Body())
		}
	}
	if code := do(plain, "/v1/items/bench/grab", `{"user_id":"first"}`, "", local); code != 201 {
		b.Fatalf("first grab: %d", code)
	}
	const users = 1024
	secret := []byte("0123456789abcdef0123456789abcdef")
	buyers, _ := auth.HS256(secret)
	tokens := make([]string, users)
	bodies := make([]string, users)
	for i := range tokens {
		tok, _ := auth.Mint("u"+strconv.Itoa(i), secret, time.Hour, time.Now())
		tokens[i], bodies[i] = "Bearer "+tok, `{"user_id":"u`+strconv.Itoa(i)+`"}`
	}
	remote := &net.TCPAddr{IP: net.IPv4(203, 0, 113, 7), Port: 1}
	addrs := limit.New[netip.Addr](1e9, 1e9, limit.DefaultMaxTracked)
	for _, bc := range []struct {
		name string
		s    *Server
		jwt  bool
	}{
		{"none", plain, false},
		{"addr-limit", NewServer(svc, testToken, nil).WithSecurity(Security{AddrLimit: addrs}), false},
		{"addr-limit+jwt", NewServer(svc, testToken, nil).WithSecurity(Security{AddrLimit: addrs, Buyers: buyers,
			BuyerLimit: limit.New[string](1e9, 1e9, limit.DefaultMaxTracked)}), true},
	} {
		b.Run(bc.name, func(b *testing.B) {
			b.ReportAllocs()
			i := 0
			for b.Loop() {
				authz := ""
				if bc.jwt {
					authz = tokens[i%users]
				}
				if code := do(bc.s, "/v1/items/bench/grab", bodies[i%users], authz, remote); code != 409 {
					b.Fatalf("grab: %d", code)
				}
				i++
			}
		})
	}
}

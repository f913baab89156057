package bench

import (
	"testing"

	"github.com/valyala/fasthttp"
)

// adminCall runs one request through serveAdmin over a fakeOrders target.
func adminCall(method, path, auth string, body []byte) (int, []byte) {
	var ctx fasthttp.RequestCtx
	ctx.Request.Header.SetMethod(method)
	ctx.Request.SetRequestURI(path)
	if auth != "" {
		ctx.Request.Header.Set("Authorization", auth)
	}
	ctx.Request.SetBody(body)
	serveAdmin(&ctx, fakeOrders{sold: 3, orders: 3, missing: true})
	return ctx.Response.StatusCode(), ctx.Response.Body()
}

func TestServeAdmin(t *testing.T) {
	bearer := "Bearer " + localToken
	cases := []struct {
		name, method, path, auth, body string
		want                           int
	}{
		{"read", "GET", "/admin/v1/items/i", bearer, "", 200},
		{"create", "PUT", "/admin/v1/items/i", bearer, `{"stock":3,"shards":1,"per_user_limit":1}`, 201},
		{"check orders", "POST", "/admin/v1/items/i/missing-orders", bearer, `["i.0.1"]`, 200},
		{"no token", "GET", "/admin/v1/items/i", "", "", 401},
		{"wrong token", "GET", "/admin/v1/items/i", "Bearer x", "", 401},
		{"bad item body", "PUT", "/admin/v1/items/i", bearer, `{"stock":`, 400},
		{"ids not a list", "POST", "/admin/v1/items/i/missing-orders", bearer, `{}`, 400},
		{"bad item id", "GET", "/admin/v1/items/a b", bearer, "", 404},
		{"method", "DELETE", "/admin/v1/items/i", bearer, "", 405},
	}
	for _, c := range cases {
		t.Run(c.name, func(t *testing.T) {
			if status, body := adminCall(c.method, c.path, c.auth, []byte(c.body)); status != c.want {
				t.Fatalf("%s %s: %d %s, want %d", c.method, c.path, status, body, c.want)
			}
		})
	}
}

func FuzzServeAdmin(f *testing.F) {
	f.Add("PUT", "/admin/v1/items/i", []byte(`{"stock":3,"shards":1,"per_user_limit":1}`))
	f.Add("POST", "/admin/v1/items/i/missing-orders", []byte(`["i.0.1","x"]`))
	f.Add("GET", "/admin/v1/items/i", []byte(nil))
	f.Fuzz(func(t *testing.T, method, path string, body []byte) {
		status, _ := adminCall(method, path, "Bearer "+localToken, body)
		if status < 200 || status >= 600 {
			t.Fatalf("%s %s: status %d", method, path, status)
		}
	})
}

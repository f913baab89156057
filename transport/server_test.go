package transport

import (
	"encoding/json"
	"errors"
	"fmt"
	"io"
	"net"
	"net/http"
	"os"
	"strings"
	"sync"
	"testing"

	"github.com/seckill/seckill/actors"
	"github.com/seckill/seckill/persistence"
	"github.com/valyala/fasthttp"
)

const testToken = "test-token"

type testServer struct {
	url  string
	node *actors.Node
}

// startServer runs the real front over a real Pebble directory on loopback.
func startServer(t *testing.T) *testServer {
	t.Helper()
	store, err := persistence.OpenPebble(t.TempDir())
	if err != nil {
		t.Fatal(err)
	}
	node, err := actors.Start(store, actors.Options{})
	if err != nil {
		t.Fatal(err)
	}
	srv := NewServer(actors.NewLocal(node), testToken, nil).FastHTTP()
	ln, err := net.Listen("tcp", "127.0.0.1:0")
	if err != nil {
		t.Fatal(err)
	}
	done := make(chan error, 1)
	go func() { done <- srv.Serve(ln) }()
	t.Cleanup(func() {
		if err := srv.Shutdown(); err != nil {
			t.Error(err)
		}
		<-done
		if err := node.Close(); err != nil {
			t.Error(err)
		}
	})
	return &testServer{url: "http://" + ln.Addr().String(), node: node}
}

type result struct {
	code int
	body map[string]any
	raw  string
}

func (ts *testServer) do(t *testing.T, method, path, body string, hdr map[string]string) result {
	t.Helper()
	req, err := http.NewRequest(method, ts.url+path, strings.NewReader(body))
	if err != nil {
		t.Fatal(err)
	}
	for k, v := range hdr {
		req.Header.Set(k, v)
	}
	resp, err := http.DefaultClient.Do(req)
	if err != nil {
		t.Fatalf("%s %s: %v", method, path, err)
	}
	defer resp.Body.Close()
	raw, _ := io.ReadAll(resp.Body)
	r := result{code: resp.StatusCode, raw: string(raw)}
	if err := json.Unmarshal(raw, &r.body); err != nil {
		t.Fatalf("%s %s -> %d: body is not a JSON object: %q", method, path, resp.StatusCode, raw)
	}
	if ct := resp.Header.Get("Content-Type"); ct != "application/json" {
		t.Fatalf("%s %s: content type %q", method, path, ct)
	}
	return r
}

var admin = map[string]string{"Authorization": "Bearer " + testToken}

func (ts *testServer) create(t *testing.T, item, body string) {
	t.Helper()
	if r := ts.do(t, "PUT", "/admin/v1/items/"+item, body, admin); r.code != 201 {
		t.Fatalf("create %s: %d %s", item, r.code, r.raw)
	}
}

func TestGrabContract(t *testing.T) {
	ts := startServer(t)
	ts.create(t, "phone", `{"stock":2,"shards":1,"per_user_limit":2}`)
	ts.create(t, "later", `{"stock":5,"shards":2,"starts_at":"2999-01-01T00:00:00Z"}`)
	ts.create(t, "over", `{"stock":5,"shards":2,"starts_at":"2000-01-01T00:00:00Z","ends_at":"2001-01-01T00:00:00Z"}`)
	for _, tc := range []struct {
		name, path, body, key string
		code                  int
		status                string
		check                 func(t *testing.T, r result)
	}{
		{"confirmed", "/v1/items/phone/grab", `{"user_id":"u1"}`, "k1", 201, "confirmed", func(t *testing.T, r result) {
			if r.body["grab_id"] != "phone.0.1" || r.body["item"] != "phone" || r.body["user_id"] != "u1" || r.body["qty"] != 1.0 {
				t.Errorf("body %s", r.raw)
			}
		}},
		{"replayed", "/v1/items/phone/grab", `{"user_id":"u1","qty":1}`, "k1", 201, "confirmed", func(t *testing.T, r result) {
			if r.body["grab_id"] != "phone.0.1" {
				t.Errorf("replay gave %s", r.raw)
			}
		}},
		{"key reused with other qty", "/v1/items/phone/grab", `{"user_id":"u1","qty":2}`, "k1", 400, "bad_request", nil},
		{"qty above limit", "/v1/items/phone/grab", `{"user_id":"u2","qty":3}`, "", 400, "bad_request", nil},
		{"second unit for u1", "/v1/items/phone/grab", `{"user_id":"u1"}`, "k2", 201, "confirmed", nil},
		{"limit reached", "/v1/items/phone/grab", `{"user_id":"u1"}`, "k3", 409, "limit_reached", nil},
		{"sold out", "/v1/items/phone/grab", `{"user_id":"u2"}`, "", 409, "sold_out", nil},
		{"not started", "/v1/items/later/grab", `{"user_id":"u2"}`, "", 409, "not_started", nil},
		{"ended", "/v1/items/over/grab", `{"user_id":"u2"}`, "", 409, "ended", nil},
		{"unknown item", "/v1/items/nope/grab", `{"user_id":"u2"}`, "", 404, "unknown_item", nil},
		{"public view", "/v1/items/phone", "", "", 200, "sold_out", func(t *testing.T, r result) {
			if r.body["remaining"] != 0.0 || r.body["item"] != "phone" {
				t.Errorf("view %s", r.raw)
			}
		}},
		{"public view not started", "/v1/items/later", "", "", 200, "not_started", func(t *testing.T, r result) {
			if r.body["starts_at"] != "2999-01-01T00:00:00Z" || r.body["ends_at"] != nil {
				t.Errorf("view %s", r.raw)
			}
		}},
		{"health", "/healthz", "", "", 200, "ok", nil},
	} {
		t.Run(tc.name, func(t *testing.T) {
			method := "POST"
			if !strings.HasSuffix(tc.path, "/grab") {
				method = "GET"
			}
			hdr := map[string]string{}
			if tc.key != "" {
				hdr["Idempotency-Key"] = tc.key
			}
			r := ts.do(t, method, tc.path, tc.body, hdr)
			if r.code != tc.code || r.body["status"] != tc.status {
				t.Fatalf("got %d %s, want %d %s", r.code, r.raw, tc.code, tc.status)
			}
			if tc.code == 400 && r.body["error"] == "" {
				t.Fatalf("400 without an error: %s", r.raw)
			}
			if tc.check != nil {
				tc.check(t, r)
			}
		})
	}
	r := ts.do(t, "GET", "/v1/time", "", nil)
	if ms, _ := r.body["now_ms"].(float64); ms < 1.7e12 {
		t.Fatalf("time %s", r.raw)
	}
}

func TestAdminContract(t *testing.T) {
	ts := startServer(t)
	ts.create(t, "a", `{"stock":10,"shards":3}`)
	r := ts.do(t, "GET", "/admin/v1/items/a", "", admin)
	if r.code != 200 || r.body["stock"] != 10.0 || r.body["remaining"] != 10.0 || r.body["sold"] != 0.0 {
		t.Fatalf("admin view %d %s", r.code, r.raw)
	}
	shards, _ := r.body["shards"].([]any)
	if len(shards) != 3 {
		t.Fatalf("shards %s", r.raw)
	}
	if r := ts.do(t, "PUT", "/admin/v1/items/a", `{"stock":3}`, admin); r.code != 409 {
		t.Fatalf("recreate: %d %s", r.code, r.raw)
	}
	ts.create(t, "b", `{"stock":1}`)
	r = ts.do(t, "GET", "/admin/v1/items", "", admin)
	items, _ := r.body["items"].([]any)
	if r.code != 200 || len(items) != 2 || items[0].(map[string]any)["item"] != "a" {
		t.Fatalf("list %s", r.raw)
	}
	for _, tc := range []struct{ name, method, path, body, auth string }{
		{"no token list", "GET", "/admin/v1/items", "", ""},
		{"no token get", "GET", "/admin/v1/items/a", "", ""},
		{"no token put", "PUT", "/admin/v1/items/c", `{"stock":1}`, ""},
		{"wrong token", "GET", "/admin/v1/items", "", "Bearer nope"},
		{"token without scheme", "GET", "/admin/v1/items", "", testToken},
	} {
		t.Run(tc.name, func(t *testing.T) {
			hdr := map[string]string{}
			if tc.auth != "" {
				hdr["Authorization"] = tc.auth
			}
			if r := ts.do(t, tc.method, tc.path, tc.body, hdr); r.code != 401 || r.body["status"] != "unauthorized" {
				t.Fatalf("%d %s", r.code, r.raw)
			}
		})
	}
	if _, ok := ts.node.Item("c"); ok {
		t.Fatal("an unauthorised PUT created an item")
	}
}

// TestMalformedRequests sends a battery of bad input: every answer is a 4xx
// with a JSON body naming the problem, and the server keeps serving.
func TestMalformedRequests(t *testing.T) {
	ts := startServer(t)
	ts.create(t, "it", `{"stock":100,"shards":4,"per_user_limit":3}`)
	long := strings.Repeat("a", 129)
	for _, tc := range []struct {
		name, method, path, body string
		hdr                      map[string]string
		code                     int
		errHas                   string
	}{
		{"broken json", "POST", "/v1/items/it/grab", `{"user_id":"u1"`, nil, 400, "JSON"},
		{"not an object", "POST", "/v1/items/it/grab", `["u1"]`, nil, 400, "object"},
		{"empty body", "POST", "/v1/items/it/grab", ``, nil, 400, "empty"},
		{"missing user", "POST", "/v1/items/it/grab", `{"qty":1}`, nil, 400, "user_id"},
		{"empty user", "POST", "/v1/items/it/grab", `{"user_id":""}`, nil, 400, "user_id"},
		{"huge user", "POST", "/v1/items/it/grab", `{"user_id":"` + long + `"}`, nil, 400, "user_id"},
		{"user with slash", "POST", "/v1/items/it/grab", `{"user_id":"a/b"}`, nil, 400, "user_id"},
		{"NUL in user", "POST", "/v1/items/it/grab", "{\"user_id\":\"a\x00b\"}", nil, 400, "NUL"},
		{"escaped NUL in user", "POST", "/v1/items/it/grab", `{"user_id":"a\u0000b"}`, nil, 400, "user_id"},
		{"user is a number", "POST", "/v1/items/it/grab", `{"user_id":42}`, nil, 400, "user_id"},
		{"zero qty", "POST", "/v1/items/it/grab", `{"user_id":"u","qty":0}`, nil, 400, "qty"},
		{"negative qty", "POST", "/v1/items/it/grab", `{"user_id":"u","qty":-1}`, nil, 400, "qty"},
		{"huge qty", "POST", "/v1/items/it/grab", `{"user_id":"u","qty":99999999999999999999999}`, nil, 400, "qty"},
		{"qty over item limit", "POST", "/v1/items/it/grab", `{"user_id":"u","qty":4}`, nil, 400, "qty must be 1..3 (the item's per-user limit)"},
		{"fractional qty", "POST", "/v1/items/it/grab", `{"user_id":"u","qty":1.5}`, nil, 400, "qty"},
		{"string qty", "POST", "/v1/items/it/grab", `{"user_id":"u","qty":"1"}`, nil, 400, "qty"},
		{"unknown field", "POST", "/v1/items/it/grab", `{"user_id":"u","admin":true}`, nil, 400, "admin"},
		{"oversized body", "POST", "/v1/items/it/grab", `{"user_id":"u","pad":"` + strings.Repeat("x", 5000) + `"}`, nil, 413, "4096"},
		{"empty key", "POST", "/v1/items/it/grab", `{"user_id":"u"}`, map[string]string{"Idempotency-Key": ""}, 400, "Idempotency-Key"},
		{"long key", "POST", "/v1/items/it/grab", `{"user_id":"u"}`, map[string]string{"Idempotency-Key": strings.Repeat("k", 65)}, 400, "Idempotency-Key"},
		{"bad item id", "POST", "/v1/items/a%20b/grab", `{"user_id":"u"}`, nil, 400, "item id"},
		{"huge item id", "POST", "/v1/items/" + long + "/grab", `{"user_id":"u"}`, nil, 400, "item id"},
		// fasthttp folds "//" so this is POST /v1/items/grab: a view that takes GET.
		{"empty item id", "POST", "/v1/items//grab", `{"user_id":"u"}`, nil, 405, "GET"},
		{"unknown item", "POST", "/v1/items/zzz/grab", `{"user_id":"u"}`, nil, 404, ""},
		{"wrong method", "GET", "/v1/items/it/grab", ``, nil, 405, "POST"},
		{"unknown path", "GET", "/v2/anything", ``, nil, 404, "path"},
		{"admin no token", "PUT", "/admin/v1/items/x", `{"stock":1}`, nil, 401, "Bearer"},
		{"admin broken json", "PUT", "/admin/v1/items/x", `{"stock":`, admin, 400, "JSON"},
		{"admin missing stock", "PUT", "/admin/v1/items/x", `{"shards":2}`, admin, 400, "stock"},
		{"admin negative stock", "PUT", "/admin/v1/items/x", `{"stock":-5}`, admin, 400, "stock"},
		{"admin stock wrong type", "PUT", "/admin/v1/items/x", `{"stock":"10"}`, admin, 400, "stock"},
		{"admin too many shards", "PUT", "/admin/v1/items/x", `{"stock":10,"shards":5000}`, admin, 400, "shards"},
		{"admin zero limit", "PUT", "/admin/v1/items/x", `{"stock":10,"per_user_limit":0}`, admin, 400, "per_user_limit"},
		{"admin bad time", "PUT", "/admin/v1/items/x", `{"stock":10,"starts_at":"tomorrow"}`, admin, 400, "starts_at"},
		{"admin window backwards", "PUT", "/admin/v1/items/x", `{"stock":10,"starts_at":"2030-01-02T00:00:00Z","ends_at":"2030-01-01T00:00:00Z"}`, admin, 400, "ends_at"},
		{"admin unknown field", "PUT", "/admin/v1/items/x", `{"stock":10,"price":3}`, admin, 400, "price"},
		{"admin trailing data", "PUT", "/admin/v1/items/x", `{"stock":10} {}`, admin, 400, "after"},
		{"admin bad item id", "PUT", "/admin/v1/items/x!y", `{"stock":10}`, admin, 400, "item id"},
	} {
		t.Run(tc.name, func(t *testing.T) {
			r := ts.do(t, tc.method, tc.path, tc.body, tc.hdr)
			if r.code != tc.code {
				t.Fatalf("got %d %s, want %d", r.code, r.raw, tc.code)
			}
			if msg, _ := r.body["error"].(string); tc.errHas != "" && !strings.Contains(msg, tc.errHas) {
				t.Fatalf("error %q does not name %q", msg, tc.errHas)
			}
		})
	}
	// Still serving, and nothing was sold or created by the bad requests.
	if r := ts.do(t, "POST", "/v1/items/it/grab", `{"user_id":"good"}`, nil); r.code != 201 {
		t.Fatalf("after the battery: %d %s", r.code, r.raw)
	}
	if _, ok := ts.node.Item("x"); ok {
		t.Fatal("a bad PUT created an item")
	}
}

// TestRawGarbage writes malformed HTTP on raw connections.
func TestRawGarbage(t *testing.T) {
	ts := startServer(t)
	addr := strings.TrimPrefix(ts.url, "http://")
	for _, raw := range []string{
		"GARBAGE\r\n\r\n",
		"POST /v1/items/x/grab HTTP/1.1\r\nHost: x\r\nContent-Length: -5\r\n\r\n",
		"POST /v1/items/x/grab HTTP/1.1\r\nHost: x\r\nContent-Length: 99999999\r\n\r\n",
		"GET /healthz HTTP/1.1\r\nHost: x\r\nX: " + strings.Repeat("h", 20000) + "\r\n\r\n",
		"\x00\x01\x02\x03\r\n\r\n",
	} {
		c, err := net.Dial("tcp", addr)
		if err != nil {
			t.Fatal(err)
		}
		fmt.Fprint(c, raw)
		buf := make([]byte, 512)
		n, _ := io.ReadAtLeast(c, buf, 12)
		c.Close()
		if n < 12 || !strings.HasPrefix(string(buf[:n]), "HTTP/1.1 4") {
			t.Errorf("%q -> %q", raw[:min(len(raw), 40)], buf[:n])
		}
	}
	if r := ts.do(t, "GET", "/healthz", "", nil); r.code != 200 {
		t.Fatalf("not serving after garbage: %d", r.code)
	}
}

// TestConcurrentHTTPGrabs: many clients over loopback never oversell.
func TestConcurrentHTTPGrabs(t *testing.T) {
	ts := startServer(t)
	ts.create(t, "c", `{"stock":50,"shards":4}`)
	var mu sync.Mutex
	ids := map[string]bool{}
	var wg sync.WaitGroup
	for w := 0; w < 16; w++ {
		wg.Go(func() {
			for i := 0; i < 20; i++ {
				r := ts.do(t, "POST", "/v1/items/c/grab", fmt.Sprintf(`{"user_id":"w%d-%d"}`, w, i), nil)
				if r.code == 201 {
					mu.Lock()
					ids[r.body["grab_id"].(string)] = true
					mu.Unlock()
				} else if r.code != 409 {
					t.Errorf("%d %s", r.code, r.raw)
				}
			}
		})
	}
	wg.Wait()
	r := ts.do(t, "GET", "/admin/v1/items/c", "", admin)
	sold := int(r.body["sold"].(float64))
	if sold != len(ids) || sold > 50 || sold+int(r.body["remaining"].(float64)) != 50 {
		t.Fatalf("sold %d, distinct 201s %d: %s", sold, len(ids), r.raw)
	}
}

// TestTransportErrors maps what fasthttp rejects before the handler to JSON
// answers; a read timeout is a 408, not a 400.
func TestTransportErrors(t *testing.T) {
	s := NewServer(nil, "t", nil)
	for _, tc := range []struct {
		name string
		err  error
		code int
	}{
		{"body too large", fasthttp.ErrBodyTooLarge, 413},
		{"headers too large", &fasthttp.ErrSmallBuffer{}, 431},
		{"read timeout", &net.OpError{Op: "read", Net: "tcp", Err: os.ErrDeadlineExceeded}, 408},
		{"garbage", errors.New("cannot parse request line"), 400},
	} {
		t.Run(tc.name, func(t *testing.T) {
			var ctx fasthttp.RequestCtx
			s.transportError(&ctx, tc.err)
			var body map[string]any
			if ctx.Response.StatusCode() != tc.code || json.Unmarshal(ctx.Response.Body(), &body) != nil || body["error"] == "" {
				t.Fatalf("%d %s", ctx.Response.StatusCode(), ctx.Response.Body())
			}
		})
	}
}

func TestStockAndReleaseContract(t *testing.T) {
	ts := startServer(t)
	ts.create(t, "s", `{"stock":4,"shards":2,"per_user_limit":1}`)
	var ids []string
	for i := 0; i < 4; i++ {
		r := ts.do(t, "POST", "/v1/items/s/grab", fmt.Sprintf(`{"user_id":"u%d"}`, i), map[string]string{"Idempotency-Key": "k"})
		if r.code != 201 {
			t.Fatalf("grab %d: %d %s", i, r.code, r.raw)
		}
		ids = append(ids, r.body["grab_id"].(string))
	}
	for _, tc := range []struct {
		name, path, body string
		code             int
		status           string
	}{
		{"sold out", "/v1/items/s/grab", `{"user_id":"late"}`, 409, "sold_out"},
		{"release", "/admin/v1/items/s/release", `{"grab_id":"` + ids[0] + `"}`, 200, "released"},
		{"release again", "/admin/v1/items/s/release", `{"grab_id":"` + ids[0] + `"}`, 200, "already_released"},
		{"released key replays as released", "/v1/items/s/grab", `{"user_id":"u0"}`, 409, "released"},
		{"unknown grab", "/admin/v1/items/s/release", `{"grab_id":"s.1.99"}`, 404, "unknown_grab"},
		{"grab of another item", "/admin/v1/items/s/release", `{"grab_id":"t.0.1"}`, 404, "unknown_grab"},
		{"bad grab id", "/admin/v1/items/s/release", `{"grab_id":"nope"}`, 400, "bad_request"},
		{"release on unknown item", "/admin/v1/items/zz/release", `{"grab_id":"zz.0.1"}`, 404, "unknown_item"},
		{"add stock", "/admin/v1/items/s/stock", `{"delta":2}`, 200, "on_sale"},
		{"take back too much", "/admin/v1/items/s/stock", `{"delta":-4}`, 409, "insufficient"},
		{"zero delta", "/admin/v1/items/s/stock", `{"delta":0}`, 400, "bad_request"},
		{"delta as string", "/admin/v1/items/s/stock", `{"delta":"2"}`, 400, "bad_request"},
		{"unknown action", "/admin/v1/items/s/frobnicate", `{}`, 404, "not_found"},
	} {
		t.Run(tc.name, func(t *testing.T) {
			hdr := map[string]string{"Authorization": "Bearer " + testToken, "Idempotency-Key": "k"}
			r := ts.do(t, "POST", tc.path, tc.body, hdr)
			if r.code != tc.code || r.body["status"] != tc.status {
				t.Fatalf("got %d %s, want %d %s", r.code, r.raw, tc.code, tc.status)
			}
			if tc.status == "insufficient" && r.body["available"] != 3.0 {
				t.Fatalf("available: %s", r.raw)
			}
		})
	}
	// The released unit and the two added sell again, to the released user
	// with a new key too; then the item is sold out again.
	for _, u := range []string{"u0", "n1", "n2"} {
		if r := ts.do(t, "POST", "/v1/items/s/grab", `{"user_id":"`+u+`"}`, map[string]string{"Idempotency-Key": "again"}); r.code != 201 {
			t.Fatalf("%s: %d %s", u, r.code, r.raw)
		}
	}
	r := ts.do(t, "GET", "/admin/v1/items/s", "", admin)
	if r.body["stock"] != 6.0 || r.body["sold"] != 6.0 || r.body["remaining"] != 0.0 || r.body["in_transit"] != 0.0 || r.body["pool"] != 0.0 {
		t.Fatalf("admin view %s", r.raw)
	}
	if r := ts.do(t, "POST", "/admin/v1/items/s/stock", `{"delta":1}`, nil); r.code != 401 {
		t.Fatalf("stock change without a token: %d", r.code)
	}
}

package transport

import (
	"bytes"
	"context"
	"log/slog"
	"net"
	"strings"
	"testing"
	"time"

	"github.com/seckill/seckill/auth"

	"github.com/seckill/seckill/actors"
	"github.com/seckill/seckill/engine"
	"github.com/seckill/seckill/orders"
	"github.com/seckill/seckill/persistence"
	"github.com/seckill/seckill/sale"
	"github.com/valyala/fasthttp"
)

const testPaySecret = "test-payment-secret-of-32-bytes!"

func payBody(id string) string { return `{"grab_id":"` + id + `","amount_cents":1999}` }

// paySig signs payBody(id) now, as the payment provider would.
func paySig(id string) map[string]string {
	return map[string]string{"X-Signature": auth.Sign([]byte(testPaySecret), []byte(payBody(id)), time.Now().Unix())}
}

type fakeDead struct{ dead []sale.DeadLetter }

func (f *fakeDead) ListDead(ctx context.Context, limit int) ([]sale.DeadLetter, error) {
	return f.dead, nil
}
func (f *fakeDead) RetryDead(ctx context.Context, id string) error {
	for i, d := range f.dead {
		if d.GrabID == id {
			f.dead = append(f.dead[:i], f.dead[i+1:]...)
			return nil
		}
	}
	return sale.ErrNoDeadLetter
}

// startOrderServer runs the front with the order service over real Pebble
// stores; orders are written straight from grabs (the stream is tested in
// bus and end to end in cmd/seckill).
func startOrderServer(t *testing.T, sec Security) (*testServer, *orders.Orders) {
	return startOrderServerWith(t, sec, false)
}

// startOrderServerWith runs it as a cluster node's front when peer: the
// same order service is then also the node's own store's (WithLocalOrders).
func startOrderServerWith(t *testing.T, sec Security, peer bool) (*testServer, *orders.Orders) {
	t.Helper()
	store, err := persistence.OpenPebble(t.TempDir())
	if err != nil {
		t.Fatal(err)
	}
	node, err := actors.Start(store, actors.Options{})
	if err != nil {
		t.Fatal(err)
	}
	os, err := persistence.OpenPebbleOrders(t.TempDir())
	if err != nil {
		t.Fatal(err)
	}
	local := actors.NewLocal(node)
	o := orders.New(local, os, nil)
	rec := func(ctx context.Context, cfg engine.ItemConfig) (sale.Report, error) {
		return orders.Reconcile(ctx, store, os, nil, cfg, node.Now(), true)
	}
	// Seq and Body are the stream's: the admin API must not show them.
	dead := []sale.DeadLetter{{GrabID: "x.0.1", Item: "x", Seq: 7, Deliveries: 5, Body: []byte("{}")}}
	front := NewServer(local, testToken, nil).WithOrders(o, &fakeDead{dead: dead}, rec).WithSecurity(sec)
	if peer {
		front = front.WithLocalOrders(o)
	}
	srv := front.FastHTTP()
	ln, err := net.Listen("tcp", "127.0.0.1:0")
	if err != nil {
		t.Fatal(err)
	}
	done := make(chan error, 1)
	go func() { done <- srv.Serve(ln) }()
	t.Cleanup(func() {
		srv.Shutdown()
		<-done
		node.Close()
		os.Close()
	})
	return &testServer{url: "http://" + ln.Addr().String(), node: node}, o
}

func TestOrderContract(t *testing.T) {
	ts, o := startOrderServer(t, Security{PaymentSecret: []byte(testPaySecret)})
	ts.create(t, "o", `{"stock":3,"shards":1,"payment_window_s":600}`)
	var ids []string
	for _, u := range []string{"a", "b", "c"} {
		r := ts.do(t, "POST", "/v1/items/o/grab", `{"user_id":"`+u+`"}`, nil)
		ids = append(ids, r.body["grab_id"].(string))
	}
	if r := ts.do(t, "GET", "/v1/orders/"+ids[0], "", nil); r.code != 202 || r.body["status"] != "processing" {
		t.Fatalf("before the writer: %d %s", r.code, r.raw)
	}
	var grabs []orders.Msg
	for _, id := range ids {
		item, shard, seq, _ := engine.ParseGrabID(id)
		grabs = append(grabs, orders.Msg{Grab: engine.Grab{Item: item, Shard: shard, Seq: seq, Qty: 1, AtMs: ts.node.Now()}})
	}
	for i, u := range []string{"a", "b", "c"} {
		grabs[i].Grab.User = u
	}
	if failed := o.Write(grabs); failed != nil {
		t.Fatal(failed)
	}
	for _, tc := range []struct {
		name, method, path, body string
		code                     int
		status                   string
		hdr                      map[string]string
	}{
		{"get", "GET", "/v1/orders/" + ids[0], "", 200, "pending_payment", nil},
		{"pay", "POST", "/v1/orders/" + ids[0] + "/pay", payBody(ids[0]), 200, "paid", paySig(ids[0])},
		{"pay again", "POST", "/v1/orders/" + ids[0] + "/pay", payBody(ids[0]), 200, "paid", paySig(ids[0])},
		{"pay unsigned", "POST", "/v1/orders/" + ids[1] + "/pay", payBody(ids[1]), 401, "bad_signature", nil},
		{"cancel a paid order", "POST", "/v1/orders/" + ids[0] + "/cancel", `{"user_id":"a"}`, 409, "paid", nil},
		{"cancel by another buyer", "POST", "/v1/orders/" + ids[1] + "/cancel", `{"user_id":"a"}`, 403, "forbidden", nil},
		{"cancel", "POST", "/v1/orders/" + ids[1] + "/cancel", `{"user_id":"b"}`, 200, "cancelled", nil},
		{"cancel again", "POST", "/v1/orders/" + ids[1] + "/cancel", `{"user_id":"b"}`, 200, "cancelled", nil},
		{"pay a cancelled order", "POST", "/v1/orders/" + ids[1] + "/pay", payBody(ids[1]), 409, "cancelled", paySig(ids[1])},
		{"unknown order", "GET", "/v1/orders/o.0.99", "", 404, "unknown_order", nil},
		{"bad id", "GET", "/v1/orders/nope", "", 400, "bad_request", nil},
		{"cancel without user", "POST", "/v1/orders/" + ids[2] + "/cancel", `{}`, 400, "bad_request", nil},
		{"dead letters need a token", "GET", "/admin/v1/orders/dead", "", 401, "unauthorized", nil},
	} {
		t.Run(tc.name, func(t *testing.T) {
			if r := ts.do(t, tc.method, tc.path, tc.body, tc.hdr); r.code != tc.code || r.body["status"] != tc.status {
				t.Fatalf("got %d %s, want %d %s", r.code, r.raw, tc.code, tc.status)
			}
		})
	}
	// The cancelled unit is back: a new buyer gets it.
	if r := ts.do(t, "POST", "/v1/items/o/grab", `{"user_id":"d"}`, nil); r.code != 201 {
		t.Fatalf("after the cancel: %d %s", r.code, r.raw)
	}
	r := ts.do(t, "GET", "/admin/v1/orders/dead", "", admin)
	if r.code != 200 || r.raw != `{"dead":[{"grab_id":"x.0.1","item":"x","deliveries":5}]}` {
		t.Fatalf("dead letters: %d %s", r.code, r.raw)
	}
	if r := ts.do(t, "POST", "/admin/v1/orders/dead/x.0.1/retry", "", admin); r.code != 200 || r.body["status"] != "retried" {
		t.Fatalf("retry: %d %s", r.code, r.raw)
	}
	if r := ts.do(t, "POST", "/admin/v1/orders/dead/x.0.1/retry", "", admin); r.code != 404 {
		t.Fatalf("retry again: %d %s", r.code, r.raw)
	}
	// The new grab has no order yet but is young: reconcile is clean.
	if r := ts.do(t, "GET", "/admin/v1/reconcile?item=o", "", admin); r.code != 200 || r.body["clean"] != true {
		t.Fatalf("reconcile: %d %s", r.code, r.raw)
	}
}

// TestPeerOrderCalls: the order calls of other nodes are admin calls
// answered from this node's store; they name the buyer of a cancel, which
// the store checks; the public API has no such door.
func TestPeerOrderCalls(t *testing.T) {
	buyers, err := auth.HS256([]byte(testPaySecret))
	if err != nil {
		t.Fatal(err)
	}
	ts, o := startOrderServerWith(t, Security{Buyers: buyers}, true)
	ts.create(t, "p", `{"stock":2,"shards":1}`)
	tok, _ := auth.Mint("a", []byte(testPaySecret), time.Hour, time.Now())
	r := ts.do(t, "POST", "/v1/items/p/grab", ``, map[string]string{"Authorization": "Bearer " + tok})
	if r.code != 201 {
		t.Fatalf("grab: %d %s", r.code, r.raw)
	}
	id := r.body["grab_id"].(string)
	item, shard, seq, _ := engine.ParseGrabID(id)
	if failed := o.Write([]orders.Msg{{Grab: engine.Grab{Item: item, Shard: shard, Seq: seq, User: "a", Qty: 1, AtMs: ts.node.Now()}}}); failed != nil {
		t.Fatal(failed)
	}
	peer := "/admin/v1/cluster/orders/" + id
	for _, tc := range []struct {
		name, method, path, body string
		hdr                      map[string]string
		code                     int
		status                   string
	}{
		{"needs the admin token", "GET", peer, "", nil, 401, "unauthorized"},
		{"a buyer's token is not it", "GET", peer, "", map[string]string{"Authorization": "Bearer " + tok}, 401, "unauthorized"},
		{"read", "GET", peer, "", admin, 200, "pending_payment"},
		{"cancel for another buyer", "POST", peer + "/cancel", `{"user_id":"b"}`, admin, 403, "forbidden"},
		{"cancel without a buyer", "POST", peer + "/cancel", `{}`, admin, 400, "bad_request"},
		{"public local query is no door", "GET", "/v1/orders/" + id + "?local=1", "", nil, 401, "unauthorized"},
		{"unknown", "GET", "/admin/v1/cluster/orders/p.0.99", "", admin, 404, "unknown_order"},
		{"cancel by its buyer", "POST", peer + "/cancel", `{"user_id":"a"}`, admin, 200, "cancelled"},
	} {
		t.Run(tc.name, func(t *testing.T) {
			if r := ts.do(t, tc.method, tc.path, tc.body, tc.hdr); r.code != tc.code || r.body["status"] != tc.status {
				t.Fatalf("got %d %s, want %d %s", r.code, r.raw, tc.code, tc.status)
			}
		})
	}
}

// TestPayWithoutSecret: without a payment secret the pay endpoint is not
// there (404), and the node says why in its log, once.
func TestPayWithoutSecret(t *testing.T) {
	store, err := persistence.OpenPebble(t.TempDir())
	if err != nil {
		t.Fatal(err)
	}
	node, err := actors.Start(store, actors.Options{})
	if err != nil {
		t.Fatal(err)
	}
	defer node.Close()
	os, err := persistence.OpenPebbleOrders(t.TempDir())
	if err != nil {
		t.Fatal(err)
	}
	defer os.Close()
	local := actors.NewLocal(node)
	var logged bytes.Buffer
	front := NewServer(local, testToken, slog.New(slog.NewTextHandler(&logged, nil))).WithOrders(orders.New(local, os, nil), nil, nil)
	for range 3 {
		var req fasthttp.Request
		req.Header.SetMethod("POST")
		req.SetRequestURI("/v1/orders/o.0.1/pay")
		req.SetBodyString(payBody("o.0.1"))
		var ctx fasthttp.RequestCtx
		ctx.Init(&req, nil, nil)
		front.Handle(&ctx)
		if ctx.Response.StatusCode() != 404 || !strings.Contains(string(ctx.Response.Body()), "payment secret") {
			t.Fatalf("pay: %d %s", ctx.Response.StatusCode(), ctx.Response.Body())
		}
	}
	if n := strings.Count(logged.String(), "--payment-secret"); n != 1 {
		t.Fatalf("logged %d times:\n%s", n, logged.String())
	}
}

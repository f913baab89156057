package grid

import (
	"encoding/json"
	"io"
	"log/slog"
	"net"
	"net/http"
	"strings"
	"testing"
	"time"

	"github.com/seckill/seckill/actors"
	"github.com/seckill/seckill/auth"
	"github.com/seckill/seckill/engine"
	"github.com/seckill/seckill/fence"
	"github.com/seckill/seckill/orders"
	"github.com/seckill/seckill/persistence"
	"github.com/seckill/seckill/transport"
)

const (
	ownerAdminToken = "grid-orders-admin-token"
	ownerBuyers     = "grid-orders-buyer-secret-32bytes"
	ownerPayments   = "grid-orders-payment-secret-32byt"
)

// orderNode is one node's order side: a real actors node and order store,
// and its HTTP front on loopback.
type orderNode struct {
	node   *actors.Node
	orders *orders.Orders
	url    string
}

func startOrderNode(t *testing.T, front func(*actors.Local, *orders.Orders) *transport.Server) *orderNode {
	t.Helper()
	store, err := persistence.OpenPebble(t.TempDir())
	if err != nil {
		t.Fatal(err)
	}
	n, err := actors.Start(store, actors.Options{Logger: slog.New(slog.DiscardHandler)})
	if err != nil {
		t.Fatal(err)
	}
	os, err := persistence.OpenPebbleOrders(t.TempDir())
	if err != nil {
		t.Fatal(err)
	}
	local := actors.NewLocal(n)
	o := orders.New(local, os, nil)
	srv := front(local, o).FastHTTP()
	ln, err := net.Listen("tcp", "127.0.0.1:0")
	if err != nil {
		t.Fatal(err)
	}
	done := make(chan error, 1)
	go func() { done <- srv.Serve(ln) }()
	t.Cleanup(func() {
		srv.Shutdown()
		<-done
		n.Close()
		os.Close()
	})
	return &orderNode{node: n, orders: o, url: "http://" + ln.Addr().String()}
}

// TestOrdersOfAnotherNodeStayTheBuyers: an order in n2's store, asked
// through n1's front (which forwards to n2 with an admin call): only its
// buyer reads and cancels it there, another buyer gets the 404 of an
// unknown order, and a payment is taken only signed.
func TestOrdersOfAnotherNodeStayTheBuyers(t *testing.T) {
	buyers, err := auth.HS256([]byte(ownerBuyers))
	if err != nil {
		t.Fatal(err)
	}
	sec := transport.Security{Buyers: buyers, PaymentSecret: []byte(ownerPayments)}
	n2 := startOrderNode(t, func(l *actors.Local, o *orders.Orders) *transport.Server {
		return transport.NewServer(l, ownerAdminToken, nil).WithOrders(o, nil, nil).WithLocalOrders(o).WithSecurity(sec)
	})
	self := fence.NodeInfo{ID: "n1", Addr: "127.0.0.1:7946"}
	g := New(Config{Self: self, Logger: slog.New(slog.DiscardHandler)})
	g.SetAdminToken(ownerAdminToken)
	g.view.Store(&view{items: map[string]engine.ItemConfig{}, placement: map[string][]fence.Placement{}, draining: map[string]bool{},
		peers: map[string]fence.NodeInfo{"n1": self, "n2": {ID: "n2", HTTP: n2.url}}})
	n1 := startOrderNode(t, func(l *actors.Local, o *orders.Orders) *transport.Server {
		return transport.NewServer(l, ownerAdminToken, nil).WithOrders(g.Orders(o), nil, nil).WithLocalOrders(o).WithSecurity(sec)
	})

	// Alice's grab and order, on n2.
	if err := n2.node.CreateItem(engine.ItemConfig{Item: "g", Stock: 2, Shards: 1, PerUserLimit: 1, PaymentWindowMs: 600_000}); err != nil {
		t.Fatal(err)
	}
	r := actors.NewLocal(n2.node).Grab("g", "alice", 1, "")
	if r.Err != nil || r.Outcome != engine.Confirmed {
		t.Fatalf("grab: %+v", r)
	}
	if failed := n2.orders.Write([]orders.Msg{{Grab: r.Grab}}); failed != nil {
		t.Fatal(failed)
	}
	id := string(engine.AppendGrabID(nil, r.Grab.Item, r.Grab.Shard, r.Grab.Seq))
	tok := func(u string) string {
		s, _ := auth.Mint(u, []byte(ownerBuyers), time.Hour, time.Now())
		return "Bearer " + s
	}
	body := `{"grab_id":"` + id + `","amount_cents":10}`
	for _, tc := range []struct {
		name, method, path, body string
		hdr                      map[string]string
		code                     int
		status                   string
	}{
		{"another buyer reads", "GET", "/v1/orders/" + id, "", map[string]string{"Authorization": tok("mallory")}, 404, "unknown_order"},
		{"another buyer cancels", "POST", "/v1/orders/" + id + "/cancel", "", map[string]string{"Authorization": tok("mallory")}, 404, "unknown_order"},
		{"unsigned payment", "POST", "/v1/orders/" + id + "/pay", body, nil, 401, "bad_signature"},
		{"its buyer reads", "GET", "/v1/orders/" + id, "", map[string]string{"Authorization": tok("alice")}, 200, "pending_payment"},
		{"signed payment", "POST", "/v1/orders/" + id + "/pay", body,
			map[string]string{"X-Signature": auth.Sign([]byte(ownerPayments), []byte(body), time.Now().Unix())}, 200, "paid"},
		{"its buyer cancels a paid order", "POST", "/v1/orders/" + id + "/cancel", "", map[string]string{"Authorization": tok("alice")}, 409, "paid"},
	} {
		t.Run(tc.name, func(t *testing.T) {
			req, _ := http.NewRequest(tc.method, n1.url+tc.path, strings.NewReader(tc.body))
			for k, v := range tc.hdr {
				req.Header.Set(k, v)
			}
			resp, err := http.DefaultClient.Do(req)
			if err != nil {
				t.Fatal(err)
			}
			defer resp.Body.Close()
			raw, _ := io.ReadAll(resp.Body)
			var m map[string]any
			json.Unmarshal(raw, &m)
			if resp.StatusCode != tc.code || m["status"] != tc.status {
				t.Fatalf("got %d %s, want %d %s", resp.StatusCode, raw, tc.code, tc.status)
			}
		})
	}
}

package main

import (
	"encoding/json"
	"errors"
	"io"
	"log/slog"
	"net/http"
	"strings"
	"sync/atomic"
	"testing"
	"time"

	"github.com/seckill/seckill/actors"
	"github.com/seckill/seckill/bus"
	"github.com/seckill/seckill/engine"
	"github.com/seckill/seckill/persistence"
	"github.com/seckill/seckill/system"
	"github.com/seckill/seckill/transport"
)

// poisonStore refuses to write the orders of one user while poisoned: a
// cause an operator fixes (a bad row, a constraint), then retries.
type poisonStore struct {
	persistence.OrderStore
	user     string
	poisoned atomic.Bool
}

var errPoison = errors.New("order store refuses this order")

func (p *poisonStore) WriteNew(orders []engine.Order) (int, error) {
	if p.poisoned.Load() {
		for _, o := range orders {
			if o.User == p.user {
				return 0, errPoison
			}
		}
	}
	return p.OrderStore.WriteNew(orders)
}

// inProcess is a whole node in this process: Pebble, shard actors, the
// embedded NATS server, the order pipeline and the HTTP front.
type inProcess struct {
	url  string
	node *actors.Node
}

func startInProcess(t *testing.T, ostoreWrap func(persistence.OrderStore) persistence.OrderStore, cfg bus.Config) *inProcess {
	t.Helper()
	return startInProcessTB(t, ostoreWrap, cfg)
}

// startInProcessB is startInProcess for benchmarks.
func startInProcessB(b *testing.B, ostoreWrap func(persistence.OrderStore) persistence.OrderStore) *inProcess {
	return startInProcessTB(b, ostoreWrap, bus.Config{})
}

func startInProcessTB(t testing.TB, ostoreWrap func(persistence.OrderStore) persistence.OrderStore, cfg bus.Config) *inProcess {
	sys, err := system.Open(system.Config{
		DataDir:      t.TempDir(),
		HTTPAddr:     "127.0.0.1:0",
		AdminToken:   testAdminToken,
		NATSName:     "test",
		OrderWriters: 1,
		Bus:          cfg,
		WrapOrders:   ostoreWrap,
		Security:     transport.Security{PaymentSecret: []byte(testPaySecret)},
		Logger:       slog.New(slog.DiscardHandler),
	})
	if err != nil {
		t.Fatal(err)
	}
	t.Cleanup(func() { sys.Close() })
	return &inProcess{url: sys.URL(), node: sys.Node}
}

const testAdminToken = "pipeline-test-token"

func call(t *testing.T, method, url, body string, admin bool) (int, map[string]any) {
	t.Helper()
	req, _ := http.NewRequest(method, url, strings.NewReader(body))
	if admin {
		req.Header.Set("Authorization", "Bearer "+testAdminToken)
	}
	resp, err := http.DefaultClient.Do(req)
	if err != nil {
		t.Fatal(err)
	}
	defer resp.Body.Close()
	raw, _ := io.ReadAll(resp.Body)
	var m map[string]any
	if err := json.Unmarshal(raw, &m); err != nil {
		t.Fatalf("%s %s: %d %q", method, url, resp.StatusCode, raw)
	}
	return resp.StatusCode, m
}

// eventually polls cond until it holds or the deadline passes. Delivery
// through the stream is asynchronous; nothing here measures time.
func eventually(t *testing.T, what string, cond func() bool) {
	t.Helper()
	deadline := time.Now().Add(60 * time.Second)
	for !cond() {
		if time.Now().After(deadline) {
			t.Fatalf("%s: not within the deadline", what)
		}
		time.Sleep(20 * time.Millisecond)
	}
}

func TestPoisonMessageGoesToDeadLettersAndRetries(t *testing.T) {
	poison := &poisonStore{user: "poison"}
	poison.poisoned.Store(true)
	n := startInProcess(t, func(s persistence.OrderStore) persistence.OrderStore { poison.OrderStore = s; return poison },
		bus.Config{MaxDeliver: 3, BackOff: []time.Duration{100 * time.Millisecond, 100 * time.Millisecond}})
	if code, _ := call(t, "PUT", n.url+"/admin/v1/items/p", `{"stock":10,"shards":2}`, true); code != 201 {
		t.Fatal(code)
	}
	var ids []string
	for _, u := range []string{"a", "poison", "b"} {
		code, m := call(t, "POST", n.url+"/v1/items/p/grab", `{"user_id":"`+u+`"}`, false)
		if code != 201 {
			t.Fatalf("%s: %d %v", u, code, m)
		}
		ids = append(ids, m["grab_id"].(string))
	}
	// The good orders are written; the poisoned one, after its retries,
	// is a dead letter the admin API shows.
	for _, id := range []string{ids[0], ids[2]} {
		eventually(t, "order "+id, func() bool { code, _ := call(t, "GET", n.url+"/v1/orders/"+id, "", false); return code == 200 })
	}
	eventually(t, "dead letter", func() bool {
		_, m := call(t, "GET", n.url+"/admin/v1/orders/dead", "", true)
		dead, _ := m["dead"].([]any)
		return len(dead) == 1 && dead[0].(map[string]any)["grab_id"] == ids[1]
	})
	if code, m := call(t, "GET", n.url+"/v1/orders/"+ids[1], "", false); code != 202 {
		t.Fatalf("poisoned order: %d %v", code, m)
	}
	// Fix the cause, retry: the order is written and the DLQ empties.
	poison.poisoned.Store(false)
	if code, m := call(t, "POST", n.url+"/admin/v1/orders/dead/"+ids[1]+"/retry", "", true); code != 200 {
		t.Fatalf("retry: %d %v", code, m)
	}
	eventually(t, "retried order", func() bool { code, _ := call(t, "GET", n.url+"/v1/orders/"+ids[1], "", false); return code == 200 })
	_, m := call(t, "GET", n.url+"/admin/v1/orders/dead", "", true)
	if dead, _ := m["dead"].([]any); len(dead) != 0 {
		t.Fatalf("dead letters after the retry: %v", m)
	}
	if code, m := call(t, "POST", n.url+"/admin/v1/orders/dead/"+ids[1]+"/retry", "", true); code != 404 {
		t.Fatalf("second retry: %d %v", code, m)
	}
	if code, m := call(t, "GET", n.url+"/admin/v1/reconcile?item=p", "", true); code != 200 || m["clean"] != true {
		t.Fatalf("reconcile: %d %v", code, m)
	}
}

// TestUnpaidOrdersReturnTheirUnits: with a one-second payment window the
// unpaid orders are cancelled, their units sell again, and the paid one
// stays sold.
func TestUnpaidOrdersReturnTheirUnits(t *testing.T) {
	n := startInProcess(t, nil, bus.Config{})
	if code, _ := call(t, "PUT", n.url+"/admin/v1/items/w", `{"stock":3,"shards":1,"payment_window_s":1}`, true); code != 201 {
		t.Fatal(code)
	}
	var ids []string
	for _, u := range []string{"a", "b", "c"} {
		code, m := call(t, "POST", n.url+"/v1/items/w/grab", `{"user_id":"`+u+`"}`, false)
		if code != 201 {
			t.Fatalf("%s: %d", u, code)
		}
		ids = append(ids, m["grab_id"].(string))
	}
	eventually(t, "orders", func() bool { code, _ := call(t, "GET", n.url+"/v1/orders/"+ids[0], "", false); return code == 200 })
	if code, m := callPay(t, n.url, ids[0], time.Now()); code != 200 || m["status"] != "paid" {
		t.Fatalf("pay: %d %v", code, m)
	}
	// c cancels while the timeout may fire: either way its unit comes back once.
	call(t, "POST", n.url+"/v1/orders/"+ids[2]+"/cancel", `{"user_id":"c"}`, false)
	for _, id := range ids[1:] {
		eventually(t, "cancel of "+id, func() bool {
			_, m := call(t, "GET", n.url+"/v1/orders/"+id, "", false)
			return m["status"] == "cancelled"
		})
	}
	eventually(t, "units back", func() bool {
		_, m := call(t, "GET", n.url+"/admin/v1/items/w", "", true)
		return m["remaining"] == 2.0
	})
	for _, u := range []string{"b", "d"} {
		if code, m := call(t, "POST", n.url+"/v1/items/w/grab", `{"user_id":"`+u+`"}`, false); code != 201 {
			t.Fatalf("%s after the timeout: %d %v", u, code, m)
		}
	}
	if code, m := call(t, "POST", n.url+"/v1/items/w/grab", `{"user_id":"e"}`, false); code != 409 || m["status"] != "sold_out" {
		t.Fatalf("a fourth unit: %d %v", code, m)
	}
	_, m := call(t, "GET", n.url+"/admin/v1/items/w", "", true)
	if m["sold"] != 3.0 || m["remaining"] != 0.0 || m["stock"] != 3.0 {
		t.Fatalf("item after resale: %v", m)
	}
	eventually(t, "reconcile clean", func() bool {
		code, _ := call(t, "GET", n.url+"/admin/v1/reconcile?item=w", "", true)
		return code == 200
	})
}

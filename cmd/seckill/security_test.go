package main

import (
	"bytes"
	"context"
	"encoding/base64"
	"encoding/json"
	"fmt"
	"io"
	"log/slog"
	"net/http"
	"os/exec"
	"strings"
	"testing"
	"time"

	"github.com/seckill/seckill/auth"
	"github.com/seckill/seckill/system"
	"github.com/seckill/seckill/transport"
)

const (
	testPaySecret   = "pipeline-test-payment-secret-32b"
	testBuyerSecret = "pipeline-test-buyer-secret-of-32"
)

// callPay posts a payment callback for id signed at `at`, as the provider
// would.
func callPay(t *testing.T, base, id string, at time.Time) (int, map[string]any) {
	t.Helper()
	body := `{"grab_id":"` + id + `","amount_cents":4999}`
	sig := auth.Sign([]byte(testPaySecret), []byte(body), at.Unix())
	return send(t, "POST", base+"/v1/orders/"+id+"/pay", body, map[string]string{"X-Signature": sig})
}

// send makes one request with headers and returns its status and JSON body.
func send(t *testing.T, method, url, body string, hdr map[string]string) (int, map[string]any) {
	t.Helper()
	req, _ := http.NewRequest(method, url, strings.NewReader(body))
	for k, v := range hdr {
		req.Header.Set(k, v)
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

func bearer(tok string) map[string]string { return map[string]string{"Authorization": "Bearer " + tok} }

func mint(t *testing.T, user, secret string, ttl time.Duration, now time.Time) string {
	t.Helper()
	tok, err := auth.Mint(user, []byte(secret), ttl, now)
	if err != nil {
		t.Fatal(err)
	}
	return tok
}

// algNone is a token with alg "none" and no signature for user.
func algNone(user string) string {
	enc := base64.RawURLEncoding.EncodeToString
	head := enc([]byte(`{"alg":"none","typ":"JWT"}`))
	claims := enc(fmt.Appendf(nil, `{"sub":%q,"exp":%d}`, user, time.Now().Add(time.Hour).Unix()))
	return head + "." + claims + "."
}

// TestAttackerIsRefused plays the attacker against a whole node (Pebble,
// embedded NATS, order writer, HTTP on loopback) with buyer tokens, signed
// payments and the admin API on its own listener: every attack is refused
// with its documented status, and the item and the orders are unchanged.
func TestAttackerIsRefused(t *testing.T) {
	buyers, err := auth.HS256([]byte(testBuyerSecret))
	if err != nil {
		t.Fatal(err)
	}
	sys, err := system.Open(system.Config{
		DataDir:       t.TempDir(),
		HTTPAddr:      "127.0.0.1:0",
		AdminHTTPAddr: "127.0.0.1:0",
		AdminToken:    testAdminToken,
		NATSName:      "attack",
		OrderWriters:  1,
		Security:      transport.Security{Buyers: buyers, PaymentSecret: []byte(testPaySecret)},
		Logger:        slog.New(slog.DiscardHandler),
	})
	if err != nil {
		t.Fatal(err)
	}
	t.Cleanup(func() { sys.Close() })
	pub, adm := sys.URL(), sys.AdminURL()
	admin := bearer(testAdminToken)
	now := time.Now()
	alice, bob := mint(t, "alice", testBuyerSecret, time.Hour, now), mint(t, "bob", testBuyerSecret, time.Hour, now)
	mallory := mint(t, "mallory", testBuyerSecret, time.Hour, now)

	if code, m := send(t, "PUT", adm+"/admin/v1/items/sec", `{"stock":5,"shards":2,"per_user_limit":1}`, admin); code != 201 {
		t.Fatalf("create: %d %v", code, m)
	}
	// Alice leaves user_id out; Bob names himself: both are their tokens'.
	code, m := send(t, "POST", pub+"/v1/items/sec/grab", ``, bearer(alice))
	if code != 201 || m["user_id"] != "alice" {
		t.Fatalf("alice: %d %v", code, m)
	}
	aliceID := m["grab_id"].(string)
	code, m = send(t, "POST", pub+"/v1/items/sec/grab", `{"user_id":"bob"}`, bearer(bob))
	if code != 201 || m["user_id"] != "bob" {
		t.Fatalf("bob: %d %v", code, m)
	}
	bobID := m["grab_id"].(string)
	for _, c := range []struct{ id, tok string }{{aliceID, alice}, {bobID, bob}} {
		eventually(t, "order "+c.id, func() bool { code, _ := send(t, "GET", pub+"/v1/orders/"+c.id, "", bearer(c.tok)); return code == 200 })
	}
	before := adminState(t, adm)

	// Every grab id the item can have so far, and one beyond.
	var probe []string
	for shard := range 2 {
		for seq := 1; seq <= 3; seq++ {
			probe = append(probe, fmt.Sprintf("sec.%d.%d", shard, seq))
		}
	}
	type attack struct {
		name, method, path, body string
		hdr                      map[string]string
		code                     int
		status                   string
	}
	var attacks []attack
	for _, id := range probe {
		attacks = append(attacks, attack{"enumerate " + id, "GET", "/v1/orders/" + id, "", bearer(mallory), 404, "unknown_order"})
	}
	sig := func(secret, body string, at time.Time) map[string]string {
		return map[string]string{"X-Signature": auth.Sign([]byte(secret), []byte(body), at.Unix())}
	}
	payBody := `{"grab_id":"` + aliceID + `","amount_cents":4999}`
	attacks = append(attacks,
		attack{"read without a token", "GET", "/v1/orders/" + aliceID, "", nil, 401, "unauthorized"},
		attack{"read another's order", "GET", "/v1/orders/" + aliceID, "", bearer(mallory), 404, "unknown_order"},
		attack{"cancel another's order", "POST", "/v1/orders/" + aliceID + "/cancel", "", bearer(mallory), 404, "unknown_order"},
		attack{"cancel naming its buyer", "POST", "/v1/orders/" + aliceID + "/cancel", `{"user_id":"alice"}`, bearer(mallory), 403, "forbidden"},
		attack{"cancel without a token", "POST", "/v1/orders/" + aliceID + "/cancel", `{"user_id":"alice"}`, nil, 401, "unauthorized"},
		attack{"pay unsigned", "POST", "/v1/orders/" + aliceID + "/pay", payBody, nil, 401, "bad_signature"},
		attack{"pay with a stale signature", "POST", "/v1/orders/" + aliceID + "/pay", payBody, sig(testPaySecret, payBody, now.Add(-auth.MaxSignatureAge-time.Minute)), 401, "stale_signature"},
		attack{"pay with a forged signature", "POST", "/v1/orders/" + aliceID + "/pay", payBody, sig("another-secret-another-secret-xx", payBody, now), 401, "bad_signature"},
		attack{"pay with a body not signed", "POST", "/v1/orders/" + aliceID + "/pay", strings.Replace(payBody, "4999", "1", 1), sig(testPaySecret, payBody, now), 401, "bad_signature"},
		attack{"pay another order with a signed body", "POST", "/v1/orders/" + bobID + "/pay", payBody, sig(testPaySecret, payBody, now), 400, "bad_request"},
		attack{"grab as another buyer", "POST", "/v1/items/sec/grab", `{"user_id":"alice"}`, bearer(mallory), 403, "forbidden"},
		attack{"grab without a token", "POST", "/v1/items/sec/grab", `{"user_id":"alice"}`, nil, 401, "unauthorized"},
		attack{"expired token", "POST", "/v1/items/sec/grab", ``, bearer(mint(t, "mallory", testBuyerSecret, time.Hour, now.Add(-time.Hour-auth.ClockSkew-time.Minute))), 401, "unauthorized"},
		attack{"token of another key", "POST", "/v1/items/sec/grab", ``, bearer(mint(t, "alice", "not-the-shops-secret-not-the-shop", time.Hour, now)), 401, "unauthorized"},
		attack{"alg none", "POST", "/v1/items/sec/grab", ``, bearer(algNone("alice")), 401, "unauthorized"},
		attack{"alg none reads", "GET", "/v1/orders/" + aliceID, ``, bearer(algNone("alice")), 401, "unauthorized"},
		attack{"admin on the public listener", "GET", "/admin/v1/items/sec", "", admin, 404, "not_found"},
		attack{"peer order call on the public listener", "POST", "/admin/v1/cluster/orders/" + aliceID + "/cancel", `{"user_id":"alice"}`, admin, 404, "not_found"},
		attack{"old local query", "POST", "/v1/orders/" + aliceID + "/cancel?local=1", `{"user_id":"alice"}`, nil, 401, "unauthorized"},
	)
	for _, a := range attacks {
		t.Run(a.name, func(t *testing.T) {
			code, m := send(t, a.method, pub+a.path, a.body, a.hdr)
			if code != a.code || m["status"] != a.status {
				t.Fatalf("got %d %v, want %d %s", code, m, a.code, a.status)
			}
		})
	}
	// The admin listener wants the admin token, also for the peers' calls.
	if code, m := send(t, "POST", adm+"/admin/v1/cluster/orders/"+aliceID+"/cancel", `{"user_id":"alice"}`, nil); code != 401 {
		t.Fatalf("peer order call without the admin token: %d %v", code, m)
	}
	if after := adminState(t, adm); after != before {
		t.Fatalf("the attacks changed the sale:\nbefore %s\nafter  %s", before, after)
	}
	for _, c := range []struct{ id, tok string }{{aliceID, alice}, {bobID, bob}} {
		if code, m := send(t, "GET", pub+"/v1/orders/"+c.id, "", bearer(c.tok)); code != 200 || m["status"] != "pending_payment" {
			t.Fatalf("order %s after the attacks: %d %v", c.id, code, m)
		}
	}
	// The buyers themselves: Alice's payment is signed, Bob cancels his own.
	if code, m := callPay(t, pub, aliceID, time.Now()); code != 200 || m["status"] != "paid" {
		t.Fatalf("pay: %d %v", code, m)
	}
	if code, m := send(t, "POST", pub+"/v1/orders/"+bobID+"/cancel", "", bearer(bob)); code != 200 || m["status"] != "cancelled" {
		t.Fatalf("bob cancels: %d %v", code, m)
	}
	eventually(t, "bob's unit back", func() bool {
		_, m := send(t, "GET", adm+"/admin/v1/items/sec", "", admin)
		return m["sold"] == 1.0 && m["remaining"] == 4.0
	})
	if code, m := send(t, "GET", adm+"/admin/v1/reconcile?item=sec", "", admin); code != 200 || m["clean"] != true {
		t.Fatalf("reconcile: %d %v", code, m)
	}
}

// adminState is the item's numbers and the reconcile's counts, as JSON.
func adminState(t *testing.T, adm string) string {
	t.Helper()
	_, item := send(t, "GET", adm+"/admin/v1/items/sec", "", bearer(testAdminToken))
	code, rec := send(t, "GET", adm+"/admin/v1/reconcile?item=sec", "", bearer(testAdminToken))
	if code != 200 {
		t.Fatalf("reconcile: %d %v", code, rec)
	}
	b, _ := json.Marshal([]any{item["sold"], item["remaining"], item["shards"], rec})
	return string(b)
}

// TestServeRefusesAnonymousBuyersOffLoopback: `serve` on a non-loopback
// address without buyer auth stops at once, naming the way out.
func TestServeRefusesAnonymousBuyersOffLoopback(t *testing.T) {
	bin := buildSeckill(t)
	for _, tc := range []struct {
		name string
		args []string
		want string
	}{
		{"any address", []string{"--http", "0.0.0.0:0"}, "--insecure-buyer-ids"},
		{"every interface", []string{"--http", ":0"}, "--insecure-buyer-ids"},
		{"jwt without a key", []string{"--buyer-auth", "jwt"}, "--buyer-secret or --buyer-jwks"},
		{"short secret", []string{"--buyer-auth", "jwt", "--buyer-secret", "short"}, "at least 32"},
		{"short payment secret", []string{"--payment-secret", "short"}, "at least 32"},
		{"bad proxies", []string{"--trusted-proxies", "10.0.0.0/8,nope"}, "trusted proxy"},
	} {
		t.Run(tc.name, func(t *testing.T) {
			args := append([]string{"serve", "--data", t.TempDir(), "--nats-listen", ""}, tc.args...)
			cmd := exec.Command(bin, args...)
			out, err := cmd.CombinedOutput()
			if err == nil || !strings.Contains(string(out), tc.want) {
				t.Fatalf("serve %v: err %v, output %q (want it to name %q)", tc.args, err, out, tc.want)
			}
		})
	}
}

// TestBenchWithBuyerTokens: `seckill bench --buyer-secret` against a
// `serve --buyer-auth jwt` process: every grab carries its buyer's token,
// so the flash sale sells out and the audit (replays and limit probes with
// the same tokens) passes.
func TestBenchWithBuyerTokens(t *testing.T) {
	bin := buildSeckill(t)
	srv := startServe(t, bin, t.TempDir(), "serve", "--nats-listen", "", "--buyer-auth", "jwt", "--buyer-secret", testBuyerSecret)
	defer srv.stop(t)
	var out bytes.Buffer
	err := benchMain(context.Background(), []string{"--url", srv.URL, "--token", faultToken, "--buyer-secret", testBuyerSecret,
		"--workload", "flash", "--users", "300", "--stock", "30", "--shards", "4", "--arrival", "300ms", "--conns", "8"}, &out)
	if err != nil {
		t.Fatalf("bench: %v\n%s", err, out.String())
	}
	for _, want := range []string{"audit seckill: ok", "sold 30 == 30 distinct 201 grab ids", "30 replays gave the same grab id"} {
		if !strings.Contains(out.String(), want) {
			t.Fatalf("no %q in the report:\n%s", want, out.String())
		}
	}
	// Without the tokens the same server confirms nothing.
	out.Reset()
	err = benchMain(context.Background(), []string{"--url", srv.URL, "--token", faultToken,
		"--workload", "soldout", "--stock", "5", "--conns", "2", "--duration", "200ms", "--rounds", "1"}, &out)
	if err != nil || !strings.Contains(out.String(), "seckill answers by outcome: unauthorized ") || strings.Contains(out.String(), "confirmed") {
		t.Fatalf("bench without tokens: want every answer 401: %v\n%s", err, out.String())
	}
}

func TestLoopback(t *testing.T) {
	for addr, want := range map[string]bool{
		"127.0.0.1:8080": true, "127.0.0.12:1": true, "[::1]:8080": true, "localhost:8080": true,
		":8080": false, "0.0.0.0:8080": false, "[::]:8080": false, "10.0.0.1:8080": false, "nonsense": false,
	} {
		if got := loopback(addr); got != want {
			t.Errorf("loopback(%q) = %v, want %v", addr, got, want)
		}
	}
}

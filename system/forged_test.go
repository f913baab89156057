package system

import (
	"context"
	"encoding/json"
	"errors"
	"io"
	"log/slog"
	"net/http"
	"slices"
	"strings"
	"sync/atomic"
	"testing"
	"time"

	"github.com/nats-io/nats.go"
	"github.com/nats-io/nats.go/jetstream"
	"github.com/seckill/seckill/bus"
	"github.com/seckill/seckill/engine"
	"github.com/seckill/seckill/orders"
	"github.com/seckill/seckill/sale"
)

// forgedWait bounds every poll of the forged-grab test.
const forgedWait = 30 * time.Second

// TestForgedGrabOnTheBus plays the attacker against a node whose
// embedded NATS listens: without the key the bus refuses the connection;
// with it (a stolen key) a grab forged onto the stream, fk.1.999 for a
// buyer who never bought, becomes an order, and the live reconcile names
// it once it is older than the in-flight allowance.
func TestForgedGrabOnTheBus(t *testing.T) {
	const token = "forged-test-token"
	var offset atomic.Int64 // the sale's clock runs this far ahead of the wall
	sys, err := Open(Config{DataDir: t.TempDir(), HTTPAddr: "127.0.0.1:0", AdminToken: token, NATSName: "test",
		NATSListen: "127.0.0.1:0", OrderWriters: 1, Logger: slog.New(slog.DiscardHandler),
		Clock: func() int64 { return time.Now().UnixMilli() + offset.Load() }})
	if err != nil {
		t.Fatal(err)
	}
	defer sys.Close()
	if err := sys.Node.CreateItem(engine.ItemConfig{Item: "fk", Stock: 10, Shards: 2, PerUserLimit: 1}); err != nil {
		t.Fatal(err)
	}
	resp, err := http.Post(sys.URL()+"/v1/items/fk/grab", "application/json", strings.NewReader(`{"user_id":"real"}`))
	if err != nil {
		t.Fatal(err)
	}
	var real struct {
		GrabID string `json:"grab_id"`
	}
	err = json.NewDecoder(resp.Body).Decode(&real)
	resp.Body.Close()
	if resp.StatusCode != http.StatusCreated || err != nil {
		t.Fatalf("grab: %d %v", resp.StatusCode, err)
	}

	url := sys.Stream.Emb.ClientURL()
	if nc, err := nats.Connect(url, nats.Timeout(5*time.Second)); err == nil {
		nc.Close()
		t.Fatal("connected to the embedded NATS without credentials")
	} else if !errors.Is(err, nats.ErrAuthorization) && !strings.Contains(strings.ToLower(err.Error()), "authorization") {
		t.Fatalf("connect without credentials: %v, want an authorization violation", err)
	}

	nc, err := bus.Dial(url, "attacker", bus.ClientAuth{CredsFile: sys.Stream.Emb.CredsPath()})
	if err != nil {
		t.Fatal(err)
	}
	defer nc.Close()
	js, err := jetstream.New(nc)
	if err != nil {
		t.Fatal(err)
	}
	forged := engine.Grab{Item: "fk", Shard: 1, Seq: 999, User: "victim", Qty: 1, AtMs: time.Now().UnixMilli()}
	ctx, cancel := context.WithTimeout(context.Background(), forgedWait)
	defer cancel()
	if _, err := js.Publish(ctx, bus.GrabSubject("fk"), bus.EncodeGrab(nil, bus.NewGrabMsg(forged, 0))); err != nil {
		t.Fatal(err)
	}
	for _, id := range []string{real.GrabID, "fk.1.999"} {
		for deadline := time.Now().Add(forgedWait); ; {
			if _, err := sys.Pipeline.Orders.Get(id); err == nil {
				break
			} else if time.Now().After(deadline) {
				t.Fatalf("no order for %s after %v: %v", id, forgedWait, err)
			}
			time.Sleep(20 * time.Millisecond) // poll interval
		}
	}

	// Within the allowance the forged grab may still be a grab decided
	// after the report's snapshot: in flight, not yet a mismatch.
	code, rep := reconcile(t, sys.URL(), token)
	if code != http.StatusOK || !rep.Clean {
		t.Fatalf("young forged grab: %d %+v, want 200, in flight", code, rep)
	}
	offset.Store(orders.ReconcileGraceMs)
	code, rep = reconcile(t, sys.URL(), token)
	if code != http.StatusConflict || rep.Clean {
		t.Fatalf("old forged grab: %d %+v, want 409", code, rep)
	}
	kinds := map[string][]string{}
	for _, m := range rep.Mismatches {
		kinds[m.Kind] = m.GrabIDs
	}
	for _, k := range []string{"message_without_grab", "order_without_grab"} {
		if !slices.Equal(kinds[k], []string{"fk.1.999"}) {
			t.Errorf("%s: %v, want [fk.1.999] (all: %+v)", k, kinds[k], rep.Mismatches)
		}
	}
	if len(kinds) != 2 {
		t.Errorf("mismatches %+v, want only the forged grab's two", rep.Mismatches)
	}
}

func reconcile(t *testing.T, base, token string) (int, sale.Report) {
	t.Helper()
	req, _ := http.NewRequest(http.MethodGet, base+"/admin/v1/reconcile?item=fk", nil)
	req.Header.Set("Authorization", "Bearer "+token)
	resp, err := http.DefaultClient.Do(req)
	if err != nil {
		t.Fatal(err)
	}
	defer resp.Body.Close()
	body, _ := io.ReadAll(resp.Body)
	var out struct {
		Items []sale.Report `json:"items"`
	}
	if err := json.Unmarshal(body, &out); err != nil || len(out.Items) != 1 {
		t.Fatalf("reconcile %d: %s", resp.StatusCode, body)
	}
	return resp.StatusCode, out.Items[0]
}

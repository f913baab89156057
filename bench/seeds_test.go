package bench

import (
	"bytes"
	"context"
	"os/exec"
	"strconv"
	"strings"
	"testing"
	"time"

	"github.com/valyala/fasthttp"
)

func needRedis(t *testing.T) {
	t.Helper()
	if _, err := exec.LookPath("redis-server"); err != nil {
		t.Skip("redis-server not installed (make deps installs it)")
	}
}

// TestBenchSeeds drives the seeds target (real redis-server, real embedded
// NATS, real Pebble order store) one grab at a time, then through a short
// run that sells out, audited down to every 201's order.
func TestBenchSeeds(t *testing.T) {
	needRedis(t)
	ctx := context.Background()
	tg, err := StartSeeds(ctx, "", "everysec")
	if err != nil {
		t.Fatal(err)
	}
	defer func() {
		if err := tg.Stop(); err != nil {
			t.Error(err)
		}
	}()
	if err := tg.Admin.CreateItem(ctx, "seeds-one", 1, 1, 1); err != nil {
		t.Fatal(err)
	}
	var c fasthttp.Client
	send := func(item, user string) (int, []byte) {
		req, resp := fasthttp.AcquireRequest(), fasthttp.AcquireResponse()
		defer fasthttp.ReleaseRequest(req)
		defer fasthttp.ReleaseResponse(resp)
		req.SetRequestURI(tg.URL + "/v1/items/" + item + "/grab")
		req.Header.SetMethod(fasthttp.MethodPost)
		req.SetBodyString(`{"user_id":"` + user + `"}`)
		if err := c.Do(req, resp); err != nil {
			t.Fatalf("grab %s by %s: %v", item, user, err)
		}
		return resp.StatusCode(), append([]byte(nil), resp.Body()...)
	}
	for _, step := range []struct {
		item, user string
		want       int
		body       string
	}{
		{"seeds-one", "a", 201, `"grab_id":"seeds-one.0.1"`},
		{"seeds-one", "a", 409, "limit_reached"},
		{"seeds-one", "b", 409, "sold_out"},
		{"seeds-none", "a", 404, "unknown_item"},
	} {
		if status, body := send(step.item, step.user); status != step.want || !bytes.Contains(body, []byte(step.body)) {
			t.Fatalf("grab %s by %s: %d %s, want %d with %s", step.item, step.user, status, body, step.want, step.body)
		}
	}
	// The local flag: with a unit back in Redis behind the instance's back,
	// the instance still says sold_out without asking, until its flag ages.
	saidSoldOut := time.Now()
	if err := tg.Admin.(*seeds).rdb.HSet(ctx, stockKey(seedsNamespace, "seeds-one"), "remaining", 1).Err(); err != nil {
		t.Fatal(err)
	}
	status, body := send("seeds-one", "c")
	if time.Since(saidSoldOut) < seedsSoldOutTTL && (status != 409 || !bytes.Contains(body, []byte("sold_out"))) {
		t.Fatalf("within the local flag's life: %d %s, want 409 sold_out answered locally", status, body)
	}

	plan := &Plan{Workload: "soldout", Items: []string{"seeds-item"}, Stock: 5}
	if err := tg.Admin.CreateItem(ctx, "seeds-item", 5, 1, 1); err != nil {
		t.Fatal(err)
	}
	r, err := ClosedLoop(ctx, []string{tg.URL}, 4, testCeiling, 100, plan)
	if err != nil {
		t.Fatal(err)
	}
	a := audit(ctx, tg, plan, &r)
	if !a.OK() || !strings.Contains(a.String(), "every one of 5 201s has its order") {
		t.Fatalf("audit: %s", a)
	}
	st, err := tg.Admin.Item(ctx, "seeds-item")
	if err != nil || st.Sold != 5 || st.Orders != 5 || st.Buyers != 5 {
		t.Fatalf("after the run: %+v, %v; want 5 sold to 5 buyers, 5 orders", st, err)
	}
}

// fakeOrders is a target whose order store breaks one promise.
type fakeOrders struct {
	sold, orders int64
	missing      bool // one 201's order id is not in the store
}

func (f fakeOrders) CreateItem(context.Context, string, int64, int, int64) error { return nil }

func (f fakeOrders) Item(context.Context, string) (ItemState, error) {
	return ItemState{Stock: f.sold, Sold: f.sold, PerUserLimit: 1, Buyers: -1, Orders: f.orders}, nil
}

func (f fakeOrders) Missing(_ context.Context, _ string, ids []string) ([]string, error) {
	if f.missing && len(ids) > 0 {
		return ids[:1], nil
	}
	return nil, nil
}

func TestAuditOrdersCatchesBrokenStore(t *testing.T) {
	cases := []struct {
		name string
		f    fakeOrders
		want string // "" for a passed check
	}{
		{"ok", fakeOrders{sold: 3, orders: 3}, ""},
		{"a 201 without its order", fakeOrders{sold: 3, orders: 3, missing: true}, "but no such order"},
		{"orders written twice", fakeOrders{sold: 3, orders: 4}, "written twice"},
	}
	for _, c := range cases {
		t.Run(c.name, func(t *testing.T) {
			plan := &Plan{Items: []string{"i"}, Stock: 3}
			r := Result{Finals: map[int]int64{201: 3}}
			for n := range int64(3) {
				r.grabs = append(r.grabs, seenGrab{user: n, job: n, id: "i.0." + strconv.FormatInt(n+1, 10)})
			}
			a := &Audit{}
			auditOrders(context.Background(), a, &Target{Admin: c.f, Orders: c.f}, plan, &r)
			switch {
			case c.want == "" && !a.OK():
				t.Fatalf("want a pass, got %s", a)
			case c.want != "" && (a.OK() || !strings.Contains(a.String(), c.want)):
				t.Fatalf("want a failure with %q, got %s", c.want, a)
			}
		})
	}
}

// TestBenchCompareInChildren runs --compare as the command does: every
// target in a child process (this test binary re-run, see TestMain), the
// seeds audited through its admin routes, and every target's CPU time
// read with its peers'.
func TestBenchCompareInChildren(t *testing.T) {
	needRedis(t)
	cfg := Config{Workload: "soldout", Stock: 20, Requests: 1500, Conns: 8, Duration: testCeiling,
		Compare: true, Exec: testExec(t), Local: testLocal, DataDir: t.TempDir()}
	var out bytes.Buffer
	rs, err := Run(context.Background(), cfg, &out)
	if err != nil {
		t.Fatalf("run: %v\n%s", err, out.String())
	}
	want := map[string]int{TargetSeckill: 1, TargetSeeds: 2, TargetRedis: 2, TargetBare: 1} // processes
	var cpu time.Duration
	for _, r := range rs {
		if n, ok := want[r.Target]; !ok || len(r.CPU) != n || r.CPU[0].Name != r.Target {
			t.Fatalf("%s: cpu of %+v, want %d processes, the first the target's:\n%s", r.Target, r.CPU, n, out.String())
		}
		delete(want, r.Target)
		cpu += r.CPUTotal()
	}
	if len(want) > 0 || cpu <= 0 {
		t.Fatalf("targets not measured %v, cpu %v in all:\n%s", want, cpu, out.String())
	}
	if !strings.Contains(out.String(), "audit seeds: ok") || !strings.Contains(out.String(), "has its order") {
		t.Fatalf("seeds not audited down to its orders:\n%s", out.String())
	}
}

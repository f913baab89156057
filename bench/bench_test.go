package bench

import (
	"bytes"
	"context"
	"encoding/json"
	"fmt"
	"net"
	"os/exec"
	"strings"
	"sync"
	"testing"
	"time"

	"github.com/seckill/seckill/engine"
	"github.com/valyala/fasthttp"
)

// testCeiling bounds a closed-loop run in these tests; they stop on a
// request count long before it and never look at how long anything took.
const testCeiling = time.Minute

func TestBenchAuditPassesOnSeckill(t *testing.T) {
	cases := []struct {
		name string
		cfg  Config
	}{
		{"soldout", Config{Workload: "soldout", Requests: 300}},
		{"durable keyed", Config{Workload: "durable", Requests: 300, Keys: true}},
		{"multi", Config{Workload: "multi", Items: 3, Stock: 20, Requests: 300}},
		{"open loop", Config{Workload: "soldout", Mode: "open", Rate: 2000, Duration: 100 * time.Millisecond}},
		{"flash", Config{Workload: "flash", Users: 400, Stock: 40, Shards: 4, Arrival: 200 * time.Millisecond}},
		// Slices end by time, so each goes on with the jobs the last left:
		// a buyer sent twice would meet the limit (a 409).
		{"durable in rounds", Config{Workload: "durable", Rounds: 3, Duration: 300 * time.Millisecond}},
	}
	for _, c := range cases {
		t.Run(c.name, func(t *testing.T) {
			cfg := c.cfg
			cfg.Conns, cfg.DataDir, cfg.Local = 8, t.TempDir(), testLocal
			if cfg.Duration == 0 {
				cfg.Duration = testCeiling
			}
			var out bytes.Buffer
			rs, err := Run(context.Background(), cfg, &out)
			if err != nil {
				t.Fatalf("run: %v\n%s", err, out.String())
			}
			r := rs[0]
			if r.Audit == nil || !r.Audit.OK() || r.Sent == 0 {
				t.Fatalf("want a passed audit after some requests:\n%s", out.String())
			}
			if cfg.Workload == "durable" && (r.ByStatus[201] != r.Sent || r.Errors != 0) {
				t.Fatalf("durable: %d sent, %d confirmed, %d errors; want every request a new buyer's 201:\n%s",
					r.Sent, r.ByStatus[201], r.Errors, out.String())
			}
			if cfg.Workload == "flash" && r.SellOut < 0 {
				t.Fatalf("flash did not sell out:\n%s", out.String())
			}
		})
	}
}

// fakeSeckill is a broken seckill: it answers the grab and admin calls of
// the contract, but breaks one promise.
type fakeSeckill struct {
	mode  string // forgets | renumbers | oversells | nolimit | early | disagree
	stock int64

	mu    sync.Mutex
	next  int
	sold  int64
	early int               // early: sold_out answers given while a unit was left
	users map[string]string // user → grab id of their unit
	keys  map[string]string // user+key → grab id
}

func (f *fakeSeckill) handle(ctx *fasthttp.RequestCtx) { f.serve(ctx, 0) }

// serve answers as front number front of the fake: with mode disagree,
// front 1 reads one more unit sold than front 0 (its own sums still add up).
func (f *fakeSeckill) serve(ctx *fasthttp.RequestCtx, front int) {
	f.mu.Lock()
	defer f.mu.Unlock()
	path := string(ctx.Path())
	if strings.HasPrefix(path, "/admin/v1/items/") {
		if ctx.IsPut() {
			ctx.SetStatusCode(201)
			return
		}
		sold := f.sold
		if f.mode == "forgets" {
			sold = 0
		}
		if f.mode == "disagree" && front == 1 && sold < f.stock {
			sold++
		}
		fmt.Fprintf(ctx, `{"stock":%d,"sold":%d,"remaining":%d,"per_user_limit":1}`, f.stock, sold, f.stock-sold)
		return
	}
	var body struct {
		User string `json:"user_id"`
	}
	_ = json.Unmarshal(ctx.PostBody(), &body)
	key := body.User + "\x00" + string(ctx.Request.Header.Peek("Idempotency-Key"))
	if id, ok := f.keys[key]; ok && f.mode == "nolimit" {
		fmt.Fprintf(ctx, `{"status":"confirmed","grab_id":%q}`, id)
		ctx.SetStatusCode(201)
		return
	}
	_, bought := f.users[body.User]
	if f.mode == "early" && f.sold == f.stock-1 && f.early < 10 {
		// sold_out while one unit is left, which is sold afterwards
		f.early++
		ctx.SetStatusCode(409)
		ctx.SetBodyString(`{"status":"sold_out"}`)
		return
	}
	if bought && (f.mode == "forgets" || f.mode == "oversells") || f.sold >= f.stock && f.mode != "oversells" {
		ctx.SetStatusCode(409)
		return
	}
	f.next++
	id := engine.Grab{Item: "fake", Seq: uint64(f.next)}.ID()
	if !bought || f.mode == "nolimit" {
		f.sold++ // renumbers: a replay mints a new id without selling
	}
	f.users[body.User], f.keys[key] = id, id
	ctx.SetStatusCode(201)
	fmt.Fprintf(ctx, `{"status":"confirmed","grab_id":%q}`, id)
}

func TestBenchAuditCatchesBrokenTarget(t *testing.T) {
	cases := []struct {
		mode     string
		workload string
		stock    int64
		want     string
	}{
		{"forgets", "durable", 1_000_000_000, "confirmed grabs were lost"},
		{"renumbers", "durable", 1_000_000_000, "returned grab"},
		{"oversells", "soldout", 100, "oversold"},
		{"nolimit", "durable", 1_000_000_000, "got another unit"},
		{"early", "soldout", 100, "after a sold_out came back"},
		{"disagree", "durable", 1_000_000_000, "the fronts disagree"},
	}
	for _, c := range cases {
		t.Run(c.mode, func(t *testing.T) {
			f := &fakeSeckill{mode: c.mode, stock: c.stock, users: map[string]string{}, keys: map[string]string{}}
			ln, err := net.Listen("tcp", "127.0.0.1:0")
			if err != nil {
				t.Fatal(err)
			}
			srv := &fasthttp.Server{Handler: f.handle}
			go srv.Serve(ln)
			defer srv.Shutdown()
			urls := []string{"http://" + ln.Addr().String()}
			if c.mode == "disagree" { // a second front on the same fake
				ln2, err := net.Listen("tcp", "127.0.0.1:0")
				if err != nil {
					t.Fatal(err)
				}
				srv2 := &fasthttp.Server{Handler: func(ctx *fasthttp.RequestCtx) { f.serve(ctx, 1) }}
				go srv2.Serve(ln2)
				defer srv2.Shutdown()
				urls = append(urls, "http://"+ln2.Addr().String())
			}
			cfg := Config{Workload: c.workload, Conns: 4, Duration: testCeiling, Requests: 200, Keys: true,
				URLs: urls, Token: "t"}
			var out bytes.Buffer
			_, err = Run(context.Background(), cfg, &out)
			if err == nil || !strings.Contains(err.Error(), c.want) {
				t.Fatalf("want an audit failure with %q, got %v\n%s", c.want, err, out.String())
			}
		})
	}
}

func TestBenchRedisLua(t *testing.T) {
	if _, err := exec.LookPath("redis-server"); err != nil {
		t.Skip("redis-server not installed (make deps installs it)")
	}
	ctx := context.Background()
	tg, err := StartRedisLua(ctx, "", "everysec")
	if err != nil {
		t.Fatal(err)
	}
	defer tg.Stop()
	// The seeds' answers through the contract, one request at a time.
	if err := tg.Admin.CreateItem(ctx, "lua-one", 1, 1, 1); err != nil {
		t.Fatal(err)
	}
	var c fasthttp.Client
	for _, step := range []struct {
		item, user string
		want       int
	}{{"lua-one", "a", 201}, {"lua-one", "a", 409}, {"lua-one", "b", 409}, {"lua-none", "a", 404}} {
		req, resp := fasthttp.AcquireRequest(), fasthttp.AcquireResponse()
		req.SetRequestURI(tg.URL + "/v1/items/" + step.item + "/grab")
		req.Header.SetMethod(fasthttp.MethodPost)
		req.SetBodyString(`{"user_id":"` + step.user + `"}`)
		if err := c.Do(req, resp); err != nil || resp.StatusCode() != step.want {
			t.Fatalf("grab %s by %s: %v %d %s, want %d", step.item, step.user, err, resp.StatusCode(), resp.Body(), step.want)
		}
	}
	// A run that sells out, audited through the Redis keys.
	plan := &Plan{Workload: "soldout", Items: []string{"lua-item"}, Stock: 5}
	if err := tg.Admin.CreateItem(ctx, "lua-item", 5, 1, 1); err != nil {
		t.Fatal(err)
	}
	r, err := ClosedLoop(ctx, []string{tg.URL}, 4, testCeiling, 100, plan)
	if err != nil {
		t.Fatal(err)
	}
	if a := audit(ctx, tg, plan, &r); !a.OK() {
		t.Fatalf("audit: %s", a)
	}
	st, err := tg.Admin.Item(ctx, "lua-item")
	if err != nil || st.Sold != 5 || st.Remaining != 0 || st.Buyers != 5 {
		t.Fatalf("after the run: %+v, %v; want all 5 sold to 5 buyers", st, err)
	}
}

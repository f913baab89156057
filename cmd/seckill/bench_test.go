package main

import (
	"bytes"
	"context"
	"encoding/json"
	"net"
	"os"
	"path/filepath"
	"strconv"
	"strings"
	"sync/atomic"
	"testing"

	"github.com/valyala/fasthttp"
)

// TestBenchCommand runs `seckill bench` as a user would: a short soldout run
// against the in-process server passes its audit and writes the table, the
// JSON and the SVG. It checks what was written, never how long it took.
func TestBenchCommand(t *testing.T) {
	dir := t.TempDir()
	jsonPath, svgPath := filepath.Join(dir, "r.json"), filepath.Join(dir, "r.svg")
	var out bytes.Buffer
	err := benchMain(context.Background(), []string{"--workload", "soldout", "--conns", "4", "--duration", "200ms",
		"--keys", "--data", filepath.Join(dir, "data"), "--json", jsonPath, "--svg", svgPath}, &out)
	if err != nil {
		t.Fatalf("bench: %v\n%s", err, out.String())
	}
	if !strings.Contains(out.String(), "audit seckill: ok") {
		t.Fatalf("no passed audit in the report:\n%s", out.String())
	}
	var rep struct {
		Results []struct {
			Target string `json:"target"`
			Sent   int64  `json:"sent"`
			Audit  struct {
				OK bool `json:"ok"`
			} `json:"audit"`
			// The server ran as a child process (this test binary re-run,
			// see TestMain), so its CPU time was read.
			CPU *struct {
				Processes []struct {
					Name string `json:"name"`
				} `json:"processes"`
			} `json:"cpu"`
		} `json:"results"`
	}
	b, err := os.ReadFile(jsonPath)
	if err != nil || json.Unmarshal(b, &rep) != nil || len(rep.Results) != 1 || !rep.Results[0].Audit.OK || rep.Results[0].Sent == 0 {
		t.Fatalf("json report: %v %s", err, b)
	}
	if c := rep.Results[0].CPU; c == nil || len(c.Processes) != 1 || c.Processes[0].Name != "seckill" {
		t.Fatalf("json report: no cpu of the seckill child process: %s", b)
	}
	if b, err := os.ReadFile(svgPath); err != nil || !bytes.HasPrefix(b, []byte("<svg")) {
		t.Fatalf("svg: %v %.100s", err, b)
	}
}

// TestBenchCommandFailsOnBrokenTarget points `seckill bench --url` at a
// server that answers 201 with a fresh grab id and keeps nothing: the audit
// must fail the command.
func TestBenchCommandFailsOnBrokenTarget(t *testing.T) {
	var n atomic.Int64
	srv := &fasthttp.Server{Handler: func(ctx *fasthttp.RequestCtx) {
		switch {
		case ctx.IsPut():
			ctx.SetStatusCode(fasthttp.StatusCreated)
		case ctx.IsGet(): // the admin view: nothing sold
			ctx.SetBodyString(`{"stock":100,"sold":0,"remaining":100,"per_user_limit":1}`)
		default:
			ctx.SetStatusCode(fasthttp.StatusCreated)
			ctx.SetBodyString(`{"status":"confirmed","grab_id":"x.0.` + strconv.FormatInt(n.Add(1), 10) + `"}`)
		}
	}}
	ln, err := net.Listen("tcp", "127.0.0.1:0")
	if err != nil {
		t.Fatal(err)
	}
	go srv.Serve(ln)
	defer srv.Shutdown()
	var out bytes.Buffer
	err = benchMain(context.Background(), []string{"--workload", "soldout", "--conns", "2", "--duration", "100ms",
		"--url", "http://" + ln.Addr().String(), "--token", "t"}, &out)
	if err == nil || !strings.Contains(err.Error(), "audit of seckill failed") {
		t.Fatalf("want a failed audit, got %v\n%s", err, out.String())
	}
}

func TestBenchCommandRefusesBadFlags(t *testing.T) {
	t.Setenv("SECKILL_ADMIN_TOKEN", "")
	cases := []struct {
		args []string
		want string
	}{
		{[]string{"--workload", "nope"}, "unknown workload"},
		{[]string{"--mode", "sideways"}, "unknown mode"},
		{[]string{"--mode", "open"}, "--rate"},
		{[]string{"--workload", "flash", "--mode", "closed"}, "open loop only"},
		{[]string{"--url", "http://127.0.0.1:1"}, "admin token"},
		{[]string{"--url", "127.0.0.1:1", "--token", "t"}, "want http://host:port"},
		{[]string{"--url", "http://127.0.0.1:1,127.0.0.2:1", "--token", "t"}, "want http://host:port"},
		{[]string{"--conns", "0", "--duration", "1ms"}, "conns must be"},
		{[]string{"--items", "-1"}, "items must be"},
		{[]string{"extra"}, "unexpected arguments"},
	}
	for _, c := range cases {
		t.Run(strings.Join(c.args, " "), func(t *testing.T) {
			err := benchMain(context.Background(), append(c.args, "--data", t.TempDir()), &bytes.Buffer{})
			if err == nil || !strings.Contains(err.Error(), c.want) {
				t.Fatalf("want an error with %q, got %v", c.want, err)
			}
		})
	}
}

// TestBenchCommandURL runs `seckill bench --url` as an operator would
// against a cluster's fronts, here against one real `seckill serve`
// process: a small flash sale through its URL, then a sold-out run with the
// same URL given twice (two fronts, buyers round robin, every item read
// through both). Each must pass the audit, the exact one included: every
// buyer keyed and answered, so sold equals the distinct grab ids, and no
// 201 came for a request sent after a sold_out.
func TestBenchCommandURL(t *testing.T) {
	if testing.Short() {
		t.Skip("starts a real server process; skipped with -short")
	}
	const token = "bench-url-token"
	bin := buildSeckill(t)
	srv := startSeckill(t, bin, filepath.Join(t.TempDir(), "data"), token, "serve")
	defer srv.stop(t)

	t.Run("flash", func(t *testing.T) {
		jsonPath := filepath.Join(t.TempDir(), "r.json")
		var out bytes.Buffer
		err := benchMain(context.Background(), []string{"--url", srv.URL, "--token", token,
			"--workload", "flash", "--users", "300", "--stock", "30", "--shards", "4", "--arrival", "300ms",
			"--conns", "8", "--json", jsonPath}, &out)
		if err != nil {
			t.Fatalf("bench: %v\n%s", err, out.String())
		}
		for _, want := range []string{"audit seckill: ok", "sold 30 == 30 distinct 201 grab ids", "no 201 sent after a sold_out",
			"seckill answers by outcome: "} {
			if !strings.Contains(out.String(), want) {
				t.Fatalf("no %q in the report:\n%s", want, out.String())
			}
		}
		var rep struct {
			Results []struct {
				ByOutcome map[string]int64 `json:"by_outcome"`
				SellOutS  *float64         `json:"sell_out_s"`
				Audit     struct {
					OK bool `json:"ok"`
				} `json:"audit"`
			} `json:"results"`
		}
		b, err := os.ReadFile(jsonPath)
		if err != nil || json.Unmarshal(b, &rep) != nil || len(rep.Results) != 1 {
			t.Fatalf("json report: %v %s", err, b)
		}
		if r := rep.Results[0]; !r.Audit.OK || r.SellOutS == nil || r.ByOutcome["confirmed"] != 30 {
			t.Fatalf("json report: want a passed audit, a sell-out time and 30 confirmed: %s", b)
		}
	})

	t.Run("two fronts", func(t *testing.T) {
		var out bytes.Buffer
		err := benchMain(context.Background(), []string{"--url", srv.URL + "," + srv.URL, "--token", token,
			"--workload", "soldout", "--stock", "50", "--keys", "--conns", "4", "--duration", "300ms", "--rounds", "1"}, &out)
		if err != nil {
			t.Fatalf("bench: %v\n%s", err, out.String())
		}
		for _, want := range []string{"audit seckill: ok", "the same through all 2 fronts", "sold 50 == 50 distinct 201 grab ids",
			"seckill fronts (buyers round robin"} {
			if !strings.Contains(out.String(), want) {
				t.Fatalf("no %q in the report:\n%s", want, out.String())
			}
		}
	})
}

// TestBenchClusterCompare runs `seckill bench --cluster-compare` as a user
// would: one node and a three-node cluster (etcd, Redis, three NATS servers,
// three nodes) started by the harness, a short durable run on each in
// alternating rounds, both audited, and the ratios printed.
func TestBenchClusterCompare(t *testing.T) {
	c3Skip(t)
	bin := buildSeckill(t)
	dir := t.TempDir()
	jsonPath := filepath.Join(dir, "r.json")
	var out bytes.Buffer
	err := benchMain(context.Background(), []string{"--cluster-compare", "--cluster-bin", bin, "--workload", "durable",
		"--conns", "8", "--duration", "2s", "--rounds", "2", "--json", jsonPath}, &out)
	if err != nil {
		t.Fatalf("bench: %v\n%s", err, out.String())
	}
	for _, want := range []string{"audit seckill: ok", "audit seckill-cluster: ok", "cluster of 3 vs one node: rate "} {
		if !strings.Contains(out.String(), want) {
			t.Fatalf("no %q in the report:\n%s", want, out.String())
		}
	}
	var rep struct {
		Results []struct {
			Target string `json:"target"`
			Sent   int64  `json:"sent"`
			CPU    *struct {
				Processes []struct {
					Name string `json:"name"`
				} `json:"processes"`
			} `json:"cpu"`
		} `json:"results"`
	}
	b, err := os.ReadFile(jsonPath)
	if err != nil || json.Unmarshal(b, &rep) != nil || len(rep.Results) != 2 {
		t.Fatalf("json report: %v %s", err, b)
	}
	clu := rep.Results[1]
	if clu.Target != "seckill-cluster" || clu.Sent == 0 || clu.CPU == nil {
		t.Fatalf("the cluster's result %+v: %s", clu, b)
	}
	seen := map[string]bool{}
	for _, p := range clu.CPU.Processes {
		seen[p.Name] = true
	}
	for _, name := range []string{"etcd", "redis", "nats1", "nats2", "nats3", "n1", "n2", "n3"} {
		if !seen[name] {
			t.Errorf("no CPU time of the cluster's %s: %v", name, seen)
		}
	}
}

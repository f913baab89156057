package bench

import (
	"bytes"
	"context"
	"encoding/json"
	"fmt"
	"io"
	"net"
	"net/http"
	"strings"

	"github.com/seckill/seckill/transport"
	"github.com/valyala/fasthttp"
)

// Target names, as they appear in the report.
const (
	TargetSeckill = "seckill"
	TargetBare    = "bare"
	TargetRedis   = "redis+lua"
)

// maxAdminBody bounds what the harness reads of an admin or replay answer.
const maxAdminBody = 1 << 20

// Target is a server, or a cluster's fronts, the harness sends load to.
type Target struct {
	Name string
	URL  string // http://host:port: the first front
	// Fronts are every front of a cluster, Fronts[0] == URL; empty for a
	// single server (the load goes to URL).
	Fronts []string
	// Admin creates and reads items (through the first front); nil for the
	// bare handler, which has no stock to audit.
	Admin Admin
	// Views reads the items through each front, Views[i] through Fronts[i],
	// for an audit that every front must pass alike; empty: Admin alone.
	Views []Admin
	// Replays is true when a 201 can be replayed by user and
	// Idempotency-Key (seckill), so the audit replays a sample.
	Replays bool
	// Orders finds the 201s without an order, for a target whose orders
	// the harness can read (seeds); nil: not checked.
	Orders OrderChecker
	// Procs are the processes that serve the target, whose CPU time the
	// harness reads: set when the target runs as a child process (its
	// peers, such as redis-server, included); empty: not measured.
	Procs []Proc
	// Peers are processes the target started beside the one serving it
	// (redis-server), for a child to report.
	Peers []Proc
	Stop  func() error
}

// OrderChecker reads a target's order store.
type OrderChecker interface {
	// Missing returns the grab ids among ids, all of item, that have no
	// order.
	Missing(ctx context.Context, item string, ids []string) ([]string, error)
}

// Proc is one process of a target.
type Proc struct {
	Name string `json:"name"`
	Pid  int    `json:"pid"`
}

// Admin is a target's stock, as its owner sees it.
type Admin interface {
	CreateItem(ctx context.Context, item string, stock int64, shards int, perUserLimit int64) error
	Item(ctx context.Context, item string) (ItemState, error)
}

// ItemState is one item's numbers.
type ItemState struct {
	Stock        int64 `json:"stock"`
	Sold         int64 `json:"sold"`
	Remaining    int64 `json:"remaining"`
	PerUserLimit int64 `json:"per_user_limit"`
	Buyers       int64 `json:"-"` // distinct buyers when the target knows them, else -1
	Orders       int64 `json:"-"` // orders in the target's store when the harness can count them, else -1
}

// StartBare runs a fasthttp handler that answers every request at once with
// a fixed 409 JSON body: the HTTP ceiling of this machine, with the same
// server settings as seckill's front.
func StartBare() (*Target, error) {
	body := []byte(`{"status":"sold_out"}`)
	srv := transport.NewFastHTTP("bare", func(ctx *fasthttp.RequestCtx) {
		ctx.SetStatusCode(fasthttp.StatusConflict)
		ctx.SetContentType("application/json")
		ctx.SetBody(body)
	})
	return serveOn(TargetBare, srv, nil)
}

// LocalFunc starts a whole seckill node in this process on dataDir, as
// `seckill serve` runs it, serving HTTP on a loopback port: the binary
// supplies it (cmd/seckill wires system.Open), so that the harness, which
// serves HTTP itself, does not depend on the actor runtime.
type LocalFunc func(dataDir, token string, orders bool) (*Target, error)

// LocalTarget makes the Target of a node started by a LocalFunc.
func LocalTarget(url, token string, stop func() error) *Target {
	return &Target{Name: TargetSeckill, URL: url, Admin: NewSeckillAdmin(url, token), Replays: true, Stop: stop}
}

// Remote is a seckill server, or a cluster's fronts, the harness does not
// run: items are created through the first, buyers spread over all.
func Remote(urls []string, token string) *Target {
	t := &Target{Name: TargetSeckill, Replays: true, Stop: func() error { return nil }}
	for _, u := range urls {
		u = strings.TrimRight(u, "/")
		t.Fronts = append(t.Fronts, u)
		t.Views = append(t.Views, NewSeckillAdmin(u, token))
	}
	if len(t.Fronts) > 0 {
		t.URL, t.Admin = t.Fronts[0], t.Views[0]
	}
	return t
}

// fronts is where the load goes: every front, or the one URL.
func (t *Target) fronts() []string {
	if len(t.Fronts) > 0 {
		return t.Fronts
	}
	return []string{t.URL}
}

// views reads the items through every front, or through Admin alone.
func (t *Target) views() []Admin {
	if len(t.Views) > 0 {
		return t.Views
	}
	return []Admin{t.Admin}
}

func serveOn(name string, srv *fasthttp.Server, after func() error) (*Target, error) {
	ln, err := net.Listen("tcp", "127.0.0.1:0")
	if err != nil {
		return nil, fmt.Errorf("listen for %s: %w", name, err)
	}
	done := make(chan error, 1)
	go func() { done <- srv.Serve(ln) }()
	return &Target{Name: name, URL: "http://" + ln.Addr().String(), Stop: func() error {
		err := srv.Shutdown()
		<-done
		if after != nil {
			if e := after(); err == nil {
				err = e
			}
		}
		return err
	}}, nil
}

// seckillAdmin speaks seckill's admin API.
type seckillAdmin struct {
	base, token string
	http        *http.Client
}

// NewSeckillAdmin returns the admin API of the seckill server at base.
func NewSeckillAdmin(base, token string) Admin {
	return &seckillAdmin{base: base, token: token, http: &http.Client{Timeout: clientTimeout}}
}

func (a *seckillAdmin) do(ctx context.Context, method, item string, body []byte) (int, []byte, error) {
	return a.doURL(ctx, method, a.base+"/admin/v1/items/"+item, body)
}

func (a *seckillAdmin) doURL(ctx context.Context, method, url string, body []byte) (int, []byte, error) {
	req, err := http.NewRequestWithContext(ctx, method, url, bytes.NewReader(body))
	if err != nil {
		return 0, nil, err
	}
	req.Header.Set("Authorization", "Bearer "+a.token)
	resp, err := a.http.Do(req)
	if err != nil {
		return 0, nil, err
	}
	defer resp.Body.Close()
	b, err := io.ReadAll(io.LimitReader(resp.Body, maxAdminBody))
	return resp.StatusCode, b, err
}

func (a *seckillAdmin) CreateItem(ctx context.Context, item string, stock int64, shards int, perUserLimit int64) error {
	body := fmt.Sprintf(`{"stock":%d,"shards":%d,"per_user_limit":%d}`, stock, shards, perUserLimit)
	status, resp, err := a.do(ctx, http.MethodPut, item, []byte(body))
	if err != nil {
		return fmt.Errorf("create item %s at %s: %w", item, a.base, err)
	}
	if status != http.StatusCreated {
		return fmt.Errorf("create item %s at %s: HTTP %d %s", item, a.base, status, bytes.TrimSpace(resp))
	}
	return nil
}

func (a *seckillAdmin) Item(ctx context.Context, item string) (ItemState, error) {
	status, resp, err := a.do(ctx, http.MethodGet, item, nil)
	if err != nil {
		return ItemState{}, fmt.Errorf("read item %s at %s: %w", item, a.base, err)
	}
	if status != http.StatusOK {
		return ItemState{}, fmt.Errorf("read item %s at %s: HTTP %d %s", item, a.base, status, bytes.TrimSpace(resp))
	}
	var w struct {
		ItemState
		Buyers *int64 `json:"buyers"` // the harness's own targets' admin routes (serveAdmin)
		Orders *int64 `json:"orders"`
	}
	if err := json.Unmarshal(resp, &w); err != nil {
		return ItemState{}, fmt.Errorf("read item %s at %s: %w", item, a.base, err)
	}
	st := w.ItemState
	st.Buyers, st.Orders = -1, -1
	if w.Buyers != nil {
		st.Buyers = *w.Buyers
	}
	if w.Orders != nil {
		st.Orders = *w.Orders
	}
	return st, nil
}

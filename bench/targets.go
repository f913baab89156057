package bench

import (
	"bytes"
	"fmt"
	"log/slog"
	"net"
	"net/http"
	"os"

	"github.com/seckill/seckill/actors"
	"github.com/seckill/seckill/persistence"
	"github.com/seckill/seckill/transport"
	"github.com/valyala/fasthttp"
)

// Target is a server the harness sends load to.
type Target struct {
	Name  string
	Addr  string // host:port
	Token string // admin token, when the target is seckill
	Stop  func() error
}

// StartBare runs a fasthttp handler that answers every request at once with
// a fixed 409 JSON body: the HTTP ceiling of this machine, with the same
// server settings as seckill's front.
func StartBare() (*Target, error) {
	body := []byte(`{"status":"sold_out"}`)
	srv := &fasthttp.Server{
		Name:                 "bare",
		NoDefaultContentType: true,
		Handler: func(ctx *fasthttp.RequestCtx) {
			ctx.SetStatusCode(fasthttp.StatusConflict)
			ctx.SetContentType("application/json")
			ctx.SetBody(body)
		},
	}
	return serveOn("bare", srv, nil)
}

// StartLocal runs a whole seckill node (Pebble in dataDir, shard actors,
// HTTP front) in this process.
func StartLocal(dataDir, token string) (*Target, error) {
	store, err := persistence.OpenPebble(dataDir)
	if err != nil {
		return nil, err
	}
	log := slog.New(slog.NewTextHandler(os.Stderr, &slog.HandlerOptions{Level: slog.LevelWarn}))
	node, err := actors.Start(store, actors.Options{Logger: log})
	if err != nil {
		store.Close()
		return nil, err
	}
	t, err := serveOn("seckill", transport.NewServer(node, token, log).FastHTTP(), node.Close)
	if err != nil {
		node.Close()
		return nil, err
	}
	t.Token = token
	return t, nil
}

func serveOn(name string, srv *fasthttp.Server, after func() error) (*Target, error) {
	ln, err := net.Listen("tcp", "127.0.0.1:0")
	if err != nil {
		return nil, err
	}
	done := make(chan error, 1)
	go func() { done <- srv.Serve(ln) }()
	return &Target{Name: name, Addr: ln.Addr().String(), Stop: func() error {
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

// CreateItem creates an item on a seckill target through the admin API.
func (t *Target) CreateItem(item string, stock int64, shards int, perUserLimit int64) error {
	body := fmt.Sprintf(`{"stock":%d,"shards":%d,"per_user_limit":%d}`, stock, shards, perUserLimit)
	req, err := http.NewRequest(http.MethodPut, "http://"+t.Addr+"/admin/v1/items/"+item, bytes.NewBufferString(body))
	if err != nil {
		return err
	}
	req.Header.Set("Authorization", "Bearer "+t.Token)
	resp, err := http.DefaultClient.Do(req)
	if err != nil {
		return err
	}
	defer resp.Body.Close()
	if resp.StatusCode != http.StatusCreated {
		return fmt.Errorf("create item %s on %s: HTTP %d", item, t.Name, resp.StatusCode)
	}
	return nil
}

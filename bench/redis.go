package bench

import (
	"bufio"
	"bytes"
	"context"
	"errors"
	"fmt"
	"io"
	"net"
	"os"
	"os/exec"
	"strconv"
	"strings"
	"syscall"
	"time"

	"github.com/redis/go-redis/v9"
	"github.com/seckill/seckill/transport"
	"github.com/valyala/fasthttp"
)

const (
	// redisStartTimeout bounds the wait for redis-server to say it is ready.
	redisStartTimeout = 10 * time.Second
	// redisPoolSize lets every harness connection have its own Redis
	// connection (the default, 10 per CPU, would queue 64 callers on 20).
	redisPoolSize = 256
	// redisReady is the line redis-server logs once it accepts connections.
	redisReady = "Ready to accept connections"
)

// AppendFsyncPolicies are redis-server's appendfsync settings.
var AppendFsyncPolicies = []string{"always", "everysec", "no"}

// seedsGrabScript is the seeds' grab script (section 4.1.1, Redis + Lua),
// word for word but for one change: the buyers' set comes in as KEYS[2]
// instead of being built from the digits of KEYS[1] with string.match, so
// item ids need not be numbers and the script declares every key it
// touches, as Redis Cluster requires.
const seedsGrabScript = `
-- 原子扣减库存脚本
local key = KEYS[1]           -- 库存key
local userid = ARGV[1]        -- 用户ID
local quantity = tonumber(ARGV[2])  -- 购买数量

-- 检查用户是否已购买
local userKey = KEYS[2]
if redis.call("SISMEMBER", userKey, userid) == 1 then
    return {0, "用户已购买"}
end

-- 获取当前库存
local stock = redis.call("HGET", key, "remaining")
if not stock then
    return {0, "商品不存在"}
end

stock = tonumber(stock)
if stock < quantity then
    return {0, "库存不足"}
end

-- 扣减库存
redis.call("HINCRBY", key, "remaining", -quantity)
redis.call("HINCRBY", key, "sold", quantity)

-- 记录用户购买
redis.call("SADD", userKey, userid)
redis.call("EXPIRE", userKey, 86400)

return {1, "success"}
`

// The script's answers, as it spells them.
const (
	luaAlreadyBought = "用户已购买"
	luaNoSuchItem    = "商品不存在"
	luaNoStock       = "库存不足"
)

// The seeds' keys (section 3.2.3) start with "seckill:"; a target that
// shares a --redis with another gives its own namespace in place of it, so
// that the two never sell each other's units (the items have the same
// names on every target).
const (
	luaNamespace   = "seckill"
	seedsNamespace = "seeds"
)

func stockKey(ns, item string) string { return ns + ":stock:" + item }
func usersKey(ns, item string) string { return ns + ":users:" + item }

// StartRedisLua runs the seeds' design: a fasthttp handler answering
// seckill's grab contract by running the seeds' Lua script with EVALSHA.
// Redis is at redisURL, or, when it is empty, a redis-server started here
// on a free loopback port in a temporary directory with appendonly yes and
// the given appendfsync policy, stopped with the target.
func StartRedisLua(ctx context.Context, redisURL, appendfsync string) (*Target, error) {
	rdb, peers, stop, err := openRedis(ctx, redisURL, appendfsync)
	if err != nil {
		return nil, err
	}
	closeAll := func() error { return errors.Join(rdb.Close(), stop()) }
	script := redis.NewScript(seedsGrabScript)
	if err := script.Load(ctx, rdb).Err(); err != nil {
		closeAll()
		return nil, fmt.Errorf("load the Lua script into redis at %s: %w", rdb.Options().Addr, err)
	}
	admin := redisAdmin{rdb, luaNamespace}
	handler := luaHandler(rdb, script)
	srv := &fasthttp.Server{Name: "redis-lua", NoDefaultContentType: true, Handler: func(ctx *fasthttp.RequestCtx) {
		if bytes.HasPrefix(ctx.Path(), adminPrefix) {
			serveAdmin(ctx, admin)
			return
		}
		handler(ctx)
	}}
	t, err := serveOn(TargetRedis, srv, closeAll)
	if err != nil {
		closeAll()
		return nil, err
	}
	t.Admin, t.Peers = admin, peers
	return t, nil
}

var (
	luaSoldOut      = []byte(`{"status":"sold_out"}`)
	luaLimitReached = []byte(`{"status":"limit_reached"}`)
	luaUnknownItem  = []byte(`{"status":"unknown_item"}`)
	luaUnavailable  = []byte(`{"status":"unavailable"}`)
)

// luaHandler answers POST /v1/items/{item}/grab as seckill does, minus what
// the seeds' design lacks: a 201 carries no grab id, and an
// Idempotency-Key is ignored (a buyer's retry after a lost 201 is told
// limit_reached).
func luaHandler(rdb *redis.Client, script *redis.Script) fasthttp.RequestHandler {
	return func(ctx *fasthttp.RequestCtx) {
		item, body, ok := grabRequest(ctx)
		if !ok {
			return
		}
		it := string(item)
		res, err := script.Run(context.Background(), rdb, []string{stockKey(luaNamespace, it), usersKey(luaNamespace, it)}, body.UserID, body.Qty).Slice()
		if err != nil || len(res) != 2 {
			ctx.Response.Header.Set("Retry-After", "1")
			writeLua(ctx, fasthttp.StatusServiceUnavailable, luaUnavailable)
			return
		}
		if n, _ := res[0].(int64); n == 1 {
			b := make([]byte, 0, 128)
			b = append(b, `{"status":"confirmed","item":"`...)
			b = append(b, it...)
			b = append(b, `","user_id":"`...)
			b = append(b, body.UserID...)
			b = append(b, `","qty":`...)
			b = strconv.AppendInt(b, body.Qty, 10)
			writeLua(ctx, fasthttp.StatusCreated, append(b, '}'))
			return
		}
		switch msg, _ := res[1].(string); msg {
		case luaNoStock:
			writeLua(ctx, fasthttp.StatusConflict, luaSoldOut)
		case luaAlreadyBought:
			writeLua(ctx, fasthttp.StatusConflict, luaLimitReached)
		case luaNoSuchItem:
			writeLua(ctx, fasthttp.StatusNotFound, luaUnknownItem)
		default:
			writeLua(ctx, fasthttp.StatusServiceUnavailable, luaUnavailable)
		}
	}
}

func writeLua(ctx *fasthttp.RequestCtx, status int, body []byte) {
	ctx.SetStatusCode(status)
	ctx.SetContentType("application/json")
	ctx.SetBody(body)
}

// redisAdmin reads and writes the seeds' keys directly.
type redisAdmin struct {
	rdb *redis.Client
	ns  string // key namespace
}

func (a redisAdmin) CreateItem(ctx context.Context, item string, stock int64, _ int, perUserLimit int64) error {
	if perUserLimit != 1 {
		return fmt.Errorf("create item %s on redis+lua: the seeds' script allows one purchase per user, not %d", item, perUserLimit)
	}
	_, err := a.rdb.TxPipelined(ctx, func(p redis.Pipeliner) error {
		p.Del(ctx, stockKey(a.ns, item), usersKey(a.ns, item))
		// The seeds' layout (section 3.2.3) with the field the script reads.
		p.HSet(ctx, stockKey(a.ns, item), "total", stock, "remaining", stock, "sold", 0, "version", 1)
		return nil
	})
	if err != nil {
		return fmt.Errorf("create item %s on redis+lua: %w", item, err)
	}
	return nil
}

func (a redisAdmin) Item(ctx context.Context, item string) (ItemState, error) {
	vals, err := a.rdb.HMGet(ctx, stockKey(a.ns, item), "total", "remaining", "sold").Result()
	if err != nil {
		return ItemState{}, fmt.Errorf("read item %s on redis+lua: %w", item, err)
	}
	var n [3]int64
	for i, v := range vals {
		s, _ := v.(string)
		if n[i], err = strconv.ParseInt(s, 10, 64); err != nil {
			return ItemState{}, fmt.Errorf("read item %s on redis+lua: field %d is %v", item, i, v)
		}
	}
	buyers, err := a.rdb.SCard(ctx, usersKey(a.ns, item)).Result()
	if err != nil {
		return ItemState{}, fmt.Errorf("read buyers of %s on redis+lua: %w", item, err)
	}
	return ItemState{Stock: n[0], Remaining: n[1], Sold: n[2], PerUserLimit: 1, Buyers: buyers, Orders: -1}, nil
}

// startRedisServer runs redis-server on a free loopback port with its files
// in a fresh temporary directory, and returns its address, its pid and how
// to stop it (which also removes the directory).
func startRedisServer(ctx context.Context, appendfsync string) (string, int, func() error, error) {
	switch appendfsync {
	case "always", "everysec", "no":
	default:
		return "", 0, nil, fmt.Errorf("redis appendfsync %q: want one of %v", appendfsync, AppendFsyncPolicies)
	}
	bin, err := exec.LookPath("redis-server")
	if err != nil {
		return "", 0, nil, errors.New("redis-server not found: install it (make deps) or point --redis at one")
	}
	port, err := freePort()
	if err != nil {
		return "", 0, nil, err
	}
	dir, err := os.MkdirTemp("", "seckill-bench-redis-")
	if err != nil {
		return "", 0, nil, fmt.Errorf("redis dir: %w", err)
	}
	cmd := exec.Command(bin, "--port", strconv.Itoa(port), "--bind", "127.0.0.1", "--dir", dir,
		"--appendonly", "yes", "--appendfsync", appendfsync, "--save", "", "--daemonize", "no", "--logfile", "")
	out, err := cmd.StdoutPipe()
	if err != nil {
		os.RemoveAll(dir)
		return "", 0, nil, fmt.Errorf("redis-server pipe: %w", err)
	}
	cmd.Stderr = cmd.Stdout
	if err := cmd.Start(); err != nil {
		os.RemoveAll(dir)
		return "", 0, nil, fmt.Errorf("start redis-server: %w", err)
	}
	stop := func() error {
		err := cmd.Process.Signal(syscall.SIGTERM)
		_ = cmd.Wait()
		return errors.Join(err, os.RemoveAll(dir))
	}
	// Wait for the ready line, reading the log as it comes; a timer kills
	// the wait (and the server) if it never does.
	ready := make(chan error, 1)
	var log strings.Builder
	go func() {
		sc := bufio.NewScanner(out)
		for sc.Scan() {
			if log.Len() < maxAdminBody {
				log.WriteString(sc.Text() + "\n")
			}
			if strings.Contains(sc.Text(), redisReady) {
				ready <- nil
				_, _ = io.Copy(io.Discard, out) // keep the pipe drained
				return
			}
		}
		ready <- fmt.Errorf("redis-server exited before it was ready")
	}()
	timer := time.NewTimer(redisStartTimeout)
	defer timer.Stop()
	select {
	case err = <-ready:
	case <-timer.C:
		err = fmt.Errorf("redis-server not ready after %v", redisStartTimeout)
	case <-ctx.Done():
		err = ctx.Err()
	}
	if err != nil {
		_ = cmd.Process.Kill()
		_ = cmd.Wait()
		<-ready
		os.RemoveAll(dir)
		return "", 0, nil, fmt.Errorf("%w:\n%s", err, log.String())
	}
	return fmt.Sprintf("127.0.0.1:%d", port), cmd.Process.Pid, stop, nil
}

// freePort asks the kernel for a free loopback port. Another process could
// take it before redis-server binds it; redis-server then fails to start
// and says so.
func freePort() (int, error) {
	ln, err := net.Listen("tcp", "127.0.0.1:0")
	if err != nil {
		return 0, fmt.Errorf("find a free port: %w", err)
	}
	defer ln.Close()
	return ln.Addr().(*net.TCPAddr).Port, nil
}

// grabRequest reads POST /v1/items/{item}/grab as the seeds' services do
// (Redis+Lua's and the whole design's): false once it has answered 404 or
// 400 itself.
func grabRequest(ctx *fasthttp.RequestCtx) (item []byte, body transport.GrabBody, ok bool) {
	rest, ok := bytes.CutPrefix(ctx.Path(), []byte("/v1/items/"))
	item, ok2 := bytes.CutSuffix(rest, []byte("/grab"))
	if !ok || !ok2 || !ctx.IsPost() || !transport.ValidID(item) {
		writeLua(ctx, fasthttp.StatusNotFound, []byte(`{"status":"not_found"}`))
		return nil, body, false
	}
	body, err := transport.DecodeGrabBody(ctx.PostBody())
	if err != nil {
		writeLua(ctx, fasthttp.StatusBadRequest, []byte(`{"status":"bad_request"}`))
		return nil, body, false
	}
	return item, body, true
}

package bench

import (
	"bytes"
	"context"
	"errors"
	"fmt"
	"os"
	"path/filepath"
	"strconv"
	"sync"
	"sync/atomic"
	"time"

	"github.com/nats-io/nats.go"
	"github.com/nats-io/nats.go/jetstream"
	"github.com/redis/go-redis/v9"
	"github.com/seckill/seckill/bus"
	"github.com/seckill/seckill/engine"
	"github.com/seckill/seckill/orders"
	"github.com/seckill/seckill/persistence"
	"github.com/valyala/fasthttp"
)

// TargetSeeds is the seeds' whole design as its users run it.
const TargetSeeds = "seeds"

const (
	// seedsSoldOutTTL is how long an instance answers sold_out from its
	// own flag before it asks Redis again: seed 001 keeps the flag in a
	// local cache for 1-2 s.
	seedsSoldOutTTL = time.Second
	// seedsPublishTimeout bounds the wait for the broker's ack of one
	// order message; past it the grab is rolled back and answered 503.
	seedsPublishTimeout = 5 * time.Second
	// seedsWriterBatch is the order consumer's batch: seckill's writer
	// fetches and commits this many at once (system.WriterBatch).
	seedsWriterBatch = 256
	// seedsStopTimeout bounds the consumer's stop.
	seedsStopTimeout = 10 * time.Second
)

// seedsRollbackScript undoes a grab whose order message the broker did
// not acknowledge, as seed 000's rollbackStock does: units back, buyer
// out of the set.
const seedsRollbackScript = `
if redis.call("SREM", KEYS[2], ARGV[1]) == 1 then
    redis.call("HINCRBY", KEYS[1], "remaining", tonumber(ARGV[2]))
    redis.call("HINCRBY", KEYS[1], "sold", -tonumber(ARGV[2]))
end
return 1
`

// seeds is one instance of the seeds' service: the local sold-out flag,
// the Lua grab in Redis, the order message published to JetStream and
// acknowledged before the 201, and the order consumer writing orders to a
// Pebble order store as seckill's writer does.
type seeds struct {
	rdb      *redis.Client
	grab     *redis.Script
	rollback *redis.Script
	js       jetstream.JetStream
	store    *persistence.PebbleOrders
	admin    redisAdmin
	// seq numbers the orders of this instance: the order id the 201
	// carries (the seeds generate one per grab, generatePreOrder).
	seq atomic.Uint64

	mu      sync.RWMutex
	soldOut map[string]time.Time // item → when Redis last said sold out
}

// StartSeeds runs the seeds' design in this process. Redis is at redisURL
// or a redis-server started here (appendfsync as given); NATS JetStream is
// embedded with file storage, as `seckill serve` embeds it (bus
// settings: an acknowledged message is in the page cache, fsynced every
// bus.SyncInterval); orders go to a Pebble order store with synced,
// batched commits (bus.RunWriter and orders.Orders, as seckill's writer).
// Everything lives in a temporary directory removed at Stop.
func StartSeeds(ctx context.Context, redisURL, appendfsync string) (t *Target, err error) {
	dir, err := os.MkdirTemp("", "seckill-bench-seeds-")
	if err != nil {
		return nil, fmt.Errorf("seeds dir: %w", err)
	}
	var closers []func() error // in reverse order of start
	closeAll := func() error {
		var errs []error
		for i := len(closers) - 1; i >= 0; i-- {
			errs = append(errs, closers[i]())
		}
		return errors.Join(append(errs, os.RemoveAll(dir))...)
	}
	defer func() {
		if err != nil {
			closeAll()
		}
	}()
	rdb, peers, stopRedis, err := openRedis(ctx, redisURL, appendfsync)
	if err != nil {
		return nil, err
	}
	closers = append(closers, func() error { return errors.Join(rdb.Close(), stopRedis()) })
	s := &seeds{rdb: rdb, grab: redis.NewScript(seedsGrabScript), rollback: redis.NewScript(seedsRollbackScript),
		admin: redisAdmin{rdb, seedsNamespace}, soldOut: map[string]time.Time{}}
	for _, sc := range []*redis.Script{s.grab, s.rollback} {
		if err := sc.Load(ctx, rdb).Err(); err != nil {
			return nil, fmt.Errorf("load a Lua script into redis: %w", err)
		}
	}
	emb, err := bus.StartEmbedded(filepath.Join(dir, "nats"), "")
	if err != nil {
		return nil, err
	}
	closers = append(closers, func() error { emb.Shutdown(); return nil })
	nc, err := emb.Connect("seeds")
	if err != nil {
		return nil, err
	}
	if s.js, err = jetstream.New(nc); err != nil {
		return nil, fmt.Errorf("seeds jetstream: %w", err)
	}
	if err := bus.Ensure(ctx, s.js, bus.Config{}); err != nil {
		return nil, fmt.Errorf("seeds streams: %w", err)
	}
	if s.store, err = persistence.OpenPebbleOrders(filepath.Join(dir, "orders")); err != nil {
		return nil, err
	}
	closers = append(closers, s.store.Close)
	wctx, cancel := context.WithCancel(context.Background())
	done := make(chan struct{})
	go func() {
		defer close(done)
		bus.RunWriter(wctx, s.js, seedsWriterBatch, seedsWriter(orders.New(nil, s.store, nil)))
	}()
	closers = append(closers, func() error {
		cancel()
		select {
		case <-done:
			return nil
		case <-time.After(seedsStopTimeout):
			return fmt.Errorf("seeds order consumer did not stop within %v", seedsStopTimeout)
		}
	})
	srv := &fasthttp.Server{Name: "seeds", NoDefaultContentType: true, Handler: s.handle}
	if t, err = serveOn(TargetSeeds, srv, closeAll); err != nil {
		return nil, err
	}
	t.Admin, t.Orders, t.Peers = s, s, peers
	return t, nil
}

// seedsWriter is seckill's writer handler (system.WriterHandler): a batch
// of order messages becomes orders in one synced Pebble commit.
func seedsWriter(o *orders.Orders) bus.Handler {
	return func(_ context.Context, msgs []bus.GrabMsg) map[string]error {
		om := make([]orders.Msg, len(msgs))
		for i, m := range msgs {
			om[i] = orders.Msg{Grab: m.Grab(), PayByMs: m.PayByMs}
		}
		return o.Write(om)
	}
}

// openRedis connects to redisURL, or starts a redis-server and returns its
// process among the peers.
func openRedis(ctx context.Context, redisURL, appendfsync string) (*redis.Client, []Proc, func() error, error) {
	if redisURL != "" {
		opts, err := persistence.RedisOptions(redisURL, "")
		if err != nil {
			return nil, nil, nil, fmt.Errorf("--redis: %w", err)
		}
		opts.PoolSize = redisPoolSize
		return redis.NewClient(opts), nil, func() error { return nil }, nil
	}
	if appendfsync == "" {
		appendfsync = "everysec"
	}
	addr, pid, stop, err := startRedisServer(ctx, appendfsync)
	if err != nil {
		return nil, nil, nil, err
	}
	rdb := redis.NewClient(&redis.Options{Addr: addr, PoolSize: redisPoolSize})
	return rdb, []Proc{{Name: "redis-server", Pid: pid}}, stop, nil
}

func (s *seeds) soldOutAt(item []byte, now time.Time) bool {
	s.mu.RLock()
	at, ok := s.soldOut[string(item)]
	s.mu.RUnlock()
	return ok && now.Sub(at) < seedsSoldOutTTL
}

func (s *seeds) setSoldOut(item string, at time.Time) {
	s.mu.Lock()
	s.soldOut[item] = at
	s.mu.Unlock()
}

// handle answers POST /v1/items/{item}/grab as the seeds' service does,
// in seckill's contract; /admin/ goes to the bench's admin routes.
func (s *seeds) handle(ctx *fasthttp.RequestCtx) {
	if bytes.HasPrefix(ctx.Path(), adminPrefix) {
		serveAdmin(ctx, s)
		return
	}
	item, body, ok := grabRequest(ctx)
	if !ok {
		return
	}
	now := time.Now()
	if s.soldOutAt(item, now) { // seed 001: the fastest line, no Redis
		writeLua(ctx, fasthttp.StatusConflict, luaSoldOut)
		return
	}
	it := string(item)
	keys := []string{stockKey(seedsNamespace, it), usersKey(seedsNamespace, it)}
	res, err := s.grab.Run(context.Background(), s.rdb, keys, body.UserID, body.Qty).Slice()
	if err != nil || len(res) != 2 {
		unavailable(ctx)
		return
	}
	if n, _ := res[0].(int64); n != 1 {
		switch msg, _ := res[1].(string); msg {
		case luaNoStock:
			s.setSoldOut(it, now)
			writeLua(ctx, fasthttp.StatusConflict, luaSoldOut)
		case luaAlreadyBought:
			writeLua(ctx, fasthttp.StatusConflict, luaLimitReached)
		case luaNoSuchItem:
			writeLua(ctx, fasthttp.StatusNotFound, luaUnknownItem)
		default:
			unavailable(ctx)
		}
		return
	}
	m := bus.GrabMsg{Item: it, Seq: s.seq.Add(1), User: body.UserID, Qty: body.Qty, AtMs: now.UnixMilli()}
	m.GrabID = string(engine.AppendGrabID(make([]byte, 0, len(it)+24), it, 0, m.Seq))
	if k := string(ctx.Request.Header.Peek("Idempotency-Key")); engine.ValidKey(k) {
		m.Key = k // the message's idempotency token
	}
	if err := s.publish(m); err != nil {
		_ = s.rollback.Run(context.Background(), s.rdb, keys, body.UserID, body.Qty).Err()
		unavailable(ctx)
		return
	}
	b := make([]byte, 0, 160)
	b = append(b, `{"status":"confirmed","grab_id":"`...)
	b = append(b, m.GrabID...)
	b = append(b, `","item":"`...)
	b = append(b, it...)
	b = append(b, `","user_id":"`...)
	b = append(b, body.UserID...)
	b = append(b, `","qty":`...)
	b = strconv.AppendInt(b, body.Qty, 10)
	writeLua(ctx, fasthttp.StatusCreated, append(b, '}'))
}

// publish sends one order message and waits for the stream's ack (the
// seeds' acks=all; the stream here has one replica).
func (s *seeds) publish(m bus.GrabMsg) error {
	ctx, cancel := context.WithTimeout(context.Background(), seedsPublishTimeout)
	defer cancel()
	msg := &nats.Msg{Subject: bus.GrabSubject(m.Item), Data: bus.EncodeGrab(nil, m)}
	_, err := s.js.PublishMsg(ctx, msg, jetstream.WithMsgID(m.GrabID), jetstream.WithExpectStream(bus.StreamGrabs))
	return err
}

func unavailable(ctx *fasthttp.RequestCtx) {
	ctx.Response.Header.Set("Retry-After", "1")
	writeLua(ctx, fasthttp.StatusServiceUnavailable, luaUnavailable)
}

// CreateItem sets the item up in Redis and forgets its local flag.
func (s *seeds) CreateItem(ctx context.Context, item string, stock int64, shards int, perUserLimit int64) error {
	if err := s.admin.CreateItem(ctx, item, stock, shards, perUserLimit); err != nil {
		return err
	}
	s.mu.Lock()
	delete(s.soldOut, item)
	s.mu.Unlock()
	return nil
}

// Item is Redis's numbers and the orders in the order store.
func (s *seeds) Item(ctx context.Context, item string) (ItemState, error) {
	st, err := s.admin.Item(ctx, item)
	if err != nil {
		return st, err
	}
	st.Orders = 0
	err = s.store.Scan(item, func(engine.Order) error { st.Orders++; return nil })
	if err != nil {
		return ItemState{}, fmt.Errorf("count orders of %s: %w", item, err)
	}
	return st, nil
}

// Missing returns the grab ids among ids without an order.
func (s *seeds) Missing(_ context.Context, _ string, ids []string) ([]string, error) {
	var missing []string
	for _, id := range ids {
		_, ok, err := s.store.Get(id)
		if err != nil {
			return nil, fmt.Errorf("read order %s: %w", id, err)
		}
		if !ok {
			missing = append(missing, id)
		}
	}
	return missing, nil
}

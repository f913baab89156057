package bus

import (
	"context"
	"fmt"
	"sync"
	"testing"
	"time"

	"github.com/nats-io/nats.go"
	"github.com/nats-io/nats.go/jetstream"
	"github.com/seckill/seckill/engine"
)

// waitFor bounds every poll of something JetStream does asynchronously.
const waitFor = 30 * time.Second

// startServer starts an embedded server that the test shuts down at the
// end (Shutdown is idempotent).
func startServer(t testing.TB, dir, listen string) *Embedded {
	t.Helper()
	e, err := StartEmbedded(dir, listen)
	if err != nil {
		t.Fatal(err)
	}
	t.Cleanup(e.Shutdown)
	return e
}

// inProcess connects to e in-process and ensures the streams with cfg.
func inProcess(t testing.TB, e *Embedded, cfg Config) jetstream.JetStream {
	t.Helper()
	nc, err := e.Connect(t.Name())
	if err != nil {
		t.Fatal(err)
	}
	return ensure(t, nc, cfg)
}

// dial connects to e over TCP, as another process would, and ensures the
// streams with cfg.
func dial(t testing.TB, e *Embedded, cfg Config) jetstream.JetStream {
	t.Helper()
	nc, err := Dial(e.ClientURL(), t.Name(), ClientAuth{CredsFile: e.CredsPath()})
	if err != nil {
		t.Fatal(err)
	}
	t.Cleanup(nc.Close)
	return ensure(t, nc, cfg)
}

func ensure(t testing.TB, nc *nats.Conn, cfg Config) jetstream.JetStream {
	t.Helper()
	js, err := jetstream.New(nc)
	if err != nil {
		t.Fatal(err)
	}
	if err := Ensure(context.Background(), js, cfg); err != nil {
		t.Fatal(err)
	}
	return js
}

// grabs makes n valid grabs of item on shard 1, from sequence first.
func grabs(item string, first uint64, n int) []GrabMsg {
	out := make([]GrabMsg, n)
	for i := range out {
		seq := first + uint64(i)
		g := engine.Grab{Item: item, Shard: 1, Seq: seq, User: fmt.Sprintf("u%d", seq), Qty: 1, Key: fmt.Sprintf("k-%d", seq),
			AtMs: 1_700_000_000_000 + int64(seq)}
		out[i] = NewGrabMsg(g, g.AtMs+900_000)
	}
	return out
}

// eventually polls cond until it holds or waitFor passes.
func eventually(t testing.TB, what string, cond func() bool) {
	t.Helper()
	deadline := time.Now().Add(waitFor)
	for !cond() {
		if time.Now().After(deadline) {
			t.Fatalf("after %s: still not %s", waitFor, what)
		}
		time.Sleep(10 * time.Millisecond)
	}
}

// orders is a Handler that records every delivery, as an order store
// would key them, and fails the grab ids in poison.
type orders struct {
	mu        sync.Mutex
	delivered map[string]int     // grab id -> deliveries to the handler
	written   map[string]GrabMsg // grab id -> the order
	poison    map[string]error
}

func newOrders() *orders {
	return &orders{delivered: map[string]int{}, written: map[string]GrabMsg{}, poison: map[string]error{}}
}

func (o *orders) handle(_ context.Context, msgs []GrabMsg) map[string]error {
	o.mu.Lock()
	defer o.mu.Unlock()
	failed := map[string]error{}
	for _, m := range msgs {
		o.delivered[m.GrabID]++
		if err := o.poison[m.GrabID]; err != nil {
			failed[m.GrabID] = err
			continue
		}
		o.written[m.GrabID] = m
	}
	return failed
}

func (o *orders) setPoison(id string, err error) {
	o.mu.Lock()
	defer o.mu.Unlock()
	if err == nil {
		delete(o.poison, id)
	} else {
		o.poison[id] = err
	}
}

func (o *orders) order(id string) GrabMsg {
	o.mu.Lock()
	defer o.mu.Unlock()
	return o.written[id]
}

func (o *orders) deliveries(id string) int {
	o.mu.Lock()
	defer o.mu.Unlock()
	return o.delivered[id]
}

// hasAll reports whether every grab in want is written.
func (o *orders) hasAll(want []GrabMsg) bool {
	o.mu.Lock()
	defer o.mu.Unlock()
	for _, g := range want {
		if _, ok := o.written[g.GrabID]; !ok {
			return false
		}
	}
	return true
}

// run starts f in a goroutine until the test ends, and checks it returns nil
// once its context is cancelled.
func run(t testing.TB, f func(ctx context.Context) error) (stop func()) {
	t.Helper()
	ctx, cancel := context.WithCancel(context.Background())
	done := make(chan error, 1)
	go func() { done <- f(ctx) }()
	var once sync.Once
	stop = func() {
		once.Do(func() {
			cancel()
			if err := <-done; err != nil {
				t.Errorf("returned %v after cancel", err)
			}
		})
	}
	t.Cleanup(stop)
	return stop
}

func consumerInfo(t testing.TB, js jetstream.JetStream, stream, name string) *jetstream.ConsumerInfo {
	t.Helper()
	c, err := js.Consumer(context.Background(), stream, name)
	if err != nil {
		t.Fatal(err)
	}
	return c.CachedInfo()
}

func streamInfo(t testing.TB, js jetstream.JetStream, name string) *jetstream.StreamInfo {
	t.Helper()
	s, err := js.Stream(context.Background(), name)
	if err != nil {
		t.Fatal(err)
	}
	return s.CachedInfo()
}

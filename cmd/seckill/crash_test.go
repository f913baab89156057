package main

import (
	"fmt"
	"maps"
	"net/http"
	"runtime"
	"slices"
	"sync"
	"sync/atomic"
	"testing"
	"time"

	"github.com/seckill/seckill/engine"
)

const (
	crashItem    = "flash"
	crashStock   = 3000
	crashShards  = 8
	crashUsers   = 20_000
	crashClients = 64
	// crashKillAfter is the number of 201s the first server sends before it
	// is SIGKILLed.
	crashKillAfter = 1000
	// crashMaxLiveFailures bounds the retries of one user against a server
	// that was not taken down (timeouts, 503s) before the test gives up.
	crashMaxLiveFailures = 20
	crashToken           = "crash-test-admin-token"
)

func crashUser(i int) string      { return fmt.Sprintf("user-%05d", i) }
func crashKey(user string) string { return "key-" + user }

// serverGate tells the load's clients which server generation to use and
// holds them while there is none. It counts the requests each generation
// has in flight so that the test can wait for every answer of a killed
// server to be recorded.
type serverGate struct {
	mu       sync.Mutex
	gen      int
	url      string
	up       bool
	aborted  bool
	changed  chan struct{} // closed and replaced on every state change
	inflight map[int]*sync.WaitGroup
}

type gateLease struct {
	gen int
	url string
	wg  *sync.WaitGroup
}

func newServerGate() *serverGate {
	return &serverGate{changed: make(chan struct{}), inflight: map[int]*sync.WaitGroup{}}
}

func (g *serverGate) broadcastLocked() {
	close(g.changed)
	g.changed = make(chan struct{})
}

// acquire blocks until a server is up and returns it; ok is false once the
// gate was aborted. The caller calls lease.wg.Done after recording the
// answer.
func (g *serverGate) acquire() (gateLease, bool) {
	for {
		g.mu.Lock()
		if g.aborted {
			g.mu.Unlock()
			return gateLease{}, false
		}
		if g.up {
			wg := g.inflight[g.gen]
			wg.Add(1)
			l := gateLease{gen: g.gen, url: g.url, wg: wg}
			g.mu.Unlock()
			return l, true
		}
		ch := g.changed
		g.mu.Unlock()
		<-ch
	}
}

// open lets clients use server generation gen at url.
func (g *serverGate) open(gen int, url string) {
	g.mu.Lock()
	defer g.mu.Unlock()
	g.gen, g.url, g.up = gen, url, true
	g.inflight[gen] = new(sync.WaitGroup)
	g.broadcastLocked()
}

// close holds new requests and returns the in-flight counter of the
// generation that was up. Called before that server is killed, so every
// request failing because of the kill sees wentDown.
func (g *serverGate) close() *sync.WaitGroup {
	g.mu.Lock()
	defer g.mu.Unlock()
	g.up = false
	g.broadcastLocked()
	return g.inflight[g.gen]
}

// wentDown reports whether server generation gen was taken down.
func (g *serverGate) wentDown(gen int) bool {
	g.mu.Lock()
	defer g.mu.Unlock()
	return !g.up || g.gen != gen
}

// abort releases every client blocked in acquire, for good.
func (g *serverGate) abort() {
	g.mu.Lock()
	defer g.mu.Unlock()
	g.aborted = true
	g.broadcastLocked()
}

// crashLedger is everything the clients heard.
type crashLedger struct {
	t        *testing.T
	mu       sync.Mutex
	grabOf   map[string]string // user -> grab_id of its 201
	genOf    map[string]int    // user -> server generation of its first 201
	userOf   map[string]string // grab_id -> user
	soldOut  map[string]int    // user -> generation that answered sold_out
	unknown  map[int]int       // generation -> requests with no definite answer
	unknown1 map[string]bool   // users whose request to server 1 got no definite answer
	created  [4]int            // 201s per generation
	killNow  chan struct{}
	killOnce sync.Once
}

func newCrashLedger(t *testing.T) *crashLedger {
	return &crashLedger{
		t: t, grabOf: map[string]string{}, genOf: map[string]int{}, userOf: map[string]string{},
		soldOut: map[string]int{}, unknown: map[int]int{}, unknown1: map[string]bool{},
		killNow: make(chan struct{}),
	}
}

// record notes one answer of server generation gen to user's grab and
// reports whether it was definite (a 201 or a 409).
func (l *crashLedger) record(gen int, user string, a grabAnswer, err error) bool {
	l.mu.Lock()
	defer l.mu.Unlock()
	t := l.t
	if err != nil || a.Code == http.StatusServiceUnavailable {
		l.unknown[gen]++
		if gen == 1 {
			l.unknown1[user] = true
		}
		return false
	}
	switch {
	case a.Code == http.StatusCreated:
		if !l.checkConfirmed(user, a) {
			return true
		}
		if prev, ok := l.grabOf[user]; ok && prev != a.GrabID {
			t.Errorf("user %s got a second grab %s (server %d) after %s (server %d)", user, a.GrabID, gen, prev, l.genOf[user])
			return true
		}
		if other, ok := l.userOf[a.GrabID]; ok && other != user {
			t.Errorf("grab_id %s given to %s (server %d) and to %s", a.GrabID, user, gen, other)
			return true
		}
		if g, ok := l.soldOut[user]; ok {
			t.Errorf("user %s got sold_out from server %d and then grab %s from server %d", user, g, a.GrabID, gen)
		}
		if _, ok := l.grabOf[user]; !ok {
			l.genOf[user] = gen
		}
		l.grabOf[user] = a.GrabID
		l.userOf[a.GrabID] = user
		l.created[gen]++
		if gen == 1 && l.created[1] == crashKillAfter {
			l.killOnce.Do(func() { close(l.killNow) })
		}
	case a.Code == http.StatusConflict && a.Status == "sold_out":
		if g, ok := l.grabOf[user]; ok {
			t.Errorf("user %s holding grab %s got sold_out from server %d for its own key", user, g, gen)
		}
		l.soldOut[user] = gen
	default:
		// limit_reached is wrong too: the user never used another key.
		t.Errorf("grab of %s with its key, server %d: unexpected answer %v", user, gen, a)
	}
	return true
}

// checkConfirmed validates a 201 body for user's grab.
func (l *crashLedger) checkConfirmed(user string, a grabAnswer) bool {
	item, shard, _, ok := engine.ParseGrabID(a.GrabID)
	if a.Status != "confirmed" || a.Item != crashItem || a.UserID != user || a.Qty != 1 || !ok || item != crashItem {
		l.t.Errorf("grab of %s: malformed 201 %v", user, a)
		return false
	}
	if want := engine.ShardFor(crashItem, user, crashShards); shard != want {
		l.t.Errorf("grab of %s: grab_id %s names shard %d, the user routes to %d", user, a.GrabID, shard, want)
		return false
	}
	return true
}

// checkStockView checks the admin view's accounting; it returns the view.
func checkStockView(t *testing.T, c *http.Client, base, when string) itemAdmin {
	t.Helper()
	v := adminDo(t, c, http.MethodGet, base+"/admin/v1/items/"+crashItem, crashToken, "", http.StatusOK)
	if v.Stock != crashStock || v.Sold < 0 || v.Sold > crashStock || v.Sold+v.Remaining != crashStock {
		t.Errorf("%s: stock %d sold %d remaining %d; want sold <= %d and sold + remaining == %d",
			when, v.Stock, v.Sold, v.Remaining, crashStock, crashStock)
	}
	if len(v.Shards) != crashShards {
		t.Fatalf("%s: %d shards in the admin view, want %d", when, len(v.Shards), crashShards)
	}
	var sold, rem int64
	for i, s := range v.Shards {
		if s.Shard != i || s.Sold < 0 || s.Sold > s.Allocated || s.Remaining != s.Allocated-s.Sold {
			t.Errorf("%s: shard view %+v breaks 0 <= sold <= allocated, remaining == allocated - sold", when, s)
		}
		sold += s.Sold
		rem += s.Remaining
	}
	// Conservation: every unsold unit is in a shard, the pool or in transit.
	if sold != v.Sold || rem+v.Pool+v.InTransit != v.Remaining || v.Pool < 0 || v.InTransit < 0 {
		t.Errorf("%s: shards sum to sold %d remaining %d, pool %d, in transit %d; item says stock %d sold %d remaining %d",
			when, sold, rem, v.Pool, v.InTransit, v.Stock, v.Sold, v.Remaining)
	}
	return v
}

// checkHonoured requires that every user in grabs replays its grab_id with
// its key and gets limit_reached with a fresh key.
func checkHonoured(t *testing.T, c *http.Client, base string, grabs map[string]string, fresh bool, when string) {
	t.Helper()
	var bad atomic.Int64
	forEachParallel(crashClients, slices.Sorted(maps.Keys(grabs)), func(user string) {
		a, err := postGrab(c, base, crashItem, user, crashKey(user))
		if err != nil || a.Code != http.StatusCreated || a.Status != "confirmed" || a.GrabID != grabs[user] || a.UserID != user {
			if bad.Add(1) <= 10 {
				t.Errorf("%s: replay of %s with its key: %v %v, want 201 with grab_id %s", when, user, a, err, grabs[user])
			}
			return
		}
		if !fresh {
			return
		}
		a, err = postGrab(c, base, crashItem, user, "fresh-"+user)
		if err != nil || a.Code != http.StatusConflict || a.Status != "limit_reached" {
			if bad.Add(1) <= 10 {
				t.Errorf("%s: grab of %s with a fresh key: %v %v, want 409 limit_reached", when, user, a, err)
			}
		}
	})
	if n := bad.Load(); n > 0 {
		t.Fatalf("%s: %d of %d confirmed grabs not honoured", when, n, len(grabs))
	}
}

// TestCrashMidLoadKeepsEveryConfirmedGrab runs the acceptance scenario with
// real processes: 64 clients grab for 20 000 users, the server is SIGKILLed
// after 1000 confirmations and restarted on the same data; every 201 sent
// before the kill must survive, stock must balance, and once every user has
// tried the whole stock is sold. A clean SIGTERM and a third start then
// check that nothing changes across an orderly shutdown.
func TestCrashMidLoadKeepsEveryConfirmedGrab(t *testing.T) {
	if testing.Short() {
		t.Skip("starts and kills real server processes; skipped with -short")
	}
	if runtime.GOOS == "windows" {
		t.Skip("needs SIGKILL and SIGTERM")
	}
	started := time.Now()
	bin := buildSeckill(t)
	t.Logf("built seckill in %v", time.Since(started).Round(time.Millisecond))
	dataDir := t.TempDir()
	client := newTestHTTPClient(crashClients)
	t.Cleanup(client.CloseIdleConnections)

	srv1 := startSeckill(t, bin, dataDir, crashToken, "server 1")
	v := adminDo(t, client, http.MethodPut, srv1.URL+"/admin/v1/items/"+crashItem, crashToken,
		fmt.Sprintf(`{"stock":%d,"shards":%d,"per_user_limit":1}`, crashStock, crashShards), http.StatusCreated)
	if v.Stock != crashStock || v.Sold != 0 || len(v.Shards) != crashShards {
		t.Fatalf("created item: %+v", v)
	}

	gate := newServerGate()
	ledger := newCrashLedger(t)
	var next atomic.Int64
	var clients sync.WaitGroup
	clientsDone := make(chan struct{})
	defer func() { // on an early t.Fatal, let no client wait for a server forever
		gate.abort()
		<-clientsDone
	}()
	gate.open(1, srv1.URL)
	loadStart := time.Now()
	for range crashClients {
		clients.Go(func() {
			for {
				i := int(next.Add(1)) - 1
				if i >= crashUsers {
					return
				}
				user := crashUser(i)
				key := crashKey(user)
				for live := 0; ; {
					lease, ok := gate.acquire()
					if !ok {
						return
					}
					a, err := postGrab(client, lease.url, crashItem, user, key)
					definite := ledger.record(lease.gen, user, a, err)
					lease.wg.Done()
					if definite {
						break
					}
					if gate.wentDown(lease.gen) {
						continue // retried with the same key on the next server
					}
					if live++; live > crashMaxLiveFailures {
						t.Errorf("grab of %s: no definite answer from live server %d after %d tries (last %v %v)",
							user, lease.gen, live, a, err)
						return
					}
				}
			}
		})
	}
	go func() {
		clients.Wait()
		close(clientsDone)
	}()

	select {
	case <-ledger.killNow:
	case <-clientsDone:
		t.Fatalf("every user tried before %d grabs were confirmed", crashKillAfter)
	}
	inflight1 := gate.close()
	srv1.kill(t)
	inflight1.Wait() // every answer server 1 gave is recorded

	ledger.mu.Lock()
	confirmed1 := map[string]string{}
	for u, g := range ledger.grabOf {
		if ledger.genOf[u] == 1 {
			confirmed1[u] = g
		}
	}
	unknown1 := len(ledger.unknown1)
	soldOut1 := len(ledger.soldOut)
	ledger.mu.Unlock()
	t.Logf("server 1 SIGKILLed %v into the load, after %d 201s (%d sold_out, %d requests without an answer)",
		time.Since(loadStart).Round(time.Millisecond), len(confirmed1), soldOut1, unknown1)

	srv2 := startSeckill(t, bin, dataDir, crashToken, "server 2")
	v = checkStockView(t, client, srv2.URL, "after the crash")
	// Every 201 is durable, and a durable grab belongs to a user who got a
	// 201 or whose request was in flight.
	if v.Sold < int64(len(confirmed1)) || v.Sold > int64(len(confirmed1)+unknown1) {
		t.Errorf("after the crash sold is %d; %d grabs were confirmed and %d requests were in flight",
			v.Sold, len(confirmed1), unknown1)
	}
	t.Logf("server 2 loaded %d sold: the %d confirmed grabs and %d decided before the kill whose 201 was not received",
		v.Sold, len(confirmed1), v.Sold-int64(len(confirmed1)))
	checkHonoured(t, client, srv2.URL, confirmed1, true, "after the crash")

	gate.open(2, srv2.URL)
	<-clientsDone
	t.Logf("every user tried %v after the load started", time.Since(loadStart).Round(time.Millisecond))
	if t.Failed() {
		t.FailNow()
	}

	ledger.mu.Lock()
	grabs := maps.Clone(ledger.grabOf)
	distinct := len(ledger.userOf)
	soldOut := len(ledger.soldOut)
	created2 := ledger.created[2]
	unknown2 := ledger.unknown[2]
	ledger.mu.Unlock()
	if len(grabs)+soldOut != crashUsers {
		t.Fatalf("%d users confirmed and %d sold out, want every one of %d users answered", len(grabs), soldOut, crashUsers)
	}
	v = checkStockView(t, client, srv2.URL, "after every user tried")
	if v.Sold != crashStock || v.Remaining != 0 {
		t.Errorf("after every user tried: sold %d remaining %d, want %d sold", v.Sold, v.Remaining, crashStock)
	}
	if int64(distinct) != v.Sold || len(grabs) != distinct {
		t.Errorf("%d distinct grab_ids for %d users seen, final sold is %d", distinct, len(grabs), v.Sold)
	}
	t.Logf("server 2: %d 201s (replays and new), %d requests without an answer; totals: %d users confirmed, %d sold out",
		created2, unknown2, len(grabs), soldOut)

	srv2.stop(t)

	srv3 := startSeckill(t, bin, dataDir, crashToken, "server 3")
	v3 := checkStockView(t, client, srv3.URL, "after SIGTERM and restart")
	if !slices.Equal(v3.Shards, v.Shards) || v3.Sold != v.Sold {
		t.Errorf("after SIGTERM and restart: %+v, before %+v", v3, v)
	}
	checkHonoured(t, client, srv3.URL, grabs, false, "after SIGTERM and restart")
	srv3.stop(t)
	t.Logf("total %v", time.Since(started).Round(time.Millisecond))
}

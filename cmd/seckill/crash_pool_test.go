package main

import (
	"encoding/json"
	"fmt"
	"io"
	"math/rand/v2"
	"net/http"
	"runtime"
	"slices"
	"strings"
	"sync"
	"sync/atomic"
	"testing"
	"time"

	"github.com/seckill/seckill/engine"
)

// The scenario of TestCrashDuringRefillsAndStealsConservesStock: many small
// shards and a crowd skewed towards a few of them, so that the hot shards
// refill from the pool, drain it, and then steal from their siblings.
const (
	poolCrashItem    = "pool-flash"
	poolCrashStock   = 5000
	poolCrashShards  = 64
	poolCrashClients = 64
	// poolCrashUsers is the crowd: far more than the stock, so every unit
	// finds a buyer once everyone has tried.
	poolCrashUsers = 14_000
	// poolCrashHotPercent of the requests come from users routed to the
	// poolCrashHot shards.
	poolCrashHotPercent = 85
	// poolCrashReleaseEvery: every n-th grab confirmed by the first server
	// is released by the admin API while the load runs.
	poolCrashReleaseEvery = 10
	poolCrashReleasers    = 4
	// poolCrashStockEvery: a stock change (alternately +50 and -20) after
	// every n-th grab confirmed by the first server.
	poolCrashStockEvery = 400
	// poolCrashMonitorEvery: the admin view is read after every n-th
	// definite answer of the first server.
	poolCrashMonitorEvery = 100
	// Once an admin view read after at least poolCrashKillAfter 201s shows
	// refills, at least poolCrashKillSteals steals spread over two shards
	// or more and fewer than 20 units in the pool, the test asks for -20
	// units (every shard gives back to the pool), and SIGKILLs the first
	// server at the next admin view.
	poolCrashKillAfter  = 1500
	poolCrashKillSteals = 8
	// poolCrashMaxLiveFailures bounds the retries of one request against a
	// server that was not taken down (timeouts, 503s) before giving up.
	poolCrashMaxLiveFailures = 200
	poolCrashToken           = "pool-crash-test-admin-token"
)

// poolCrashHot are the shards most of the crowd routes to.
var poolCrashHot = []int{5, 17, 33, 60}

// poolShardView and poolItemView are the admin view of an item with a
// stock pool.
type poolShardView struct {
	Shard     int   `json:"shard"`
	Allocated int64 `json:"allocated"`
	Remaining int64 `json:"remaining"`
	Sold      int64 `json:"sold"`
	Refills   int64 `json:"refills"`
	Steals    int64 `json:"steals"`
}

type poolItemView struct {
	Item         string          `json:"item"`
	Status       string          `json:"status"`
	Stock        int64           `json:"stock"`
	Remaining    int64           `json:"remaining"`
	Sold         int64           `json:"sold"`
	Pool         int64           `json:"pool"`
	InTransit    int64           `json:"in_transit"`
	PerUserLimit int64           `json:"per_user_limit"`
	Shards       []poolShardView `json:"shards"`
}

// transfers sums the shards' refill and steal counts and counts the shards
// that gave units away.
func (v poolItemView) transfers() (refills, steals int64, stealShards int) {
	for _, s := range v.Shards {
		refills += s.Refills
		steals += s.Steals
		if s.Steals > 0 {
			stealShards++
		}
	}
	return
}

// withoutCounts returns v with the per-shard refill and steal counts
// cleared: they count what this process did, not what is durable.
func (v poolItemView) withoutCounts() poolItemView {
	v.Shards = slices.Clone(v.Shards)
	for i := range v.Shards {
		v.Shards[i].Refills, v.Shards[i].Steals = 0, 0
	}
	return v
}

// problems lists every broken rule of the admin view's accounting.
func (v poolItemView) problems() []string {
	out := v.totalProblems()
	if len(v.Shards) != poolCrashShards {
		return append(out, fmt.Sprintf("%d shards in the view, want %d", len(v.Shards), poolCrashShards))
	}
	return append(out, v.shardSumProblems()...)
}

// totalProblems checks the item's own numbers and each shard's.
func (v poolItemView) totalProblems() []string {
	var out []string
	for i, s := range v.Shards {
		if s.Shard != i || s.Sold < 0 || s.Sold > s.Allocated || s.Remaining != s.Allocated-s.Sold {
			out = append(out, fmt.Sprintf("shard %+v breaks 0 <= sold <= allocated, remaining == allocated - sold", s))
		}
	}
	if v.Pool < 0 || v.InTransit < 0 || v.Sold < 0 || v.Sold > v.Stock {
		out = append(out, fmt.Sprintf("pool %d in_transit %d sold %d stock %d: want pool, in_transit >= 0 and 0 <= sold <= stock",
			v.Pool, v.InTransit, v.Sold, v.Stock))
	}
	if v.Remaining+v.Sold != v.Stock || v.Remaining < v.Pool+v.InTransit {
		out = append(out, fmt.Sprintf("remaining %d + sold %d = %d, stock %d (pool %d, in_transit %d)",
			v.Remaining, v.Sold, v.Remaining+v.Sold, v.Stock, v.Pool, v.InTransit))
	}
	return out
}

// shardSumProblems checks that the shards add up to the item's numbers:
// Σ shard remaining + pool + in_transit + sold == stock.
func (v poolItemView) shardSumProblems() []string {
	var out []string
	var rem, sold int64
	for _, s := range v.Shards {
		rem += s.Remaining
		sold += s.Sold
	}
	if sold != v.Sold {
		out = append(out, fmt.Sprintf("shards sold %d, item sold %d", sold, v.Sold))
	}
	if rem+v.Pool+v.InTransit+v.Sold != v.Stock {
		out = append(out, fmt.Sprintf("conservation: shard remaining %d + pool %d + in_transit %d + sold %d = %d, stock %d",
			rem, v.Pool, v.InTransit, v.Sold, rem+v.Pool+v.InTransit+v.Sold, v.Stock))
	}
	if v.Remaining != rem+v.Pool+v.InTransit || v.Remaining+v.Sold != v.Stock {
		out = append(out, fmt.Sprintf("remaining %d, shards %d + pool %d + in_transit %d; remaining + sold %d, stock %d",
			v.Remaining, rem, v.Pool, v.InTransit, v.Remaining+v.Sold, v.Stock))
	}
	return out
}

// poolAdminRequest sends one admin request; it never touches a testing.T,
// so any goroutine may use it. err is set when no answer came back.
func poolAdminRequest(c *http.Client, method, url, body string) (int, []byte, error) {
	req, err := http.NewRequest(method, url, strings.NewReader(body))
	if err != nil {
		return 0, nil, err
	}
	req.Header.Set("Authorization", "Bearer "+poolCrashToken)
	if body != "" {
		req.Header.Set("Content-Type", "application/json")
	}
	resp, err := c.Do(req)
	if err != nil {
		return 0, nil, err
	}
	defer resp.Body.Close()
	raw, err := io.ReadAll(resp.Body)
	if err != nil {
		return resp.StatusCode, raw, fmt.Errorf("read answer (status %d): %w", resp.StatusCode, err)
	}
	return resp.StatusCode, raw, nil
}

func getPoolView(c *http.Client, base string) (poolItemView, error) {
	code, raw, err := poolAdminRequest(c, http.MethodGet, base+"/admin/v1/items/"+poolCrashItem, "")
	if err != nil {
		return poolItemView{}, err
	}
	if code != http.StatusOK {
		return poolItemView{}, fmt.Errorf("GET item: %d %s", code, raw)
	}
	var v poolItemView
	if err := json.Unmarshal(raw, &v); err != nil {
		return poolItemView{}, fmt.Errorf("GET item: decode %q: %w", raw, err)
	}
	return v, nil
}

// mustPoolView reads the admin view and requires its accounting to hold.
func mustPoolView(t *testing.T, c *http.Client, base, when string) poolItemView {
	t.Helper()
	v, err := getPoolView(c, base)
	if err != nil {
		t.Fatalf("%s: %v", when, err)
	}
	for _, p := range v.problems() {
		t.Errorf("%s: %s", when, p)
	}
	return v
}

// poolWork is one buyer's attempt: a user and the one key it uses,
// retried until a definite answer.
type poolWork struct{ user, key string }

// poolWorkQueue hands out attempts in order; more can be put at its head.
type poolWorkQueue struct {
	mu    sync.Mutex
	items []poolWork
	next  int
}

func (q *poolWorkQueue) take() (poolWork, bool) {
	q.mu.Lock()
	defer q.mu.Unlock()
	if q.next >= len(q.items) {
		return poolWork{}, false
	}
	q.next++
	return q.items[q.next-1], true
}

// putFirst puts ws before every attempt not yet handed out.
func (q *poolWorkQueue) putFirst(ws []poolWork) {
	q.mu.Lock()
	defer q.mu.Unlock()
	q.items = slices.Insert(q.items, q.next, ws...)
}

// Release states of a grab the test asked to release.
const (
	relOK   = "released"    // 200 released (or already_released on a retry)
	relLost = "answer lost" // sent, no answer: released or not
)

// poolLedger is everything the test's clients heard.
type poolLedger struct {
	t  *testing.T
	mu sync.Mutex

	grabOf    map[poolWork]string // attempt -> grab_id of its 201
	genOf     map[poolWork]int    // attempt -> server of its first 201
	workOf    map[string]poolWork // grab_id -> attempt
	soldOut   map[poolWork]int    // attempt -> server that answered sold_out
	uncertain map[poolWork]bool   // attempts that got no definite answer once
	unknown1  map[poolWork]bool   // ... from the first server
	created   [4]int              // 201s per server
	answers   [4]int              // definite answers per server
	// soldOutSeen is raised by the first sold_out of a server after the
	// crash: stock only goes down then, so no new grab may follow.
	soldOutSeen atomic.Bool

	release     map[string]string // grab_id -> relOK / relLost
	releaseAns  []string          // every release answer, in order
	released    map[string]bool   // grab_ids known released, once resolved
	stockOK     []int64           // deltas answered 200 by the first server
	stockLost   []int64           // deltas sent without an answer
	stockRefuse []string          // 409 answers
	stockAns    []string          // every stock-change answer

	releaseCh chan string   // grab_ids to release
	stockCh   chan int64    // stock changes due
	monTick   chan struct{} // an admin view is due
}

func newPoolLedger(t *testing.T) *poolLedger {
	return &poolLedger{
		t: t, grabOf: map[poolWork]string{}, genOf: map[poolWork]int{}, workOf: map[string]poolWork{},
		soldOut: map[poolWork]int{}, uncertain: map[poolWork]bool{}, unknown1: map[poolWork]bool{},
		release: map[string]string{}, released: map[string]bool{},
		releaseCh: make(chan string, poolCrashUsers), stockCh: make(chan int64, 64),
		monTick: make(chan struct{}, 1),
	}
}

func poolPoke(ch chan struct{}) {
	select {
	case ch <- struct{}{}:
	default:
	}
}

// recordGrab notes one answer of server gen to attempt w and reports
// whether it was definite. soldOutBefore tells whether a sold_out of a
// server after the crash had been heard before the request was sent.
func (l *poolLedger) recordGrab(gen int, w poolWork, a grabAnswer, err error, soldOutBefore bool) bool {
	l.mu.Lock()
	defer l.mu.Unlock()
	t := l.t
	if err != nil || a.Code == http.StatusServiceUnavailable {
		l.uncertain[w] = true
		if gen == 1 {
			l.unknown1[w] = true
		}
		return false
	}
	l.answers[gen]++
	if gen == 1 && l.answers[1]%poolCrashMonitorEvery == 0 {
		poolPoke(l.monTick)
	}
	switch {
	case a.Code == http.StatusCreated:
		item, shard, _, ok := engine.ParseGrabID(a.GrabID)
		if a.Status != "confirmed" || a.Item != poolCrashItem || a.UserID != w.user || a.Qty != 1 || !ok || item != poolCrashItem {
			t.Errorf("grab of %v: malformed 201 %v", w, a)
			return true
		}
		if want := engine.ShardFor(poolCrashItem, w.user, poolCrashShards); shard != want {
			t.Errorf("grab of %v: grab_id %s names shard %d, the user routes to %d", w, a.GrabID, shard, want)
			return true
		}
		if prev, ok := l.grabOf[w]; ok && prev != a.GrabID {
			t.Errorf("%v got a second grab %s (server %d) after %s (server %d)", w, a.GrabID, gen, prev, l.genOf[w])
			return true
		}
		if other, ok := l.workOf[a.GrabID]; ok && other != w {
			t.Errorf("grab_id %s given to %v (server %d) and to %v", a.GrabID, w, gen, other)
			return true
		}
		if g, ok := l.soldOut[w]; ok {
			t.Errorf("%v got sold_out from server %d and then grab %s from server %d", w, g, a.GrabID, gen)
		}
		_, seen := l.grabOf[w]
		if !seen && soldOutBefore && !l.uncertain[w] {
			t.Errorf("%v: new grab %s from server %d, asked after that server answered sold_out to someone", w, a.GrabID, gen)
		}
		l.created[gen]++
		if seen {
			return true
		}
		l.genOf[w] = gen
		l.grabOf[w] = a.GrabID
		l.workOf[a.GrabID] = w
		if gen == 1 {
			if l.created[1]%poolCrashReleaseEvery == 0 {
				l.releaseCh <- a.GrabID // buffered for every user: never blocks
			}
			if n := l.created[1] / poolCrashStockEvery; l.created[1]%poolCrashStockEvery == 0 {
				l.sendStock([]int64{50, -20}[(n-1)%2])
			}
		}
	case a.Code == http.StatusConflict && a.Status == "sold_out":
		if g, ok := l.grabOf[w]; ok {
			t.Errorf("%v holding grab %s got sold_out from server %d for its own key", w, g, gen)
		}
		l.soldOut[w] = gen
		if gen >= 2 {
			l.soldOutSeen.Store(true)
		}
	default:
		// released: only grabs the test heard of are released, and a 201
		// is never asked again with its key during the load.
		// limit_reached: every user holds at most one unreleased grab.
		t.Errorf("grab of %v, server %d: unexpected answer %v", w, gen, a)
	}
	return true
}

// sendStock queues a stock change unless too many are queued.
func (l *poolLedger) sendStock(delta int64) {
	select {
	case l.stockCh <- delta:
	default:
	}
}

// recordRelease notes one answer to the release of grab id and reports
// whether it was definite.
func (l *poolLedger) recordRelease(id string, code int, raw []byte, err error, retry bool) bool {
	l.mu.Lock()
	defer l.mu.Unlock()
	l.releaseAns = append(l.releaseAns, fmt.Sprintf("%s: %d %s %v", id, code, strings.TrimSpace(string(raw)), err))
	if err != nil || code == http.StatusServiceUnavailable {
		if l.release[id] != relOK {
			l.release[id] = relLost
		}
		return false
	}
	var a struct {
		Status   string `json:"status"`
		GrabID   string `json:"grab_id"`
		Released bool   `json:"released"`
		UserID   string `json:"user_id"`
		Qty      int64  `json:"qty"`
	}
	_ = json.Unmarshal(raw, &a)
	w := l.workOf[id]
	switch {
	case code == http.StatusOK && a.Status == "released" && a.Released && a.GrabID == id && a.UserID == w.user && a.Qty == 1:
		l.release[id] = relOK
	case code == http.StatusOK && a.Status == "already_released" && !a.Released && a.GrabID == id && retry:
		l.release[id] = relOK // an earlier try whose answer was lost did it
	default:
		l.t.Errorf("release of %s (grab of %v, first try %v): %d %s", id, w, !retry, code, raw)
	}
	return true
}

// recordStock notes the answer to a stock change by delta.
func (l *poolLedger) recordStock(delta int64, code int, raw []byte, err error) {
	l.mu.Lock()
	defer l.mu.Unlock()
	l.stockAns = append(l.stockAns, fmt.Sprintf("%+d: %d %s %v", delta, code, strings.TrimSpace(string(raw)), err))
	switch {
	case err != nil || code == http.StatusServiceUnavailable:
		l.stockLost = append(l.stockLost, delta)
	case code == http.StatusOK:
		var v poolItemView
		if err := json.Unmarshal(raw, &v); err != nil {
			l.t.Errorf("stock change %+d: decode %s: %v", delta, raw, err)
			return
		}
		l.stockOK = append(l.stockOK, delta)
		want := int64(poolCrashStock)
		for _, d := range l.stockOK {
			want += d
		}
		if len(l.stockLost) == 0 && v.Stock != want {
			l.t.Errorf("stock change %+d answered stock %d, want %d", delta, v.Stock, want)
		}
		for _, p := range v.problems() {
			if !strings.Contains(p, "shards in the view") { // this answer has no shards
				l.t.Errorf("stock change %+d answer: %s", delta, p)
			}
		}
	case code == http.StatusConflict:
		var a struct {
			Status    string `json:"status"`
			Available int64  `json:"available"`
		}
		_ = json.Unmarshal(raw, &a)
		if a.Status != "insufficient" || delta >= 0 || a.Available < 0 {
			l.t.Errorf("stock change %+d: %d %s", delta, code, raw)
		}
		if a.Available >= -delta {
			// The reduction was refused although, by its own answer, the
			// item had enough unsold units.
			l.t.Errorf("stock change %+d refused as insufficient with %d units available: %s", delta, a.Available, raw)
		}
		l.stockRefuse = append(l.stockRefuse, string(raw))
	default:
		l.t.Errorf("stock change %+d: %d %s", delta, code, raw)
	}
}

// poolCrashCrowd returns the attempts of the scenario, in the order they
// are made: poolCrashHotPercent of them by users routed to the hot shards.
func poolCrashCrowd() (crowd []poolWork, perShard []int) {
	hotSet := map[int]bool{}
	for _, s := range poolCrashHot {
		hotSet[s] = true
	}
	var hot, cold []string
	for i := 0; len(hot) < poolCrashUsers || len(cold) < poolCrashUsers; i++ {
		u := fmt.Sprintf("pu-%07d", i)
		if hotSet[engine.ShardFor(poolCrashItem, u, poolCrashShards)] {
			hot = append(hot, u)
		} else {
			cold = append(cold, u)
		}
	}
	rng := rand.New(rand.NewPCG(3, 2026))
	perShard = make([]int, poolCrashShards)
	for range poolCrashUsers {
		var u string
		if rng.IntN(100) < poolCrashHotPercent {
			u, hot = hot[0], hot[1:]
		} else {
			u, cold = cold[0], cold[1:]
		}
		perShard[engine.ShardFor(poolCrashItem, u, poolCrashShards)]++
		crowd = append(crowd, poolWork{user: u, key: "k1-" + u})
	}
	return crowd, perShard
}

// poolParallel calls fn(i) for i in 0..n-1 from conns goroutines.
func poolParallel(conns, n int, fn func(i int)) {
	var next atomic.Int64
	var wg sync.WaitGroup
	for range conns {
		wg.Go(func() {
			for {
				i := int(next.Add(1)) - 1
				if i >= n {
					return
				}
				fn(i)
			}
		})
	}
	wg.Wait()
}

// poolServerErrors returns the lines a server logged at level ERROR.
func poolServerErrors(p *seckillProc) []string {
	var out []string
	for line := range strings.Lines(p.stderr.String()) {
		if strings.Contains(line, "level=ERROR") {
			out = append(out, strings.TrimSpace(line))
		}
	}
	return out
}

// TestCrashDuringRefillsAndStealsConservesStock SIGKILLs a real server while
// 64 clients buy an item of 5000 units spread over 64 shards, 85% of them
// as users routed to 4 hot shards, so that shards refill from the pool and
// steal from each other, while every 10th grab is released and the stock
// changed (+50/-20) through the admin API. The kill comes right after a
// reduction larger than the pool made every shard give its units back.
// The server restarted on the same data must hold every confirmed grab,
// release and stock change, have nothing in transit and conserve stock
// exactly; then every unit must sell, and a clean restart must show the
// same item.
func TestCrashDuringRefillsAndStealsConservesStock(t *testing.T) {
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
	client := newTestHTTPClient(poolCrashClients + poolCrashReleasers + 2)
	t.Cleanup(client.CloseIdleConnections)

	crowd, perShard := poolCrashCrowd()
	t.Logf("attempts per shard (hot shards %v): %v", poolCrashHot, perShard)
	queue := &poolWorkQueue{items: slices.Clone(crowd)}

	srv1 := startSeckill(t, bin, dataDir, poolCrashToken, "server 1")
	code, raw, err := poolAdminRequest(client, http.MethodPut, srv1.URL+"/admin/v1/items/"+poolCrashItem,
		fmt.Sprintf(`{"stock":%d,"shards":%d,"per_user_limit":1}`, poolCrashStock, poolCrashShards))
	if err != nil || code != http.StatusCreated {
		t.Fatalf("create item: %d %s %v", code, raw, err)
	}
	v := mustPoolView(t, client, srv1.URL, "after creation")
	if v.Stock != poolCrashStock || v.Sold != 0 || v.Pool != poolCrashStock/2 || v.InTransit != 0 {
		t.Fatalf("created item: %+v, want half of %d units in the pool", v, poolCrashStock)
	}

	gate := newServerGate()
	ledger := newPoolLedger(t)
	var clients, helpers sync.WaitGroup
	clientsDone := make(chan struct{})
	stopHelpers := make(chan struct{})
	var stopOnce sync.Once
	stop := func() { stopOnce.Do(func() { close(stopHelpers) }) }
	defer func() { // on an early t.Fatal, let no goroutine wait for a server forever
		stop()
		gate.abort()
		<-clientsDone
		helpers.Wait()
	}()
	gate.open(1, srv1.URL)
	loadStart := time.Now()

	// Buyers: each attempt is retried with its key until a definite answer,
	// across the crash.
	for range poolCrashClients {
		clients.Go(func() {
			for {
				w, ok := queue.take()
				if !ok {
					return
				}
				for live := 0; ; {
					lease, ok := gate.acquire()
					if !ok {
						return
					}
					soldOutBefore := lease.gen >= 2 && ledger.soldOutSeen.Load()
					a, err := postGrab(client, lease.url, poolCrashItem, w.user, w.key)
					definite := ledger.recordGrab(lease.gen, w, a, err, soldOutBefore)
					lease.wg.Done()
					if definite {
						break
					}
					if gate.wentDown(lease.gen) {
						continue // retried with the same key on the next server
					}
					if live++; live > poolCrashMaxLiveFailures {
						t.Errorf("grab of %v: no definite answer from live server %d after %d tries (last %v %v)",
							w, lease.gen, live, a, err)
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

	// Releases of every poolCrashReleaseEvery-th grab, by the first server
	// only: after the crash, stock must only go down.
	var releasing atomic.Bool
	releasing.Store(true)
	for range poolCrashReleasers {
		helpers.Go(func() {
			for {
				var id string
				select {
				case id = <-ledger.releaseCh:
				case <-stopHelpers:
					return
				}
				for try := 0; releasing.Load(); try++ {
					lease, ok := gate.acquire()
					if !ok {
						return
					}
					if lease.gen != 1 {
						lease.wg.Done()
						break
					}
					code, raw, err := poolAdminRequest(client, http.MethodPost,
						lease.url+"/admin/v1/items/"+poolCrashItem+"/release", fmt.Sprintf(`{"grab_id":%q}`, id))
					definite := ledger.recordRelease(id, code, raw, err, try > 0)
					lease.wg.Done()
					if definite || gate.wentDown(lease.gen) {
						break
					}
					if try >= poolCrashMaxLiveFailures {
						t.Errorf("release of %s: no definite answer after %d tries (last %d %s %v)", id, try, code, raw, err)
						break
					}
				}
			}
		})
	}

	// Stock changes, alternately +50 and -20. A change whose answer is lost
	// is not retried: it is not idempotent.
	helpers.Go(func() {
		for {
			var delta int64
			select {
			case delta = <-ledger.stockCh:
			case <-stopHelpers:
				return
			}
			lease, ok := gate.acquire()
			if !ok {
				return
			}
			if lease.gen != 1 {
				lease.wg.Done()
				return
			}
			code, raw, err := poolAdminRequest(client, http.MethodPost,
				lease.url+"/admin/v1/items/"+poolCrashItem+"/stock", fmt.Sprintf(`{"delta":%d}`, delta))
			ledger.recordStock(delta, code, raw, err)
			lease.wg.Done()
		}
	})

	// The monitor reads the admin view as answers come in, checks its
	// accounting, and calls for the kill once the load has been through
	// refills, steals and a reclaim.
	killNow := make(chan struct{})
	var lastView poolItemView
	var views, skewedViews int
	var reclaimView poolItemView
	var killCreated int
	helpers.Go(func() {
		for {
			select {
			case <-ledger.monTick:
			case <-stopHelpers:
				return
			}
			lease, ok := gate.acquire()
			if !ok {
				return
			}
			if lease.gen != 1 {
				lease.wg.Done()
				return
			}
			v, err := getPoolView(client, lease.url)
			lease.wg.Done()
			if err != nil {
				if gate.wentDown(lease.gen) {
					return
				}
				t.Errorf("admin view during the load: %v", err)
				continue
			}
			for _, p := range v.totalProblems() {
				t.Errorf("admin view during the load (sold %d): %s", v.Sold, p)
			}
			if len(v.Shards) != poolCrashShards {
				t.Errorf("admin view during the load: %d shards, want %d", len(v.Shards), poolCrashShards)
			} else if p := v.shardSumProblems(); len(p) > 0 {
				// The view reads each shard once and sums the totals from
				// the same reads, so its shards add up even under load.
				skewedViews++
				t.Errorf("admin view during the load whose shards disagree with its totals: %s", strings.Join(p, "; "))
			}
			ledger.mu.Lock()
			created := ledger.created[1]
			ledger.mu.Unlock()
			lastView, views = v, views+1
			if reclaimView.Shards != nil {
				killCreated = created
				close(killNow)
				return
			}
			refills, steals, stealShards := v.transfers()
			if created >= poolCrashKillAfter && refills > 0 && steals >= poolCrashKillSteals && stealShards >= 2 && v.Pool < 20 {
				// Shards have stolen from each other; now take back more
				// than the pool holds, which makes every shard give back,
				// and kill at the next view, with units moving everywhere.
				reclaimView = v
				ledger.sendStock(-20)
			}
		}
	})

	select {
	case <-killNow:
	case <-clientsDone:
		stop()
		helpers.Wait()
		t.Fatalf("every user tried before the admin view showed %d steals; last view after %d reads: %+v",
			poolCrashKillSteals, views, lastView)
	}
	releasing.Store(false)
	inflight1 := gate.close()
	srv1.kill(t)
	inflight1.Wait() // every answer server 1 gave is recorded
	killedAfter := time.Since(loadStart)
	// Helpers stop; one blocked on the closed gate leaves when it sees the
	// second server (it sends nothing to it). Every answer they got from
	// the first server is recorded.
	stop()
	refills1, steals1, stealShards1 := lastView.transfers()

	ledger.mu.Lock()
	confirmed1 := map[poolWork]string{}
	for w, g := range ledger.grabOf {
		if ledger.genOf[w] == 1 {
			confirmed1[w] = g
		}
	}
	releaseState := cloneMap(ledger.release)
	unknown1 := len(ledger.unknown1)
	soldOut1 := 0
	for _, g := range ledger.soldOut {
		if g == 1 {
			soldOut1++
		}
	}
	base := int64(poolCrashStock)
	for _, d := range ledger.stockOK {
		base += d
	}
	lo, hi := base, base
	var added int64
	for _, d := range ledger.stockLost {
		if d < 0 {
			lo += d
		} else {
			hi += d
		}
	}
	for _, d := range append(slices.Clone(ledger.stockOK), ledger.stockLost...) {
		added += max(d, 0)
	}
	stockAns := slices.Clone(ledger.stockAns)
	nRefused := len(ledger.stockRefuse)
	ledger.mu.Unlock()
	var relOKs, relLosts int
	for _, s := range releaseState {
		if s == relOK {
			relOKs++
		} else {
			relLosts++
		}
	}
	t.Logf("server 1 SIGKILLed %v into the load, after %d 201s (kill called at %d; %d sold_out, %d attempts without an answer)",
		killedAfter.Round(time.Millisecond), len(confirmed1), killCreated, soldOut1, unknown1)
	refillsR, stealsR, stealShardsR := reclaimView.transfers()
	t.Logf("admin view when the reclaim was sent: sold %d pool %d in_transit %d; refills %d, steals %d on %d shards",
		reclaimView.Sold, reclaimView.Pool, reclaimView.InTransit, refillsR, stealsR, stealShardsR)
	t.Logf("last admin view before the kill (%d read, %d with shards disagreeing with totals): sold %d pool %d in_transit %d; refills %d, steals %d on %d shards",
		views, skewedViews, lastView.Sold, lastView.Pool, lastView.InTransit, refills1, steals1, stealShards1)
	t.Logf("releases sent %d: %d released, %d answers lost; stock changes (%d refused): %v", len(releaseState), relOKs, relLosts, nRefused, stockAns)
	if errs := poolServerErrors(srv1); len(errs) > 0 {
		t.Errorf("server 1 logged errors:\n%s", strings.Join(errs, "\n"))
	}

	// The restart: transfers completed, conservation exact, every answer
	// honoured.
	srv2 := startSeckill(t, bin, dataDir, poolCrashToken, "server 2")
	v2 := mustPoolView(t, client, srv2.URL, "after the crash")
	if v2.InTransit != 0 {
		t.Errorf("after the crash: in_transit %d, want 0 right after a load", v2.InTransit)
	}
	if v2.Stock < lo || v2.Stock > hi {
		t.Errorf("after the crash: stock %d, want %d (creation and changes answered 200) within [%d, %d] (changes whose answer was lost)",
			v2.Stock, base, lo, hi)
	}
	if v2.Sold > v2.Stock {
		t.Errorf("after the crash: sold %d > stock %d", v2.Sold, v2.Stock)
	}
	// Every 201 is durable unless released; a durable grab is one the test
	// heard of or one whose answer was lost.
	if minSold, maxSold := int64(len(confirmed1)-relOKs-relLosts), int64(len(confirmed1)-relOKs+unknown1); v2.Sold < minSold || v2.Sold > maxSold {
		t.Errorf("after the crash: sold %d, want within [%d, %d]: %d grabs confirmed, %d released, %d releases and %d grabs without an answer",
			v2.Sold, minSold, maxSold, len(confirmed1), relOKs, relLosts, unknown1)
	}
	// A sold_out before the kill is true only if at most what came back
	// since (releases, additions, grabs lost with the memory) is unsold now.
	if soldOut1 > 0 && v2.Remaining > int64(len(releaseState))+added+int64(unknown1) {
		t.Errorf("server 1 answered sold_out %d times, yet %d units are unsold after the crash", soldOut1, v2.Remaining)
	}
	t.Logf("server 2 loaded stock %d (within [%d, %d]), sold %d, remaining %d (pool %d)",
		v2.Stock, lo, hi, v2.Sold, v2.Remaining, v2.Pool)

	// Replays with the keys: the same grab, or released when the test
	// released it; a release whose answer was lost may have happened.
	works := slices.SortedFunc(func(yield func(poolWork) bool) {
		for w := range confirmed1 {
			if !yield(w) {
				return
			}
		}
	}, func(a, b poolWork) int { return strings.Compare(a.user+a.key, b.user+b.key) })
	var bad atomic.Int64
	var resolved sync.Map // grab_id -> released bool
	poolParallel(poolCrashClients, len(works), func(i int) {
		w := works[i]
		id := confirmed1[w]
		a, err := postGrab(client, srv2.URL, poolCrashItem, w.user, w.key)
		replayed := err == nil && a.Code == http.StatusCreated && a.Status == "confirmed" && a.GrabID == id && a.UserID == w.user
		released := err == nil && a.Code == http.StatusConflict && a.Status == "released" && a.GrabID == id
		st := releaseState[id]
		switch {
		case st == "" && replayed, st == relLost && replayed:
			resolved.Store(id, false)
		case st == relOK && released, st == relLost && released:
			resolved.Store(id, true)
		default:
			if bad.Add(1) <= 10 {
				t.Errorf("after the crash: replay of %v (grab %s, release %q): %v %v", w, id, st, a, err)
			}
			return
		}
		if released {
			return // the limit slot is free again
		}
		a, err = postGrab(client, srv2.URL, poolCrashItem, w.user, "probe-"+w.user)
		if err != nil || a.Code != http.StatusConflict || a.Status != "limit_reached" {
			if bad.Add(1) <= 10 {
				t.Errorf("after the crash: grab of %s holding %s with a fresh key: %v %v, want 409 limit_reached", w.user, id, a, err)
			}
		}
	})
	if n := bad.Load(); n > 0 {
		t.Fatalf("after the crash: %d of %d confirmed grabs not honoured", n, len(works))
	}
	var again []poolWork
	ledger.mu.Lock()
	resolved.Range(func(k, r any) bool {
		if r.(bool) {
			ledger.released[k.(string)] = true
			w := ledger.workOf[k.(string)]
			again = append(again, poolWork{user: w.user, key: "k2-" + w.user})
		}
		return true
	})
	nReleased := len(ledger.released)
	ledger.mu.Unlock()
	if t.Failed() {
		t.FailNow()
	}
	t.Logf("after the crash: %d grabs replayed, %d released (%d of them with the answer lost); %d released users try again",
		len(works)-nReleased, nReleased, nReleased-relOKs, len(again))

	// Everyone else tries, the released users first.
	slices.SortFunc(again, func(a, b poolWork) int { return strings.Compare(a.user, b.user) })
	queue.putFirst(again)
	gate.open(2, srv2.URL)
	helpers.Wait()
	<-clientsDone
	t.Logf("every user tried %v after the load started", time.Since(loadStart).Round(time.Millisecond))
	if t.Failed() {
		t.FailNow()
	}

	ledger.mu.Lock()
	grabs := cloneMap(ledger.grabOf)
	nSoldOut := len(ledger.soldOut)
	released := cloneMap(ledger.released)
	created2 := ledger.created[2]
	ledger.mu.Unlock()
	if len(grabs)+nSoldOut != poolCrashUsers+len(again) {
		t.Fatalf("%d attempts confirmed and %d sold out, want each of %d answered", len(grabs), nSoldOut, poolCrashUsers+len(again))
	}
	v = mustPoolView(t, client, srv2.URL, "after every user tried")
	if v.Sold != v.Stock || v.Remaining != 0 || v.Pool != 0 || v.InTransit != 0 || v.Stock != v2.Stock {
		t.Errorf("after every user tried: stock %d sold %d remaining %d pool %d in_transit %d; want all %d sold",
			v.Stock, v.Sold, v.Remaining, v.Pool, v.InTransit, v2.Stock)
	}
	held := map[string]int{}
	for w, id := range grabs {
		if !released[id] {
			held[w.user]++
		}
	}
	var unreleased int64
	for u, n := range held {
		unreleased += int64(n)
		if n > 1 {
			t.Errorf("user %s holds %d unreleased grabs, limit 1", u, n)
		}
	}
	if unreleased != v.Sold {
		t.Errorf("%d distinct unreleased grab_ids seen, sold is %d", unreleased, v.Sold)
	}
	_, steals2, stealShards2 := v.transfers()
	t.Logf("server 2: %d 201s (replays and new), %d steals on %d shards; totals: %d grabs (%d released), %d sold out",
		created2, steals2, stealShards2, len(grabs), len(released), nSoldOut)
	if errs := poolServerErrors(srv2); len(errs) > 0 {
		t.Errorf("server 2 logged errors:\n%s", strings.Join(errs, "\n"))
	}

	srv2.stop(t)
	srv3 := startSeckill(t, bin, dataDir, poolCrashToken, "server 3")
	v3 := mustPoolView(t, client, srv3.URL, "after SIGTERM and restart")
	if a, b := v3.withoutCounts(), v.withoutCounts(); !slices.Equal(a.Shards, b.Shards) || a.Stock != b.Stock ||
		a.Sold != b.Sold || a.Remaining != b.Remaining || a.Pool != b.Pool || a.InTransit != b.InTransit || a.Status != b.Status {
		t.Errorf("after SIGTERM and restart:\n%+v\nbefore:\n%+v", v3, v)
	}
	refills3, steals3, _ := v3.transfers()
	t.Logf("server 3 loaded stock %d sold %d remaining %d pool %d in_transit %d (refill and steal counts restart at %d and %d)",
		v3.Stock, v3.Sold, v3.Remaining, v3.Pool, v3.InTransit, refills3, steals3)
	all := slices.Collect(func(yield func(poolWork) bool) {
		for w := range grabs {
			if !yield(w) {
				return
			}
		}
	})
	poolParallel(poolCrashClients, len(all), func(i int) {
		w, id := all[i], grabs[all[i]]
		a, err := postGrab(client, srv3.URL, poolCrashItem, w.user, w.key)
		ok := err == nil && a.Code == http.StatusCreated && a.GrabID == id
		if released[id] {
			ok = err == nil && a.Code == http.StatusConflict && a.Status == "released" && a.GrabID == id
		}
		if !ok && bad.Add(1) <= 10 {
			t.Errorf("after SIGTERM and restart: replay of %v (grab %s, released %v): %v %v", w, id, released[id], a, err)
		}
	})
	srv3.stop(t)
	if errs := poolServerErrors(srv3); len(errs) > 0 {
		t.Errorf("server 3 logged errors:\n%s", strings.Join(errs, "\n"))
	}
	t.Logf("total %v", time.Since(started).Round(time.Millisecond))
}

// cloneMap returns a copy of m.
func cloneMap[K comparable, V any](m map[K]V) map[K]V {
	out := make(map[K]V, len(m))
	for k, v := range m {
		out[k] = v
	}
	return out
}

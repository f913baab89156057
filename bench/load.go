// Package bench measures seckill over HTTP: load generators (closed loop for
// the saturation point, open loop on a schedule for honest latencies), the
// targets to compare it with (a bare fasthttp handler, the ceiling of the
// machine; the seeds' Redis+Lua grab alone; and the seeds' whole design,
// local sold-out flag, Lua grab, order message acknowledged by JetStream
// and order consumer), each run in a child process whose CPU time it
// reads, the audit that every run must pass, and the report.
package bench

import (
	"bytes"
	"context"
	"fmt"
	"net/url"
	"strconv"
	"sync"
	"sync/atomic"
	"time"

	"github.com/valyala/fasthttp"
)

const (
	// MaxConns bounds the connections one run opens.
	MaxConns = 4096
	// histMaxMicros is the largest latency recorded (60 s); slower answers
	// are clamped to it rather than dropped.
	histMaxMicros = 60_000_000
	// clientTimeout bounds one request; a timeout counts as an error.
	clientTimeout = 10 * time.Second
	// userPrefix starts every user id the harness sends.
	userPrefix = "u"
	// keyPrefix starts every Idempotency-Key; the rest is the job number,
	// so a job's retries carry the same key.
	keyPrefix = "k"
)

// Plan says what each job sends: job n grabs one unit of Items[n mod
// len(Items)] as user n (or n mod Users). A job is one request, or in the
// flash profile one buyer with its retries.
type Plan struct {
	Workload string
	Items    []string   // item ids, created fresh on every target
	Stock    int64      // units per item
	Shards   int        // shards per item (seckill)
	Users    int64      // distinct users; 0: every job is a new user
	Keys     bool       // send Idempotency-Key keyPrefix+job
	Retry    bool       // retry on 429, 503 and transport errors, with backoff
	tokens   *tokenBook // buyer tokens (Config.BuyerSecret); nil: none sent
	routes   routes     // Config.Route owner: each grab to its owner's front; nil: round robin
}

// on returns a copy of p that routes grabs by r (a target's own table).
func (p *Plan) on(r routes) *Plan {
	q := *p
	q.routes = r
	return &q
}

func (p *Plan) item(job int64) int { return int(job % int64(len(p.Items))) }

func (p *Plan) user(job int64) int64 {
	if p.Users > 0 {
		return job % p.Users
	}
	return job
}

// UserID is the user id the harness sends for user number n.
func UserID(n int64) string { return userPrefix + strconv.FormatInt(n, 10) }

// Key is the Idempotency-Key of a job.
func Key(job int64) string { return keyPrefix + strconv.FormatInt(job, 10) }

// GrabBody appends {"user_id":"<prefix><n>","qty":1} to b.
func GrabBody(b []byte, prefix string, n int64) []byte {
	b = append(b, `{"user_id":"`...)
	b = append(b, prefix...)
	b = strconv.AppendInt(b, n, 10)
	return append(b, `","qty":1}`...)
}

// sample is one attempt: when its answer came (ms since the run started),
// its latency (µs, from the time it was due) and its HTTP status (0: none).
type sample struct {
	atMs, latUs uint32
	status      uint16
}

// seenGrab is one 201 the harness received.
type seenGrab struct {
	item  int
	user  int64
	job   int64
	id    string        // grab_id; "" when the target gives none (Redis+Lua)
	at    time.Duration // when the 201 came
	sent  time.Duration // when its request went out
	retry bool          // a retry of its job: an earlier attempt's outcome was not known
}

// tally is what one worker saw; workers merge theirs at the end, so the hot
// path takes no lock.
type tally struct {
	sent     int64
	errors   int64 // transport errors, timeouts, attempts too late to send
	byStatus map[int]int64
	samples  []sample
	grabs    []seenGrab
	finals   map[int]int64 // jobs by their last answer's status (0: error)
	jobLatUs []uint32      // job due → last answer, when jobs retry
	// outcomes counts answers by the "status" of their body
	// (confirmed, sold_out, limit_reached, …; see outcomeOf).
	outcomes map[string]int64
	// soldOut is, per item, when the first sold_out answer came.
	soldOut map[int]time.Duration
}

func newTally() tally {
	return tally{byStatus: map[int]int64{}, finals: map[int]int64{}, outcomes: map[string]int64{}, soldOut: map[int]time.Duration{}}
}

// Outcomes of an attempt that are not a body's "status".
const (
	// OutcomeError is a transport error, a timeout or an attempt too late
	// to send.
	OutcomeError = "error"
	// outcomeHTTP prefixes the status code of an answer whose body names
	// no status.
	outcomeHTTP = "http_"
	// OutcomeSoldOut is seckill's (and Redis+Lua's) sold_out answer.
	OutcomeSoldOut = "sold_out"
)

func (t *tally) record(start, due, now time.Time, status int, body []byte) {
	t.sent++
	if status == 0 {
		t.errors++
		t.outcomes[OutcomeError]++
	} else {
		t.byStatus[status]++
		if o := outcomeOf(body); o != nil {
			t.outcomes[string(o)]++ // no allocation for an existing key
		} else {
			t.outcomes[outcomeHTTP+strconv.Itoa(status)]++
		}
	}
	t.samples = append(t.samples, sample{
		atMs:   uint32(now.Sub(start).Milliseconds()),
		latUs:  uint32(min(max(now.Sub(due).Microseconds(), 1), histMaxMicros)),
		status: uint16(status),
	})
}

// sender sends grabs on one worker's behalf: job n to front n mod the
// number of fronts (buyers round robin over a cluster's fronts).
type sender struct {
	clients []*fasthttp.HostClient // one per front
	hosts   [][]byte
	paths   [][]byte // grab path per item
	plan    *Plan
	start   time.Time
	req     *fasthttp.Request
	resp    *fasthttp.Response
	body    []byte
	key     []byte
	t       tally
}

func newSender(clients []*fasthttp.HostClient, plan *Plan, start time.Time) *sender {
	s := &sender{clients: clients, plan: plan, start: start,
		req: fasthttp.AcquireRequest(), resp: fasthttp.AcquireResponse(),
		body: make([]byte, 0, 64), key: make([]byte, 0, 24), t: newTally()}
	for _, c := range clients {
		s.hosts = append(s.hosts, []byte(c.Addr))
	}
	for _, it := range plan.Items {
		s.paths = append(s.paths, []byte("/v1/items/"+it+"/grab"))
	}
	return s
}

func (s *sender) release() {
	fasthttp.ReleaseRequest(s.req)
	fasthttp.ReleaseResponse(s.resp)
}

// send makes attempt try (0 first) of job, due at due, and records it. It
// returns the HTTP status, or 0 for a transport error or timeout.
func (s *sender) send(job int64, due time.Time, try int) int {
	item, user := s.plan.item(job), s.plan.user(job)
	front := s.plan.routes.front(s.plan, item, user, job, try, len(s.clients))
	req := s.req
	req.Reset()
	req.Header.SetMethod(fasthttp.MethodPost)
	req.SetRequestURIBytes(s.paths[item])
	req.Header.SetHostBytes(s.hosts[front])
	req.Header.SetContentType("application/json")
	if s.plan.Keys {
		s.key = strconv.AppendInt(append(s.key[:0], keyPrefix...), job, 10)
		req.Header.SetBytesV("Idempotency-Key", s.key)
	}
	if s.plan.tokens != nil {
		req.Header.SetBytesV("Authorization", s.plan.tokens.header(user))
	}
	s.body = GrabBody(s.body[:0], userPrefix, user)
	req.SetBodyRaw(s.body)
	sent := time.Now()
	err := s.clients[front].DoTimeout(req, s.resp, clientTimeout)
	now := time.Now()
	status := 0
	var body []byte
	if err == nil {
		status, body = s.resp.StatusCode(), s.resp.Body()
	}
	s.t.record(s.start, due, now, status, body)
	switch status {
	case fasthttp.StatusCreated:
		s.t.grabs = append(s.t.grabs, seenGrab{item: item, user: user, job: job, id: grabID(body),
			at: now.Sub(s.start), sent: sent.Sub(s.start), retry: try > 0})
	case fasthttp.StatusConflict:
		if string(outcomeOf(body)) == OutcomeSoldOut {
			if at, ok := s.t.soldOut[item]; !ok || now.Sub(s.start) < at {
				s.t.soldOut[item] = now.Sub(s.start)
			}
		}
	}
	return status
}

var statusField = []byte(`"status":"`)

// outcomeOf finds the "status" of an answer's body without a JSON decoder
// (seckill's statuses need no escaping), or nil when it has none.
func outcomeOf(body []byte) []byte {
	i := bytes.Index(body, statusField)
	if i < 0 {
		return nil
	}
	rest := body[i+len(statusField):]
	j := bytes.IndexByte(rest, '"')
	if j < 0 || j > 64 {
		return nil
	}
	return rest[:j]
}

var grabIDField = []byte(`"grab_id":"`)

// grabID finds the grab_id in a 201 body without a JSON decoder: seckill
// writes ids of [A-Za-z0-9_.:-], which need no escaping.
func grabID(body []byte) string {
	i := bytes.Index(body, grabIDField)
	if i < 0 {
		return ""
	}
	rest := body[i+len(grabIDField):]
	j := bytes.IndexByte(rest, '"')
	if j < 0 {
		return ""
	}
	return string(rest[:j])
}

// hostOf returns the host:port of an http:// URL.
func hostOf(base string) (string, error) {
	u, err := url.Parse(base)
	if err != nil || u.Scheme != "http" || u.Host == "" {
		return "", fmt.Errorf("target url %q: want http://host:port", base)
	}
	return u.Host, nil
}

// newClients returns a client for each front (http://host:port), each
// holding at most conns connections: the workers, conns of them, have at
// most conns requests in flight over all fronts together.
func newClients(fronts []string, conns int) ([]*fasthttp.HostClient, error) {
	if conns < 1 || conns > MaxConns {
		return nil, fmt.Errorf("conns must be 1..%d, not %d", MaxConns, conns)
	}
	if len(fronts) == 0 {
		return nil, fmt.Errorf("no target url")
	}
	var cs []*fasthttp.HostClient
	for _, base := range fronts {
		host, err := hostOf(base)
		if err != nil {
			return nil, err
		}
		cs = append(cs, &fasthttp.HostClient{
			Addr:                host,
			MaxConns:            conns,
			ReadTimeout:         clientTimeout,
			WriteTimeout:        clientTimeout,
			MaxIdleConnDuration: time.Minute,
		})
	}
	return cs, nil
}

// warmPath is what warmConns asks for: no grab, and any answer will do.
const (
	warmPath  = "/readyz"
	warmTries = 4
)

// warmConns opens up to conns connections of each client before an open
// loop's schedule starts. A sale's front sits behind a load balancer whose
// upstream connections are open before the sale; a cold start counted the
// handshakes and the server's first connection goroutines against the
// first buyers (the first 201s of a flash came 15 ms after their request
// went out, against well under a millisecond once warm). Every target is
// warmed alike.
func warmConns(clients []*fasthttp.HostClient, conns int) {
	for _, c := range clients {
		for try := 0; try < warmTries && c.ConnsCount() < conns; try++ {
			var wg sync.WaitGroup
			for range conns {
				wg.Go(func() {
					req, resp := fasthttp.AcquireRequest(), fasthttp.AcquireResponse()
					defer fasthttp.ReleaseRequest(req)
					defer fasthttp.ReleaseResponse(resp)
					req.SetRequestURI("http://" + c.Addr + warmPath)
					_ = c.DoTimeout(req, resp, clientTimeout)
				})
			}
			wg.Wait()
		}
	}
}

func closeIdle(cs []*fasthttp.HostClient) {
	for _, c := range cs {
		c.CloseIdleConnections()
	}
}

// ClosedLoop sends grabs on conns connections, each waiting for its answer
// before sending the next, for d or until limit requests (0: no limit),
// job n to fronts[n mod len(fronts)]. Closed loop finds the saturation
// point; its latency is per answer and hides queueing (the next request is
// not sent while the server stalls).
func ClosedLoop(ctx context.Context, fronts []string, conns int, d time.Duration, limit int64, plan *Plan) (Result, error) {
	start := time.Now()
	tallies, _, err := closedLoop(ctx, fronts, conns, d, limit, plan, 0, start)
	if err != nil {
		return Result{}, err
	}
	return closedResult(tallies, time.Since(start), conns), nil
}

// closedResult is the result of closed-loop tallies over elapsed.
func closedResult(tallies []tally, elapsed time.Duration, conns int) Result {
	r := merge(tallies, elapsed)
	r.Mode, r.Conns = "closed", conns
	return r
}

// closedLoop runs one closed-loop slice from job firstJob on, recording
// times from origin, and returns its tallies and the next job.
func closedLoop(ctx context.Context, fronts []string, conns int, d time.Duration, limit int64, plan *Plan, firstJob int64, origin time.Time) ([]tally, int64, error) {
	clients, err := newClients(fronts, conns)
	if err != nil {
		return nil, firstJob, err
	}
	defer closeIdle(clients)
	ctx, cancel := context.WithTimeout(ctx, d)
	defer cancel()
	var (
		next    atomic.Int64
		mu      sync.Mutex
		tallies []tally
		wg      sync.WaitGroup
	)
	next.Store(firstJob)
	for range conns {
		wg.Go(func() {
			s := newSender(clients, plan, origin)
			defer s.release()
			for ctx.Err() == nil {
				job := next.Add(1) - 1
				if limit > 0 && job >= limit {
					break
				}
				s.t.finals[s.send(job, time.Now(), 0)]++
			}
			mu.Lock()
			tallies = append(tallies, s.t)
			mu.Unlock()
		})
	}
	wg.Wait()
	// Every job taken below the limit was sent: the next slice goes on
	// from here with no job repeated or skipped.
	return tallies, next.Load(), nil
}

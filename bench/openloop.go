package bench

import (
	"context"
	"fmt"
	"math/rand/v2"
	"sync"
	"sync/atomic"
	"time"
)

const (
	// MaxRate bounds --rate: past about a million sends a second one
	// harness process cannot keep its own schedule.
	MaxRate = 1_000_000
	// maxLateness: an attempt that could not be sent within the client
	// timeout of the time it was due counts as a timeout, as a real
	// client's would, instead of being sent absurdly late.
	maxLateness = clientTimeout
	// schedTick is the shortest sleep of the scheduler: it wakes at most
	// this often and pushes every job due by then, each with its own due
	// time (latency still counts from there, so a job waits at most this
	// much longer than it would have). Sleeping until each job's due time
	// woke the harness 100 000 times a second at the flash's arrival rate,
	// CPU taken from the targets on a small machine.
	schedTick = 100 * time.Microsecond
	// retryBase, retryCap and maxAttempts are the flash buyer's retry
	// policy on 429, 503 and transport errors: exponential backoff from
	// 50 ms, with jitter, a few attempts, as a buyer's app would.
	retryBase   = 50 * time.Millisecond
	retryCap    = 2 * time.Second
	maxAttempts = 6
)

// Schedule says when job n is due: at n/Rate seconds for Duration
// (constant rate), or, when Users > 0, user n of Users arriving evenly
// spread over Arrival (the flash profile).
type Schedule struct {
	Rate     float64
	Duration time.Duration
	Users    int64
	Arrival  time.Duration
}

func (s Schedule) due(job int64) (time.Duration, bool) {
	if s.Users > 0 {
		return time.Duration(float64(job) * float64(s.Arrival) / float64(s.Users)), job < s.Users
	}
	d := time.Duration(float64(job) * float64(time.Second) / s.Rate)
	return d, d < s.Duration
}

func (s Schedule) validate() error {
	if s.Users > 0 {
		if s.Arrival <= 0 {
			return fmt.Errorf("arrival must be > 0, not %v", s.Arrival)
		}
		return nil
	}
	if s.Rate <= 0 || s.Rate > MaxRate {
		return fmt.Errorf("open loop needs --rate in 1..%d, not %v", MaxRate, s.Rate)
	}
	return nil
}

// attempt is one send of a job that is due.
type attempt struct {
	job     int64
	try     int
	due     time.Time // when this attempt should go out: latency counts from here
	arrived time.Time // when the job's first attempt was due
}

// readyQueue holds attempts that are due, oldest first. Pushing never
// blocks, so the scheduler keeps its schedule however far behind the
// workers are; what waits here waits with its latency clock running.
type readyQueue struct {
	mu     sync.Mutex
	cond   sync.Cond
	items  []attempt
	head   int
	closed bool
}

func newReadyQueue() *readyQueue {
	q := &readyQueue{}
	q.cond.L = &q.mu
	return q
}

func (q *readyQueue) push(a attempt) {
	q.mu.Lock()
	q.items = append(q.items, a)
	q.mu.Unlock()
	q.cond.Signal()
}

// pop waits for the oldest attempt; false once the queue is closed and empty.
func (q *readyQueue) pop() (attempt, bool) {
	q.mu.Lock()
	defer q.mu.Unlock()
	for q.head == len(q.items) && !q.closed {
		q.cond.Wait()
	}
	if q.head == len(q.items) {
		return attempt{}, false
	}
	a := q.items[q.head]
	q.head++
	if q.head == len(q.items) {
		q.items, q.head = q.items[:0], 0
	} else if q.head >= 1024 && q.head*2 >= len(q.items) {
		n := copy(q.items, q.items[q.head:])
		q.items, q.head = q.items[:n], 0
	}
	return a, true
}

func (q *readyQueue) close() {
	q.mu.Lock()
	q.closed = true
	q.mu.Unlock()
	q.cond.Broadcast()
}

// backoff is the wait before retry number try+1: exponential from
// retryBase up to retryCap, the upper half jittered so buyers spread out.
func backoff(try int) time.Duration {
	d := min(retryBase<<try, retryCap)
	return d/2 + rand.N(d/2)
}

func retryable(status int) bool { return status == 0 || status == 429 || status == 503 }

// OpenLoop sends grabs on a schedule, whatever the server does, job n (a
// buyer and their retries) to fronts[n mod len(fronts)].
//
// The scheduler (the calling goroutine) walks the schedule: it sleeps until
// the next job is due, then pushes it to the ready queue with its due time,
// catching up at once on every job whose time has passed. conns workers,
// each holding one connection, pop attempts and send them. When every
// connection is busy, due attempts wait in the queue and the wait counts in
// their latency (no coordinated omission). A retry is pushed back by a
// timer after its backoff, due at that time. The queue closes when the
// schedule is done and every job has its last answer.
func OpenLoop(ctx context.Context, fronts []string, conns int, sched Schedule, plan *Plan) (Result, error) {
	if err := sched.validate(); err != nil {
		return Result{}, err
	}
	clients, err := newClients(fronts, conns)
	if err != nil {
		return Result{}, err
	}
	defer closeIdle(clients)
	warmConns(clients, conns)
	q := newReadyQueue()
	// live counts jobs without their last answer, plus one held by the
	// scheduler until the schedule is done.
	var live atomic.Int64
	live.Store(1)
	finish := func() {
		if live.Add(-1) == 0 {
			q.close()
		}
	}
	var (
		mu       sync.Mutex
		tallies  []tally
		wg       sync.WaitGroup
		attempts atomic.Int64
		lastDue  atomic.Int64 // ns since start
	)
	start := time.Now()
	for range conns {
		wg.Go(func() {
			s := newSender(clients, plan, start)
			defer s.release()
			for {
				a, ok := q.pop()
				if !ok {
					break
				}
				if ctx.Err() != nil { // interrupted: drop what is left unsent
					finish()
					continue
				}
				var status int
				if now := time.Now(); now.Sub(a.due) > maxLateness {
					s.t.record(start, a.due, now, 0, nil)
				} else {
					status = s.send(a.job, a.due, a.try)
				}
				if plan.Retry && retryable(status) && a.try+1 < maxAttempts {
					next := a
					next.try++
					next.due = time.Now().Add(backoff(a.try))
					attempts.Add(1)
					storeMax(&lastDue, int64(next.due.Sub(start)))
					time.AfterFunc(time.Until(next.due), func() { q.push(next) })
					continue
				}
				s.t.finals[status]++
				if plan.Retry {
					s.t.jobLatUs = append(s.t.jobLatUs, uint32(min(time.Since(a.arrived).Microseconds(), histMaxMicros)))
				}
				finish()
			}
			mu.Lock()
			tallies = append(tallies, s.t)
			mu.Unlock()
		})
	}
	timer := time.NewTimer(0)
	defer timer.Stop()
schedule:
	for job := int64(0); ; job++ {
		off, ok := sched.due(job)
		if !ok {
			break
		}
		due := start.Add(off)
		if wait := time.Until(due); wait > 0 {
			timer.Reset(max(wait, schedTick))
			select {
			case <-ctx.Done():
				break schedule
			case <-timer.C:
			}
		}
		live.Add(1)
		attempts.Add(1)
		storeMax(&lastDue, int64(off))
		q.push(attempt{job: job, due: due, arrived: due})
	}
	finish()
	wg.Wait()
	r := merge(tallies, time.Since(start))
	r.Mode, r.Conns = "open", conns
	if span := time.Duration(lastDue.Load()); span > 0 {
		r.Offered = float64(attempts.Load()) / span.Seconds()
	}
	return r, nil
}

func storeMax(v *atomic.Int64, n int64) {
	for {
		old := v.Load()
		if n <= old || v.CompareAndSwap(old, n) {
			return
		}
	}
}

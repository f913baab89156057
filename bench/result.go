package bench

import (
	"sort"
	"time"

	"github.com/HdrHistogram/hdrhistogram-go"
)

// Result is what one run against one target measured.
type Result struct {
	Target   string
	Workload string
	Mode     string // closed | open
	Conns    int
	Offered  float64 // attempts due per second (open loop); 0 in closed loop
	Elapsed  time.Duration
	Sent     int64         // attempts, retries included
	Errors   int64         // transport errors, timeouts, attempts too late to send
	ByStatus map[int]int64 // answers by HTTP status
	// Outcomes counts attempts by the "status" their answer's body named
	// (confirmed, sold_out, limit_reached, unavailable, …), "http_NNN" for
	// an answer that named none, and "error" for no answer.
	Outcomes map[string]int64
	// Fronts are the URLs the buyers were spread over, round robin.
	Fronts   []string
	Latency  *hdrhistogram.Histogram
	Timeline []Second
	// Opening is the first second in slices of OpeningSlice, by the time
	// answers came: where a sale's first second goes.
	Opening []Slice
	// Finals counts jobs by their last answer's status (0: error). In the
	// flash profile a job is a buyer and JobLatency is the time from their
	// arrival to their last answer, backoffs included.
	Finals     map[int]int64
	JobLatency *hdrhistogram.Histogram
	// SellOut is the time from the first request to the 201 that took the
	// last unit, as the harness saw it; -1 when not sold out.
	SellOut time.Duration
	Audit   *Audit
	// CPU is the CPU time each process of the target used while measured
	// (the load, then until it went quiet; see cpuMeter); nil when the
	// target ran in the harness's process or elsewhere.
	CPU []ProcCPU

	grabs   []seenGrab
	soldOut map[int]time.Duration // per item, when the first sold_out answer came
}

// Second is one second of a run, by the time answers came.
type Second struct {
	Answers int64
	P99     time.Duration
}

// OpeningSlice is the width of a slice of Result.Opening; the first
// OpeningSlices of them are kept.
const (
	OpeningSlice  = 50 * time.Millisecond
	OpeningSlices = int(time.Second / OpeningSlice)
)

// Slice is one OpeningSlice of a run, by the time answers came.
type Slice struct {
	Answers, Confirmed int64
	P50, P99, Max      time.Duration
}

// Answers is the number of attempts that got an HTTP answer.
func (r Result) Answers() int64 { return r.Sent - r.Errors }

// Rate is achieved answers per second.
func (r Result) Rate() float64 { return float64(r.Answers()) / r.Elapsed.Seconds() }

// Quantile returns a latency quantile (0..100).
func (r Result) Quantile(q float64) time.Duration { return micros(r.Latency.ValueAtQuantile(q)) }

// Max is the largest latency.
func (r Result) Max() time.Duration { return micros(r.Latency.Max()) }

// CPUTotal is the CPU time of all the target's processes, -1 when not
// measured.
func (r Result) CPUTotal() time.Duration {
	if r.CPU == nil {
		return -1
	}
	var d time.Duration
	for _, p := range r.CPU {
		d += p.CPU
	}
	return d
}

// CPUPerAnswer is the target's CPU time per answer, -1 when not measured.
func (r Result) CPUPerAnswer() time.Duration {
	if r.CPU == nil || r.Answers() == 0 {
		return -1
	}
	return r.CPUTotal() / time.Duration(r.Answers())
}

// Unresolved counts jobs whose outcome the harness does not know: their
// last attempt failed or was answered 429/503, so the server may still
// have confirmed it.
func (r Result) Unresolved() int64 { return r.Finals[0] + r.Finals[429] + r.Finals[503] }

func micros(us int64) time.Duration { return time.Duration(us) * time.Microsecond }

func newHist() *hdrhistogram.Histogram { return hdrhistogram.New(1, histMaxMicros, 3) }

func merge(ts []tally, elapsed time.Duration) Result {
	r := Result{Elapsed: elapsed, ByStatus: map[int]int64{}, Finals: map[int]int64{}, Outcomes: map[string]int64{},
		Latency: newHist(), SellOut: -1, soldOut: map[int]time.Duration{}}
	secs := map[int]*hdrhistogram.Histogram{}
	opening := make([]*hdrhistogram.Histogram, OpeningSlices)
	confirmed := make([]int64, OpeningSlices)
	last := -1
	for _, t := range ts {
		r.Sent += t.sent
		r.Errors += t.errors
		for k, v := range t.byStatus {
			r.ByStatus[k] += v
		}
		for k, v := range t.finals {
			r.Finals[k] += v
		}
		for k, v := range t.outcomes {
			r.Outcomes[k] += v
		}
		for item, at := range t.soldOut {
			if old, ok := r.soldOut[item]; !ok || at < old {
				r.soldOut[item] = at
			}
		}
		for _, s := range t.samples {
			_ = r.Latency.RecordValue(int64(s.latUs))
			sec := int(s.atMs / 1000)
			h := secs[sec]
			if h == nil {
				h = newHist()
				secs[sec] = h
			}
			_ = h.RecordValue(int64(s.latUs))
			last = max(last, sec)
			if i := int(time.Duration(s.atMs) * time.Millisecond / OpeningSlice); i < OpeningSlices {
				if opening[i] == nil {
					opening[i] = newHist()
				}
				_ = opening[i].RecordValue(int64(s.latUs))
				if s.status == 201 {
					confirmed[i]++
				}
			}
		}
		if len(t.jobLatUs) > 0 && r.JobLatency == nil {
			r.JobLatency = newHist()
		}
		for _, us := range t.jobLatUs {
			_ = r.JobLatency.RecordValue(int64(us))
		}
		r.grabs = append(r.grabs, t.grabs...)
	}
	r.Timeline = make([]Second, last+1)
	for sec, h := range secs {
		r.Timeline[sec] = Second{Answers: h.TotalCount(), P99: micros(h.ValueAtQuantile(99))}
	}
	n := 0 // slices up to the last with an answer
	for i, h := range opening {
		if h != nil {
			n = i + 1
		}
	}
	r.Opening = make([]Slice, n)
	for i, h := range opening[:n] {
		if h != nil {
			r.Opening[i] = Slice{Answers: h.TotalCount(), Confirmed: confirmed[i],
				P50: micros(h.ValueAtQuantile(50)), P99: micros(h.ValueAtQuantile(99)), Max: micros(h.Max())}
		}
	}
	sort.Slice(r.grabs, func(i, j int) bool { return r.grabs[i].at < r.grabs[j].at })
	return r
}

// units is the number of distinct units the harness saw confirmed per
// item: a replayed grab id counts once; a 201 without an id (Redis+Lua)
// counts as one.
func (r Result) units(items int) []int64 {
	n := make([]int64, items)
	seen := map[string]bool{}
	for _, g := range r.grabs {
		if g.id != "" {
			if seen[g.id] {
				continue
			}
			seen[g.id] = true
		}
		n[g.item]++
	}
	return n
}

// sellOut is when the harness saw the last unit of the last item to sell
// out confirmed, or -1 if some item did not sell out.
func (r Result) sellOut(items int, stock int64) time.Duration {
	if stock <= 0 {
		return -1
	}
	n := make([]int64, items)
	seen := map[string]bool{}
	done, at := 0, time.Duration(-1)
	for _, g := range r.grabs { // in the order answers came
		if g.id != "" {
			if seen[g.id] {
				continue
			}
			seen[g.id] = true
		}
		n[g.item]++
		if n[g.item] == stock {
			done++
			at = g.at
		}
	}
	if done < items {
		return -1
	}
	return at
}

package bench

import (
	"encoding/json"
	"fmt"
	"io"
	"sort"
	"strconv"
	"strings"
	"text/tabwriter"
	"time"
)

// quantiles are the latency quantiles reported, in percent.
var quantiles = []float64{50, 90, 99, 99.9}

func rateOf(rs []Result, target string) float64 {
	for _, r := range rs {
		if r.Target == target {
			return r.Rate()
		}
	}
	return 0
}

func ratio(r, of float64, pct bool) string {
	switch {
	case of <= 0:
		return "-"
	case pct:
		return fmt.Sprintf("%.0f%%", 100*r/of)
	}
	return fmt.Sprintf("%.2f×", r/of)
}

// dur prints a latency with three significant figures or so.
func dur(d time.Duration) string {
	switch {
	case d < 0:
		return "-"
	case d < time.Millisecond:
		return fmt.Sprintf("%dµs", d.Microseconds())
	case d < time.Second:
		return fmt.Sprintf("%.2fms", float64(d)/float64(time.Millisecond))
	}
	return fmt.Sprintf("%.2fs", d.Seconds())
}

func printReport(out io.Writer, plan *Plan, rs []Result) {
	ceiling, redis, seeds := rateOf(rs, TargetBare), rateOf(rs, TargetRedis), rateOf(rs, TargetSeeds)
	tw := tabwriter.NewWriter(out, 0, 0, 2, ' ', tabwriter.AlignRight)
	fmt.Fprintln(tw, "target\tmode\tconns\toffered/s\tachieved/s\t201\t409\t503\tother\terrors\tp50\tp90\tp99\tp99.9\tmax\tsold out\tcpu/answer\tvs ceiling\tvs redis+lua\tvs seeds\t")
	for _, r := range rs {
		offered := "-"
		if r.Offered > 0 {
			offered = fmt.Sprintf("%.0f", r.Offered)
		}
		other := r.Answers() - r.ByStatus[201] - r.ByStatus[409] - r.ByStatus[503]
		fmt.Fprintf(tw, "%s\t%s\t%d\t%s\t%.0f\t%d\t%d\t%d\t%d\t%d\t%s\t%s\t%s\t%s\t%s\t%s\t%s\t%s\t%s\t%s\t\n",
			r.Target, r.Mode, r.Conns, offered, r.Rate(), r.ByStatus[201], r.ByStatus[409], r.ByStatus[503], other, r.Errors,
			dur(r.Quantile(50)), dur(r.Quantile(90)), dur(r.Quantile(99)), dur(r.Quantile(99.9)), dur(r.Max()),
			dur(r.SellOut), cpuDur(r.CPUPerAnswer()), ratio(r.Rate(), ceiling, true), ratio(r.Rate(), redis, false), ratio(r.Rate(), seeds, false))
	}
	tw.Flush()
	printClusterRatios(out, rs)
	for _, r := range rs {
		if len(r.Fronts) > 1 {
			fmt.Fprintf(out, "%s fronts (buyers round robin, items created through the first): %s\n", r.Target, strings.Join(r.Fronts, " "))
		}
		fmt.Fprintf(out, "%s answers by outcome: %s\n", r.Target, outcomeList(r.Outcomes))
	}
	for _, r := range rs {
		if r.CPU == nil {
			continue
		}
		var parts []string
		for _, p := range r.CPU {
			parts = append(parts, fmt.Sprintf("%s (pid %d) %.0f ms", p.Name, p.Pid, ms(p.CPU)))
		}
		fmt.Fprintf(out, "%s cpu: %.0f ms for %d answers = %s per answer; %s\n",
			r.Target, ms(r.CPUTotal()), r.Answers(), cpuDur(r.CPUPerAnswer()), strings.Join(parts, ", "))
	}
	for _, r := range rs {
		if r.JobLatency == nil {
			continue
		}
		var n int64
		for _, v := range r.Finals {
			n += v
		}
		fmt.Fprintf(out, "%s buyers: %d arrived, %d bought, %d told 409, %d left not knowing (error or 503 on their last of up to %d attempts); arrival to last answer p50 %s p99 %s max %s\n",
			r.Target, n, r.Finals[201], r.Finals[409], r.Unresolved(), maxAttempts,
			dur(micros(r.JobLatency.ValueAtQuantile(50))), dur(micros(r.JobLatency.ValueAtQuantile(99))), dur(micros(r.JobLatency.Max())))
	}
	for _, r := range rs {
		if r.Audit != nil {
			fmt.Fprintf(out, "audit %s: %s\n", r.Target, r.Audit)
		}
	}
}

// cpuDur prints a CPU time per answer in µs with one decimal.
func cpuDur(d time.Duration) string {
	if d < 0 {
		return "-"
	}
	return fmt.Sprintf("%.1fµs", float64(d)/float64(time.Microsecond))
}

func ms(d time.Duration) float64 { return float64(d) / float64(time.Millisecond) }

// outcomeList prints outcome counts, the most frequent first.
func outcomeList(m map[string]int64) string {
	type kv struct {
		k string
		v int64
	}
	var l []kv
	for k, v := range m {
		l = append(l, kv{k, v})
	}
	sort.Slice(l, func(i, j int) bool { return l[i].v > l[j].v || l[i].v == l[j].v && l[i].k < l[j].k })
	var parts []string
	for _, e := range l {
		parts = append(parts, fmt.Sprintf("%s %d", e.k, e.v))
	}
	if len(parts) == 0 {
		return "none"
	}
	return strings.Join(parts, ", ")
}

type jsonReport struct {
	Workload string       `json:"workload"`
	Items    int          `json:"items"`
	Stock    int64        `json:"stock_per_item"`
	Results  []jsonResult `json:"results"`
}

type jsonResult struct {
	Target       string           `json:"target"`
	Mode         string           `json:"mode"`
	Conns        int              `json:"conns"`
	OfferedRate  float64          `json:"offered_rate,omitempty"`
	AchievedRate float64          `json:"achieved_rate"`
	ElapsedS     float64          `json:"elapsed_s"`
	Sent         int64            `json:"sent"`
	Errors       int64            `json:"errors"`
	ByStatus     map[string]int64 `json:"by_status"`
	ByOutcome    map[string]int64 `json:"by_outcome"`
	Fronts       []string         `json:"fronts,omitempty"`
	LatencyUs    map[string]int64 `json:"latency_us"`
	SellOutS     *float64         `json:"sell_out_s"`
	VsCeiling    *float64         `json:"vs_ceiling,omitempty"`
	VsRedisLua   *float64         `json:"vs_redis_lua,omitempty"`
	VsSeeds      *float64         `json:"vs_seeds,omitempty"`
	CPU          *jsonCPU         `json:"cpu,omitempty"`
	Jobs         map[string]int64 `json:"jobs_by_last_status"`
	JobLatencyUs map[string]int64 `json:"buyer_latency_us,omitempty"`
	Timeline     []jsonSecond     `json:"per_second"`
	Opening      []jsonSlice      `json:"first_second,omitempty"`
	Audit        *jsonAudit       `json:"audit,omitempty"`
}

// jsonCPU is the CPU time of a target's processes over the measured
// window (absent when the target ran in the harness's process).
type jsonCPU struct {
	TotalMs     float64       `json:"total_ms"`
	UsPerAnswer float64       `json:"us_per_answer"`
	Processes   []jsonProcCPU `json:"processes"`
}

type jsonProcCPU struct {
	Name string  `json:"name"`
	Pid  int     `json:"pid"`
	Ms   float64 `json:"ms"`
}

type jsonSecond struct {
	Answers int64 `json:"answers"`
	P99Us   int64 `json:"p99_us"`
}

// jsonSlice is one 50 ms slice of the first second.
type jsonSlice struct {
	FromMs    int64 `json:"from_ms"`
	Answers   int64 `json:"answers"`
	Confirmed int64 `json:"confirmed"`
	P50Us     int64 `json:"p50_us"`
	P99Us     int64 `json:"p99_us"`
	MaxUs     int64 `json:"max_us"`
}

type jsonAudit struct {
	OK       bool     `json:"ok"`
	Checks   []string `json:"checks"`
	Failures []string `json:"failures"`
}

func byStatus(m map[int]int64) map[string]int64 {
	out := make(map[string]int64, len(m))
	for k, v := range m {
		out[strconv.Itoa(k)] = v
	}
	return out
}

func writeJSON(w io.Writer, plan *Plan, rs []Result) error {
	ceiling, redis, seeds := rateOf(rs, TargetBare), rateOf(rs, TargetRedis), rateOf(rs, TargetSeeds)
	rep := jsonReport{Workload: plan.Workload, Items: len(plan.Items), Stock: plan.Stock}
	for _, r := range rs {
		j := jsonResult{Target: r.Target, Mode: r.Mode, Conns: r.Conns, OfferedRate: r.Offered, AchievedRate: r.Rate(),
			ElapsedS: r.Elapsed.Seconds(), Sent: r.Sent, Errors: r.Errors, ByStatus: byStatus(r.ByStatus),
			ByOutcome: r.Outcomes, Fronts: r.Fronts,
			LatencyUs: map[string]int64{"max": r.Latency.Max()}, Jobs: byStatus(r.Finals)}
		for _, q := range quantiles {
			j.LatencyUs["p"+strconv.FormatFloat(q, 'f', -1, 64)] = r.Latency.ValueAtQuantile(q)
		}
		if r.JobLatency != nil {
			j.JobLatencyUs = map[string]int64{"max": r.JobLatency.Max()}
			for _, q := range quantiles {
				j.JobLatencyUs["p"+strconv.FormatFloat(q, 'f', -1, 64)] = r.JobLatency.ValueAtQuantile(q)
			}
		}
		if r.SellOut >= 0 {
			s := r.SellOut.Seconds()
			j.SellOutS = &s
		}
		if ceiling > 0 {
			v := r.Rate() / ceiling
			j.VsCeiling = &v
		}
		if redis > 0 {
			v := r.Rate() / redis
			j.VsRedisLua = &v
		}
		if seeds > 0 {
			v := r.Rate() / seeds
			j.VsSeeds = &v
		}
		if r.CPU != nil {
			j.CPU = &jsonCPU{TotalMs: ms(r.CPUTotal())}
			if r.CPUPerAnswer() >= 0 {
				j.CPU.UsPerAnswer = float64(r.CPUPerAnswer()) / float64(time.Microsecond)
			}
			for _, p := range r.CPU {
				j.CPU.Processes = append(j.CPU.Processes, jsonProcCPU{Name: p.Name, Pid: p.Pid, Ms: ms(p.CPU)})
			}
		}
		for _, s := range r.Timeline {
			j.Timeline = append(j.Timeline, jsonSecond{Answers: s.Answers, P99Us: s.P99.Microseconds()})
		}
		for i, s := range r.Opening {
			j.Opening = append(j.Opening, jsonSlice{FromMs: (time.Duration(i) * OpeningSlice).Milliseconds(),
				Answers: s.Answers, Confirmed: s.Confirmed, P50Us: s.P50.Microseconds(), P99Us: s.P99.Microseconds(),
				MaxUs: s.Max.Microseconds()})
		}
		if r.Audit != nil {
			j.Audit = &jsonAudit{OK: r.Audit.OK(), Checks: r.Audit.Checks, Failures: r.Audit.Failures}
		}
		rep.Results = append(rep.Results, j)
	}
	enc := json.NewEncoder(w)
	enc.SetIndent("", "  ")
	return enc.Encode(rep)
}

// printClusterRatios compares the cluster with one node (--cluster-compare).
func printClusterRatios(out io.Writer, rs []Result) {
	var one, clu *Result
	for i := range rs {
		switch rs[i].Target {
		case TargetSeckill:
			one = &rs[i]
		case TargetCluster:
			clu = &rs[i]
		}
	}
	if one == nil || clu == nil {
		return
	}
	q := func(r *Result, p float64) time.Duration { return r.Quantile(p) }
	fmt.Fprintf(out, "cluster of %d vs one node: rate %s, p50 %s vs %s, p99 %s vs %s (%s), sold out %s vs %s, cpu/answer %s vs %s\n",
		len(clu.Fronts), ratio(clu.Rate(), one.Rate(), false), dur(q(clu, 50)), dur(q(one, 50)), dur(q(clu, 99)), dur(q(one, 99)),
		ratio(float64(q(clu, 99)), float64(q(one, 99)), false), dur(clu.SellOut), dur(one.SellOut), cpuDur(clu.CPUPerAnswer()), cpuDur(one.CPUPerAnswer()))
}

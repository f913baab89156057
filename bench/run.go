package bench

import (
	"context"
	"encoding/json"
	"fmt"
	"io"
	"os"
	"strconv"
	"text/tabwriter"
	"time"
)

// Config is one invocation of the harness.
type Config struct {
	Workload string        // soldout | durable
	Conns    int           // connections (closed loop)
	Duration time.Duration // per target
	Compare  bool          // also measure the bare fasthttp ceiling
	Keys     bool          // send an Idempotency-Key with every grab
	DataDir  string        // for the in-process seckill ("" = temp dir)
	JSON     io.Writer     // machine-readable results, if set
}

// Workloads the harness knows.
var Workloads = []string{"soldout", "durable"}

const benchItem = "bench-item"

// Run measures each target with the workload and prints a table to out.
func Run(ctx context.Context, cfg Config, out io.Writer) ([]Result, error) {
	dir := cfg.DataDir
	if dir == "" {
		d, err := os.MkdirTemp("", "seckill-bench-")
		if err != nil {
			return nil, err
		}
		defer os.RemoveAll(d)
		dir = d
	}
	sk, err := StartLocal(dir, "bench-token")
	if err != nil {
		return nil, err
	}
	defer sk.Stop()
	var w Workload
	switch cfg.Workload {
	case "soldout":
		// Stock 1: the first grab takes it, every later answer is sold_out.
		if err := sk.CreateItem(benchItem, 1, 16, 1); err != nil {
			return nil, err
		}
		w = grabWorkload("/v1/items/"+benchItem+"/grab", cfg.Keys)
	case "durable":
		if err := sk.CreateItem(benchItem, 1_000_000_000, 16, 1); err != nil {
			return nil, err
		}
		w = grabWorkload("/v1/items/"+benchItem+"/grab", cfg.Keys)
	default:
		return nil, fmt.Errorf("unknown workload %q (have %v)", cfg.Workload, Workloads)
	}
	targets := []*Target{sk}
	if cfg.Compare {
		bare, err := StartBare()
		if err != nil {
			return nil, err
		}
		defer bare.Stop()
		targets = append([]*Target{bare}, targets...)
	}
	var results []Result
	for _, t := range targets {
		r, err := ClosedLoop(ctx, t.Addr, cfg.Conns, cfg.Duration, 0, w)
		if err != nil {
			return nil, err
		}
		r.Target, r.Workload = t.Name, cfg.Workload
		results = append(results, r)
	}
	printTable(out, results)
	if cfg.JSON != nil {
		if err := writeJSON(cfg.JSON, results); err != nil {
			return results, err
		}
	}
	return results, nil
}

func grabWorkload(path string, keys bool) Workload {
	return func(i int64, body []byte) Request {
		r := Request{Path: path, Body: GrabBody(body, "bench-u", i)}
		if keys {
			r.Key = "k" + strconv.FormatInt(i, 10)
		}
		return r
	}
}

func printTable(out io.Writer, rs []Result) {
	tw := tabwriter.NewWriter(out, 0, 0, 2, ' ', tabwriter.AlignRight)
	fmt.Fprintln(tw, "target\tworkload\tconns\trequests\treq/s\t201/s\t409/s\tother\terrors\tp50\tp90\tp99\tp99.9\tmax\tvs ceiling\t")
	var ceiling float64
	for _, r := range rs {
		if r.Target == "bare" {
			ceiling = r.Rate()
		}
	}
	for _, r := range rs {
		other := r.Requests - r.Errors - r.ByStatus[201] - r.ByStatus[409]
		ratio := "-"
		if ceiling > 0 {
			ratio = fmt.Sprintf("%.0f%%", 100*r.Rate()/ceiling)
		}
		fmt.Fprintf(tw, "%s\t%s\t%d\t%d\t%.0f\t%.0f\t%.0f\t%d\t%d\t%v\t%v\t%v\t%v\t%v\t%s\t\n",
			r.Target, r.Workload, r.Conns, r.Requests, r.Rate(), r.RateOf(201), r.RateOf(409), other, r.Errors,
			r.Quantile(50), r.Quantile(90), r.Quantile(99), r.Quantile(99.9), time.Duration(r.Latency.Max())*time.Microsecond, ratio)
	}
	tw.Flush()
}

type jsonResult struct {
	Target    string           `json:"target"`
	Workload  string           `json:"workload"`
	Conns     int              `json:"conns"`
	ElapsedS  float64          `json:"elapsed_s"`
	Requests  int64            `json:"requests"`
	Rate      float64          `json:"rate"`
	Errors    int64            `json:"errors"`
	ByStatus  map[string]int64 `json:"by_status"`
	LatencyUs map[string]int64 `json:"latency_us"`
}

func writeJSON(w io.Writer, rs []Result) error {
	out := make([]jsonResult, 0, len(rs))
	for _, r := range rs {
		j := jsonResult{Target: r.Target, Workload: r.Workload, Conns: r.Conns, ElapsedS: r.Elapsed.Seconds(),
			Requests: r.Requests, Rate: r.Rate(), Errors: r.Errors, ByStatus: map[string]int64{}, LatencyUs: map[string]int64{}}
		for k, v := range r.ByStatus {
			j.ByStatus[strconv.Itoa(k)] = v
		}
		for _, q := range []float64{50, 90, 99, 99.9} {
			j.LatencyUs["p"+strconv.FormatFloat(q, 'f', -1, 64)] = r.Latency.ValueAtQuantile(q)
		}
		j.LatencyUs["max"] = r.Latency.Max()
		out = append(out, j)
	}
	enc := json.NewEncoder(w)
	enc.SetIndent("", "  ")
	return enc.Encode(out)
}

package bench

import (
	"context"
	"errors"
	"fmt"
	"io"
	"os"
	"strconv"
	"strings"
	"time"

	"github.com/seckill/seckill/engine"
)

// Config is one invocation of the harness. Zero Stock, Items and Users
// take the workload's defaults.
type Config struct {
	// Local starts the in-process seckill target (when URLs is empty).
	Local    LocalFunc
	Workload string
	Mode     string        // closed | open; flash is always open
	Rate     float64       // open loop: requests per second
	Conns    int           // connections per target
	Duration time.Duration // measuring time per target (closed loop, constant rate)
	Requests int64         // closed loop: stop after this many per target (0: no limit)
	Users    int64         // flash: buyers arriving; else distinct users (0: every request a new one)
	Stock    int64         // units per item
	Items    int           // items sold at once
	Arrival  time.Duration // flash: all buyers arrive within this
	Shards   int           // shards per item on seckill
	Keys     bool          // send an Idempotency-Key with every grab (always in flash)
	Compare  bool          // also measure the seeds' design, Redis+Lua alone and the bare handler
	// ClusterCompare measures one node (a child) beside a three-node
	// cluster started as `make cluster` runs it (StartCluster), with the
	// same workload, and prints the ratios. It needs Exec.
	ClusterCompare bool
	// ClusterExe is the seckill binary the cluster's processes run (`nats`,
	// `serve`); "": Exec[0].
	ClusterExe string
	// ClusterNATSSync is the cluster's NATS servers' --sync: "always" (""),
	// an fsync before every ack, as make cluster runs them, or an interval
	// (what an acknowledged append then survives: README, "What a journal
	// append survives").
	ClusterNATSSync string
	// Route is how buyers pick a cluster's front: RouteAny ("" too), round
	// robin, or RouteOwner, the front of their shard's owner.
	Route string
	// Rounds splits a closed-loop run into this many slices per target,
	// the targets taking turns (in alternating order), so that a machine
	// that speeds up or slows down during the run is shared by all of them
	// rather than landing on whichever ran then. 0 or 1: each target runs
	// its whole duration in turn.
	Rounds int

	// URLs: seckill at this URL, or a cluster at these fronts, instead of
	// in-process. Items are created through the first; buyers go round
	// robin over all (job n to URLs[n mod len]); the audit reads the items
	// through each.
	URLs  []string
	Token string // its admin token
	// BuyerSecret, when set, is the HS256 secret of the target's buyer
	// tokens (serve --buyer-auth jwt --buyer-secret): every grab carries
	// its buyer's token, minted before the run.
	BuyerSecret string
	DataDir     string // for the in-process seckill ("" = a fresh temp dir)
	NoOrders    bool   // in-process seckill without the order pipeline (engine and HTTP only)
	Redis       string // Redis+Lua against this Redis URL instead of a redis-server started here
	AppendFsync string // appendfsync of the redis-server started here

	// Exec is the command line that runs this binary as a child serving
	// one target (it must call ServeChild when IsChild): every target the
	// harness starts then runs in a child process, and its CPU time, and
	// that of its peers, is measured. nil: targets run in this process
	// and no CPU time is reported.
	Exec []string
	// CPUProfile, with Exec, makes each child write a pprof CPU profile of
	// its target to CPUProfile + "." + the target's name.
	CPUProfile string
	// Trace, with Exec, makes each child write a runtime execution trace
	// of its target to Trace + "." + the target's name.
	Trace string

	JSON io.Writer // machine-readable results, if set
	SVG  io.Writer // the picture, if set
}

// Workload is what a named workload sells, unless flags say otherwise.
type Workload struct {
	Name    string
	Stock   int64
	Items   int
	Users   int64
	Arrival time.Duration
	About   string
}

const (
	// MaxItems bounds --items: each item is created and audited one by one.
	MaxItems = 10_000
	// MaxRounds bounds --rounds: each slice opens its connections anew.
	MaxRounds = 100
	// DefaultRounds is how many interleaved slices the command measures a
	// closed loop in.
	DefaultRounds = 5
	// MaxFronts bounds the fronts of --url: each worker holds a client
	// per front.
	MaxFronts = 64
	// frontWait bounds the wait, after an item was created through the
	// first front, for every other front to know it (a cluster's nodes
	// learn new items from etcd).
	frontWait = 10 * time.Second
	// MaxUsers bounds --users: the harness keeps a few dozen bytes per
	// buyer and attempt in memory until the run ends.
	MaxUsers = 100_000_000
)

// DefaultShards is the shards per item the harness creates on seckill: the
// API's default.
const DefaultShards = engine.DefaultShards

// Workloads the harness knows.
var Workloads = []Workload{
	{Name: "soldout", Stock: 100, Items: 1, About: "one hot item with 100 units: nearly every answer is sold_out"},
	{Name: "durable", Stock: 1_000_000_000, Items: 1, About: "stock that never runs out: every answer a durable 201, each request a new user"},
	{Name: "flash", Stock: 10_000, Items: 1, Users: 1_000_000, Arrival: 10 * time.Second,
		About: "10 000 units, 1 000 000 buyers arriving within 10 s, each retrying 429/503 with backoff"},
	{Name: "multi", Stock: 1_000, Items: 100, About: "100 items of 1 000 units at once, requests spread over them"},
}

func workload(name string) (Workload, bool) {
	for _, w := range Workloads {
		if w.Name == name {
			return w, true
		}
	}
	return Workload{}, false
}

// plan turns the flags into what to send and when.
func (cfg Config) plan(runID string) (*Plan, Schedule, error) {
	w, ok := workload(cfg.Workload)
	if !ok {
		return nil, Schedule{}, fmt.Errorf("unknown workload %q", cfg.Workload)
	}
	if r := cfg.Route; r != "" && r != RouteAny && r != RouteOwner {
		return nil, Schedule{}, fmt.Errorf("--route %q: want %s or %s", r, RouteAny, RouteOwner)
	}
	p := &Plan{Workload: w.Name, Stock: w.Stock, Shards: DefaultShards, Users: w.Users, Keys: cfg.Keys}
	items := w.Items
	if cfg.Stock != 0 {
		p.Stock = cfg.Stock
	}
	if cfg.Items != 0 {
		items = cfg.Items
	}
	if cfg.Users != 0 {
		p.Users = cfg.Users
	}
	if cfg.Shards != 0 {
		p.Shards = cfg.Shards
	}
	for _, u := range cfg.URLs {
		if _, err := hostOf(u); err != nil {
			return nil, Schedule{}, err
		}
	}
	if len(cfg.URLs) > MaxFronts {
		return nil, Schedule{}, fmt.Errorf("at most %d urls, not %d", MaxFronts, len(cfg.URLs))
	}
	switch {
	case cfg.Conns < 1 || cfg.Conns > MaxConns:
		return nil, Schedule{}, fmt.Errorf("conns must be 1..%d, not %d", MaxConns, cfg.Conns)
	case items < 1 || items > MaxItems:
		return nil, Schedule{}, fmt.Errorf("items must be 1..%d, not %d", MaxItems, items)
	case p.Stock < 1:
		return nil, Schedule{}, fmt.Errorf("stock must be at least 1, not %d", p.Stock)
	case cfg.Duration <= 0 && w.Name != "flash":
		return nil, Schedule{}, fmt.Errorf("duration must be > 0, not %v", cfg.Duration)
	case p.Users < 0 || p.Users > MaxUsers:
		return nil, Schedule{}, fmt.Errorf("users must be 0..%d, not %d", MaxUsers, p.Users)
	case cfg.Rounds < 0 || cfg.Rounds > MaxRounds:
		return nil, Schedule{}, fmt.Errorf("rounds must be 0..%d, not %d", MaxRounds, cfg.Rounds)
	}
	if cfg.BuyerSecret != "" {
		var err error
		if p.tokens, err = premint(cfg.BuyerSecret, p.Users); err != nil {
			return nil, Schedule{}, err
		}
	}
	for i := range items {
		name := "bench-" + w.Name + "-" + runID
		if items > 1 {
			name += "-" + strconv.Itoa(i)
		}
		p.Items = append(p.Items, name)
	}
	if w.Name == "flash" {
		if cfg.Mode == "closed" {
			return nil, Schedule{}, errors.New("flash is an arrival profile: it runs open loop only")
		}
		arrival := w.Arrival
		if cfg.Arrival != 0 {
			arrival = cfg.Arrival
		}
		p.Keys, p.Retry = true, true
		return p, Schedule{Users: p.Users, Arrival: arrival}, nil
	}
	switch cfg.Mode {
	case "", "closed":
		return p, Schedule{}, nil
	case "open":
		s := Schedule{Rate: cfg.Rate, Duration: cfg.Duration}
		if err := s.validate(); err != nil {
			return nil, Schedule{}, err
		}
		return p, s, nil
	}
	return nil, Schedule{}, fmt.Errorf("unknown mode %q: closed or open", cfg.Mode)
}

// starter starts one target.
type starter struct {
	name  string
	start func() (*Target, error)
}

// startLocalIn starts the in-process seckill in dir, or in a fresh
// temporary directory removed when the target stops.
func startLocalIn(start LocalFunc, dir string, orders bool) (*Target, error) {
	if start == nil {
		return nil, errors.New("no in-process seckill: give --url")
	}
	if dir != "" {
		return start(dir, localToken, orders)
	}
	d, err := os.MkdirTemp("", "seckill-bench-")
	if err != nil {
		return nil, fmt.Errorf("data dir: %w", err)
	}
	t, err := start(d, localToken, orders)
	if err != nil {
		os.RemoveAll(d)
		return nil, err
	}
	stop := t.Stop
	t.Stop = func() error { return errors.Join(stop(), os.RemoveAll(d)) }
	return t, nil
}

// Run measures each target in turn with the workload, audits every target
// that holds stock, and prints the report to out. It fails if an audit
// fails, after reporting.
func Run(ctx context.Context, cfg Config, out io.Writer) ([]Result, error) {
	runID := strconv.FormatInt(time.Now().UnixNano(), 36)
	plan, sched, err := cfg.plan(runID)
	if err != nil {
		return nil, err
	}
	child := func(target string) func() (*Target, error) {
		return func() (*Target, error) {
			spec := childSpec{Target: target, DataDir: cfg.DataDir, Orders: !cfg.NoOrders,
				Redis: cfg.Redis, AppendFsync: cfg.AppendFsync}
			if cfg.CPUProfile != "" {
				spec.CPUProfile = cfg.CPUProfile + "." + profileSuffix(target)
			}
			if cfg.Trace != "" {
				spec.Trace = cfg.Trace + "." + profileSuffix(target)
			}
			return startChild(cfg.Exec, spec)
		}
	}
	starters := []starter{{TargetSeckill, func() (*Target, error) {
		switch {
		case len(cfg.URLs) > 0:
			return Remote(cfg.URLs, cfg.Token), nil
		case cfg.Exec != nil:
			return child(TargetSeckill)()
		}
		return startLocalIn(cfg.Local, cfg.DataDir, !cfg.NoOrders)
	}}}
	if cfg.ClusterCompare {
		if cfg.Exec == nil || cfg.Compare || len(cfg.URLs) > 0 {
			return nil, errors.New("--cluster-compare runs one node and a cluster as child processes: not with --in-process, --compare or --url")
		}
		starters = append(starters, starter{TargetCluster, func() (*Target, error) {
			dir, err := os.MkdirTemp("", "seckill-bench-cluster-")
			if err != nil {
				return nil, err
			}
			exe := cfg.ClusterExe
			if exe == "" {
				exe = cfg.Exec[0]
			}
			t, err := StartCluster(exe, dir, localToken, cfg.ClusterNATSSync)
			if err != nil {
				os.RemoveAll(dir)
			}
			return t, err
		}})
	}
	if cfg.Compare {
		starters = append(starters,
			starter{TargetSeeds, func() (*Target, error) { return StartSeeds(ctx, cfg.Redis, cfg.AppendFsync) }},
			starter{TargetRedis, func() (*Target, error) { return StartRedisLua(ctx, cfg.Redis, cfg.AppendFsync) }},
			starter{TargetBare, StartBare})
		if cfg.Exec != nil {
			for i := 1; i < len(starters); i++ {
				starters[i].start = child(starters[i].name)
			}
		}
	}
	// A target that cannot run ends the run, but what was measured before
	// is still reported.
	var results []Result
	var errs []error
	if sched == (Schedule{}) && cfg.Rounds > 1 {
		var err error
		results, err = runInterleaved(ctx, cfg, starters, plan)
		if err != nil {
			errs = append(errs, err)
		}
		starters = nil
	}
	for _, s := range starters {
		if ctx.Err() != nil {
			errs = append(errs, ctx.Err())
			break
		}
		r, err := runOne(ctx, cfg, s, plan, sched)
		if err != nil {
			errs = append(errs, fmt.Errorf("%s: %w", s.name, err))
			break
		}
		results = append(results, r)
	}
	if len(results) > 0 {
		printReport(out, plan, results)
		if cfg.JSON != nil {
			if err := writeJSON(cfg.JSON, plan, results); err != nil {
				errs = append(errs, fmt.Errorf("write json: %w", err))
			}
		}
		if cfg.SVG != nil {
			if err := writeSVG(cfg.SVG, plan, results); err != nil {
				errs = append(errs, fmt.Errorf("write svg: %w", err))
			}
		}
	}
	for _, r := range results {
		if r.Audit != nil && !r.Audit.OK() {
			errs = append(errs, fmt.Errorf("audit of %s failed: %s", r.Target, r.Audit))
		}
	}
	return results, errors.Join(errs...)
}

// profileSuffix is a target's name as a file name suffix.
func profileSuffix(target string) string {
	return strings.NewReplacer("+", "-", "/", "-").Replace(target)
}

// localToken is the admin token of the in-process seckill.
const localToken = "bench-token"

// runInterleaved starts every target, then measures them in cfg.Rounds
// closed-loop slices each, taking turns; jobs go on from slice to slice, so
// no buyer comes twice. The results are as if each target had run alone.
func runInterleaved(ctx context.Context, cfg Config, starters []starter, plan *Plan) (results []Result, err error) {
	type live struct {
		t       *Target
		plan    *Plan // plan as this target's buyers route it
		cpu     *cpuMeter
		tallies []tally
		elapsed time.Duration
		next    int64
	}
	var ls []*live
	defer func() {
		for _, l := range ls {
			if e := l.t.Stop(); e != nil {
				err = errors.Join(err, fmt.Errorf("%s: stop: %w", l.t.Name, e))
			}
		}
	}()
	for _, s := range starters {
		t, err := s.start()
		if err != nil {
			return nil, fmt.Errorf("%s: %w", s.name, err)
		}
		l := &live{t: t, cpu: newCPUMeter(t.Procs)}
		ls = append(ls, l)
		if err := createItems(ctx, t, plan); err != nil {
			return nil, fmt.Errorf("%s: %w", s.name, err)
		}
		if l.plan, err = routedPlan(ctx, cfg, t, plan); err != nil {
			return nil, fmt.Errorf("%s: %w", s.name, err)
		}
	}
	slice := cfg.Duration / time.Duration(cfg.Rounds)
	for round := 0; round < cfg.Rounds && ctx.Err() == nil; round++ {
		for k := range ls {
			l := ls[k]
			if round%2 == 1 { // no target always runs right after the same one
				l = ls[len(ls)-1-k]
			}
			l.cpu.start()
			start := time.Now()
			ts, next, err := closedLoop(ctx, l.t.fronts(), cfg.Conns, slice, cfg.Requests, l.plan, l.next, start.Add(-l.elapsed))
			if err != nil {
				return nil, fmt.Errorf("%s: %w", l.t.Name, err)
			}
			l.elapsed += time.Since(start)
			l.cpu.stop()
			l.tallies, l.next = append(l.tallies, ts...), next
		}
	}
	for _, l := range ls {
		r := closedResult(l.tallies, l.elapsed, cfg.Conns)
		r.CPU = l.cpu.result()
		results = append(results, finish(ctx, l.t, plan, r))
	}
	return results, nil
}

// createItems creates the plan's items on a target that holds stock,
// through its first front, then waits until every other front knows them.
func createItems(ctx context.Context, t *Target, plan *Plan) error {
	if t.Admin == nil {
		return nil
	}
	for _, item := range plan.Items {
		if err := t.Admin.CreateItem(ctx, item, plan.Stock, plan.Shards, 1); err != nil {
			return err
		}
	}
	views := t.views()
	if len(views) < 2 {
		return nil
	}
	deadline := time.Now().Add(frontWait)
	for _, v := range views[1:] {
		for _, item := range plan.Items {
			for {
				_, err := v.Item(ctx, item)
				if err == nil {
					break
				}
				if time.Now().After(deadline) || ctx.Err() != nil {
					return fmt.Errorf("created through %s but not known to every front within %v: %w", t.URL, frontWait, err)
				}
				time.Sleep(frontPoll)
			}
		}
	}
	return nil
}

// frontPoll is the pause between two reads of an item a front does not
// know yet (nothing notifies the harness).
const frontPoll = 50 * time.Millisecond

// finish names r after its target and, for a target that holds stock,
// adds its sell-out time and audit.
func finish(ctx context.Context, t *Target, plan *Plan, r Result) Result {
	r.Target, r.Workload = t.Name, plan.Workload
	if len(t.Fronts) > 1 {
		r.Fronts = t.Fronts
	}
	if t.Admin != nil {
		r.SellOut = r.sellOut(len(plan.Items), plan.Stock)
		r.Audit = audit(ctx, t, plan, &r)
	}
	return r
}

func runOne(ctx context.Context, cfg Config, s starter, plan *Plan, sched Schedule) (r Result, err error) {
	t, err := s.start()
	if err != nil {
		return Result{}, err
	}
	defer func() {
		if e := t.Stop(); e != nil && err == nil {
			err = fmt.Errorf("stop: %w", e)
		}
	}()
	if err := createItems(ctx, t, plan); err != nil {
		return Result{}, err
	}
	routed, err := routedPlan(ctx, cfg, t, plan)
	if err != nil {
		return Result{}, err
	}
	cpu := newCPUMeter(t.Procs)
	cpu.start()
	if sched == (Schedule{}) { // closed loop
		r, err = ClosedLoop(ctx, t.fronts(), cfg.Conns, cfg.Duration, cfg.Requests, routed)
	} else {
		r, err = OpenLoop(ctx, t.fronts(), cfg.Conns, sched, routed)
	}
	if err != nil {
		return Result{}, err
	}
	cpu.stop()
	r.CPU = cpu.result()
	return finish(ctx, t, plan, r), nil
}

// routedPlan is plan as t's buyers follow it: with Config.Route owner and a
// target of several fronts, each grab goes to its shard owner's front.
func routedPlan(ctx context.Context, cfg Config, t *Target, plan *Plan) (*Plan, error) {
	if cfg.Route != RouteOwner || len(t.Fronts) < 2 {
		return plan, nil
	}
	r, err := ownerRoutes(ctx, t, plan)
	if err != nil {
		return nil, err
	}
	return plan.on(r), nil
}

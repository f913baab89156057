package bench

import (
	"bytes"
	"context"
	"encoding/json"
	"errors"
	"fmt"
	"io"
	"math/rand/v2"
	"net/http"
	"os"
	"os/exec"
	"path/filepath"
	"slices"
	"strconv"
	"strings"
	"sync"
	"syscall"
	"time"
)

// The nemesis (`seckill chaos`): seeded schedules of faults against a
// running three-node cluster (StartCluster's: etcd, Redis, three NATS
// servers, three nodes on ClusterIPs) during a flash, each audited.
//
// One schedule is one fresh item and one flash: Buyers buyers, each with
// one Idempotency-Key, arriving evenly over Arrival for Stock units, each
// retrying on 503, 429 and transport errors through the next front (as an
// app behind a load balancer would) until a final answer. Meanwhile the
// schedule's fault happens. Then every fault is healed and the sale is
// audited:
//   - every buyer had a final answer: 201, or 409 sold_out (nobody is
//     over the limit of one, so never limit_reached);
//   - exactly Stock buyers got a 201, each a distinct grab id;
//   - every front's item view says sold == stock, 0 remaining (nothing
//     frozen);
//   - every 201 replays, through another front, to the same grab id;
//   - the cluster's reconcile is clean: one grab in the stream and one
//     order per 201, nothing in flight.

// FaultKind is one kind of fault a schedule puts in.
type FaultKind int

const (
	// FaultKill: SIGKILL a node; it stays dead until the sale is over.
	FaultKill FaultKind = iota
	// FaultPause: SIGSTOP a node past its lease, then SIGCONT.
	FaultPause
	// FaultPartition: cut a node from etcd and from every NATS server
	// (nftables rules on loopback), then heal.
	FaultPartition
	// FaultWipe: SIGKILL a node, wipe its data directory, restart it
	// empty.
	FaultWipe
	// FaultNATS: SIGKILL one NATS server; it stays dead until the sale is
	// over.
	FaultNATS
	faultKinds
)

func (k FaultKind) String() string {
	switch k {
	case FaultKill:
		return "kill -9 node"
	case FaultPause:
		return "SIGSTOP node past its lease"
	case FaultPartition:
		return "partition node from etcd and NATS"
	case FaultWipe:
		return "kill -9 node, wipe its disk, restart it empty"
	case FaultNATS:
		return "kill -9 NATS server"
	}
	return "fault " + strconv.Itoa(int(k))
}

const (
	// chaosLease is the nodes' etcd lease (fence.LeaseTTL): a pause or a
	// partition lasts past it, so the node's shards fail over.
	chaosLease = 5 * time.Second
	// chaosOutage is how long a pause or a partition lasts: the lease and
	// its failover, and then some.
	chaosOutage = chaosLease + 3*time.Second
	// chaosWipeDown is how long a wiped node stays down before it
	// restarts empty.
	chaosWipeDown = time.Second
	// chaosFaultFrom and chaosFaultSpan: a fault starts this far into the
	// flash, plus up to the span (seeded).
	chaosFaultFrom = time.Second
	chaosFaultSpan = 2 * time.Second
	// chaosBuyerDeadline bounds one buyer's retries: past it the buyer
	// has no final answer, and the audit fails.
	chaosBuyerDeadline = 2 * time.Minute
	// chaosRetryBase and chaosRetryCap: a buyer's backoff between tries.
	chaosRetryBase = 50 * time.Millisecond
	chaosRetryCap  = time.Second
	// chaosWorkers is how many buyers are being served at once.
	chaosWorkers = 96
	// chaosSettle bounds each wait of the audit (views settling, the
	// reconcile turning clean, a healed node rejoining).
	chaosSettle = 90 * time.Second
	// chaosPoll is how often those waits look again.
	chaosPoll = 250 * time.Millisecond
	// chaosNFTTable is the nemesis's own nftables table.
	chaosNFTTable = "seckill_chaos"
	// Defaults of ChaosConfig.
	// The flash: 400 buyers a second for 15 s, the stock lasting until
	// about 12 s, so that a fault and its failover fall while it sells.
	DefaultChaosBuyers    = 6_000
	DefaultChaosStock     = 4_800
	DefaultChaosShards    = 12
	DefaultChaosArrival   = 15 * time.Second
	DefaultChaosSchedules = 10
)

// Fault is one fault of a schedule.
type Fault struct {
	Kind FaultKind
	// Victim is the node (FaultKill..FaultWipe) or the NATS server
	// (FaultNATS), by index.
	Victim int
	// At is when it starts, from the flash's start.
	At time.Duration
}

func (f Fault) String() string {
	who := nodeName(f.Victim)
	if f.Kind == FaultNATS {
		who = "nats" + strconv.Itoa(f.Victim+1)
	}
	return fmt.Sprintf("%s %s at %v", f.Kind, who, f.At.Round(time.Millisecond))
}

// ChaosSchedule is the fault of schedule seed: its kind goes round the
// kinds with the seed (so any five seeds in a row cover them all), its
// victim and its time are drawn from the seed.
func ChaosSchedule(seed uint64) Fault {
	r := rand.New(rand.NewPCG(seed, seed^0x5eed))
	return Fault{Kind: FaultKind(seed % uint64(faultKinds)), Victim: r.IntN(len(ClusterIPs)),
		At: chaosFaultFrom + time.Duration(r.Int64N(int64(chaosFaultSpan)))}
}

// ChaosConfig is what `seckill chaos` runs.
type ChaosConfig struct {
	// Exe is the seckill binary the cluster runs.
	Exe string
	// Dir holds the cluster's directories and logs ("": a temporary one,
	// removed after a clean run).
	Dir string
	// Seed is the first schedule's; schedule i runs Seed+i.
	Seed      uint64
	Schedules int
	Buyers    int
	Stock     int64
	Shards    int
	Arrival   time.Duration
	// Token is the cluster's admin token ("": made up).
	Token string
}

func (c *ChaosConfig) defaults() error {
	if c.Schedules <= 0 {
		c.Schedules = DefaultChaosSchedules
	}
	if c.Buyers <= 0 {
		c.Buyers = DefaultChaosBuyers
	}
	if c.Stock <= 0 {
		c.Stock = DefaultChaosStock
	}
	if c.Shards <= 0 {
		c.Shards = DefaultChaosShards
	}
	if c.Arrival <= 0 {
		c.Arrival = DefaultChaosArrival
	}
	if c.Token == "" {
		c.Token = "chaos-" + strconv.FormatUint(rand.Uint64(), 36)
	}
	if int64(c.Buyers) <= c.Stock {
		return fmt.Errorf("chaos: %d buyers for %d units: the flash needs more buyers than units", c.Buyers, c.Stock)
	}
	return nil
}

// ChaosReport is one schedule's outcome.
type ChaosReport struct {
	Seed  uint64
	Fault Fault
	// Skipped says why the fault could not be put in (no nftables here).
	Skipped   string
	Confirmed int
	SoldOut   int
	Retried   int
	Took      time.Duration
	// LongestWait is the longest a buyer whose first try was refused
	// waited for the 201 it got in the end: how long the fault kept
	// buyers out.
	LongestWait time.Duration
	// Audit holds what failed (its OK says whether anything did).
	Audit
}

func (r *ChaosReport) String() string {
	var b strings.Builder
	fmt.Fprintf(&b, "seed %d: %v", r.Seed, r.Fault)
	if r.Skipped != "" {
		fmt.Fprintf(&b, " (skipped: %s)", r.Skipped)
	}
	fmt.Fprintf(&b, " | %d confirmed, %d sold out, %d buyers retried, longest wait of a refused buyer %v, flash %v",
		r.Confirmed, r.SoldOut, r.Retried, r.LongestWait.Round(time.Millisecond), r.Took.Round(time.Millisecond))
	if r.OK() {
		b.WriteString(" | audit clean")
	} else {
		fmt.Fprintf(&b, " | AUDIT FAILED: %s", strings.Join(r.Failures, "; "))
	}
	return b.String()
}

// Chaos starts a cluster and runs cfg.Schedules schedules on it, one after
// the other, writing each report to out as it ends. It returns an error if
// any audit failed.
func Chaos(ctx context.Context, cfg ChaosConfig, out io.Writer) ([]ChaosReport, error) {
	if err := cfg.defaults(); err != nil {
		return nil, err
	}
	dir, keep := cfg.Dir, cfg.Dir != ""
	if dir == "" {
		var err error
		if dir, err = os.MkdirTemp("", "seckill-chaos-"); err != nil {
			return nil, err
		}
	}
	fmt.Fprintf(out, "chaos: starting a cluster under %s (etcd, redis, 3 NATS servers, nodes on %s)\n", dir, strings.Join(ClusterIPs, ", "))
	t, c, err := startCluster(cfg.Exe, dir, cfg.Token, "always")
	if err != nil {
		return nil, fmt.Errorf("chaos: start the cluster: %w (logs in %s)", err, dir)
	}
	n := &nemesis{c: c, t: t, token: cfg.Token, client: &http.Client{Timeout: 5 * time.Second, Transport: &http.Transport{MaxIdleConnsPerHost: chaosWorkers}}}
	n.nft, _ = exec.LookPath("nft")
	defer func() {
		// Whatever happened: no rule left in, no process left stopped or
		// running.
		n.unpartition()
		for i := range c.nodes {
			n.resume(i)
		}
		c.stop()
	}()
	var reports []ChaosReport
	failed := 0
	for i := range cfg.Schedules {
		if err := ctx.Err(); err != nil {
			return reports, err
		}
		r := n.schedule(ctx, cfg, cfg.Seed+uint64(i))
		fmt.Fprintln(out, r.String())
		if !r.OK() {
			failed++
		}
		reports = append(reports, r)
	}
	n.heal()
	stopErr := c.stop()
	if failed > 0 {
		return reports, fmt.Errorf("chaos: %d of %d schedules failed their audit (logs in %s)", failed, len(reports), dir)
	}
	if stopErr != nil {
		return reports, fmt.Errorf("chaos: stop the cluster: %w (logs in %s)", stopErr, dir)
	}
	if !keep {
		os.RemoveAll(dir)
	}
	fmt.Fprintf(out, "chaos: %d schedules, every audit clean\n", len(reports))
	return reports, nil
}

// nemesis puts faults into a cluster and takes them out.
type nemesis struct {
	c      *cluster
	t      *Target
	token  string
	client *http.Client
	nft    string
	mu     sync.Mutex
	// stopped: nodes under SIGSTOP; cut: a partition is in.
	stopped map[int]bool
	cut     bool
}

// schedule runs one seeded schedule and audits it.
func (n *nemesis) schedule(ctx context.Context, cfg ChaosConfig, seed uint64) ChaosReport {
	f := ChaosSchedule(seed)
	r := ChaosReport{Seed: seed, Fault: f}
	item := "chaos-" + strconv.FormatUint(seed, 10)
	if err := n.t.Admin.CreateItem(ctx, item, cfg.Stock, cfg.Shards, 1); err != nil {
		r.failf("create %s: %v", item, err)
		return r
	}
	if f.Kind == FaultPartition && n.nft == "" {
		r.Skipped = "nft is not installed"
	}
	s := &chaosSale{ctx: ctx, n: n, item: item, buyers: make([]chaosBuyer, cfg.Buyers), arrival: cfg.Arrival}
	start := time.Now()
	faultDone := make(chan struct{})
	saleCtx, cancel := context.WithCancel(ctx)
	defer cancel()
	go func() {
		defer close(faultDone)
		select {
		case <-time.After(f.At):
		case <-saleCtx.Done():
			return
		}
		if r.Skipped != "" {
			return
		}
		if err := n.inject(saleCtx, f); err != nil {
			r.Skipped = err.Error()
		}
	}()
	s.run(start)
	r.Took = time.Since(start)
	<-faultDone
	if err := n.heal(); err != nil {
		r.failf("heal: %v", err)
		return r
	}
	s.check(&r, cfg.Stock)
	if r.OK() {
		n.settled(ctx, &r, item, cfg.Stock)
	}
	if r.OK() {
		s.replayAll(&r)
	}
	if r.OK() {
		n.reconciled(ctx, &r, item, cfg.Stock)
	}
	return r
}

// inject puts fault f in and, for the faults that end by themselves (a
// pause, a partition, a wipe), takes it out again.
func (n *nemesis) inject(ctx context.Context, f Fault) error {
	wait := func(d time.Duration) {
		select {
		case <-time.After(d):
		case <-ctx.Done():
		}
	}
	switch f.Kind {
	case FaultKill:
		return n.c.nodes[f.Victim].kill()
	case FaultNATS:
		return n.c.nats[f.Victim].kill()
	case FaultPause:
		p := n.c.nodes[f.Victim]
		if err := p.cmd.Process.Signal(syscall.SIGSTOP); err != nil {
			return err
		}
		n.mu.Lock()
		if n.stopped == nil {
			n.stopped = map[int]bool{}
		}
		n.stopped[f.Victim] = true
		n.mu.Unlock()
		wait(chaosOutage)
		return n.resume(f.Victim)
	case FaultPartition:
		if err := n.partition(ClusterIPs[f.Victim]); err != nil {
			return err
		}
		wait(chaosOutage)
		return n.unpartition()
	case FaultWipe:
		p := n.c.nodes[f.Victim]
		if err := p.kill(); err != nil {
			return err
		}
		if err := os.RemoveAll(filepath.Join(n.c.dir, p.name)); err != nil {
			return err
		}
		wait(chaosWipeDown)
		return n.restart(&n.c.nodes[f.Victim], "seckill: serving ")
	}
	return fmt.Errorf("unknown fault %v", f.Kind)
}

// kill SIGKILLs p and waits for it to be gone.
func (p *clusterProc) kill() error {
	if err := p.cmd.Process.Kill(); err != nil {
		return err
	}
	<-p.exited
	return nil
}

// restart starts *slot's process again with the same command line (and so
// the same ports and data directory) and waits for its ready line.
func (n *nemesis) restart(slot **clusterProc, ready string) error {
	old := *slot
	p, err := n.c.start(old.name, old.env, old.argv...)
	if err != nil {
		return err
	}
	*slot = p
	_, err = p.waitLine(ready)
	return err
}

func (n *nemesis) resume(i int) error {
	n.mu.Lock()
	defer n.mu.Unlock()
	if !n.stopped[i] {
		return nil
	}
	delete(n.stopped, i)
	return n.c.nodes[i].cmd.Process.Signal(syscall.SIGCONT)
}

// partition drops every packet between ip and etcd's and the NATS
// servers' client ports on 127.0.0.1, both ways: rules on loopback only,
// in the nemesis's own table.
func (n *nemesis) partition(ip string) error {
	ports := []string{strconv.Itoa(n.c.etcdPort)}
	for _, p := range n.c.natsPorts {
		ports = append(ports, strconv.Itoa(p))
	}
	set := "{ " + strings.Join(ports, ", ") + " }"
	_ = n.runNFT("delete", "table", "inet", chaosNFTTable) // a crashed run's leftover
	n.mu.Lock()
	n.cut = true
	n.mu.Unlock()
	for _, args := range [][]string{
		{"add", "table", "inet", chaosNFTTable},
		{"add", "chain", "inet", chaosNFTTable, "out", "{ type filter hook output priority 0; policy accept; }"},
		{"add", "rule", "inet", chaosNFTTable, "out", "ip", "saddr", ip, "ip", "daddr", "127.0.0.1", "tcp", "dport", set, "drop"},
		{"add", "rule", "inet", chaosNFTTable, "out", "ip", "saddr", "127.0.0.1", "ip", "daddr", ip, "tcp", "sport", set, "drop"},
	} {
		if err := n.runNFT(args...); err != nil {
			n.unpartition()
			return fmt.Errorf("nftables (needs CAP_NET_ADMIN): %w", err)
		}
	}
	return nil
}

func (n *nemesis) unpartition() error {
	n.mu.Lock()
	defer n.mu.Unlock()
	if !n.cut {
		return nil
	}
	n.cut = false
	return n.runNFT("delete", "table", "inet", chaosNFTTable)
}

func (n *nemesis) runNFT(args ...string) error {
	out, err := exec.Command(n.nft, args...).CombinedOutput()
	if err != nil {
		return fmt.Errorf("nft %s: %v: %s", strings.Join(args, " "), err, bytes.TrimSpace(out))
	}
	return nil
}

// heal takes every fault out: the partition goes, paused nodes resume,
// dead processes restart on their data, and it waits until every node
// lists all three.
func (n *nemesis) heal() error {
	var errs []error
	if err := n.unpartition(); err != nil {
		errs = append(errs, err)
	}
	for i := range n.c.nodes {
		if err := n.resume(i); err != nil {
			errs = append(errs, err)
		}
	}
	for i := range n.c.nats {
		if exitedNow(n.c.nats[i]) {
			errs = append(errs, n.restart(&n.c.nats[i], "seckill nats: listening on "))
		}
	}
	for i := range n.c.nodes {
		if exitedNow(n.c.nodes[i]) {
			errs = append(errs, n.restart(&n.c.nodes[i], "seckill: serving "))
		}
	}
	if err := errors.Join(errs...); err != nil {
		return err
	}
	for _, u := range n.t.Fronts {
		if err := n.c.nodes[0].waitUntil("listing every node", func() error { return allMembers(u, n.token) }); err != nil {
			return err
		}
	}
	return nil
}

func exitedNow(p *clusterProc) bool {
	select {
	case <-p.exited:
		return true
	default:
		return false
	}
}

// chaosBuyer is one buyer of a chaos flash and what it was answered.
type chaosBuyer struct {
	user, key string
	front     int // the front of its last try
	code      int // the final answer's status (0: none)
	status    string
	grabID    string
	tries     int
	refused   bool // a try before the last was refused (503, 429, no answer)
	waited    time.Duration
	wrong     string
}

// chaosSale is one flash of a schedule.
type chaosSale struct {
	// ctx ends the flash early (Ctrl-C): buyers not yet answered stop.
	ctx     context.Context
	n       *nemesis
	item    string
	buyers  []chaosBuyer
	arrival time.Duration
}

// run serves every buyer, arriving evenly over the arrival window, until
// each has a final answer or is past its deadline.
func (s *chaosSale) run(start time.Time) {
	next := make(chan int, chaosWorkers)
	var wg sync.WaitGroup
	for range chaosWorkers {
		wg.Go(func() {
			for i := range next {
				s.serve(i)
			}
		})
	}
	for i := range s.buyers {
		if s.ctx.Err() != nil {
			break
		}
		due := start.Add(time.Duration(int64(i) * int64(s.arrival) / int64(len(s.buyers))))
		if d := time.Until(due); d > 0 {
			time.Sleep(d) // the arrival schedule, not synchronisation
		}
		next <- i
	}
	close(next)
	wg.Wait()
}

func (s *chaosSale) serve(i int) {
	b := &s.buyers[i]
	b.user, b.key = s.item+"-u"+strconv.Itoa(i), "k"+strconv.Itoa(i)
	fronts := s.n.t.Fronts
	first := time.Now()
	for try := 0; ; try++ {
		b.tries++
		b.front = (i + try) % len(fronts)
		code, a, err := s.grab(fronts[b.front], b.user, b.key)
		switch {
		case s.ctx.Err() != nil:
			b.wrong = "interrupted"
			return
		case err != nil || code == http.StatusServiceUnavailable || code == http.StatusTooManyRequests:
			b.refused = true
			if time.Since(first) > chaosBuyerDeadline {
				b.wrong = fmt.Sprintf("no final answer after %d tries in %v (last: %d %v)", b.tries, time.Since(first).Round(time.Millisecond), code, err)
				return
			}
			time.Sleep(chaosBackoff(try)) // a buyer's backoff
			continue
		case code == http.StatusCreated && a.Status == "confirmed" && a.GrabID != "":
		case code == http.StatusConflict && a.Status == "sold_out":
		default:
			b.wrong = fmt.Sprintf("answered %d %+v", code, a)
		}
		b.code, b.status, b.grabID, b.waited = code, a.Status, a.GrabID, time.Since(first)
		return
	}
}

func chaosBackoff(try int) time.Duration {
	d := min(chaosRetryBase<<min(try, 16), chaosRetryCap)
	return d/2 + rand.N(d/2)
}

// grab sends one of the flash's grabs (the harness's own grab).
func (s *chaosSale) grab(front, user, key string) (int, grabAnswer, error) {
	return grab(s.ctx, s.n.client, front, s.item, user, key, nil)
}

// check holds the buyers' answers to the sale's promises.
func (s *chaosSale) check(r *ChaosReport, stock int64) {
	ids := map[string]string{}
	for i := range s.buyers {
		b := &s.buyers[i]
		if b.tries > 1 {
			r.Retried++
		}
		if b.wrong != "" {
			r.failf("%s: %s", b.user, b.wrong)
			continue
		}
		switch b.code {
		case http.StatusCreated:
			r.Confirmed++
			if other, dup := ids[b.grabID]; dup {
				r.failf("grab %s confirmed to %s and to %s", b.grabID, other, b.user)
			}
			ids[b.grabID] = b.user
			if b.refused {
				r.LongestWait = max(r.LongestWait, b.waited)
			}
		case http.StatusConflict:
			r.SoldOut++
		}
	}
	if r.OK() && int64(r.Confirmed) != stock {
		r.failf("%d buyers confirmed for %d units (%d sold out of %d buyers)", r.Confirmed, stock, r.SoldOut, len(s.buyers))
	}
}

// replayAll sends every 201's key again, through the next front, and
// requires the same grab id.
func (s *chaosSale) replayAll(r *ChaosReport) {
	fronts := s.n.t.Fronts
	var mu sync.Mutex
	next := make(chan int)
	var wg sync.WaitGroup
	for range chaosWorkers {
		wg.Go(func() {
			for i := range next {
				b := &s.buyers[i]
				code, a, err := s.grab(fronts[(b.front+1)%len(fronts)], b.user, b.key)
				if err != nil || code != http.StatusCreated || a.GrabID != b.grabID {
					mu.Lock()
					r.failf("%s's key replayed through %s: %d %+v %v, want 201 %s", b.user, fronts[(b.front+1)%len(fronts)], code, a, err, b.grabID)
					mu.Unlock()
				}
			}
		})
	}
	for i := range s.buyers {
		if s.buyers[i].code == http.StatusCreated {
			next <- i
		}
	}
	close(next)
	wg.Wait()
}

// settled waits until every front's view of item says it is sold out, all
// of its stock sold.
func (n *nemesis) settled(ctx context.Context, r *ChaosReport, item string, stock int64) {
	deadline := time.Now().Add(chaosSettle)
	for {
		var why []string
		for i, v := range n.t.Views {
			st, err := v.Item(ctx, item)
			if err != nil || st.Sold != stock || st.Remaining != 0 || st.Stock != stock {
				why = append(why, fmt.Sprintf("%s: %+v %v", nodeName(i), st, err))
			}
		}
		if len(why) == 0 {
			return
		}
		if time.Now().After(deadline) {
			r.failf("item views not sold out with all %d sold after %v: %s", stock, chaosSettle, strings.Join(why, "; "))
			return
		}
		time.Sleep(chaosPoll) // poll interval
	}
}

// chaosReconcile is the part of the reconcile answer the nemesis reads.
type chaosReconcile struct {
	Clean bool `json:"clean"`
	Items []struct {
		Sold     int64          `json:"sold"`
		Grabs    int            `json:"grabs"`
		Released int            `json:"released"`
		InStream int            `json:"in_stream"`
		Orders   map[string]int `json:"orders"`
		InFlight int            `json:"in_flight"`
		Clean    bool           `json:"clean"`
	} `json:"items"`
}

// reconciled waits until the cluster's reconcile of item is clean with
// every unit one grab in the stream and one pending order.
func (n *nemesis) reconciled(ctx context.Context, r *ChaosReport, item string, stock int64) {
	deadline := time.Now().Add(chaosSettle)
	want := int(stock)
	for {
		code, raw, err := n.get(ctx, n.t.Fronts[len(n.t.Fronts)-1]+"/admin/v1/reconcile?item="+item)
		var a chaosReconcile
		if err == nil {
			err = json.Unmarshal(raw, &a)
		}
		if err == nil && code == http.StatusOK && a.Clean && len(a.Items) == 1 {
			it := a.Items[0]
			if it.Sold == stock && it.Grabs == want && it.Released == 0 && it.InStream == want && it.InFlight == 0 &&
				it.Orders["pending_payment"] == want {
				return
			}
		}
		if time.Now().After(deadline) {
			r.failf("reconcile of %s not clean with %d grabs, each in the stream with one order, after %v: %d %v %s", item, want, chaosSettle, code, err, raw)
			return
		}
		time.Sleep(chaosPoll) // poll interval
	}
}

func (n *nemesis) get(ctx context.Context, url string) (int, []byte, error) {
	a := &seckillAdmin{token: n.token, http: n.client}
	return a.doURL(ctx, http.MethodGet, url, nil)
}

// FaultKinds lists every kind, for a summary of what a run covered.
func FaultKinds() []FaultKind {
	var out []FaultKind
	for k := range faultKinds {
		out = append(out, k)
	}
	return slices.Clip(out)
}

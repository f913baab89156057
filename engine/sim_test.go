package engine_test

// A deterministic simulation of one item's sale protocol (TigerBeetle's VOPR
// is the model). It drives the engine's own steps, ShardNode and PoolNode,
// through their Ready as a host must: records queue per participant on one
// of two commit lanes and become durable in random group commits (which may
// fail: answers turn "unavailable", messages are dropped and the
// participant restarts from its durable records); messages between the
// shards and the pool cross a network that delays them and, per seed,
// reorders, duplicates and drops them; virtual time advances and the nodes
// are ticked when they asked to be; the whole item crashes and reloads with
// persistence.LoadItem. Every invariant is checked in memory after every
// step and on disk after every commit and crash.
//
// A failing seed is printed with the command that replays it:
//
//	go test ./engine -run TestSimulation -sim.seed=N -v

import (
	"errors"
	"flag"
	"fmt"
	"math/rand/v2"
	"slices"
	"strings"
	"testing"
	"time"

	"github.com/seckill/seckill/engine"
	"github.com/seckill/seckill/persistence"
)

var (
	simSeed  = flag.Int64("sim.seed", -1, "replay one simulation seed")
	simSeeds = flag.Int("sim.seeds", 2000, "how many seeds TestSimulation runs")
	simSteps = flag.Int("sim.steps", 300, "steps per seed")
)

func TestSimulation(t *testing.T) {
	if *simSeed >= 0 {
		if err := simulate(uint64(*simSeed), *simSteps, t.Logf); err != nil {
			t.Fatalf("seed %d: %v", *simSeed, err)
		}
		return
	}
	seeds := *simSeeds
	if testing.Short() || raceEnabled {
		// The engine is single-threaded: the race detector adds nothing
		// here but a 10x slowdown. `make test` also runs the full count
		// without it.
		seeds = min(seeds, 200)
	}
	start := time.Now()
	stats = simStats{outcomes: map[engine.Outcome]int{}, msgs: map[engine.MsgKind]int{}}
	defer func() { stats = simStats{} }()
	for seed := 0; seed < seeds; seed++ {
		if err := simulate(uint64(seed), *simSteps, nil); err != nil {
			t.Fatalf("seed %d: %v\nreplay: go test ./engine -run TestSimulation -sim.seed=%d -sim.steps=%d -v", seed, err, seed, *simSteps)
		}
	}
	t.Logf("%d seeds x %d steps in %v", seeds, *simSteps, time.Since(start).Round(time.Millisecond))
	t.Logf("exercised: %v", &stats)
}

// stats is filled while TestSimulation runs many seeds (nil maps: not counting).
var stats simStats

// simStats counts what the seeds exercised, so a schedule that stops
// reaching a path shows in the log rather than passing quietly.
type simStats struct {
	outcomes  map[engine.Outcome]int
	msgs      map[engine.MsgKind]int
	lost, dup int
	failed    int // group commits that failed
	crashes   int
	soldOut   int // seeds whose sell-out ended with "sold out"
}

func (st *simStats) String() string {
	var b strings.Builder
	for o := engine.Confirmed; o <= engine.BadStock; o++ {
		fmt.Fprintf(&b, "%v=%d ", o, st.outcomes[o])
	}
	for k := engine.MsgAsk; k <= engine.MsgStatus; k++ {
		fmt.Fprintf(&b, "%v=%d ", k, st.msgs[k])
	}
	fmt.Fprintf(&b, "lost=%d repeated=%d failed_commits=%d crashes=%d sold_out_at_end=%d", st.lost, st.dup, st.failed, st.crashes, st.soldOut)
	return b.String()
}

// Participants are numbered for the host: the pool, then shard i as i.
const (
	simPool  = engine.PoolShard
	simFront = engine.FrontShard
)

// simFaults is what a seed's world does wrong.
type simFaults struct {
	// fifo: each (sender, receiver) pair's messages arrive in order and
	// none is lost or repeated. Only then must the pool's view be exact
	// once everything is delivered, so only then is liveness checked.
	fifo            bool
	dropPct, dupPct int // of deliveries (lossy seeds only)
	commitFailPct   int // of group commits
	crashW          int // weight of a whole-item crash among the steps
	maxAdvanceMs    int // upper bound of one time advance
}

func pickFaults(r *rand.Rand) simFaults {
	f := simFaults{fifo: true, crashW: r.IntN(3), maxAdvanceMs: 1 + r.IntN(30)}
	switch r.IntN(3) {
	case 1: // reordered and repeated
		f.fifo, f.dupPct = false, 1+r.IntN(10)
	case 2: // reordered, repeated and lost
		f.fifo, f.dupPct, f.dropPct = false, r.IntN(10), 1+r.IntN(15)
	}
	if r.IntN(3) != 0 {
		f.commitFailPct = 1 + r.IntN(8)
	}
	return f
}

// envelope is a message on the network, encoded as it would travel.
type envelope struct {
	b        []byte
	from, to int
	// at is the event clock when the step that made the message ran (a
	// Msg leaves later, after a commit, with what its sender knew then).
	at uint64
}

// entry is one Ready of one participant waiting on its lane for a commit.
type entry struct {
	who     int
	at      uint64 // the event clock of the step
	recs    []engine.Record
	msgs    []engine.Msg
	answers []engine.Answer
}

// ticket is a request the host holds until the engine answers it.
type ticket struct {
	kind  byte // 'g' grab, 'r' release, 's' stock change
	in    engine.GrabInput
	shard int
	seq   uint64 // release
	delta int64  // stock change
	at    uint64 // the event clock when it arrived
}

// heard is the newest message of a shard the pool has received.
type heard struct {
	gen, at uint64
	sold    int64
}

type sim struct {
	r      *rand.Rand
	f      simFaults
	cfg    engine.ItemConfig
	store  *persistence.Mem
	pool   *engine.PoolNode
	shards []*engine.ShardNode
	gen    uint64 // the last incarnation handed out (never reused)
	wake   map[int]int64
	lanes  [2][]entry
	net    []envelope
	nowMs  int64
	clock  uint64 // event counter: orders sends, arrivals and deliveries
	log    func(string, ...any)

	tickets    map[engine.Ticket]*ticket
	nextTicket engine.Ticket
	// delivering is the envelope being handed to a participant, so the
	// answers a step gives can be traced to the message that caused them.
	delivering *envelope
	heard      []heard
	front      bool // the fronts' sold-out flag, as MsgStatus set it
	frontSeq   uint64

	// What clients were told, which must survive anything.
	acked    map[string]engine.Grab // grab id -> grab, for every 201
	released map[string]bool        // grab id -> release answered
	stock    int64                  // stock as changes were answered
	users    []string
	// onAnswer, when set, sees every answer (the sell-out's buyers).
	onAnswer func(*ticket, engine.Answer)
}

func laneOf(who int) int {
	if who == simPool {
		return 0
	}
	return who % 2
}

func simulate(seed uint64, steps int, log func(string, ...any)) error {
	r := rand.New(rand.NewPCG(seed, 0xc0ffee))
	cfg := engine.ItemConfig{Item: "sim", Stock: int64(r.IntN(120)), Shards: 1 + r.IntN(8), PerUserLimit: int64(1 + r.IntN(2))}
	if r.IntN(8) == 0 {
		cfg.EndsAtMs = int64(500 + r.IntN(3000)) // some sales end while buyers wait
	}
	// The clock starts at 1: the nodes take 0 for a timer not set.
	s := &sim{r: r, f: pickFaults(r), cfg: cfg, store: persistence.NewMem(), log: log, wake: map[int]int64{}, nowMs: 1,
		tickets: map[engine.Ticket]*ticket{}, acked: map[string]engine.Grab{}, released: map[string]bool{},
		stock: cfg.Stock}
	for i := range 40 {
		s.users = append(s.users, fmt.Sprintf("u%d", i))
	}
	s.logf("config %+v faults %+v", cfg, s.f)
	var b persistence.Batch
	b.PutItem(cfg)
	if err := s.store.Apply(&b); err != nil {
		return err
	}
	if err := s.crash(); err != nil {
		return err
	}
	for step := 0; step < steps; step++ {
		what, err := s.step()
		if err == nil {
			// The durable state changes only on commits and crashes.
			err = s.check(strings.HasPrefix(what, "commit ") || what == "crash")
		}
		s.logf("step %d @%dms: %s", step, s.nowMs, what)
		if err != nil {
			return fmt.Errorf("step %d (%s): %w", step, what, err)
		}
	}
	return s.finish()
}

func (s *sim) logf(format string, args ...any) {
	if s.log != nil {
		s.log(format, args...)
	}
}

func (s *sim) step() (string, error) {
	switch k := s.r.IntN(100 + s.f.crashW); {
	case k < 28:
		return s.grab()
	case k < 34:
		return s.replay()
	case k < 52:
		return s.commit(true)
	case k < 74:
		return s.deliver(s.f.dropPct, s.f.dupPct)
	case k < 86:
		return s.advance(int64(s.r.IntN(s.f.maxAdvanceMs + 1)))
	case k < 93:
		return s.release()
	case k < 97:
		return s.changeStock()
	case k < 100:
		return s.tickAll()
	default:
		stats.crashes++
		return "crash", s.crash()
	}
}

// ---- the host: taking a Ready, commits, the network, time ----

func (s *sim) ready(who int) *engine.Ready {
	if who == simPool {
		return s.pool.Ready()
	}
	return s.shards[who].Ready()
}

func (s *sim) advanceNode(who int) {
	if who == simPool {
		s.pool.Advance()
	} else {
		s.shards[who].Advance()
	}
}

// take does what a participant's Ready asks: its records (with the
// messages and answers that wait for them) queue on its lane, the rest goes
// at once.
func (s *sim) take(who int) error {
	rd := s.ready(who)
	s.wake[who] = rd.WakeAtMs
	s.clock++
	at := s.clock
	if len(rd.Records)+len(rd.Msgs)+len(rd.Answers) > 0 {
		l := laneOf(who)
		s.lanes[l] = append(s.lanes[l], entry{who: who, at: at, recs: slices.Clone(rd.Records),
			msgs: slices.Clone(rd.Msgs), answers: slices.Clone(rd.Answers)})
	}
	now, nowAnswers := slices.Clone(rd.NowMsgs), slices.Clone(rd.NowAnswers)
	s.advanceNode(who)
	for _, m := range now {
		if err := s.send(who, m, at); err != nil {
			return err
		}
	}
	for _, a := range nowAnswers {
		if err := s.answer(a); err != nil {
			return err
		}
	}
	return nil
}

// commit makes a random prefix of a random lane durable as one group
// commit, or fails it.
func (s *sim) commit(faults bool) (string, error) {
	l := s.r.IntN(2)
	if len(s.lanes[l]) == 0 {
		l = 1 - l
	}
	n := 1 + s.r.IntN(len(s.lanes[l])+1)
	if len(s.lanes[l]) == 0 {
		return "commit nothing", nil
	}
	n = min(n, len(s.lanes[l]))
	if faults && s.r.IntN(100) < s.f.commitFailPct {
		stats.failed++
		return fmt.Sprintf("commit of %d entries on lane %d fails", n, l), s.failCommit(l, n)
	}
	return fmt.Sprintf("commit %d entries on lane %d", n, l), s.commitLane(l, n)
}

func (s *sim) commitLane(l, n int) error {
	var b persistence.Batch
	done := slices.Clone(s.lanes[l][:n])
	for _, e := range done {
		for _, r := range e.recs {
			b.PutRecord(r)
		}
	}
	if err := s.store.Apply(&b); err != nil {
		return err
	}
	s.lanes[l] = slices.Delete(s.lanes[l], 0, n)
	for _, e := range done {
		for _, m := range e.msgs {
			if err := s.send(e.who, m, e.at); err != nil {
				return err
			}
		}
		for _, a := range e.answers {
			if err := s.answer(a); err != nil {
				return err
			}
		}
	}
	return nil
}

// failCommit fails the first n entries of lane l: every participant with
// an entry among them loses all it has queued (decided on memory that is
// now lost), answers "unavailable", and restarts from its durable records.
func (s *sim) failCommit(l, n int) error {
	var who []int
	for _, e := range s.lanes[l][:n] {
		if !slices.Contains(who, e.who) {
			who = append(who, e.who)
		}
	}
	kept := s.lanes[l][:0]
	for _, e := range s.lanes[l] {
		if !slices.Contains(who, e.who) {
			kept = append(kept, e)
			continue
		}
		for _, a := range e.answers {
			if err := s.done(a.Ticket); err != nil {
				return err
			}
		}
	}
	s.lanes[l] = kept
	slices.Sort(who)
	for _, w := range who {
		if err := s.restartNode(w); err != nil {
			return err
		}
	}
	return nil
}

func (s *sim) restartNode(who int) error {
	if who == simPool {
		st, err := s.store.Pool(s.cfg.Item)
		if err != nil {
			return err
		}
		if err := s.checkCorruptLedger(st); err != nil {
			return err
		}
		p, err := engine.RestorePool(s.cfg, st)
		if err != nil {
			return fmt.Errorf("restart pool: %w", err)
		}
		s.pool.Restart(p, s.nowMs)
		return s.take(who)
	}
	sh, err := persistence.LoadShard(s.store, s.cfg, who)
	if err != nil {
		return fmt.Errorf("restart shard %d: %w", who, err)
	}
	s.gen++
	s.shards[who].Restart(sh, s.gen)
	return s.take(who)
}

func (s *sim) send(from int, m engine.Msg, at uint64) error {
	if m.From.Item != s.cfg.Item || m.From.Shard != from || m.To.Item != s.cfg.Item || !m.Routed() {
		return fmt.Errorf("participant %d sends a misaddressed %v: %+v", from, m.Kind, m)
	}
	if from == simPool && (m.Kind == engine.MsgNoStock || m.Kind == engine.MsgStatus && m.SoldOut) {
		if err := s.checkSoldOut(m); err != nil {
			return err
		}
	}
	b := engine.AppendMsg(nil, m)
	if got, err := engine.DecodeMsg(b); err != nil || got != m {
		return fmt.Errorf("message %+v does not survive its encoding: %+v %v", m, got, err)
	}
	if stats.msgs != nil {
		stats.msgs[m.Kind]++
	}
	s.net = append(s.net, envelope{b: b, from: from, to: m.To.Shard, at: at})
	return nil
}

// deliver hands one message to its receiver: the oldest of a random
// channel on FIFO seeds, any one otherwise (maybe lost, maybe repeated).
func (s *sim) deliver(dropPct, dupPct int) (string, error) {
	if len(s.net) == 0 {
		return "deliver nothing", nil
	}
	k := s.r.IntN(len(s.net))
	if s.f.fifo {
		k = slices.IndexFunc(s.net, func(e envelope) bool { return e.from == s.net[k].from && e.to == s.net[k].to })
	}
	e := s.net[k]
	m, err := engine.DecodeMsg(e.b)
	if err != nil {
		return "", err
	}
	what := fmt.Sprintf("deliver %v %d->%d", m.Kind, e.from, e.to)
	if s.r.IntN(100) < dropPct {
		s.net = slices.Delete(s.net, k, k+1)
		stats.lost++
		return what + " (lost)", nil
	}
	if s.r.IntN(100) >= dupPct {
		s.net = slices.Delete(s.net, k, k+1)
	} else {
		stats.dup++
		what += " (repeated)"
	}
	s.clock++
	s.delivering = &e
	defer func() { s.delivering = nil }()
	switch e.to {
	case simFront:
		if m.Seq > s.frontSeq {
			s.front, s.frontSeq = m.SoldOut, m.Seq
		}
		return what, nil
	case simPool:
		s.hear(e, m)
		s.pool.Step(m, s.nowMs)
	default:
		s.shards[e.to].Step(m, s.nowMs)
	}
	return what, s.take(e.to)
}

// hear keeps the newest message of each shard the pool received (newest by
// incarnation, then by the step that made it), independently of the pool's
// own bookkeeping. Messages of one step carry the same counters.
func (s *sim) hear(e envelope, m engine.Msg) {
	h := &s.heard[e.from]
	if m.Gen > h.gen || m.Gen == h.gen && e.at >= h.at {
		*h = heard{gen: m.Gen, at: e.at, sold: m.Counters.Sold}
	}
}

// advance moves the clock and ticks every participant whose wake time came.
func (s *sim) advance(ms int64) (string, error) {
	s.nowMs += ms
	for _, who := range s.participants() {
		if at := s.wake[who]; at != 0 && at <= s.nowMs {
			if err := s.tick(who); err != nil {
				return "", err
			}
		}
	}
	return fmt.Sprintf("time +%dms", ms), nil
}

// tickAll ticks every participant whether or not it asked: a host may.
func (s *sim) tickAll() (string, error) {
	for _, who := range s.participants() {
		if err := s.tick(who); err != nil {
			return "", err
		}
	}
	return "tick all", nil
}

func (s *sim) tick(who int) error {
	if who == simPool {
		s.pool.Tick(s.nowMs)
	} else {
		s.shards[who].Tick(s.nowMs)
	}
	return s.take(who)
}

func (s *sim) participants() []int {
	p := []int{simPool}
	for i := range s.shards {
		p = append(p, i)
	}
	return p
}

// crash loses every node's memory, the queued commits, the messages in
// flight and the requests waiting, and reloads the item from disk.
func (s *sim) crash() error {
	s.lanes = [2][]entry{}
	s.net = nil
	clear(s.tickets)
	clear(s.wake)
	if st, err := s.store.Pool(s.cfg.Item); err != nil {
		return err
	} else if err := s.checkCorruptLedger(st); err != nil {
		return err
	}
	li, err := persistence.LoadItem(s.store, s.cfg)
	if err != nil {
		return fmt.Errorf("load: %w", err)
	}
	cs := make([]engine.Counters, len(li.Shards))
	s.shards = s.shards[:0]
	s.heard = make([]heard, len(li.Shards))
	for i, sh := range li.Shards {
		cs[i] = sh.Counters()
		s.gen++
		s.shards = append(s.shards, engine.NewShardNode(sh, s.gen))
		s.heard[i] = heard{sold: cs[i].Sold}
	}
	s.pool = engine.NewPoolNode(li.Pool, cs)
	s.front, s.frontSeq = s.pool.SoldOut(), 0
	if b := engine.Account(li.Pool, cs); b.InTransit != 0 || b.Stock != s.stock {
		return fmt.Errorf("after load: %+v, stock answered %d", b, s.stock)
	}
	// Every 201 survives: its key replays the same grab, or says released.
	for id, g := range s.acked {
		if g.Key == "" {
			continue
		}
		d := li.Shards[g.Shard].Grab(engine.GrabInput{User: g.User, Qty: g.Qty, Key: g.Key, NowMs: s.nowMs})
		want := engine.Replayed
		if s.released[id] {
			want = engine.Released
		}
		if d.Outcome != want && !(want == engine.Replayed && d.Outcome == engine.Released) || d.Grab != g {
			return fmt.Errorf("after restart grab %s replays as %v %+v", id, d.Outcome, d.Grab)
		}
	}
	return nil
}

// checkCorruptLedger: a pool ledger that does not balance, or balances with
// a negative count, is refused on load. No step of the engine makes one (it
// checks every change before applying it), so only a corrupt record can
// test the checks; one corruption per load, in turn.
func (s *sim) checkCorruptLedger(st engine.PoolState) error {
	st.Sent, st.Got = slices.Clone(st.Sent), slices.Clone(st.Got)
	i := int(s.clock) % len(st.Sent)
	switch s.clock % 6 {
	case 0:
		st.Pool++
	case 1:
		st.Sent[i]++
	case 2:
		st.Got[i]++
	case 3:
		st.Stock--
	case 4: // balanced, with a negative pool
		st.Sent[i] += st.Pool + 1
		st.Pool = -1
	case 5: // balanced, with a negative return count
		st.Stock += st.Got[i] + 1
		st.Got[i] = -1
	}
	if _, err := engine.RestorePool(s.cfg, st); err == nil {
		return fmt.Errorf("a corrupt pool ledger was restored: %+v", st)
	}
	return nil
}

// ---- the clients ----

func (s *sim) arrive(tk *ticket) engine.Ticket {
	s.nextTicket++
	s.clock++
	tk.at = s.clock
	s.tickets[s.nextTicket] = tk
	return s.nextTicket
}

func (s *sim) grab() (string, error) {
	user := s.users[s.r.IntN(len(s.users))]
	in := engine.GrabInput{User: user, Qty: 1 + int64(s.r.IntN(int(s.cfg.PerUserLimit))), NowMs: s.nowMs}
	switch s.r.IntN(10) {
	case 0:
		in.Qty = s.cfg.PerUserLimit + 1
	case 1, 2, 3, 4, 5:
		in.Key = fmt.Sprintf("k%d", s.r.IntN(3))
	}
	return s.grabWith(in)
}

// replay repeats an acknowledged grab by its key, as a client that lost the
// answer does.
func (s *sim) replay() (string, error) {
	ids := s.ackedIDs(func(g engine.Grab) bool { return g.Key != "" })
	if len(ids) == 0 {
		return s.grab()
	}
	g := s.acked[ids[s.r.IntN(len(ids))]]
	return s.grabWith(engine.GrabInput{User: g.User, Qty: g.Qty, Key: g.Key, NowMs: s.nowMs})
}

func (s *sim) grabWith(in engine.GrabInput) (string, error) {
	i := engine.ShardFor(s.cfg.Item, in.User, s.cfg.Shards)
	t := s.arrive(&ticket{kind: 'g', in: in, shard: i})
	s.shards[i].Grab(t, in)
	return fmt.Sprintf("grab %s/%s x%d on shard %d (ticket %d)", in.User, in.Key, in.Qty, i, t), s.take(i)
}

func (s *sim) ackedIDs(keep func(engine.Grab) bool) []string {
	var ids []string
	for id, g := range s.acked {
		if keep(g) {
			ids = append(ids, id)
		}
	}
	slices.Sort(ids) // map order is random; the schedule must not be
	return ids
}

// release returns an acknowledged grab, or names any sequence of a shard
// (one not yet answered, or none at all).
func (s *sim) release() (string, error) {
	var i int
	var seq uint64
	if ids := s.ackedIDs(func(engine.Grab) bool { return true }); len(ids) > 0 && s.r.IntN(4) != 0 {
		g := s.acked[ids[s.r.IntN(len(ids))]]
		i, seq = g.Shard, g.Seq
	} else {
		i = s.r.IntN(len(s.shards))
		seq = uint64(s.r.IntN(int(s.shards[i].Shard().Counters().NextSeq) + 1))
	}
	t := s.arrive(&ticket{kind: 'r', shard: i, seq: seq})
	s.shards[i].Release(t, seq)
	return fmt.Sprintf("release %d.%d (ticket %d)", i, seq, t), s.take(i)
}

func (s *sim) changeStock() (string, error) {
	delta := int64(s.r.IntN(21) - 10)
	if s.r.IntN(4) == 0 {
		delta *= 4 // often more than the pool holds: the shards give back
	}
	t := s.arrive(&ticket{kind: 's', delta: delta})
	s.pool.ChangeStock(t, delta, s.nowMs)
	return fmt.Sprintf("stock %+d (ticket %d)", delta, t), s.take(simPool)
}

// done retires a ticket: it must be one waiting, answered once.
func (s *sim) done(t engine.Ticket) error {
	if _, ok := s.tickets[t]; !ok {
		return fmt.Errorf("ticket %d answered but not waiting", t)
	}
	delete(s.tickets, t)
	return nil
}

// answer checks what a client is told against what it asked and what
// others were told before.
func (s *sim) answer(a engine.Answer) error {
	tk := s.tickets[a.Ticket]
	if stats.outcomes != nil {
		stats.outcomes[a.Outcome]++
	}
	if err := s.done(a.Ticket); err != nil {
		return fmt.Errorf("%v: %w", a.Outcome, err)
	}
	if s.onAnswer != nil {
		s.onAnswer(tk, a)
	}
	switch tk.kind {
	case 'g':
		return s.answerGrab(tk, a)
	case 'r':
		return s.answerRelease(tk, a)
	}
	switch a.Outcome {
	case engine.StockChanged:
		s.stock = a.Stock
	case engine.Insufficient:
		if a.Available < 0 || a.Available >= -tk.delta {
			return fmt.Errorf("stock %+d answered insufficient with %d unsold", tk.delta, a.Available)
		}
	case engine.BadStock, engine.Retry:
	default:
		return fmt.Errorf("stock change %+d answered %v", tk.delta, a.Outcome)
	}
	return nil
}

func (s *sim) answerGrab(tk *ticket, a engine.Answer) error {
	in, g := tk.in, a.Grab
	switch a.Outcome {
	case engine.Confirmed:
		if g.User != in.User || g.Qty != in.Qty || g.Key != in.Key || g.Shard != tk.shard {
			return fmt.Errorf("grab %+v confirmed as %+v", in, g)
		}
		if _, dup := s.acked[g.ID()]; dup {
			return fmt.Errorf("grab id %s confirmed twice", g.ID())
		}
		s.acked[g.ID()] = g
		return s.checkLimit(in.User)
	case engine.Replayed, engine.Released:
		if in.Key == "" || g.Key != in.Key || g.User != in.User {
			return fmt.Errorf("grab %+v answered %v with %+v", in, a.Outcome, g)
		}
		if acked, ok := s.acked[g.ID()]; !ok || acked != g {
			return fmt.Errorf("replay of %s gave %+v, acknowledged %+v (%v)", g.ID(), g, acked, ok)
		}
		if a.Outcome == engine.Released && !s.released[g.ID()] {
			return fmt.Errorf("replay of %s says released, no release was answered", g.ID())
		}
	case engine.SoldOut:
		return s.checkSoldOutAnswer(tk)
	case engine.Broken:
		return fmt.Errorf("grab %+v: broken", in)
	}
	return nil
}

func (s *sim) answerRelease(tk *ticket, a engine.Answer) error {
	id := a.Grab.ID()
	switch a.Outcome {
	case engine.Released, engine.AlreadyReleased:
		g, ok := s.acked[id]
		if !ok || a.Grab.Seq != tk.seq || g.User != a.Grab.User || g.Qty != a.Grab.Qty {
			return fmt.Errorf("release %d.%d answered %v for %+v, acknowledged %+v (%v)", tk.shard, tk.seq, a.Outcome, a.Grab, g, ok)
		}
		if a.Outcome == engine.AlreadyReleased && !s.released[id] {
			return fmt.Errorf("release of %s: already released, but no release was answered", id)
		}
		s.released[id] = true
	case engine.UnknownGrab:
		if c := s.shards[tk.shard].Shard().Counters(); tk.seq != 0 && tk.seq < c.NextSeq {
			return fmt.Errorf("release %d.%d: unknown, next seq %d", tk.shard, tk.seq, c.NextSeq)
		}
	default:
		return fmt.Errorf("release %d.%d answered %v", tk.shard, tk.seq, a.Outcome)
	}
	return nil
}

// checkLimit: no user holds more than the limit in acknowledged grabs.
func (s *sim) checkLimit(user string) error {
	var held int64
	for id, g := range s.acked {
		if g.User == user && !s.released[id] {
			held += g.Qty
		}
	}
	if held > s.cfg.PerUserLimit {
		return fmt.Errorf("user %s holds %d, limit %d", user, held, s.cfg.PerUserLimit)
	}
	return nil
}

// ---- sold out, the property the protocol exists for ----

// unheardRemaining is every unit the pool could count as unsold from what
// it has heard: the stock less, per shard, the larger of what the shard has
// sold and what it last told the pool it had sold. (A release or a restart
// that the pool has not heard of yet lowers a shard's sold; any message
// protocol must allow for that news being on its way.)
func (s *sim) unheardRemaining() int64 {
	r := s.pool.Pool().Stock()
	for i, n := range s.shards {
		r -= max(n.Shard().Counters().Sold, s.heard[i].sold)
	}
	return r
}

// trueRemaining counts every unsold unit in memory, wherever it is.
func (s *sim) trueRemaining() int64 {
	return s.balance().Remaining()
}

func (s *sim) checkSoldOut(m engine.Msg) error {
	if r := s.unheardRemaining(); r > 0 {
		return fmt.Errorf("pool sends %v (sold out: %v) with %d units unsold that it has heard of (true remaining %d)",
			m.Kind, m.SoldOut, r, s.trueRemaining())
	}
	return nil
}

// checkSoldOutAnswer: a buyer hears "sold out" only from a MsgNoStock the
// pool sent after the buyer arrived (when, checkSoldOut says, nothing was
// left).
func (s *sim) checkSoldOutAnswer(tk *ticket) error {
	e := s.delivering
	if e == nil || e.to != tk.shard {
		return fmt.Errorf("grab %+v answered sold out outside a pool message", tk.in)
	}
	if m, _ := engine.DecodeMsg(e.b); m.Kind != engine.MsgNoStock || e.at < tk.at {
		return fmt.Errorf("grab %+v (arrived at %d) answered sold out by %v sent at %d", tk.in, tk.at, m.Kind, e.at)
	}
	return nil
}

// ---- invariants ----

// state describes the participants, for a failure's message.
func (s *sim) state() string {
	p := s.pool.Pool()
	out := fmt.Sprintf("pool %d (stock %d, sold out %v)", p.Available(), p.Stock(), s.pool.SoldOut())
	for i, n := range s.shards {
		out += fmt.Sprintf("; shard %d gen %d %+v sent %d got %d, %d waiting", i, n.Gen(), n.Shard().Counters(), p.SentTo(i), p.GotFrom(i), n.Waiting())
	}
	return out
}

func (s *sim) balance() engine.Balance {
	cs := make([]engine.Counters, len(s.shards))
	for i, n := range s.shards {
		cs[i] = n.Shard().Counters()
	}
	return engine.Account(s.pool.Pool(), cs)
}

// check asserts every invariant in memory and, when durable, on disk.
func (s *sim) check(durable bool) error {
	b := s.balance()
	if err := b.Check(); err != nil {
		return fmt.Errorf("memory: %w", err)
	}
	p := s.pool.Pool()
	for i, n := range s.shards {
		c := n.Shard().Counters()
		// A shard never receives more than was sent, nor the pool more
		// than was returned: no unit exists twice.
		if c.Received > p.SentTo(i) || p.GotFrom(i) > c.Returned {
			return fmt.Errorf("shard %d received %d of %d sent, pool got %d of %d returned", i, c.Received, p.SentTo(i), p.GotFrom(i), c.Returned)
		}
		if err := n.Shard().Verify(); err != nil {
			return err
		}
	}
	if err := p.Verify(); err != nil {
		return err
	}
	if !durable {
		return nil
	}
	return s.checkDurable()
}

func (s *sim) checkDurable() error {
	// The durable state, as a restart would see it (on a copy: loading
	// writes the completed transfers).
	li, err := persistence.LoadItem(s.store.Reopen(), s.cfg)
	if err != nil {
		return fmt.Errorf("durable: %w", err)
	}
	cs := make([]engine.Counters, len(li.Shards))
	for i, sh := range li.Shards {
		cs[i] = sh.Counters()
	}
	db := engine.Account(li.Pool, cs)
	if err := db.Check(); err != nil || db.Sold > db.Stock {
		return fmt.Errorf("durable: %+v %v", db, err)
	}
	var acked int64
	for id, g := range s.acked {
		if !s.released[id] {
			acked += g.Qty
		}
		if _, ok := durableGrab(li.Shards[g.Shard], g); !ok {
			return fmt.Errorf("acknowledged grab %s is not durable", id)
		}
	}
	// A client hears of a record as soon as its commit returns, so what is
	// durably sold is exactly what was confirmed and not released.
	if db.Sold != acked {
		return fmt.Errorf("durable sold %d, confirmed and not released %d", db.Sold, acked)
	}
	if db.Stock != s.stock {
		return fmt.Errorf("durable stock %d, answered %d", db.Stock, s.stock)
	}
	return nil
}

// durableGrab: a loaded shard knows grab g (by its release if released).
func durableGrab(sh *engine.Shard, g engine.Grab) (engine.Outcome, bool) {
	if g.Key != "" {
		d := sh.Grab(engine.GrabInput{User: g.User, Qty: g.Qty, Key: g.Key, NowMs: g.AtMs})
		return d.Outcome, (d.Outcome == engine.Replayed || d.Outcome == engine.Released) && d.Grab == g
	}
	return engine.UnknownGrab, g.Seq < sh.Counters().NextSeq
}

// ---- the end of a run ----

// finish settles the run: on FIFO seeds, every message is delivered, every
// commit made and time run past every deadline, and then nobody may be
// left waiting and the pool must know whether anything is left; then the
// remaining units must all be sellable, one buyer at a time. On lossy
// seeds only the durable state is checked after the last commits.
func (s *sim) finish() error {
	// The network heals: what is in flight still arrives in any order,
	// but nothing more is lost or repeated.
	if err := s.settle(true); err != nil {
		return fmt.Errorf("drain: %w", err)
	}
	if err := s.check(true); err != nil {
		return fmt.Errorf("after drain: %w", err)
	}
	if len(s.tickets) > 0 {
		return fmt.Errorf("after drain %d requests still wait", len(s.tickets))
	}
	if r := s.trueRemaining(); s.pool.SoldOut() != (r == 0) || s.front != s.pool.SoldOut() {
		return fmt.Errorf("after drain %d units remain, pool says sold out %v, fronts %v", r, s.pool.SoldOut(), s.front)
	}
	return s.sellOut()
}

// settle runs the world without faults until nothing is pending: every
// message delivered, every commit made, time moved to each wake-up while
// a request waits (quiet: while any participant has a wake-up). A protocol
// that keeps messages or timers going forever fails it.
func (s *sim) settle(quiet bool) error {
	for i := 0; ; i++ {
		if i == 100_000 {
			return errors.New("no quiescence after 100000 steps: a livelock")
		}
		var err error
		var what string
		switch {
		case len(s.lanes[0])+len(s.lanes[1]) > 0:
			// A group commit takes time: units moving to and fro
			// between shards whose buyers cannot use them stop when the
			// buyers' patience does.
			if what, err = s.commit(false); err == nil {
				_, err = s.advance(1)
			}
		case len(s.net) > 0:
			what, err = s.deliver(0, 0)
		case len(s.tickets) > 0 || quiet:
			at := int64(0)
			for _, w := range s.wake {
				if w != 0 && (at == 0 || w < at) {
					at = w
				}
			}
			if at == 0 && len(s.tickets) == 0 {
				return nil
			}
			if at == 0 {
				return fmt.Errorf("%d requests wait and nothing will wake", len(s.tickets))
			}
			what, err = s.advance(max(at-s.nowMs, 0))
		default:
			return nil
		}
		s.logf("settle @%dms: %s", s.nowMs, what)
		if err == nil {
			err = s.check(false)
		}
		if err != nil {
			return err
		}
	}
}

// sellOut sends fresh buyers of 1..limit units, one at a time, until one
// hears "sold out". With messages and commits faster than a buyer's
// patience, each must be served while as many units as it asks for are
// left: a "retry" then means the protocol left units where the buyer could
// not reach them (on a shard that wants units itself, in transit for good).
func (s *sim) sellOut() error {
	left := s.trueRemaining()
	for n := 0; ; n++ {
		before := s.trueRemaining()
		if n > 4*int(left)+20 {
			return fmt.Errorf("%d buyers came and %d units still left", n, before)
		}
		user := fmt.Sprintf("z%d", n)
		qty := 1 + int64(s.r.IntN(int(s.cfg.PerUserLimit)))
		var outcome engine.Outcome
		s.onAnswer = func(tk *ticket, a engine.Answer) {
			if tk.kind == 'g' && tk.in.User == user {
				outcome = a.Outcome
			}
		}
		what, err := s.grabWith(engine.GrabInput{User: user, Qty: qty, NowMs: s.nowMs})
		s.logf("sell-out @%dms: %s", s.nowMs, what)
		if err == nil {
			err = s.settle(false)
		}
		s.onAnswer = nil
		if err != nil {
			return fmt.Errorf("sell-out buyer %d: %w", n, err)
		}
		switch outcome {
		case engine.Confirmed:
		case engine.Retry:
			if before >= qty {
				return fmt.Errorf("sell-out buyer %s of %d answered retry with %d units left: %s", user, qty, before, s.state())
			}
			// Fewer left than it wanted: let its shard's ask expire.
			if err := s.settle(true); err != nil {
				return err
			}
		case engine.Ended:
			if s.cfg.EndsAtMs == 0 || s.nowMs < s.cfg.EndsAtMs {
				return fmt.Errorf("sell-out buyer %d told the sale ended at %dms", n, s.nowMs)
			}
			return nil
		case engine.SoldOut:
			if r := s.trueRemaining(); r != 0 {
				return fmt.Errorf("sell-out buyer %d told sold out with %d units left", n, r)
			}
			if b := s.balance(); b.Sold != b.Stock {
				return fmt.Errorf("sold out with %+v", b)
			}
			stats.soldOut++
			return s.check(true)
		default:
			return fmt.Errorf("sell-out buyer %s answered %v with %d units left: %s", user, outcome, before, s.state())
		}
	}
}

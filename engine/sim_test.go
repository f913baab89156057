package engine_test

// A deterministic simulation of one item (TigerBeetle's VOPR is the model):
// a seeded random schedule of grabs, refills, steals, stock changes,
// releases, group commits, message deliveries, crashes and restarts,
// driven through the engine and the persistence records, with every
// invariant checked after every step. The protocol mirrors actors/: a
// decision's record is queued on its lane's committer; a message to the
// other side of a transfer is sent only after the commit that holds it.
//
// A failing seed is printed with the command that replays it:
//
//	go test ./engine -run TestSimulation -sim.seed=N -v

import (
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
	for seed := 0; seed < seeds; seed++ {
		if err := simulate(uint64(seed), *simSteps, nil); err != nil {
			t.Fatalf("seed %d: %v\nreplay: go test ./engine -run TestSimulation -sim.seed=%d -v", seed, err, seed)
		}
	}
	t.Logf("%d seeds x %d steps in %v", seeds, *simSteps, time.Since(start).Round(time.Millisecond))
}

// simMsg is a message in flight between the pool and a shard.
type simMsg struct {
	toPool bool
	shard  int
	total  int64 // refill: the pool's Sent; return: the shard's Returned
	urgent bool  // a refill request with buyers waiting
	ask    bool  // a refill request (to the pool)
	steal  int64 // a give-back request (to a shard): units wanted
}

// simReq is a decided record waiting on its lane for a group commit.
type simReq struct {
	rec   persistence.Record
	after func() // runs once the record is durable
}

type sim struct {
	r     *rand.Rand
	cfg   engine.ItemConfig
	store *persistence.Mem
	pool  *engine.Pool
	sh    []*engine.Shard
	lanes [2][]simReq // lane 0: pool and even shards; lane 1: odd shards
	msgs  []simMsg
	log   func(string, ...any)

	// What clients were told, which must survive anything.
	acked    map[string]engine.Grab // grab id -> grab, for every 201
	released map[string]bool        // grab id -> release answered
	stock    int64                  // stock as changes were answered
	stealing bool
	users    []string
}

func laneOf(shard int) int { return shard % 2 }

func simulate(seed uint64, steps int, log func(string, ...any)) error {
	r := rand.New(rand.NewPCG(seed, 0xc0ffee))
	cfg := engine.ItemConfig{Item: "sim", Stock: int64(r.IntN(120)), Shards: 1 + r.IntN(8), PerUserLimit: int64(1 + r.IntN(2))}
	s := &sim{r: r, cfg: cfg, store: persistence.NewMem(), acked: map[string]engine.Grab{}, released: map[string]bool{},
		stock: cfg.Stock, log: log}
	for i := range 40 {
		s.users = append(s.users, fmt.Sprintf("u%d", i))
	}
	var b persistence.Batch
	b.PutItem(cfg)
	if err := s.store.Apply(&b); err != nil {
		return err
	}
	if err := s.restart(); err != nil {
		return err
	}
	for step := 0; step < steps; step++ {
		var what string
		var err error
		switch k := r.IntN(100); {
		case k < 40:
			what, err = s.grab()
		case k < 60:
			what, err = s.commit()
		case k < 80:
			what, err = s.deliver()
		case k < 86:
			what, err = s.release()
		case k < 90:
			what, err = s.changeStock()
		case k < 93:
			what, err = "crash", s.restart()
		default:
			what, err = s.topUp()
		}
		if err == nil {
			// The durable state changes only on commits and restarts.
			err = s.check(strings.HasPrefix(what, "commit ") || what == "crash")
		}
		if s.log != nil {
			s.log("step %d: %s", step, what)
		}
		if err != nil {
			return fmt.Errorf("step %d (%s): %w", step, what, err)
		}
	}
	// Drain: deliver and commit everything, then every unit is accounted
	// for with nothing in transit.
	for i := 0; i < 10000 && (len(s.msgs) > 0 || len(s.lanes[0]) > 0 || len(s.lanes[1]) > 0); i++ {
		if _, err := s.commit(); err != nil {
			return err
		}
		if _, err := s.deliver(); err != nil {
			return err
		}
	}
	if err := s.check(true); err != nil {
		return fmt.Errorf("after drain: %w", err)
	}
	if b := s.balance(); b.InTransit != 0 {
		return fmt.Errorf("after drain %d units still in transit", b.InTransit)
	}
	return nil
}

func (s *sim) queue(lane int, rec persistence.Record, after func()) {
	s.lanes[lane] = append(s.lanes[lane], simReq{rec: rec, after: after})
}

func (s *sim) queuePool(after func()) {
	s.queue(0, persistence.Record{Kind: persistence.KindPool, Item: engine.ItemConfig{Item: s.cfg.Item}, Pool: s.pool.State()}, after)
}

func (s *sim) queueCounters(i int, after func()) {
	s.queue(laneOf(i), persistence.Record{Kind: persistence.KindCounters, Item: engine.ItemConfig{Item: s.cfg.Item}, Shard: i, Counters: s.sh[i].Counters()}, after)
}

func (s *sim) grab() (string, error) {
	user := s.users[s.r.IntN(len(s.users))]
	key := fmt.Sprintf("k%d", s.r.IntN(3))
	i := engine.ShardFor(s.cfg.Item, user, s.cfg.Shards)
	d := s.sh[i].Grab(engine.GrabInput{User: user, Qty: 1, Key: key, NowMs: 1})
	switch d.Outcome {
	case engine.Confirmed:
		g := d.Grab
		s.queue(laneOf(i), persistence.Record{Kind: persistence.KindGrab, Grab: g, Counters: d.Counters}, func() { s.acked[g.ID()] = g })
	case engine.NeedStock:
		s.msgs = append(s.msgs, simMsg{toPool: true, ask: true, shard: i, urgent: true, total: s.cfg.RefillChunk()})
	case engine.Replayed, engine.Released:
		if a, ok := s.acked[d.Grab.ID()]; ok && a != d.Grab {
			return "", fmt.Errorf("replay of %s gave %+v, acked %+v", d.Grab.ID(), d.Grab, a)
		}
	}
	return fmt.Sprintf("grab %s/%s on shard %d: %v", user, key, i, d.Outcome), nil
}

func (s *sim) topUp() (string, error) {
	i := s.r.IntN(s.cfg.Shards)
	if want := s.sh[i].RefillWant(); want > 0 {
		s.msgs = append(s.msgs, simMsg{toPool: true, ask: true, shard: i, total: want})
	}
	return fmt.Sprintf("top-up check on shard %d", i), nil
}

// commit makes a random prefix of a random lane durable, as a group
// commit does, then runs what waited for it.
func (s *sim) commit() (string, error) {
	l := s.r.IntN(2)
	n := s.r.IntN(len(s.lanes[l]) + 1)
	if n == 0 {
		return "commit nothing", nil
	}
	var b persistence.Batch
	for _, q := range s.lanes[l][:n] {
		b.Records = append(b.Records, q.rec)
	}
	if err := s.store.Apply(&b); err != nil {
		return "", err
	}
	done := s.lanes[l][:n]
	s.lanes[l] = append([]simReq(nil), s.lanes[l][n:]...)
	for _, q := range done {
		if q.after != nil {
			q.after()
		}
	}
	return fmt.Sprintf("commit %d records on lane %d", n, l), nil
}

// deliver hands one in-flight message, chosen at random, to its receiver.
func (s *sim) deliver() (string, error) {
	if len(s.msgs) == 0 {
		return "deliver nothing", nil
	}
	k := s.r.IntN(len(s.msgs))
	m := s.msgs[k]
	s.msgs = append(s.msgs[:k:k], s.msgs[k+1:]...)
	switch {
	case m.toPool && m.ask:
		n, total := s.pool.Grant(m.shard, m.total)
		if n > 0 {
			s.queuePool(func() { s.msgs = append(s.msgs, simMsg{shard: m.shard, total: total}) })
			return fmt.Sprintf("pool grants %d to shard %d", n, m.shard), nil
		}
		if m.urgent && !s.stealing {
			best, most := -1, int64(0)
			for i, sh := range s.sh {
				if r := sh.Counters().Remaining(); i != m.shard && r > most {
					best, most = i, r
				}
			}
			if best >= 0 {
				s.stealing = true
				s.msgs = append(s.msgs, simMsg{shard: best, steal: (most + 1) / 2})
				return fmt.Sprintf("pool asks shard %d to give back %d", best, (most+1)/2), nil
			}
		}
		return fmt.Sprintf("pool has nothing for shard %d", m.shard), nil
	case m.toPool:
		n := s.pool.Receive(m.shard, m.total)
		s.stealing = false
		if n > 0 {
			s.queuePool(nil)
		}
		return fmt.Sprintf("pool receives %d from shard %d", n, m.shard), nil
	case m.steal > 0:
		k, c := s.sh[m.shard].GiveBack(m.steal)
		i := m.shard
		s.queueCounters(i, func() { s.msgs = append(s.msgs, simMsg{toPool: true, shard: i, total: c.Returned}) })
		return fmt.Sprintf("shard %d gives back %d", i, k), nil
	default:
		n, _, err := s.sh[m.shard].ApplyRefill(m.total)
		if err != nil {
			return "", err
		}
		if n > 0 {
			s.queueCounters(m.shard, nil)
		}
		return fmt.Sprintf("shard %d receives %d", m.shard, n), nil
	}
}

func (s *sim) release() (string, error) {
	if len(s.acked) == 0 {
		return "release nothing", nil
	}
	// Pick an acked grab deterministically (map order is random).
	var ids []string
	for id := range s.acked {
		ids = append(ids, id)
	}
	slices.Sort(ids)
	g := s.acked[ids[s.r.IntN(len(ids))]]
	d := s.sh[g.Shard].Release(g.Seq)
	switch d.Outcome {
	case engine.Released:
		id, i := g.ID(), g.Shard
		s.queue(laneOf(i), persistence.Record{Kind: persistence.KindRelease, Grab: d.Grab, Counters: d.Counters}, func() {
			s.released[id] = true
			s.msgs = append(s.msgs, simMsg{toPool: true, shard: i, total: d.Counters.Returned})
		})
	case engine.AlreadyReleased:
	default:
		return "", fmt.Errorf("release of acked grab %s: %v", g.ID(), d.Outcome)
	}
	return fmt.Sprintf("release %s: %v", g.ID(), d.Outcome), nil
}

func (s *sim) changeStock() (string, error) {
	delta := int64(s.r.IntN(21) - 10)
	if err := s.pool.ChangeStock(delta); err != nil {
		return fmt.Sprintf("stock %+d refused: %v", delta, err), nil
	}
	s.queuePool(func() { s.stock += delta })
	return fmt.Sprintf("stock %+d", delta), nil
}

// restart loses memory, queued records and messages, and loads the item
// from the durable records (completing transfers in flight).
func (s *sim) restart() error {
	s.lanes = [2][]simReq{}
	s.msgs = nil
	s.stealing = false
	li, err := persistence.LoadItem(s.store, s.cfg)
	if err != nil {
		return fmt.Errorf("load: %w", err)
	}
	s.pool, s.sh = li.Pool, li.Shards
	if b := s.balance(); b.InTransit != 0 || b.Stock != s.stock {
		return fmt.Errorf("after load: %+v, stock answered %d", b, s.stock)
	}
	// Every 201 survives: its key replays the same grab, or says released.
	for id, g := range s.acked {
		d := s.sh[g.Shard].Grab(engine.GrabInput{User: g.User, Qty: g.Qty, Key: g.Key, NowMs: 1})
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

func (s *sim) balance() engine.Balance {
	cs := make([]engine.Counters, len(s.sh))
	for i, sh := range s.sh {
		cs[i] = sh.Counters()
	}
	return engine.Account(s.pool, cs)
}

// check asserts every invariant in memory and, when durable, on disk.
func (s *sim) check(durable bool) error {
	b := s.balance()
	if err := b.Check(); err != nil {
		return fmt.Errorf("memory: %w", err)
	}
	if b.Sold > b.Stock {
		return fmt.Errorf("oversold in memory: %+v", b)
	}
	for _, sh := range s.sh {
		if err := sh.Verify(); err != nil {
			return err
		}
	}
	if err := s.pool.Verify(); err != nil {
		return err
	}
	if !durable {
		return nil
	}
	// The durable state, as a restart would see it (on a copy: loading
	// writes the completed transfers).
	li, err := persistence.LoadItem(s.store.Reopen(), s.cfg)
	if err != nil {
		return fmt.Errorf("durable: %w", err)
	}
	cs := make([]engine.Counters, len(li.Shards))
	var acked, releasedAcked int64
	for i, sh := range li.Shards {
		cs[i] = sh.Counters()
	}
	db := engine.Account(li.Pool, cs)
	if err := db.Check(); err != nil || db.Sold > db.Stock {
		return fmt.Errorf("durable: %+v %v", db, err)
	}
	for id, g := range s.acked {
		acked += g.Qty
		if s.released[id] {
			releasedAcked += g.Qty
		}
	}
	// A record's client hears of it as soon as its commit returns, so what
	// is durably sold is exactly what was confirmed and not released.
	if db.Sold != acked-releasedAcked {
		return fmt.Errorf("durable sold %d, confirmed and not released %d", db.Sold, acked-releasedAcked)
	}
	if db.Stock != s.stock {
		return fmt.Errorf("durable stock %d, answered %d", db.Stock, s.stock)
	}
	return nil
}

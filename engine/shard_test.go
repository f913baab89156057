package engine

import (
	"fmt"
	"math/rand/v2"
	"testing"
)

// testItem configures a one-shard item whose shard starts with alloc units
// (the other half of the stock waits in the pool).
func testItem(alloc int64, shards int, limit int64) ItemConfig {
	return ItemConfig{Item: "item-1", Stock: alloc * 100 / InitialQuotaPercent, Shards: shards, PerUserLimit: limit, StartsAtMs: 1000, EndsAtMs: 2000}
}

func TestGrabOutcomes(t *testing.T) {
	type step struct {
		in   GrabInput
		want Outcome
		seq  uint64 // expected grab seq for Confirmed/Replayed
	}
	cases := []struct {
		name  string
		stock int64
		limit int64
		steps []step
	}{
		{"confirm then sold out", 1, 1, []step{
			{GrabInput{User: "a", Qty: 1, NowMs: 1500}, Confirmed, 1},
			{GrabInput{User: "b", Qty: 1, NowMs: 1500}, NeedStock, 0},
		}},
		{"limit per user", 10, 2, []step{
			{GrabInput{User: "a", Qty: 2, NowMs: 1500}, Confirmed, 1},
			{GrabInput{User: "a", Qty: 1, NowMs: 1500}, LimitReached, 0},
			{GrabInput{User: "b", Qty: 1, NowMs: 1500}, Confirmed, 2},
			{GrabInput{User: "b", Qty: 1, NowMs: 1500}, Confirmed, 3},
			{GrabInput{User: "b", Qty: 1, NowMs: 1500}, LimitReached, 0},
		}},
		{"window", 10, 1, []step{
			{GrabInput{User: "a", Qty: 1, NowMs: 999}, NotStarted, 0},
			{GrabInput{User: "a", Qty: 1, NowMs: 1000}, Confirmed, 1},
			{GrabInput{User: "b", Qty: 1, NowMs: 2000}, Ended, 0},
		}},
		{"replay by key, even after the end", 10, 1, []step{
			{GrabInput{User: "a", Qty: 1, Key: "k1", NowMs: 1500}, Confirmed, 1},
			{GrabInput{User: "a", Qty: 1, Key: "k1", NowMs: 1600}, Replayed, 1},
			{GrabInput{User: "a", Qty: 1, Key: "k1", NowMs: 5000}, Replayed, 1},
			{GrabInput{User: "a", Qty: 1, Key: "k2", NowMs: 1600}, LimitReached, 0},
			{GrabInput{User: "b", Qty: 1, Key: "k1", NowMs: 1600}, Confirmed, 2},
		}},
		{"key reused with another qty", 10, 3, []step{
			{GrabInput{User: "a", Qty: 1, Key: "k", NowMs: 1500}, Confirmed, 1},
			{GrabInput{User: "a", Qty: 2, Key: "k", NowMs: 1500}, KeyReused, 0},
		}},
		{"bad qty", 10, 2, []step{
			{GrabInput{User: "a", Qty: 0, NowMs: 1500}, BadQty, 0},
			{GrabInput{User: "a", Qty: -1, NowMs: 1500}, BadQty, 0},
			{GrabInput{User: "a", Qty: 3, NowMs: 1500}, BadQty, 0},
		}},
		{"not enough for qty", 1, 2, []step{
			{GrabInput{User: "a", Qty: 2, NowMs: 1500}, NeedStock, 0},
			{GrabInput{User: "a", Qty: 1, NowMs: 1500}, Confirmed, 1},
		}},
		{"zero stock", 0, 1, []step{
			{GrabInput{User: "a", Qty: 1, NowMs: 1500}, NeedStock, 0},
		}},
	}
	for _, tc := range cases {
		t.Run(tc.name, func(t *testing.T) {
			s := NewShard(testItem(tc.stock, 1, tc.limit), 0)
			for i, st := range tc.steps {
				d := s.Grab(st.in)
				if d.Outcome != st.want {
					t.Fatalf("step %d: outcome %v, want %v", i, d.Outcome, st.want)
				}
				if st.seq != 0 && d.Grab.Seq != st.seq {
					t.Fatalf("step %d: seq %d, want %d", i, d.Grab.Seq, st.seq)
				}
				if d.MustPersist() != (st.want == Confirmed) {
					t.Fatalf("step %d: MustPersist %v", i, d.MustPersist())
				}
				if err := s.Verify(); err != nil {
					t.Fatalf("step %d: %v", i, err)
				}
			}
		})
	}
}

func TestInitialAllocationSpreadsEvenly(t *testing.T) {
	for _, tc := range []struct {
		stock  int64
		shards int
	}{{3000, 8}, {100, 64}, {7, 16}, {0, 3}, {1, 1}, {MaxStock, MaxShards}} {
		c := ItemConfig{Stock: tc.stock, Shards: tc.shards}
		var sum, lo, hi int64 = 0, tc.stock, 0
		for i := 0; i < tc.shards; i++ {
			a := c.InitialAllocation(i)
			sum += a
			lo, hi = min(lo, a), max(hi, a)
		}
		if sum != c.InitialQuota() || sum+c.InitialPool() != tc.stock || hi-lo > 1 || c.InitialQuota() != tc.stock*InitialQuotaPercent/100 {
			t.Errorf("stock %d over %d: quota %d, pool %d, sum %d, spread %d..%d", tc.stock, tc.shards, c.InitialQuota(), c.InitialPool(), sum, lo, hi)
		}
	}
}

func TestGrabIDRoundTrip(t *testing.T) {
	for _, g := range []Grab{
		{Item: "a", Shard: 0, Seq: 1},
		{Item: "x.1.2", Shard: 1023, Seq: 1<<64 - 1},
		{Item: "flash:sale_2026-11.v2", Shard: 7, Seq: 42},
	} {
		item, sh, seq, ok := ParseGrabID(g.ID())
		if !ok || item != g.Item || sh != g.Shard || seq != g.Seq {
			t.Errorf("%s parsed to %q %d %d %v", g.ID(), item, sh, seq, ok)
		}
	}
	for _, bad := range []string{"", "a", "a.1", ".1.1", "a.1.0", "a.x.1", "a.1024.1", "a.-1.1", "a b.1.1", "a.1.1x"} {
		if _, _, _, ok := ParseGrabID(bad); ok {
			t.Errorf("ParseGrabID(%q) accepted", bad)
		}
	}
}

func TestValidate(t *testing.T) {
	ok := ItemConfig{Item: "i", Stock: 10, Shards: 16, PerUserLimit: 1}
	for _, tc := range []struct {
		mut  func(*ItemConfig)
		want error
	}{
		{func(c *ItemConfig) {}, nil},
		{func(c *ItemConfig) { c.Item = "" }, ErrBadItemID},
		{func(c *ItemConfig) { c.Item = "a/b" }, ErrBadItemID},
		{func(c *ItemConfig) { c.Stock = -1 }, ErrBadStock},
		{func(c *ItemConfig) { c.Stock = MaxStock + 1 }, ErrBadStock},
		{func(c *ItemConfig) { c.Shards = 0 }, ErrBadShards},
		{func(c *ItemConfig) { c.Shards = MaxShards + 1 }, ErrBadShards},
		{func(c *ItemConfig) { c.PerUserLimit = 0 }, ErrBadLimit},
		{func(c *ItemConfig) { c.StartsAtMs, c.EndsAtMs = 10, 10 }, ErrBadWindow},
	} {
		c := ok
		tc.mut(&c)
		if err := c.Validate(); err != tc.want {
			t.Errorf("%+v: %v, want %v", c, err, tc.want)
		}
	}
}

func TestShardForIsStableAndSpreads(t *testing.T) {
	// Pinned values: changing the hash would move users away from their grabs.
	for _, tc := range []struct {
		item, user string
		shards     int
		want       int
	}{
		{"item-1", "u1", 16, 10},
		{"item-1", "alice", 16, 8},
		{"item-1", "user-19999", 16, 5},
		{"flash", "u1", 1024, 529},
		{"flash", "alice", 1024, 221},
		{"flash", "user-19999", 1024, 566},
	} {
		if got := ShardFor(tc.item, tc.user, tc.shards); got != tc.want {
			t.Errorf("ShardFor(%q, %q, %d) = %d, pinned %d: the routing hash changed", tc.item, tc.user, tc.shards, got, tc.want)
		}
	}
	if got := fnvRef("item-1\x00u1") % 16; int(got) != ShardFor("item-1", "u1", 16) {
		t.Fatalf("ShardFor is not FNV-1a of item||0||user")
	}
	counts := make([]int, 16)
	for i := 0; i < 160000; i++ {
		counts[ShardFor("item-1", fmt.Sprintf("user-%d", i), 16)]++
	}
	for i, n := range counts {
		if n < 9000 || n > 11000 {
			t.Errorf("shard %d got %d of 160000 users", i, n)
		}
	}
}

// fnvRef is FNV-1a-64 written from its spec, independent of ShardFor.
func fnvRef(s string) uint64 {
	h := uint64(0xcbf29ce484222325)
	for _, c := range []byte(s) {
		h = (h ^ uint64(c)) * 0x100000001b3
	}
	return h
}

func TestRestoreRebuildsState(t *testing.T) {
	cfg := testItem(50, 1, 2)
	s := NewShard(cfg, 0)
	var log []Grab
	for i := 0; i < 40; i++ {
		d := s.Grab(GrabInput{User: fmt.Sprintf("u%d", i%25), Qty: 1, Key: fmt.Sprintf("k%d", i), NowMs: 1500})
		if d.MustPersist() {
			log = append(log, d.Grab)
		}
	}
	r := RestoreShard(cfg, 0, s.Counters())
	for i := len(log) - 1; i >= 0; i-- { // order must not matter
		if err := r.Restore(log[i]); err != nil {
			t.Fatal(err)
		}
	}
	if err := r.Verify(); err != nil {
		t.Fatal(err)
	}
	for i := 0; i < 40; i++ {
		in := GrabInput{User: fmt.Sprintf("u%d", i%25), Qty: 1, Key: fmt.Sprintf("k%d", i), NowMs: 1600}
		a, b := s.Grab(in), r.Grab(in)
		if a != b {
			t.Fatalf("after restore %+v gave %+v, before %+v", in, b, a)
		}
	}
	// A record that does not fit the counters is refused.
	if err := r.Restore(Grab{Item: cfg.Item, Shard: 0, Seq: r.Counters().NextSeq, User: "x", Qty: 1}); err == nil {
		t.Fatal("restore of a grab past NextSeq accepted")
	}
	bad := RestoreShard(cfg, 0, Counters{Allocated: 50, Sold: 3, NextSeq: 4})
	_ = bad.Restore(Grab{Item: cfg.Item, Shard: 0, Seq: 1, User: "x", Qty: 1})
	if err := bad.Verify(); err == nil {
		t.Fatal("Verify accepted sold 3 with 1 unit held")
	}
	if err := RestoreShard(cfg, 0, Counters{Allocated: 51, NextSeq: 1}).Verify(); err == nil {
		t.Fatal("Verify accepted an allocation that does not match initial + received - returned")
	}
}

func TestBrokenInvariantPanicsInTests(t *testing.T) {
	s := RestoreShard(testItem(1, 1, 1), 0, Counters{Allocated: 1, Sold: 0, NextSeq: 1, Received: 5})
	defer func() {
		if recover() == nil {
			t.Fatal("a grab on broken counters did not panic in a test binary")
		}
	}()
	s.Grab(GrabInput{User: "a", Qty: 1, NowMs: 1500})
}

func TestBrokenInvariantRefusedInProduction(t *testing.T) {
	PanicOnBroken = false
	defer func() { PanicOnBroken = true }()
	s := RestoreShard(testItem(1, 1, 1), 0, Counters{Allocated: 1, Sold: 0, NextSeq: 1, Received: 5})
	before := s.Counters()
	if d := s.Grab(GrabInput{User: "a", Qty: 1, NowMs: 1500}); d.Outcome != Broken {
		t.Fatalf("outcome %v, want broken", d.Outcome)
	}
	if s.Counters() != before || s.Bought("a") != 0 {
		t.Fatal("a refused grab changed the shard")
	}
}

// TestPropertyRandomSequences drives a shard with random grabs, releases,
// refills and give-backs against a simple model, restarting from the
// durable log at random points.
func TestPropertyRandomSequences(t *testing.T) {
	seeds := 300
	if testing.Short() {
		seeds = 50
	}
	for seed := 0; seed < seeds; seed++ {
		if err := runPropertySeed(uint64(seed), 400); err != nil {
			t.Fatalf("seed %d: %v (replay: runPropertySeed(%d, 400))", seed, err, seed)
		}
	}
}

func runPropertySeed(seed uint64, steps int) error {
	r := rand.New(rand.NewPCG(seed, 0x5ec))
	cfg := ItemConfig{Item: "p", Stock: int64(r.IntN(60)), Shards: 1, PerUserLimit: int64(1 + r.IntN(3)), StartsAtMs: 100, EndsAtMs: 900}
	s := NewShard(cfg, 0)
	var log []Grab        // durable grab records
	var released []uint64 // durable release records
	held := map[string]int64{}
	byKey := map[[2]string]Grab{}
	isReleased := map[uint64]bool{}
	var sentTotal int64 // the pool's side of refills
	for step := 0; step < steps; step++ {
		switch r.IntN(40) {
		case 0: // crash and restart from the durable records
			n := RestoreShard(cfg, 0, s.Counters())
			for _, i := range r.Perm(len(log)) {
				if err := n.Restore(log[i]); err != nil {
					return err
				}
			}
			for _, seq := range released {
				if err := n.RestoreRelease(seq); err != nil {
					return err
				}
			}
			s = n
		case 1: // a refill, sometimes delivered twice
			sentTotal += int64(r.IntN(5))
			before := s.Counters()
			n, c, err := s.ApplyRefill(sentTotal)
			if err != nil || n != sentTotal-before.Received || c.Allocated != before.Allocated+n {
				return fmt.Errorf("step %d: refill to %d gave %d %+v %v", step, sentTotal, n, c, err)
			}
			if n, _, _ := s.ApplyRefill(sentTotal); n != 0 {
				return fmt.Errorf("step %d: a repeated refill added %d", step, n)
			}
		case 2: // a steal
			before := s.Counters()
			want := int64(r.IntN(4))
			k, c := s.GiveBack(want)
			if k != min(want, before.Remaining()) || c.Returned != before.Returned+k || c.Remaining() != before.Remaining()-k {
				return fmt.Errorf("step %d: give back %d of %d gave %d %+v", step, want, before.Remaining(), k, c)
			}
		case 3: // a release of a random grab, known or not
			if len(log) == 0 {
				continue
			}
			g := log[r.IntN(len(log))]
			before := s.Counters()
			d := s.Release(g.Seq)
			want := Released
			if isReleased[g.Seq] {
				want = AlreadyReleased
			}
			if d.Outcome != want {
				return fmt.Errorf("step %d: release of %d gave %v, want %v", step, g.Seq, d.Outcome, want)
			}
			if want == Released {
				if d.Counters.Sold != before.Sold-g.Qty || d.Counters.Remaining() != before.Remaining() {
					return fmt.Errorf("step %d: release counters %+v from %+v", step, d.Counters, before)
				}
				released = append(released, g.Seq)
				isReleased[g.Seq] = true
				held[g.User] -= g.Qty
			}
			if d := s.Release(s.Counters().NextSeq); d.Outcome != UnknownGrab {
				return fmt.Errorf("step %d: release of a future grab gave %v", step, d.Outcome)
			}
		}
		in := GrabInput{User: fmt.Sprintf("u%d", r.IntN(30)), Qty: int64(r.IntN(int(cfg.PerUserLimit) + 2)), NowMs: int64(r.IntN(1000))}
		if r.IntN(3) > 0 {
			in.Key = fmt.Sprintf("k%d", r.IntN(5))
		}
		before := s.Counters()
		d := s.Grab(in)
		prev, hadKey := byKey[[2]string{in.User, in.Key}]
		switch {
		case in.Key != "" && hadKey:
			want := Replayed
			if isReleased[prev.Seq] {
				want = Released
			}
			if prev.Qty != in.Qty {
				want = KeyReused
			}
			if d.Outcome != want || (want != KeyReused && d.Grab != prev) {
				return fmt.Errorf("step %d: repeated key gave %v %+v, want %v %+v", step, d.Outcome, d.Grab, want, prev)
			}
		case cfg.Window(in.NowMs) != 0:
			if d.Outcome != cfg.Window(in.NowMs) {
				return fmt.Errorf("step %d: outside window gave %v", step, d.Outcome)
			}
		case in.Qty < 1 || in.Qty > cfg.PerUserLimit:
			if d.Outcome != BadQty {
				return fmt.Errorf("step %d: qty %d gave %v", step, in.Qty, d.Outcome)
			}
		case held[in.User]+in.Qty > cfg.PerUserLimit:
			if d.Outcome != LimitReached {
				return fmt.Errorf("step %d: over limit gave %v", step, d.Outcome)
			}
		case before.Remaining() < in.Qty:
			if d.Outcome != NeedStock {
				return fmt.Errorf("step %d: %d left for qty %d gave %v", step, before.Remaining(), in.Qty, d.Outcome)
			}
		default:
			if d.Outcome != Confirmed || d.Grab.Seq != before.NextSeq || d.Counters.Sold != before.Sold+in.Qty {
				return fmt.Errorf("step %d: expected a confirmed grab, got %v %+v", step, d.Outcome, d)
			}
		}
		if d.MustPersist() {
			log = append(log, d.Grab)
			held[in.User] += in.Qty
			if in.Key != "" {
				byKey[[2]string{in.User, in.Key}] = d.Grab
			}
		} else if s.Counters() != before {
			return fmt.Errorf("step %d: outcome %v changed counters", step, d.Outcome)
		}
		if err := s.Verify(); err != nil {
			return fmt.Errorf("step %d: %w", step, err)
		}
		var sold int64
		for _, g := range log {
			if !isReleased[g.Seq] {
				sold += g.Qty
			}
		}
		c := s.Counters()
		if c.Sold != sold || c.Allocated != cfg.InitialAllocation(0)+c.Received-c.Returned || c.Received != sentTotal {
			return fmt.Errorf("step %d: counters %+v, log sold %d, sent %d", step, c, sold, sentTotal)
		}
	}
	return nil
}

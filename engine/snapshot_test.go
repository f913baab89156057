package engine

import (
	"math/rand/v2"
	"reflect"
	"strconv"
	"testing"
)

// snapShard is a shard that has seen every kind of step: keyed and
// unkeyed grabs, releases (one of a keyed grab), a refill and a give-back.
func snapShard(t *testing.T) *Shard {
	t.Helper()
	s := NewShard(testItem(20, 1, 2), 0)
	for _, in := range []GrabInput{
		{User: "a", Qty: 2, Key: "ka", NowMs: 1100},
		{User: "b", Qty: 1, NowMs: 1200},
		{User: "c", Qty: 1, Key: "kc", NowMs: 1300},
		{User: "d", Qty: 2, Key: "kd", NowMs: 1400},
		{User: "b", Qty: 1, Key: "kb", NowMs: 1500},
	} {
		if d := s.Grab(in); d.Outcome != Confirmed {
			t.Fatalf("%+v: %v", in, d.Outcome)
		}
	}
	if d := s.Release(3); d.Outcome != Released { // c's keyed grab
		t.Fatal(d.Outcome)
	}
	if d := s.Release(2); d.Outcome != Released { // b's unkeyed grab
		t.Fatal(d.Outcome)
	}
	if _, _, err := s.ApplyRefill(5); err != nil {
		t.Fatal(err)
	}
	if k, _ := s.GiveBack(3); k != 3 {
		t.Fatal(k)
	}
	if err := s.Verify(); err != nil {
		t.Fatal(err)
	}
	return s
}

func TestSnapshotRestoresTheSameShard(t *testing.T) {
	s := snapShard(t)
	snap := s.Snapshot(7)
	if snap.Epoch != 7 || snap.Item != "item-1" || snap.Shard != 0 || snap.Counters != s.Counters() || len(snap.Grabs) != 5 {
		t.Fatalf("snapshot %+v", snap)
	}
	want := SnapGrab{Seq: 3, User: "c", Qty: 1, Key: "kc", AtMs: 1300, Released: true}
	if snap.Grabs[2] != want {
		t.Fatalf("grab 3 is %+v, want %+v", snap.Grabs[2], want)
	}
	if g := snap.Grabs[1]; g.Key != "" || g.AtMs != 0 || !g.Released {
		t.Fatalf("unkeyed grab 2 is %+v", g)
	}
	r, err := RestoreSnapshot(s.Config(), snap)
	if err != nil {
		t.Fatal(err)
	}
	if err := r.Verify(); err != nil {
		t.Fatal(err)
	}
	if again := r.Snapshot(7); !reflect.DeepEqual(again, snap) {
		t.Fatalf("restored shard snapshots to\n%+v\nnot\n%+v", again, snap)
	}
	// Both shards answer every request the same from here on.
	for _, in := range []GrabInput{
		{User: "a", Qty: 2, Key: "ka", NowMs: 9999}, // replayed, even after the end
		{User: "c", Qty: 1, Key: "kc", NowMs: 1600}, // released
		{User: "a", Qty: 2, Key: "kx", NowMs: 1600}, // key reused? no: a new key, limit reached
		{User: "a", Qty: 1, NowMs: 1600},            // limit reached
		{User: "d", Qty: 1, Key: "kd", NowMs: 1600}, // key reused with another qty
		{User: "b", Qty: 1, NowMs: 1600},            // b's first unit was released: one more fits
		{User: "b", Qty: 1, NowMs: 1600},            // now at the limit
		{User: "c", Qty: 2, Key: "kc2", NowMs: 1600},
		{User: "e", Qty: 2, NowMs: 1600},
	} {
		d1, d2 := s.Grab(in), r.Grab(in)
		if d1 != d2 {
			t.Fatalf("%+v: original %+v, restored %+v", in, d1, d2)
		}
	}
	for seq := uint64(0); seq <= 9; seq++ {
		if d1, d2 := s.Release(seq), r.Release(seq); d1 != d2 {
			t.Fatalf("release %d: original %+v, restored %+v", seq, d1, d2)
		}
	}
	if d := r.Grab(GrabInput{User: "a", Qty: 2, Key: "ka", NowMs: 1}); d.Outcome != Released || d.Grab.AtMs != 1100 || d.Grab.Seq != 1 {
		t.Fatalf("a's key after the release: %+v", d)
	}
}

func TestSnapshotIsACopy(t *testing.T) {
	s := snapShard(t)
	snap := s.Snapshot(1)
	before := s.Snapshot(1)
	s.Grab(GrabInput{User: "z", Qty: 1, Key: "kz", NowMs: 1500})
	s.Release(1)
	if !reflect.DeepEqual(snap, before) {
		t.Fatal("the shard's later steps changed an earlier snapshot")
	}
	snap.Grabs[0].User = "mallory"
	if s.Snapshot(1).Grabs[0].User != "a" {
		t.Fatal("changing a snapshot changed the shard")
	}
}

func TestRestoreSnapshotRefuses(t *testing.T) {
	cfg := snapShard(t).Config()
	cases := []struct {
		name   string
		change func(*ShardSnapshot)
	}{
		{"other item", func(s *ShardSnapshot) { s.Item = "item-2" }},
		{"shard out of range", func(s *ShardSnapshot) { s.Shard = 1 }},
		{"negative shard", func(s *ShardSnapshot) { s.Shard = -1 }},
		{"next seq zero", func(s *ShardSnapshot) { s.Counters.NextSeq = 0 }},
		{"next seq huge", func(s *ShardSnapshot) { s.Counters.NextSeq = 1 << 62 }},
		{"a grab missing", func(s *ShardSnapshot) { s.Grabs = s.Grabs[:4] }},
		{"duplicate seq", func(s *ShardSnapshot) { s.Grabs[4].Seq = 4 }},
		{"seq zero", func(s *ShardSnapshot) { s.Grabs[0].Seq = 0 }},
		{"seq past next", func(s *ShardSnapshot) { s.Grabs[4].Seq = 6 }},
		{"sold off by one", func(s *ShardSnapshot) { s.Counters.Sold++ }},
		{"allocation off", func(s *ShardSnapshot) { s.Counters.Allocated++; s.Counters.Sold++ }},
		{"received off", func(s *ShardSnapshot) { s.Counters.Received++ }},
		{"released grab counted", func(s *ShardSnapshot) { s.Grabs[0].Released = true }},
		{"unreleased grab not counted", func(s *ShardSnapshot) { s.Grabs[2].Released = false }},
		{"bad user", func(s *ShardSnapshot) { s.Grabs[0].User = "a b" }},
		{"empty user", func(s *ShardSnapshot) { s.Grabs[0].User = "" }},
		{"bad key", func(s *ShardSnapshot) { s.Grabs[0].Key = "k\x00" }},
		{"qty zero", func(s *ShardSnapshot) { s.Grabs[1].Qty = 0 }},
		{"qty over the limit", func(s *ShardSnapshot) { s.Grabs[0].Qty = 3; s.Counters.Sold++; s.Counters.Allocated++ }},
		{"user over the limit", func(s *ShardSnapshot) { s.Grabs[3].User = "a" }},
		{"key used twice", func(s *ShardSnapshot) { s.Grabs[4].User = "a"; s.Grabs[4].Key = "ka"; s.Grabs[0].Qty = 1 }},
		{"gap with a key", func(s *ShardSnapshot) { *s = s.SkipTo(9); s.Grabs[6].Key = "k" }},
		{"gap of two units", func(s *ShardSnapshot) { *s = s.SkipTo(9); s.Grabs[6].Qty = 2 }},
		{"gap held", func(s *ShardSnapshot) {
			*s = s.SkipTo(9)
			s.Grabs[6].Released = false
			s.Counters.Sold++
			s.Counters.Allocated++
		}},
	}
	for _, tc := range cases {
		t.Run(tc.name, func(t *testing.T) {
			snap := snapShard(t).Snapshot(1)
			tc.change(&snap)
			sh, err := RestoreSnapshot(cfg, snap)
			if err == nil {
				t.Fatalf("restored %+v from %+v", sh.Counters(), snap)
			}
			t.Log(err)
		})
	}
}

func TestSnapshotNewer(t *testing.T) {
	at := func(epoch, next uint64, received, returned int64) ShardSnapshot {
		return ShardSnapshot{Epoch: epoch, Counters: Counters{NextSeq: next, Received: received, Returned: returned}}
	}
	cases := []struct {
		a, b ShardSnapshot
		want bool
	}{
		{at(2, 1, 0, 0), at(1, 100, 50, 50), true},
		{at(1, 100, 50, 50), at(2, 1, 0, 0), false},
		{at(1, 5, 0, 0), at(1, 4, 0, 0), true},
		{at(1, 4, 1, 0), at(1, 4, 0, 0), true},
		{at(1, 4, 0, 1), at(1, 4, 0, 0), true},
		{at(1, 4, 0, 0), at(1, 4, 0, 0), false},
		{at(1, 3, 0, 0), at(1, 4, 0, 0), false},
	}
	for i, tc := range cases {
		if got := tc.a.Newer(tc.b); got != tc.want {
			t.Errorf("case %d: %+v newer than %+v: %v", i, tc.a, tc.b, got)
		}
	}
}

// TestSnapshotSeqRisesWithEveryChange drives a shard at random and checks
// after each step that Seq rose exactly when the state changed, and that
// the snapshot restores to a shard that snapshots the same.
func TestSnapshotSeqRisesWithEveryChange(t *testing.T) {
	for seed := range uint64(50) {
		rng := rand.New(rand.NewPCG(seed, 9))
		s := NewShard(testItem(10, 1, 3), 0)
		prev := s.Snapshot(1)
		for step := range 200 {
			switch rng.IntN(5) {
			case 0, 1:
				u := strconv.Itoa(rng.IntN(8))
				key := ""
				if rng.IntN(2) == 0 {
					key = "k" + strconv.Itoa(rng.IntN(3))
				}
				s.Grab(GrabInput{User: u, Qty: 1 + rng.Int64N(3), Key: key, NowMs: 1000 + int64(step)})
			case 2:
				s.Release(uint64(rng.IntN(int(s.Counters().NextSeq) + 1)))
			case 3:
				s.ApplyRefill(s.Counters().Received + rng.Int64N(3))
			case 4:
				s.GiveBack(rng.Int64N(3))
			}
			cur := s.Snapshot(1)
			changed := !reflect.DeepEqual(cur, prev)
			if changed != cur.Newer(prev) || prev.Newer(cur) {
				t.Fatalf("seed %d step %d: changed %v, seq %d -> %d", seed, step, changed, prev.Seq(), cur.Seq())
			}
			r, err := RestoreSnapshot(s.Config(), cur)
			if err != nil {
				t.Fatalf("seed %d step %d: %v", seed, step, err)
			}
			if !reflect.DeepEqual(r.Snapshot(1), cur) {
				t.Fatalf("seed %d step %d: restored shard snapshots differently", seed, step)
			}
			prev = cur
		}
	}
}

// A forced incarnation skips the sequences its lost predecessor may have
// used: the restored shard's next grab takes the first sequence after the
// gap, the gap's ids are nobody's (unknown to a release, no holder), and
// nothing else of the shard changes.
func TestSnapshotSkipTo(t *testing.T) {
	s := snapShard(t)
	snap := s.Snapshot(3)
	if got := snap.SkipTo(4); !reflect.DeepEqual(got, snap) {
		t.Fatalf("a skip below NextSeq changed the snapshot: %+v", got)
	}
	skipped := snap.SkipTo(10)
	if len(snap.Grabs) != 5 || snap.Counters.NextSeq != 6 {
		t.Fatalf("SkipTo changed its receiver: %d grabs, next %d", len(snap.Grabs), snap.Counters.NextSeq)
	}
	want := s.Counters()
	want.NextSeq = 10
	if skipped.Counters != want || len(skipped.Grabs) != 9 {
		t.Fatalf("skipped: %+v, %d grabs", skipped.Counters, len(skipped.Grabs))
	}
	r, err := RestoreSnapshot(s.Config(), skipped)
	if err != nil {
		t.Fatal(err)
	}
	r.Holders(func(u string) {
		if u == GapUser {
			t.Fatal("a gap is listed as a holder")
		}
	})
	for seq := uint64(6); seq < 10; seq++ {
		if d := r.Release(seq); d.Outcome != UnknownGrab {
			t.Fatalf("release of gap %d: %v", seq, d.Outcome)
		}
	}
	d := r.Grab(GrabInput{User: "e", Qty: 1, Key: "ke", NowMs: 1600})
	if d.Outcome != Confirmed || d.Grab.Seq != 10 {
		t.Fatalf("first grab after the gap: %v seq %d", d.Outcome, d.Grab.Seq)
	}
	if err := r.Verify(); err != nil {
		t.Fatal(err)
	}
	again, err := RestoreSnapshot(s.Config(), r.Snapshot(3))
	if err != nil {
		t.Fatalf("the skipped shard's own snapshot: %v", err)
	}
	if again.Counters() != r.Counters() {
		t.Fatalf("restored %+v, was %+v", again.Counters(), r.Counters())
	}
}

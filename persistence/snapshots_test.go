package persistence

import (
	"context"
	"errors"
	"math/rand/v2"
	"reflect"
	"sync"
	"syscall"
	"testing"
	"time"

	"github.com/seckill/seckill/engine"
)

var snapCfg = engine.ItemConfig{Item: "it:em-1", Stock: 40, Shards: 4, PerUserLimit: 2, StartsAtMs: 1000, EndsAtMs: 2000}

// snapHistory drives shard 1 of snapCfg through keyed and unkeyed grabs,
// releases, a refill and a give-back, and returns the shard and its
// snapshot (at epoch 0) after every step: Seq rises along the slice.
func snapHistory(t testing.TB) (*engine.Shard, []engine.ShardSnapshot) {
	t.Helper()
	s := engine.NewShard(snapCfg, 1)
	hist := []engine.ShardSnapshot{s.Snapshot(0)}
	grab := func(user, key string, qty int64) {
		if d := s.Grab(engine.GrabInput{User: user, Qty: qty, Key: key, NowMs: 1500}); d.Outcome != engine.Confirmed {
			t.Fatalf("grab %s %s: %v", user, key, d.Outcome)
		}
		hist = append(hist, s.Snapshot(0))
	}
	grab("alice", "k-1", 2)
	grab("bob", "", 1)
	grab("carol", "k-1", 1)
	if d := s.Release(3); d.Outcome != engine.Released {
		t.Fatal(d.Outcome)
	}
	hist = append(hist, s.Snapshot(0))
	grab("dave", "k-2", 1)
	if _, _, err := s.ApplyRefill(4); err != nil {
		t.Fatal(err)
	}
	hist = append(hist, s.Snapshot(0))
	if k, _ := s.GiveBack(2); k != 2 {
		t.Fatal(k)
	}
	hist = append(hist, s.Snapshot(0))
	grab("bob", "k-9", 1)
	if d := s.Release(2); d.Outcome != engine.Released {
		t.Fatal(d.Outcome)
	}
	hist = append(hist, s.Snapshot(0))
	return s, hist
}

func at(s engine.ShardSnapshot, epoch uint64) engine.ShardSnapshot {
	s.Epoch = epoch
	return s
}

type snapFactory struct {
	name string
	open func(t testing.TB) SnapshotStore
}

var snapFactories = []snapFactory{
	{"mem", func(t testing.TB) SnapshotStore { return NewMemSnapshots() }},
	{"redis", func(t testing.TB) SnapshotStore {
		return NewRedisSnapshots(startRedis(t, t.TempDir()).client(t))
	}},
}

func TestSnapshotKey(t *testing.T) {
	// ':' may be in item ids; '/' may not, so these never meet.
	if a, b := SnapshotKey("a:1", 2), SnapshotKey("a", 12); a == b || a != "seckill:snap:a:1/2" {
		t.Fatalf("keys %q %q", a, b)
	}
}

func TestSnapshotStoreRoundTrip(t *testing.T) {
	ctx := context.Background()
	for _, f := range snapFactories {
		t.Run(f.name, func(t *testing.T) {
			st := f.open(t)
			_, hist := snapHistory(t)
			if _, ok, err := st.LoadSnapshot(ctx, snapCfg.Item, 1); ok || err != nil {
				t.Fatalf("empty store: ok %v err %v", ok, err)
			}
			if _, ok, err := st.SnapshotMeta(ctx, snapCfg.Item, 1); ok || err != nil {
				t.Fatalf("empty store meta: ok %v err %v", ok, err)
			}
			before := time.Now().UnixMilli()
			want := at(hist[len(hist)-1], 3)
			if err := st.SaveSnapshot(ctx, want); err != nil {
				t.Fatal(err)
			}
			// Shards of other items whose ids share a prefix stay apart.
			other := at(hist[1], 1)
			other.Item = "it:em-1:2"
			if err := st.SaveSnapshot(ctx, other); err != nil {
				t.Fatal(err)
			}
			got, ok, err := st.LoadSnapshot(ctx, snapCfg.Item, 1)
			if err != nil || !ok || !reflect.DeepEqual(got, want) {
				t.Fatalf("loaded %+v %v %v\nwant %+v", got, ok, err, want)
			}
			if got, _, _ := st.LoadSnapshot(ctx, "it:em-1:2", 1); !reflect.DeepEqual(got, other) {
				t.Fatalf("other item loaded %+v", got)
			}
			if _, ok, _ := st.LoadSnapshot(ctx, snapCfg.Item, 2); ok {
				t.Fatal("shard 2 has a snapshot")
			}
			m, ok, err := st.SnapshotMeta(ctx, snapCfg.Item, 1)
			if err != nil || !ok || m.Epoch != 3 || m.Seq != want.Seq() || m.Bytes != int64(len(AppendShardSnapshot(nil, want))) ||
				m.SavedAtMs < before-60_000 || m.SavedAtMs > time.Now().UnixMilli()+60_000 {
				t.Fatalf("meta %+v %v %v (want seq %d, saved near %d)", m, ok, err, want.Seq(), before)
			}
		})
	}
}

func TestSnapshotStoreOrdering(t *testing.T) {
	ctx := context.Background()
	_, hist := snapHistory(t)
	s0, s1, s2 := hist[0], hist[1], hist[2]
	// s1x has s1's (epoch, seq) and other contents: another user's grab.
	other := engine.NewShard(snapCfg, 1)
	other.Grab(engine.GrabInput{User: "mallory", Qty: 2, Key: "k-1", NowMs: 1500})
	s1x := other.Snapshot(0)
	if s1x.Seq() != s1.Seq() {
		t.Fatal("s1x must tie with s1")
	}
	const big = 1<<53 + 1 // a double cannot tell it from 1<<53
	cases := []struct {
		name     string
		stored   []engine.ShardSnapshot // saved first, in order
		incoming engine.ShardSnapshot
		want     error
		after    engine.ShardSnapshot // what is stored afterwards
	}{
		{"none stored", nil, at(s1, 1), nil, at(s1, 1)},
		{"older epoch", []engine.ShardSnapshot{at(s1, 2)}, at(s2, 1), ErrStaleSnapshot, at(s1, 2)},
		{"same epoch, older seq", []engine.ShardSnapshot{at(s2, 1)}, at(s1, 1), ErrStaleSnapshot, at(s2, 1)},
		{"equal, same contents", []engine.ShardSnapshot{at(s1, 1)}, at(s1, 1), nil, at(s1, 1)},
		{"equal, other contents", []engine.ShardSnapshot{at(s1, 1)}, at(s1x, 1), ErrSnapshotConflict, at(s1, 1)},
		{"newer seq", []engine.ShardSnapshot{at(s1, 1)}, at(s2, 1), nil, at(s2, 1)},
		{"newer epoch, lower seq", []engine.ShardSnapshot{at(s2, 1)}, at(s0, 2), nil, at(s0, 2)},
		{"epoch 10 after 9", []engine.ShardSnapshot{at(s2, 9)}, at(s0, 10), nil, at(s0, 10)},
		{"epoch 9 after 10", []engine.ShardSnapshot{at(s0, 10)}, at(s2, 9), ErrStaleSnapshot, at(s0, 10)},
		{"epochs past 2^53", []engine.ShardSnapshot{at(s0, big)}, at(s2, big-1), ErrStaleSnapshot, at(s0, big)},
		{"epochs past 2^53, newer", []engine.ShardSnapshot{at(s2, big-1)}, at(s0, big), nil, at(s0, big)},
		{"largest epoch", []engine.ShardSnapshot{at(s2, 1<<64-2)}, at(s0, 1<<64-1), nil, at(s0, 1<<64-1)},
	}
	for _, f := range snapFactories {
		t.Run(f.name, func(t *testing.T) {
			st := f.open(t) // one store: each case uses its own shard
			for i, tc := range cases {
				shard := i % snapCfg.Shards
				item := snapCfg.Item + "-" + tc.name[:1] + string(rune('a'+i))
				put := func(s engine.ShardSnapshot) engine.ShardSnapshot {
					s.Item, s.Shard = item, shard
					return s
				}
				for _, s := range tc.stored {
					if err := st.SaveSnapshot(ctx, put(s)); err != nil {
						t.Fatalf("%s: setup: %v", tc.name, err)
					}
				}
				var m0 SnapshotMeta
				if len(tc.stored) > 0 {
					m0, _, _ = st.SnapshotMeta(ctx, item, shard)
					time.Sleep(2 * time.Millisecond) // a rewrite would show in SavedAtMs
				}
				err := st.SaveSnapshot(ctx, put(tc.incoming))
				if !errors.Is(err, tc.want) || (tc.want == nil) != (err == nil) {
					t.Fatalf("%s: got %v, want %v", tc.name, err, tc.want)
				}
				got, ok, err := st.LoadSnapshot(ctx, item, shard)
				if err != nil || !ok || !reflect.DeepEqual(got, put(tc.after)) {
					t.Fatalf("%s: stored %+v %v %v, want %+v", tc.name, got, ok, err, put(tc.after))
				}
				if m, _, _ := st.SnapshotMeta(ctx, item, shard); tc.want != nil || tc.name == "equal, same contents" {
					if m != m0 {
						t.Fatalf("%s: a refused or repeated save changed the meta: %+v -> %+v", tc.name, m0, m)
					}
				}
			}
		})
	}
}

// TestSnapshotStoreConcurrentWriters: writers race with snapshots of one
// shard at random (epoch, seq); whatever the interleaving, the maximum
// ends up stored, and a reader never sees the stored (epoch, seq) fall.
func TestSnapshotStoreConcurrentWriters(t *testing.T) {
	ctx := context.Background()
	_, hist := snapHistory(t)
	const writers, saves, epochs = 6, 40, 4
	for _, f := range snapFactories {
		t.Run(f.name, func(t *testing.T) {
			st := f.open(t)
			var (
				wg   sync.WaitGroup
				mu   sync.Mutex
				best engine.ShardSnapshot
				have bool
			)
			for w := range writers {
				wg.Go(func() {
					rng := rand.New(rand.NewPCG(uint64(w), 77))
					for range saves {
						s := at(hist[rng.IntN(len(hist))], 1+rng.Uint64N(epochs))
						err := st.SaveSnapshot(ctx, s)
						if err != nil && !errors.Is(err, ErrStaleSnapshot) {
							t.Errorf("save (%d, %d): %v", s.Epoch, s.Seq(), err)
							return
						}
						mu.Lock()
						if !have || s.Newer(best) {
							best, have = s, true
						}
						mu.Unlock()
					}
				})
			}
			stop := make(chan struct{})
			var rd sync.WaitGroup
			rd.Go(func() {
				var last SnapshotMeta
				for {
					select {
					case <-stop:
						return
					default:
					}
					m, ok, err := st.SnapshotMeta(ctx, snapCfg.Item, 1)
					if err != nil {
						t.Error(err)
						return
					}
					if ok && (m.Epoch < last.Epoch || (m.Epoch == last.Epoch && m.Seq < last.Seq)) {
						t.Errorf("stored snapshot fell from (%d, %d) to (%d, %d)", last.Epoch, last.Seq, m.Epoch, m.Seq)
						return
					}
					last = m
				}
			})
			wg.Wait()
			close(stop)
			rd.Wait()
			got, ok, err := st.LoadSnapshot(ctx, snapCfg.Item, 1)
			if err != nil || !ok || !reflect.DeepEqual(got, best) {
				t.Fatalf("stored (%d, %d) %v %v, the newest saved was (%d, %d)", got.Epoch, got.Seq(), ok, err, best.Epoch, best.Seq())
			}
		})
	}
}

// TestSnapshotStoreMovesAShard: a shard saved and loaded again answers as
// the original: the same replays, limits and releases, and Verify passes.
func TestSnapshotStoreMovesAShard(t *testing.T) {
	ctx := context.Background()
	for _, f := range snapFactories {
		t.Run(f.name, func(t *testing.T) {
			st := f.open(t)
			orig, _ := snapHistory(t)
			if err := st.SaveSnapshot(ctx, orig.Snapshot(5)); err != nil {
				t.Fatal(err)
			}
			snap, ok, err := st.LoadSnapshot(ctx, snapCfg.Item, 1)
			if err != nil || !ok {
				t.Fatal(ok, err)
			}
			moved, err := engine.RestoreSnapshot(snapCfg, snap)
			if err != nil {
				t.Fatal(err)
			}
			if err := moved.Verify(); err != nil {
				t.Fatal(err)
			}
			if moved.Counters() != orig.Counters() {
				t.Fatalf("counters %+v, want %+v", moved.Counters(), orig.Counters())
			}
			for _, tc := range []struct {
				in   engine.GrabInput
				want engine.Outcome
			}{
				{engine.GrabInput{User: "alice", Qty: 2, Key: "k-1", NowMs: 1900}, engine.Replayed},
				{engine.GrabInput{User: "alice", Qty: 1, Key: "k-1", NowMs: 1900}, engine.KeyReused},
				{engine.GrabInput{User: "alice", Qty: 1, NowMs: 1900}, engine.LimitReached},
				{engine.GrabInput{User: "carol", Qty: 1, Key: "k-1", NowMs: 1900}, engine.Released},
				{engine.GrabInput{User: "dave", Qty: 1, Key: "k-2", NowMs: 1900}, engine.Replayed},
				{engine.GrabInput{User: "bob", Qty: 1, Key: "k-9", NowMs: 1900}, engine.Replayed},
				{engine.GrabInput{User: "bob", Qty: 1, NowMs: 1900}, engine.Confirmed}, // his unkeyed grab was released
				{engine.GrabInput{User: "bob", Qty: 1, NowMs: 1900}, engine.LimitReached},
				{engine.GrabInput{User: "erin", Qty: 1, Key: "k-1", NowMs: 1900}, engine.NeedStock}, // the last unit went to bob
			} {
				d1, d2 := orig.Grab(tc.in), moved.Grab(tc.in)
				if d2.Outcome != tc.want || d1 != d2 {
					t.Fatalf("%+v: moved %+v, original %+v, want %v", tc.in, d2, d1, tc.want)
				}
			}
			for seq := range uint64(10) {
				if d1, d2 := orig.Release(seq), moved.Release(seq); d1 != d2 {
					t.Fatalf("release %d: moved %+v, original %+v", seq, d2, d1)
				}
			}
			if err := moved.Verify(); err != nil {
				t.Fatal(err)
			}
		})
	}
}

// TestRedisSnapshotsSurviveRestart: redis-server is killed and started
// again on the same directory; the snapshot is still there, the script
// (gone from Redis's cache) still guards, and saves go on.
func TestRedisSnapshotsSurviveRestart(t *testing.T) {
	ctx := context.Background()
	dir := t.TempDir()
	_, hist := snapHistory(t)
	srv := startRedis(t, dir)
	st := NewRedisSnapshots(srv.client(t))
	want := at(hist[4], 2)
	if err := st.SaveSnapshot(ctx, want); err != nil {
		t.Fatal(err)
	}
	m0, _, _ := st.SnapshotMeta(ctx, snapCfg.Item, 1)
	srv.stop(syscall.SIGKILL)

	st = NewRedisSnapshots(startRedis(t, dir).client(t))
	got, ok, err := st.LoadSnapshot(ctx, snapCfg.Item, 1)
	if err != nil || !ok || !reflect.DeepEqual(got, want) {
		t.Fatalf("after restart: %+v %v %v", got, ok, err)
	}
	if m, _, _ := st.SnapshotMeta(ctx, snapCfg.Item, 1); m != m0 {
		t.Fatalf("meta %+v, before the restart %+v", m, m0)
	}
	if err := st.SaveSnapshot(ctx, at(hist[5], 1)); !errors.Is(err, ErrStaleSnapshot) {
		t.Fatalf("older epoch after restart: %v", err)
	}
	if err := st.SaveSnapshot(ctx, at(hist[5], 2)); err != nil {
		t.Fatal(err)
	}
}

// TestRedisSnapshotsRefuseCorrupt: what Redis holds is checked on load.
func TestRedisSnapshotsRefuseCorrupt(t *testing.T) {
	ctx := context.Background()
	rdb := startRedis(t, t.TempDir()).client(t)
	st := NewRedisSnapshots(rdb)
	_, hist := snapHistory(t)
	if err := st.SaveSnapshot(ctx, at(hist[2], 1)); err != nil {
		t.Fatal(err)
	}
	key := SnapshotKey(snapCfg.Item, 1)
	for _, tc := range []struct {
		name  string
		field string
		value any
	}{
		{"seq disagrees with the data", "seq", "99"},
		{"epoch disagrees with the data", "epoch", "7"},
		{"another shard's data", "data", AppendShardSnapshot(nil, func() engine.ShardSnapshot { s := at(hist[2], 1); s.Shard = 2; return s }())},
		{"garbage", "data", "\x01garbage"},
	} {
		good, _ := rdb.HGetAll(ctx, key).Result()
		if err := rdb.HSet(ctx, key, tc.field, tc.value).Err(); err != nil {
			t.Fatal(err)
		}
		if _, _, err := st.LoadSnapshot(ctx, snapCfg.Item, 1); !errors.Is(err, errCorrupt) {
			t.Fatalf("%s: load answered %v", tc.name, err)
		}
		if err := rdb.HSet(ctx, key, good).Err(); err != nil {
			t.Fatal(err)
		}
	}
	if err := st.SaveSnapshot(ctx, engine.ShardSnapshot{Item: "bad item"}); !errors.Is(err, errCorrupt) {
		t.Fatalf("saving a malformed snapshot: %v", err)
	}
}

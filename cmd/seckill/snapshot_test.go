package main

// Cluster mode writes shard snapshots to a real redis-server: in the
// background while a sale runs, and once more on SIGTERM. Each is of what
// is durable, and restores to a shard that replays every 201.

import (
	"context"
	"fmt"
	"net/http"
	"strings"
	"syscall"
	"testing"
	"time"

	"github.com/redis/go-redis/v9"
	"github.com/seckill/seckill/engine"
	"github.com/seckill/seckill/internal/testproc"
	"github.com/seckill/seckill/persistence"
)

func TestClusterSnapshots(t *testing.T) {
	etcdBin, _ := clusterBins(t)
	started, bin, client := startFaultTest(t)
	etcdURL, _ := startClusterEtcd(t, etcdBin)
	redisURL, redisProc := testproc.RedisProc(t)
	dataA := t.TempDir()
	a := startClusterNode(t, bin, dataA, nodeAIP, etcdURL, "node-a", "--node", "a",
		"--redis", redisURL, "--snapshot-interval", "100ms")
	const item = "snap"
	createItem(t, client, a.URL, item, 1000) // faultShards shards, per-user limit 1

	opts, _ := redis.ParseURL(redisURL)
	rdb := redis.NewClient(opts)
	defer rdb.Close()
	snaps := persistence.NewRedisSnapshots(rdb)
	ctx := context.Background()

	grabs := map[string]string{} // user -> grab id
	for n := range 40 {
		user, key := fmt.Sprintf("buyer-%03d", n), fmt.Sprintf("key-%03d", n)
		ans, err := postGrab(client, a.URL, item, user, key)
		if err != nil || ans.Code != http.StatusCreated {
			t.Fatalf("grab %s: %s %v", user, ans, err)
		}
		grabs[user] = ans.GrabID
	}
	v := adminDo(t, client, http.MethodGet, a.URL+"/admin/v1/items/"+item, faultToken, "", http.StatusOK)

	// In the background: every shard's snapshot comes to hold what the
	// admin view says it sold (the grabs are durable: they were answered).
	held := func() (int64, string) {
		var sold int64
		for i := range v.Shards {
			s, ok, err := snaps.LoadSnapshot(ctx, item, i)
			if err != nil {
				t.Fatalf("load snapshot %d: %v", i, err)
			}
			if ok {
				sold += s.Counters.Sold
			}
		}
		return sold, fmt.Sprintf("snapshots hold %d sold of %d", sold, v.Sold)
	}
	took := waitFor(t, "background snapshots catch up", func() (bool, string) {
		sold, s := held()
		return sold == v.Sold, s
	})
	t.Logf("background snapshots held every grab %v after the last 201", took)
	if code, raw, err := adminGet(client, a.URL+"/admin/v1/cluster/health"); code != http.StatusOK || !strings.Contains(string(raw), `"redis":"ok"`) {
		t.Fatalf("health with redis: %d %s %v", code, raw, err)
	}

	// SIGTERM: the last snapshots are written after every decision is
	// durable. Restarted with an interval that never comes, the node sells
	// more: only the pass on SIGTERM can write those.
	a.stop(t)
	a = startClusterNode(t, bin, dataA, nodeAIP, etcdURL, "node-a2", "--redis", redisURL, "--snapshot-interval", "1h")
	for n := 40; n < 60; n++ {
		user, key := fmt.Sprintf("buyer-%03d", n), fmt.Sprintf("key-%03d", n)
		ans, err := postGrab(client, a.URL, item, user, key)
		if err != nil || ans.Code != http.StatusCreated {
			t.Fatalf("grab %s: %s %v", user, ans, err)
		}
		grabs[user] = ans.GrabID
	}
	a.stop(t)
	if sold, s := held(); sold != int64(len(grabs)) {
		t.Fatalf("after SIGTERM: %s, want %d", s, len(grabs))
	}
	// A shard restored from its snapshot replays every grab it holds.
	cfg := engine.ItemConfig{Item: item, Stock: v.Stock, Shards: len(v.Shards), PerUserLimit: 1}
	restored := map[int]*engine.Shard{}
	for i := range v.Shards {
		s, ok, err := snaps.LoadSnapshot(ctx, item, i)
		if err != nil || !ok {
			t.Fatalf("snapshot %d: %v %v", i, ok, err)
		}
		if restored[i], err = engine.RestoreSnapshot(cfg, s); err != nil {
			t.Fatalf("restore shard %d: %v", i, err)
		}
	}
	for user, id := range grabs {
		i := engine.ShardFor(item, user, len(v.Shards))
		key := "key-" + user[len("buyer-"):]
		d := restored[i].Grab(engine.GrabInput{User: user, Qty: 1, Key: key, NowMs: 1})
		if d.Outcome != engine.Replayed || d.Grab.ID() != id {
			t.Fatalf("%s on the restored shard %d: %v %s, want replayed %s", user, i, d.Outcome, d.Grab.ID(), id)
		}
	}
	// A Redis that stops answering (paused) cannot hold a stopping node:
	// the last pass gives up and the node exits cleanly.
	a = startClusterNode(t, bin, dataA, nodeAIP, etcdURL, "node-a3", "--redis", redisURL, "--snapshot-interval", "1h")
	if ans, err := postGrab(client, a.URL, item, "buyer-late", "key-late"); err != nil || ans.Code != http.StatusCreated {
		t.Fatalf("grab: %s %v", ans, err)
	}
	if err := redisProc.Signal(syscall.SIGSTOP); err != nil {
		t.Fatal(err)
	}
	a.stop(t)
	if !strings.Contains(a.stderr.String(), "snapshots: pass ended") {
		t.Fatalf("node stopped with redis paused, its log says nothing of the snapshots it could not write:\n%s", a.stderr.String())
	}
	t.Logf("%d grabs in %d snapshots; took %v", len(grabs), len(v.Shards), time.Since(started).Round(time.Millisecond))
}

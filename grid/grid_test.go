package grid

import (
	"context"
	"fmt"
	"log/slog"
	"testing"
	"time"

	"github.com/seckill/seckill/actors"
	"github.com/seckill/seckill/engine"
	"github.com/seckill/seckill/fence"
	"github.com/seckill/seckill/internal/testproc"
	"github.com/seckill/seckill/persistence"
	"github.com/seckill/seckill/remote"
	clientv3 "go.etcd.io/etcd/client/v3"
	"go.uber.org/zap"
)

func init() { engine.PanicOnBroken = true }

// oneGrid runs a grid for node n1 over a real etcd, with a second member
// n2 that holds a lease but runs nothing (its shards are elsewhere).
func oneGrid(t *testing.T) (*Grid, *fence.Store) {
	t.Helper()
	if testproc.Bin("etcd", "/usr/bin/etcd") == "" {
		t.Skip("etcd is not installed: run `make deps`")
	}
	url, _ := testproc.Etcd(t)
	cli, err := clientv3.New(clientv3.Config{Endpoints: []string{url}, DialTimeout: 5 * time.Second, Logger: zap.NewNop()})
	if err != nil {
		t.Fatal(err)
	}
	t.Cleanup(func() { cli.Close() })
	fs := fence.New(cli)
	ctx, cancel := context.WithTimeout(context.Background(), 30*time.Second)
	defer cancel()
	var infos []fence.NodeInfo
	for i, id := range []string{"n1", "n2"} {
		info := fence.NodeInfo{ID: id, Addr: fmt.Sprintf("127.0.0.%d:7946", 11+i), HTTP: fmt.Sprintf("http://127.0.0.%d:8080", 11+i)}
		l, err := fence.Join(ctx, cli, info, fence.LeaseTTL)
		if err != nil {
			t.Fatal(err)
		}
		t.Cleanup(l.Close)
		infos = append(infos, info)
	}
	g := New(Config{Self: infos[0], Fence: fs, Logger: slog.New(slog.DiscardHandler)})
	n, err := actors.Start(persistence.NewMem(), actors.Options{Cluster: g.Hooks(), Logger: slog.New(slog.DiscardHandler)})
	if err != nil {
		t.Fatal(err)
	}
	t.Cleanup(func() { n.Close() })
	g.SetNode(n)
	return g, fs
}

// TestRefreshRunsWhatIsPlacedHere: an item of 12 shards over n1 and n2
// (etcd lists placement keys as strings, "10" before "2"): n1 runs exactly
// the shards placed on it and the pool (with shard 0), and routes every
// shard to its placed node.
func TestRefreshRunsWhatIsPlacedHere(t *testing.T) {
	g, fs := oneGrid(t)
	cfg := engine.ItemConfig{Item: "it", Stock: 1200, Shards: 12, PerUserLimit: 1}
	ctx, cancel := context.WithTimeout(context.Background(), 10*time.Second)
	defer cancel()
	if _, err := fs.CreateItem(ctx, cfg, []string{"n1", "n2"}); err != nil {
		t.Fatal(err)
	}
	g.refresh()
	n := g.cfg.Node
	v := g.view.Load()
	for s := range cfg.Shards {
		p, ok := v.owner(cfg.Item, s)
		want := "n1"
		if s%2 == 1 {
			want = "n2"
		}
		if !ok || p.Shard != s || p.Node != want {
			t.Fatalf("shard %d: owner %+v, want %s", s, p, want)
		}
		if got := n.ShardActive(cfg.Item, s); got != (want == "n1") {
			t.Fatalf("shard %d active here: %v, placed on %s", s, got, want)
		}
	}
	if !n.PoolActive(cfg.Item) {
		t.Fatal("the pool does not run with shard 0")
	}
	// A shard on n1 sells here; one on n2 (no transport here) is 503.
	for u := 0; u < 50; u++ {
		user := fmt.Sprint("u", u)
		s := engine.ShardFor(cfg.Item, user, cfg.Shards)
		r := g.Grab(cfg.Item, user, 1, "")
		switch {
		case s%2 == 0 && (r.Err != nil || r.Outcome != engine.Confirmed):
			// A shard here starts with no unit and asks the pool: it may
			// answer retry while the first grant is on its way.
			if r.Err == nil {
				t.Fatalf("%s on local shard %d: %+v", user, s, r)
			}
		case s%2 == 1 && r.Err == nil:
			t.Fatalf("%s on n2's shard %d answered without n2: %+v", user, s, r)
		}
	}
}

// TestHearsOnlyWhoMaySay: a protocol message is taken only from the node
// placed to run its sender, the proven node name first, and only when it
// goes where its kind goes. n1 runs the pool (with shard 0), n2 shard 1.
func TestHearsOnlyWhoMaySay(t *testing.T) {
	g, fs := oneGrid(t)
	cfg := engine.ItemConfig{Item: "p", Stock: 100, Shards: 2, PerUserLimit: 1}
	ctx, cancel := context.WithTimeout(context.Background(), 10*time.Second)
	defer cancel()
	if _, err := fs.CreateItem(ctx, cfg, []string{"n1", "n2"}); err != nil {
		t.Fatal(err)
	}
	g.refresh()
	ask := engine.Msg{Kind: engine.MsgAsk, From: engine.ShardAddr("p", 1), To: engine.PoolAddr("p"), Want: 5, Urgent: true}
	grant := engine.Msg{Kind: engine.MsgGrant, From: engine.PoolAddr("p"), To: engine.ShardAddr("p", 0), Total: 100_000}
	soldOut := engine.Msg{Kind: engine.MsgStatus, From: engine.PoolAddr("p"), To: engine.Addr{Item: "p", Shard: engine.FrontShard}, SoldOut: true, Seq: 1 << 40}
	n1, n2, n3 := "127.0.0.11:7946", "127.0.0.12:7946", "127.0.0.13:7946"
	for i, c := range []struct {
		from  remote.Sender
		m     engine.Msg
		heard bool
	}{
		{remote.Sender{Addr: n2}, ask, true},             // no certificates: n2 by its address, where shard 1 is placed
		{remote.Sender{Node: "n2"}, ask, true},           // proven n2
		{remote.Sender{Node: "n2", Addr: n3}, ask, true}, // the proven name, not the address it claims
		{remote.Sender{Node: "n3", Addr: n2}, ask, false},
		{remote.Sender{Addr: n3}, ask, false}, // nobody's
		{remote.Sender{Addr: n1}, ask, false}, // n1 itself, not shard 1's node
		{remote.Sender{}, ask, false},         // an old envelope without its sender
		{remote.Sender{Node: "n2"}, grant, false},
		{remote.Sender{Node: "n2", Addr: n1}, grant, false}, // n2 claiming n1's address
		{remote.Sender{Addr: n2}, grant, false},
		{remote.Sender{Node: "n2"}, soldOut, false},
		{remote.Sender{Node: "stranger"}, soldOut, false},
		// From shard 1's node, but not what a shard may say.
		{remote.Sender{Node: "n2"}, engine.Msg{Kind: engine.MsgGrant, From: engine.ShardAddr("p", 1), To: engine.ShardAddr("p", 0), Total: 100_000}, false},
		{remote.Sender{Node: "n2"}, engine.Msg{Kind: engine.MsgStatus, From: engine.ShardAddr("p", 1), To: engine.Addr{Item: "p", Shard: engine.FrontShard}, SoldOut: true}, false},
	} {
		before := g.unheard.Load()
		g.Receive(c.from, c.m)
		if heard := g.unheard.Load() == before; heard != c.heard {
			t.Errorf("case %d: %v from %+v: heard %v, want %v", i, c.m.Kind, c.from, heard, c.heard)
		}
	}
	if it, _ := g.cfg.Node.Item("p"); it.SoldOut() {
		t.Fatal("a refused sold-out status reached the front")
	}
	before := g.unheard.Load()
	// A local shard that is not placed here is not heard either.
	g.Send(engine.Msg{Kind: engine.MsgReport, From: engine.ShardAddr("p", 1), To: engine.PoolAddr("p")})
	if g.unheard.Load() != before+1 {
		t.Fatalf("a local message from a shard placed elsewhere was heard")
	}
}

package main

// Cluster membership and the lease fence with real processes: a real
// etcd, two `seckill serve --cluster` nodes on 127.0.0.11 and 127.0.0.12,
// a SIGKILL and a partition made of nftables rules on loopback.

import (
	"encoding/json"
	"fmt"
	"io"
	"net/http"
	"os"
	"os/exec"
	"strconv"
	"strings"
	"testing"
	"time"

	"github.com/seckill/seckill/engine"
	"github.com/seckill/seckill/internal/testproc"
)

const (
	// clusterWait bounds every poll for a cluster change: a lease of 5 s
	// expires in etcd within its TTL plus etcd's expiry sweep; a healed
	// TCP connection resumes after its retransmission backoff (seconds).
	clusterWait = 60 * time.Second
	// clusterPoll is the pause between two reads of a polled state (no
	// notification exists for the states polled here).
	clusterPoll = 100 * time.Millisecond
	// nftTable is this test's own nftables table, deleted at start if a
	// crashed run left it and always deleted at the end.
	nftTable = "seckill_cluster_test"
	nodeAIP  = "127.0.0.11"
	nodeBIP  = "127.0.0.12"
)

// clusterBins returns the etcd and nft binaries, or skips the test.
func clusterBins(t *testing.T) (etcd, nft string) {
	t.Helper()
	skipFaultTest(t)
	find := func(name, fallback string) string {
		p := testproc.Bin(name, fallback)
		if p == "" {
			t.Skipf("%s is not installed: run `make deps` (apt-get install etcd-server nftables)", name)
		}
		return p
	}
	return find("etcd", "/usr/bin/etcd"), find("nft", "/usr/sbin/nft")
}

// startClusterEtcd runs a real etcd on free ports of 127.0.0.1 (killed when
// the test ends) and returns its client URL and port.
func startClusterEtcd(t *testing.T, _ string) (string, int) {
	t.Helper()
	return testproc.Etcd(t)
}

// startClusterNode runs `seckill serve --cluster` with its HTTP front on
// ip (any free port) and its peer address on ip.
func startClusterNode(t *testing.T, bin, dataDir, ip, etcdURL, name string, extra ...string) *seckillProc {
	t.Helper()
	args := append([]string{"--http", ip + ":0", "--nats-listen", "", "--cluster", "--insecure-cluster", "--etcd", etcdURL,
		"--peer", ip + ":" + strconv.Itoa(freePortOn(t, ip))}, extra...)
	return startServe(t, bin, dataDir, name, args...)
}

type clusterMember struct {
	Node        string `json:"node"`
	Peer        string `json:"peer"`
	HTTP        string `json:"http"`
	PeerHTTP    string `json:"peer_http"`
	LeaseLeftMs int64  `json:"lease_left_ms"`
	State       string `json:"state"`
}

// adminGet sends one authorised GET; err only when no answer came back.
func adminGet(c *http.Client, url string) (int, []byte, error) {
	req, err := http.NewRequest(http.MethodGet, url, nil)
	if err != nil {
		return 0, nil, err
	}
	req.Header.Set("Authorization", "Bearer "+faultToken)
	resp, err := c.Do(req)
	if err != nil {
		return 0, nil, err
	}
	defer resp.Body.Close()
	raw, err := io.ReadAll(resp.Body)
	return resp.StatusCode, raw, err
}

// members lists the members node p sees (nil, and the answer, unless 200).
func members(c *http.Client, p *seckillProc) (map[string]clusterMember, string) {
	code, raw, err := adminGet(c, p.URL+"/admin/v1/cluster/members")
	if err != nil || code != http.StatusOK {
		return nil, fmt.Sprintf("%d %s %v", code, raw, err)
	}
	var v struct {
		Members []clusterMember `json:"members"`
	}
	if err := json.Unmarshal(raw, &v); err != nil {
		return nil, fmt.Sprintf("decode %s: %v", raw, err)
	}
	out := map[string]clusterMember{}
	for _, m := range v.Members {
		out[m.Node] = m
	}
	return out, string(raw)
}

// waitFor polls cond until it holds, failing the test after clusterWait
// with what cond last said.
func waitFor(t *testing.T, what string, cond func() (bool, string)) time.Duration {
	t.Helper()
	start := time.Now()
	for {
		ok, last := cond()
		if ok {
			return time.Since(start)
		}
		if time.Since(start) > clusterWait {
			t.Fatalf("%s: not within %v; last: %s", what, clusterWait, last)
		}
		time.Sleep(clusterPoll) // polling a state with no change notification
	}
}

// listed waits until p lists exactly the nodes in want (true: with lease
// left > 0) and not those mapped to false.
func listed(t *testing.T, c *http.Client, p *seckillProc, want map[string]bool) time.Duration {
	t.Helper()
	return waitFor(t, p.name+" members "+fmt.Sprint(want), func() (bool, string) {
		ms, raw := members(c, p)
		if ms == nil {
			return false, raw
		}
		for node, in := range want {
			m, ok := ms[node]
			if ok != in || (in && m.LeaseLeftMs <= 0) {
				return false, raw
			}
		}
		return true, raw
	})
}

// nodeOf returns the name p runs under, as it lists itself.
func nodeOf(t *testing.T, c *http.Client, p *seckillProc) string {
	t.Helper()
	var self string
	waitFor(t, p.name+" lists itself", func() (bool, string) {
		ms, raw := members(c, p)
		for _, m := range ms {
			if m.State == "self" && m.LeaseLeftMs > 0 && m.HTTP == p.URL {
				self = m.Node
				return true, raw
			}
		}
		return false, raw
	})
	return self
}

// shardsOn reads the shards of item etcd places on node.
func shardsOn(t *testing.T, c *http.Client, base, item, node string) map[int]bool {
	t.Helper()
	code, raw, err := adminGet(c, base+"/admin/v1/cluster/placement?item="+item)
	if err != nil || code != http.StatusOK {
		t.Fatalf("placement of %s: %d %s %v", item, code, raw, err)
	}
	var v struct {
		Shards []struct {
			Shard int    `json:"shard"`
			Node  string `json:"node"`
		} `json:"shards"`
	}
	if err := json.Unmarshal(raw, &v); err != nil {
		t.Fatalf("placement %s: %v", raw, err)
	}
	on := map[int]bool{}
	for _, s := range v.Shards {
		if s.Node == node {
			on[s.Shard] = true
		}
	}
	if len(on) == 0 {
		t.Fatalf("no shard of %s on %s: %s", item, node, raw)
	}
	return on
}

// TestClusterMembersAndRestart: two nodes list each other with a lease;
// one SIGKILLed disappears once its lease expired; restarted on its data
// directory without --node it is listed again under the same name.
func TestClusterMembersAndRestart(t *testing.T) {
	etcdBin, _ := clusterBins(t)
	started, bin, client := startFaultTest(t)
	etcdURL, _ := startClusterEtcd(t, etcdBin)
	dirA, dirB := t.TempDir(), t.TempDir()
	a := startClusterNode(t, bin, dirA, nodeAIP, etcdURL, "node-a", "--node", "a")
	b := startClusterNode(t, bin, dirB, nodeBIP, etcdURL, "node-b") // a generated name
	nameB := nodeOf(t, client, b)
	if nodeOf(t, client, a) != "a" || !strings.HasPrefix(nameB, "node-") {
		t.Fatalf("names: a, %q", nameB)
	}
	both := map[string]bool{"a": true, nameB: true}
	listed(t, client, a, both)
	listed(t, client, b, both)
	ms, raw := members(client, a)
	if m := ms[nameB]; m.State != "alive" || m.HTTP != b.URL || !strings.HasPrefix(m.Peer, nodeBIP+":") {
		t.Fatalf("a's view of b: %s", raw)
	}

	b.kill(t)
	gone := listed(t, client, a, map[string]bool{"a": true, nameB: false})
	t.Logf("b SIGKILLed: gone from a's members after %v", gone.Round(time.Millisecond))

	// A different --node on b's data directory is refused.
	refused := exec.Command(bin, "serve", "--data", dirB, "--http", nodeBIP+":0", "--nats-listen", "",
		"--cluster", "--insecure-cluster", "--etcd", etcdURL, "--node", "other")
	refused.Env = append(os.Environ(), "SECKILL_ADMIN_TOKEN="+faultToken)
	if out, err := refused.CombinedOutput(); err == nil || !strings.Contains(string(out), nameB) {
		t.Fatalf("--node other on b's data: %v\n%s", err, out)
	}

	b2 := startClusterNode(t, bin, dirB, nodeBIP, etcdURL, "node-b2")
	if got := nodeOf(t, client, b2); got != nameB {
		t.Fatalf("restarted b runs as %q, want %q", got, nameB)
	}
	back := listed(t, client, a, both)
	listed(t, client, b2, both)
	t.Logf("b restarted: listed again after %v", back.Round(time.Millisecond))

	// A clean stop leaves at once (its lease revoked), no TTL to wait for.
	b2.stop(t)
	if ms, raw := members(client, a); ms == nil || ms[nameB].Node != "" {
		t.Fatalf("after b's SIGTERM a lists: %s", raw)
	}
	a.stop(t)
	t.Logf("took %v", time.Since(started).Round(time.Millisecond))
}

// nft runs one nft command.
func nft(t *testing.T, bin string, args ...string) error {
	t.Helper()
	out, err := exec.Command(bin, args...).CombinedOutput()
	if err != nil {
		return fmt.Errorf("nft %s: %v: %s", strings.Join(args, " "), err, out)
	}
	return nil
}

// partition drops every packet between ip and the etcd port on 127.0.0.1,
// both ways, in this test's own table; heal (also run at cleanup) deletes
// the table.
func partition(t *testing.T, bin, ip string, etcdPort int) (heal func()) {
	t.Helper()
	_ = nft(t, bin, "delete", "table", "inet", nftTable) // a crashed run's leftover
	healed := false
	del := func() {
		if healed {
			return
		}
		healed = true
		if err := nft(t, bin, "delete", "table", "inet", nftTable); err != nil {
			t.Errorf("heal: %v", err)
		}
	}
	t.Cleanup(del)
	port := strconv.Itoa(etcdPort)
	for _, args := range [][]string{
		{"add", "table", "inet", nftTable},
		{"add", "chain", "inet", nftTable, "out", "{ type filter hook output priority 0; policy accept; }"},
		{"add", "rule", "inet", nftTable, "out", "ip", "saddr", ip, "ip", "daddr", "127.0.0.1", "tcp", "dport", port, "drop"},
		{"add", "rule", "inet", nftTable, "out", "ip", "saddr", "127.0.0.1", "ip", "daddr", ip, "tcp", "sport", port, "drop"},
	} {
		if err := nft(t, bin, args...); err != nil {
			del()
			t.Skipf("cannot make nftables rules here (needs CAP_NET_ADMIN): %v", err)
		}
	}
	return del
}

// TestClusterPartitionFence: node a, cut off from etcd by nftables rules,
// stops confirming (503) once its lease validity passed, says so in its
// health, and drops out of the members once etcd expired its lease; healed,
// it re-joins with a new lease and confirms again, and every key that had
// a 201, or a 503 while fenced, replays the same grab.
func TestClusterPartitionFence(t *testing.T) {
	etcdBin, nftBin := clusterBins(t)
	_ = nft(t, nftBin, "delete", "table", "inet", nftTable) // a crashed run's leftover
	started, bin, client := startFaultTest(t)
	etcdURL, etcdPort := startClusterEtcd(t, etcdBin)
	a := startClusterNode(t, bin, t.TempDir(), nodeAIP, etcdURL, "node-a", "--node", "a")
	b := startClusterNode(t, bin, t.TempDir(), nodeBIP, etcdURL, "node-b", "--node", "b")
	listed(t, client, b, map[string]bool{"a": true, "b": true})
	const item = "cut"
	createItem(t, client, a.URL, item, 1000)
	// The sale spreads over both nodes: buyers here are those whose shard
	// is placed on a (a grab a's front passes to b is b's to answer).
	onA := shardsOn(t, client, a.URL, item, "a")

	next := 0
	type try struct{ user, key string }
	grabs := map[try]string{} // every 201: key -> grab id
	var fenced []try          // 503s while cut off
	grab := func() (try, grabAnswer) {
		for !onA[engine.ShardFor(item, fmt.Sprintf("buyer-%04d", next), faultShards)] {
			next++
		}
		tr := try{fmt.Sprintf("buyer-%04d", next), fmt.Sprintf("key-%04d", next)}
		next++
		ans, err := postGrab(client, a.URL, item, tr.user, tr.key)
		if err != nil {
			t.Fatalf("grab %v: %v", tr, err)
		}
		switch ans.Code {
		case http.StatusCreated:
			grabs[tr] = ans.GrabID
		case http.StatusServiceUnavailable:
			fenced = append(fenced, tr)
		default:
			t.Fatalf("grab %v: %s", tr, ans)
		}
		return tr, ans
	}
	for range 5 {
		if _, ans := grab(); ans.Code != http.StatusCreated {
			t.Fatalf("grab before the partition: %s", ans)
		}
	}

	heal := partition(t, nftBin, nodeAIP, etcdPort)
	cut := time.Now()
	took := waitFor(t, "a grab on a answers 503", func() (bool, string) {
		_, ans := grab()
		return ans.Code == http.StatusServiceUnavailable, ans.String()
	})
	t.Logf("cut off: first 503 after %v (%d 201s meanwhile)", took.Round(time.Millisecond), len(grabs)-5)
	waitFor(t, "a's health answers 503", func() (bool, string) {
		code, raw, err := adminGet(client, a.URL+"/admin/v1/cluster/health")
		return code == http.StatusServiceUnavailable && strings.Contains(string(raw), `"lease":"expired"`), fmt.Sprintf("%d %s %v", code, raw, err)
	})
	// etcd expires a's lease: b, which still reaches etcd, stops listing it.
	listed(t, client, b, map[string]bool{"a": false, "b": true})
	t.Logf("a gone from b's members %v after the cut", time.Since(cut).Round(time.Millisecond))
	if _, ans := grab(); ans.Code != http.StatusServiceUnavailable {
		t.Fatalf("grab on a after its lease expired in etcd: %s", ans)
	}

	heal()
	healed := time.Now()
	waitFor(t, "a grab on a answers 201 again", func() (bool, string) {
		_, ans := grab()
		return ans.Code == http.StatusCreated, ans.String()
	})
	t.Logf("healed: 201 again after %v", time.Since(healed).Round(time.Millisecond))
	code, raw, err := adminGet(client, a.URL+"/admin/v1/cluster/health")
	if code != http.StatusOK || !strings.Contains(string(raw), `"etcd":"ok"`) {
		t.Fatalf("a's health after healing: %d %s %v", code, raw, err)
	}
	listed(t, client, b, map[string]bool{"a": true, "b": true})
	listed(t, client, a, map[string]bool{"a": true, "b": true})
	// etcd had expired the lease: a is back on a new one, not on the old.
	if log := a.stderr.String(); !strings.Contains(log, "re-joining") || !strings.Contains(log, "re-joined") {
		t.Fatalf("a's log says nothing of re-joining:\n%s", log)
	}

	// Every 201 replays its grab; every key answered 503 while fenced was
	// decided and durable all the same: it replays a grab of its own.
	ids := map[string]try{}
	for tr, id := range grabs {
		ans, err := postGrab(client, a.URL, item, tr.user, tr.key)
		if err != nil || ans.Code != http.StatusCreated || ans.GrabID != id {
			t.Fatalf("replay of %v: %s %v, want 201 %s", tr, ans, err, id)
		}
		ids[id] = tr
	}
	for _, tr := range fenced {
		ans, err := postGrab(client, a.URL, item, tr.user, tr.key)
		if err != nil || ans.Code != http.StatusCreated {
			t.Fatalf("retry of %v answered 503 while fenced: %s %v", tr, ans, err)
		}
		if other, dup := ids[ans.GrabID]; dup {
			t.Fatalf("retry of %v got %s, the grab of %v", tr, ans.GrabID, other)
		}
		ids[ans.GrabID] = tr
	}
	// Sold counts exactly those grabs: the fenced ones were decided once.
	v := adminDo(t, client, http.MethodGet, a.URL+"/admin/v1/items/"+item, faultToken, "", http.StatusOK)
	if v.Sold != int64(len(ids)) || v.Sold+v.Remaining != v.Stock {
		t.Fatalf("after healing: sold %d remaining %d stock %d, want sold %d", v.Sold, v.Remaining, v.Stock, len(ids))
	}
	t.Logf("%d grabs answered 201, %d answered 503 while fenced and replayed after", len(grabs), len(fenced))
	client.CloseIdleConnections()
	b.stop(t)
	a.stop(t)
	t.Logf("took %v", time.Since(started).Round(time.Millisecond))
}

package main

// Three-node cluster scenarios with real processes (see
// cluster3_harness_test.go): a sale of c3Stock units over c3Shards shards
// to c3Buyers buyers through the three fronts, with a node killed and
// restarted, paused, cut off by nftables rules on loopback, running a
// second activation of another node's shard, or drained, mid-sale. Every
// scenario ends with the same audit: no oversell, no lost 201, every 201
// replays, one order per grab across the nodes' order stores.
//
// "Mid-sale" is counted in units sold, not buyers: with five buyers for
// each unit the stock is gone once about a fifth of the buyers tried, so a
// fault after 30 % of the buyers would only ever meet sold_out answers.

import (
	"encoding/json"
	"fmt"
	"io"
	"net/http"
	"os/exec"
	"regexp"
	"strconv"
	"strings"
	"sync"
	"syscall"
	"testing"
	"time"
)

// c3Logf logs the latencies of a sale.
func c3Logf(t *testing.T, s *c3Sale, owners []string) {
	t.Helper()
	var lastConfirmed time.Duration
	for _, b := range s.buyers {
		if r := b.result(); r != nil && r.code == http.StatusCreated && r.answered > lastConfirmed {
			lastConfirmed = r.answered
		}
	}
	all, _, _ := s.latencies(0, nil)
	conf, local, remote := s.latencies(http.StatusCreated, owners)
	_, anyLocal, anyRemote := s.latencies(0, owners)
	t.Logf("%s through %v: %d buyers in %v: %.0f answers/s (%d requests), %.0f confirmed grabs/s (stock gone after %v); "+
		"latency of every answer p50 %v p99 %v; of 201s p50 %v p99 %v",
		s.item, s.frontNames(), len(s.buyers), s.took.Round(time.Millisecond), float64(s.triesOf())/s.took.Seconds(), s.triesOf(),
		float64(c3Stock)/lastConfirmed.Seconds(), lastConfirmed.Round(time.Millisecond),
		pct(all, .5).Round(10*time.Microsecond), pct(all, .99).Round(10*time.Microsecond),
		pct(conf, .5).Round(10*time.Microsecond), pct(conf, .99).Round(10*time.Microsecond))
	t.Logf("%s remote hop: 201s whose shard runs on the front's node: %d, p50 %v p99 %v; on another node: %d, p50 %v p99 %v; "+
		"every answer: local p50 %v, remote p50 %v",
		s.item, len(local), pct(local, .5).Round(10*time.Microsecond), pct(local, .99).Round(10*time.Microsecond),
		len(remote), pct(remote, .5).Round(10*time.Microsecond), pct(remote, .99).Round(10*time.Microsecond),
		pct(anyLocal, .5).Round(10*time.Microsecond), pct(anyRemote, .5).Round(10*time.Microsecond))
}

// TestCluster3Throughput measures (never asserts) a sale through the three
// fronts against the same sale through one front, and the added latency of
// a grab whose shard runs on another node than the front it reached.
func TestCluster3Throughput(t *testing.T) {
	c := newC3(t, nil)
	c.createItem("tp3")
	c.createItem("tp1")
	owners3, owners1 := c.owners(c.nodes[0], "tp3"), c.owners(c.nodes[0], "tp1")

	s3 := c.newSale("tp3", c3Buyers, 0, 1, 2)
	a := c.audit("tp3")
	s3.run()
	s3.wait()
	a.finish(t)
	s3.check()

	s1 := c.newSale("tp1", c3Buyers, 0)
	s1.run()
	s1.wait()
	s1.check()

	c3Logf(t, s3, owners3)
	c3Logf(t, s1, owners1)
	c.waitSettled("tp3")
	c.waitSettled("tp1")
	s3.waitOrders()
	s1.waitOrders()
	c.stopAll()
	c.checkOrderStores(s3, s1)
	t.Logf("took %v", time.Since(c.started).Round(time.Millisecond))
}

// TestCluster3KillRestart: a node SIGKILLed mid-sale and restarted on its
// data directory re-joins once its old lease expired and serves its shards
// again at the same epoch; the sale ends with exactly the stock sold.
func TestCluster3KillRestart(t *testing.T) {
	const item = "kr"
	c := newC3(t, c3NoJournal)
	c.createItem(item)
	owners := c.owners(c.nodes[0], item)
	victim := c.node("n2")
	s := c.newSale(item, c3Buyers, 0, 1, 2)
	a := c.audit(item)
	s.run()
	s.waitConfirmed(c3Stock * 3 / 10)

	victim.proc.kill(t) // returns once the process is gone
	killed := s.sinceStart()
	t.Logf("%s SIGKILLed after %d of %d units sold; restarted at once on its data directory", victim.name, s.confirmed.Load(), c3Stock)
	c.start(victim)
	restarted := s.sinceStart()
	// Its shards run again at the same epoch.
	waitFor(t, victim.name+" runs its shards again", func() (bool, string) {
		ps, raw := c.placement(c.nodes[0], item)
		if ps == nil {
			return false, raw
		}
		for _, p := range ps {
			if p.Node != owners[p.Shard] || p.Epoch != 1 || p.State != "active" || (p.Node == victim.name && p.Remaining == nil) {
				return false, raw
			}
		}
		return true, raw
	})
	ranAgain := s.sinceStart()
	s.wait()

	// The first 201s after the restart: through its front, and of a shard
	// it runs (through any front).
	front, owned := time.Duration(-1), time.Duration(-1)
	for _, b := range s.buyers {
		for _, tr := range b.tries {
			if tr.code != http.StatusCreated || tr.issued < restarted {
				continue
			}
			if tr.front == victim.idx && (front < 0 || tr.answered < front) {
				front = tr.answered
			}
			if owners[b.shard] == victim.name && (owned < 0 || tr.answered < owned) {
				owned = tr.answered
			}
		}
	}
	t.Logf("%s restarted: from the restart to its serving line %v (it waits for its old lease to expire), to its shards "+
		"active in the placement view %v, to the first 201 through its front %v, to the first 201 of a shard it runs %v (-1: none)",
		victim.name, (restarted - killed).Round(time.Millisecond), (ranAgain - killed).Round(time.Millisecond),
		sub(front, killed), sub(owned, killed))
	c.finishSale(s, a)
}

func sub(a, b time.Duration) time.Duration {
	if a < 0 {
		return -1
	}
	return (a - b).Round(time.Millisecond)
}

func (s *c3Sale) sinceStart() time.Duration { return time.Since(s.start) }

// faultWindow checks the answers to buyers whose shard runs on victim,
// sent through another front and answered while victim was stopped or cut
// off (from its start plus a grace for requests already in flight, to its
// end): each is a 503, none is a 201 or any other answer.
func faultWindow(t *testing.T, s *c3Sale, owners []string, victim *c3Node, from, to time.Duration) {
	t.Helper()
	counts := map[string]int{}
	for _, b := range s.buyers {
		if owners[b.shard] != victim.name {
			continue
		}
		for _, tr := range b.tries {
			if tr.front == victim.idx || tr.issued < from || tr.answered > to {
				continue
			}
			k := strconv.Itoa(tr.code) + " " + tr.status
			if tr.code == 0 {
				k = "no answer"
			}
			counts[k]++
			if tr.code != http.StatusServiceUnavailable {
				t.Errorf("%s (shard %d on %s) via %s during the fault (sent %v after it began, answered in %v): %d %s %s; its tries: %+v",
					b.user, b.shard, victim.name, s.c.nodes[tr.front].name, tr.issued-from, tr.answered-tr.issued,
					tr.code, tr.status, tr.grabID, b.tries)
			}
		}
	}
	if counts["503 unavailable"] == 0 {
		t.Errorf("no buyer of %s's shards was answered through another front during the fault: %v", victim.name, counts)
	}
	t.Logf("answers through the other fronts to buyers of %s's shards during the fault: %v", victim.name, counts)
}

// TestCluster3Stop: a node SIGSTOPped for three leases mid-sale, then
// continued: meanwhile its shards' buyers get 503 through the other
// fronts; nothing is oversold or lost, and the sale settles.
func TestCluster3Stop(t *testing.T) {
	const item = "st"
	c := newC3(t, c3NoJournal)
	c.createItem(item)
	owners := c.owners(c.nodes[0], item)
	victim := c.node("n3")
	s := c.newSale(item, c3Buyers, 0, 1, 2)
	a := c.audit(item)
	s.run()
	s.waitConfirmed(c3Stock * 3 / 10)

	if err := victim.proc.cmd.Process.Signal(syscall.SIGSTOP); err != nil {
		t.Fatal(err)
	}
	t.Cleanup(func() { _ = victim.proc.cmd.Process.Signal(syscall.SIGCONT) })
	stopped := s.sinceStart()
	sold := s.confirmed.Load()
	<-time.After(c3Fault) // the fault's length, not a synchronisation
	contd := s.sinceStart()
	if err := victim.proc.cmd.Process.Signal(syscall.SIGCONT); err != nil {
		t.Fatal(err)
	}
	t.Logf("%s SIGSTOPped for %v (%s to %s UTC) after %d units sold; %d more sold meanwhile", victim.name, c3Fault,
		s.start.Add(stopped).UTC().Format("15:04:05.000"), s.start.Add(contd).UTC().Format("15:04:05.000"), sold, s.confirmed.Load()-sold)
	back := waitFor(t, victim.name+" lists every member again", func() (bool, string) {
		ms, raw := members(c.client, victim.proc)
		return len(ms) == 3 && ms[victim.name].LeaseLeftMs > 0, raw
	})
	t.Logf("%s continued: member with a lease again after %v", victim.name, back.Round(time.Millisecond))
	s.wait()
	// A request in flight when the node stopped may be answered by the
	// client's own timeout: a second of grace on either side.
	faultWindow(t, s, owners, victim, stopped+time.Second, contd)
	c.finishSale(s, a)
}

// TestCluster3Partition: n1, which runs shard 0 and the pool, cut off from
// the other two nodes and from etcd (nftables rules on loopback in the
// test's own table) for three leases mid-sale, then healed. Redis and NATS
// stay reachable from it.
func TestCluster3Partition(t *testing.T) {
	_, nftBin := clusterBins(t)
	const item = "pa"
	_ = nft(t, nftBin, "delete", "table", "inet", c3Table) // a crashed run's leftover
	c := newC3(t, c3NoJournal)
	c.createItem(item)
	owners := c.owners(c.nodes[0], item)
	victim := c.node("n1") // runs shard 0 and with it the pool
	s := c.newSale(item, c3Buyers, 0, 1, 2)
	a := c.audit(item)
	s.run()
	s.waitConfirmed(c3Stock * 3 / 10)

	var others []string
	for _, n := range c.nodes {
		if n != victim {
			others = append(others, n.ip)
		}
	}
	heal := c3Partition(t, nftBin, victim.ip, others, c.etcdPort)
	cut := s.sinceStart()
	sold := s.confirmed.Load()
	<-time.After(c3Fault) // the fault's length, not a synchronisation
	healedAt := s.sinceStart()
	if out, err := exec.Command(nftBin, "list", "table", "inet", c3Table).CombinedOutput(); err == nil {
		t.Logf("the partition's rules when healed:\n%s", out)
	}
	heal()
	t.Logf("%s cut off for %v (%s to %s UTC) after %d units sold; %d more sold meanwhile", victim.name, c3Fault,
		s.start.Add(cut).UTC().Format("15:04:05.000"), s.start.Add(healedAt).UTC().Format("15:04:05.000"), sold, s.confirmed.Load()-sold)
	back := waitFor(t, "n1 lists "+victim.name+" again", func() (bool, string) {
		ms, raw := members(c.client, c.nodes[0].proc)
		return len(ms) == 3 && ms[victim.name].LeaseLeftMs > 0, raw
	})
	t.Logf("healed: %s a member again after %v", victim.name, back.Round(time.Millisecond))
	s.wait()
	faultWindow(t, s, owners, victim, cut+time.Second, healedAt)
	c.finishSale(s, a)
}

// c3Partition drops every packet between ip and the others and between ip
// and etcd's port on 127.0.0.1, both ways, in the table c3Table; heal (also
// run at cleanup) deletes the table.
func c3Partition(t *testing.T, bin, ip string, others []string, etcdPort int) (heal func()) {
	t.Helper()
	healed := false
	del := func() {
		if healed {
			return
		}
		healed = true
		if err := nft(t, bin, "delete", "table", "inet", c3Table); err != nil {
			t.Errorf("heal: %v", err)
		}
	}
	t.Cleanup(del)
	set := "{ " + strings.Join(others, ", ") + " }"
	port := strconv.Itoa(etcdPort)
	for _, args := range [][]string{
		{"add", "table", "inet", c3Table},
		{"add", "chain", "inet", c3Table, "out", "{ type filter hook output priority 0; policy accept; }"},
		{"add", "rule", "inet", c3Table, "out", "ip", "saddr", ip, "ip", "daddr", set, "counter", "drop"},
		{"add", "rule", "inet", c3Table, "out", "ip", "saddr", set, "ip", "daddr", ip, "counter", "drop"},
		{"add", "rule", "inet", c3Table, "out", "ip", "saddr", ip, "ip", "daddr", "127.0.0.1", "tcp", "dport", port, "counter", "drop"},
		{"add", "rule", "inet", c3Table, "out", "ip", "saddr", "127.0.0.1", "ip", "daddr", ip, "tcp", "sport", port, "counter", "drop"},
	} {
		if err := nft(t, bin, args...); err != nil {
			del()
			t.Skipf("cannot make nftables rules here (needs CAP_NET_ADMIN): %v", err)
		}
	}
	return del
}

// TestCluster3SecondActivation: n3 runs a second activation of a shard
// etcd places on n2 (the test hook) and sends its own front's buyers of
// that shard to it: none of them gets a 201 there (503), and the sale,
// through the owner, sells exactly the stock.
func TestCluster3SecondActivation(t *testing.T) {
	const (
		item  = "sa"
		shard = 1 // round robin over n1, n2, n3: shard 1 is n2's
		tries = 3 // tries of such a buyer through n3 before it goes to n1
	)
	c := newC3(t, map[string][]string{"n1": {"SECKILL_JOURNAL=0"}, "n2": {"SECKILL_JOURNAL=0"},
		"n3": {"SECKILL_JOURNAL=0", "SECKILL_TEST_SECOND_ACTIVATION=" + item + "/" + strconv.Itoa(shard)}})
	hooked := c.node("n3")
	c.createItem(item)
	owners := c.owners(c.nodes[0], item)
	if owners[shard] == hooked.name {
		t.Fatalf("shard %d placed on %s itself: %v", shard, hooked.name, owners)
	}
	waitFor(t, "n3 runs its second activation", func() (bool, string) {
		m := logLine(hooked.proc, regexp.MustCompile(`grid: test hook: second activation.*shard=`+strconv.Itoa(shard)+` `))
		return m != nil, "no log line"
	})
	s := c.newSale(item, c3Buyers, 0, 1, 2)
	s.route = func(b *c3Buyer, try int) int {
		if b.front == hooked.idx && b.shard == shard && try >= tries {
			return 0
		}
		return b.front
	}
	a := c.audit(item)
	s.run()
	s.wait()
	// The second activation never confirms. Until the item is sold out it
	// answers 503; after, it may answer sold_out from the front's sold-out
	// flag, which is true for a buyer who holds nothing, and wrong for a
	// key confirmed by the owner (n3 does not know it): counted and logged,
	// and such keys are replayed through the other fronts only.
	counts := map[string]int{}
	buyers, confirmedElsewhere := 0, 0
	for _, b := range s.buyers {
		if b.front != hooked.idx || b.shard != shard {
			continue
		}
		buyers++
		for _, tr := range b.tries {
			if tr.front != hooked.idx {
				continue
			}
			counts[strconv.Itoa(tr.code)+" "+tr.status]++
			switch {
			case tr.code == http.StatusServiceUnavailable:
			case tr.code == http.StatusConflict && tr.status == "sold_out":
				if b.grabID != "" {
					confirmedElsewhere++
				}
			default:
				t.Errorf("%s (shard %d) through %s's second activation: %d %s %s", b.user, shard, hooked.name, tr.code, tr.status, tr.grabID)
			}
		}
	}
	if buyers == 0 || counts["503 unavailable"] == 0 {
		t.Fatalf("%d buyers of shard %d went through %s: %v", buyers, shard, hooked.name, counts)
	}
	t.Logf("%d buyers of shard %d through %s's second activation: answers %v (sold_out to a key confirmed by %s: %d)",
		buyers, shard, hooked.name, counts, owners[shard], confirmedElsewhere)
	s.noReplay = func(b *c3Buyer, front int) bool { return front == hooked.idx && b.shard == shard }
	if m := logLine(hooked.proc, regexp.MustCompile(`pool ledger write refused`)); m != nil {
		t.Logf("n3 log: %s", m[0])
	}
	// What n3 answers a key confirmed by the owner, once the item is sold
	// out (logged, not asserted: see above).
	for _, b := range s.buyers {
		if b.shard != shard || b.grabID == "" {
			continue
		}
		ans, err := postGrab(c.client, hooked.url(), item, b.user, b.key)
		t.Logf("after the sale, %s (confirmed %s by %s) through %s: %v %v", b.user, b.grabID, owners[shard], hooked.name, ans, err)
		break
	}
	c.finishSale(s, a)
}

// TestCluster3Drain: mid-sale, one shard is moved (timed), then n2 is
// drained: its shards move to n1 and n3 at epoch+1, the keys confirmed
// before replay the same grab ids after, and a buyer of before gets
// limit_reached with a new key.
func TestCluster3Drain(t *testing.T) {
	const item = "dr"
	c := newC3(t, nil)
	c.createItem(item)
	owners := c.owners(c.nodes[0], item)
	n1, n2 := c.node("n1"), c.node("n2")
	s := c.newSale(item, c3Buyers, 0, 1, 2)
	a := c.audit(item)
	s.run()

	// One move, timed: a shard of n1 (not shard 0, which carries the pool)
	// to n3.
	s.waitConfirmed(c3Stock * 2 / 10)
	moved := -1
	for i := 1; i < c3Shards; i++ {
		if owners[i] == n1.name {
			moved = i
			break
		}
	}
	asked := time.Now()
	code, raw, err := adminPost(c.client, fmt.Sprintf("%s/admin/v1/cluster/shards/%s/%d/move", n1.url(), item, moved), `{"to":"n3"}`)
	if err != nil || code != http.StatusAccepted {
		t.Fatalf("move %s/%d to n3: %d %s %v", item, moved, code, raw, err)
	}
	// Polled back to back (each read of the placement view takes a few
	// milliseconds: etcd, every node's report, Redis), bounded.
	var took time.Duration
	reads := 0
	for {
		ps, raw := c.placement(n1, item)
		reads++
		if ps != nil && ps[moved].Node == "n3" && ps[moved].Epoch == 2 && ps[moved].State == "active" && ps[moved].Remaining != nil {
			took = time.Since(asked)
			break
		}
		if time.Since(asked) > clusterWait {
			t.Fatalf("shard %d not active on n3 within %v: %s", moved, clusterWait, raw)
		}
	}
	handed := regexp.MustCompile(`msg="grid: shard handed over" item=` + item + ` shard=` + strconv.Itoa(moved) + ` .*took=(\S+)`)
	var logTook string
	waitFor(t, "n1 logs the handover", func() (bool, string) {
		m := logLine(n1.proc, handed)
		if m == nil {
			return false, "no line"
		}
		logTook = m[1]
		return true, ""
	})
	t.Logf("move of shard %d n1 -> n3 after %d units sold: placement active on n3, with n3 reporting it, %v after the request was sent "+
		"(%d reads of the placement view); n1 logs took=%s",
		moved, s.confirmed.Load(), took.Round(time.Millisecond), reads, logTook)
	owners[moved] = "n3"

	// Drain n2.
	s.waitConfirmed(c3Stock * 4 / 10)
	before := s.confirmedSoFar()
	code, raw, err = adminPost(c.client, n1.url()+"/admin/v1/cluster/nodes/n2/drain", "")
	if err != nil || code != http.StatusOK {
		t.Fatalf("drain n2: %d %s %v", code, raw, err)
	}
	drained := waitFor(t, "no shard left on n2", func() (bool, string) {
		ps, raw := c.placement(n1, item)
		if ps == nil {
			return false, raw
		}
		for _, p := range ps {
			want := uint64(1)
			if owners[p.Shard] == n2.name || p.Shard == moved {
				want = 2
			}
			if p.Node == n2.name || p.State != "active" || p.Epoch != want || p.Remaining == nil {
				return false, raw
			}
		}
		return true, raw
	})
	onN2 := 0
	for _, o := range owners {
		if o == n2.name {
			onN2++
		}
	}
	t.Logf("drain of n2 after %d units sold: its %d shards active elsewhere at epoch 2 after %v", len(before), onN2, drained.Round(time.Millisecond))
	var logs []string
	for _, l := range strings.Split(n2.proc.stderr.String(), "\n") {
		if strings.Contains(l, "grid: shard handed over") {
			if i := strings.Index(l, "took="); i >= 0 {
				logs = append(logs, l[i+5:])
			}
		}
	}
	t.Logf("n2 logged %d handovers, took: %v", len(logs), logs)

	// Keys confirmed before the drain on n2's shards replay; their buyers
	// get limit_reached with a new key.
	wasOnN2 := map[string]bool{}
	var replay []*c3Buyer
	for _, b := range before {
		if owners[b.shard] == n2.name {
			wasOnN2[b.user] = true
			replay = append(replay, b)
		}
	}
	n := s.replayAll(replay)
	checked := 0
	for _, b := range before {
		if !wasOnN2[b.user] || checked >= 50 {
			continue
		}
		checked++
		f := c.nodes[checked%3]
		for try := 0; ; try++ {
			ans, err := postGrab(c.client, f.url(), item, b.user, b.key+"-again")
			if err == nil && ans.Code == http.StatusConflict && ans.Status == "limit_reached" {
				break
			}
			if (err == nil && ans.Code != http.StatusServiceUnavailable) || try > 100 {
				t.Fatalf("%s (bought %s before the drain) with a new key via %s: %v %v, want 409 limit_reached", b.user, b.grabID, f.name, ans, err)
			}
			time.Sleep(min(c3RetryPauseMax, time.Duration(try+1)*c3RetryPause)) // pacing of retries
		}
	}
	t.Logf("after the drain: %d keys confirmed before it on n2's shards replay their grab ids; %d of their buyers got limit_reached with a new key",
		n, checked)
	c.endSale(s, a)

	// Once the item is sold out, n3 is drained too while the keys its
	// shards confirmed are replayed through every front: each answer is
	// their grab id or 503, never sold_out (the new owner knows the grab
	// from the snapshot it adopts, and nobody else may say otherwise).
	n3 := c.node("n3")
	if code, raw, err := adminPost(c.client, n1.url()+"/admin/v1/cluster/nodes/n2/undrain", ""); err != nil || code != http.StatusOK {
		t.Fatalf("undrain n2: %d %s %v", code, raw, err)
	}
	ps, raw := c.placement(n1, item)
	if ps == nil {
		t.Fatal(raw)
	}
	onN3 := map[int]uint64{}
	for _, p := range ps {
		if p.Node == n3.name {
			onN3[p.Shard] = p.Epoch
		}
	}
	var keys []*c3Buyer
	for _, b := range s.buyers {
		if _, ok := onN3[b.shard]; ok && b.grabID != "" {
			keys = append(keys, b)
		}
	}
	stop := make(chan struct{})
	var mu sync.Mutex
	answers := map[string]int{}
	var wrong []string
	var wg sync.WaitGroup
	for w := range 16 {
		wg.Go(func() {
			for k := w; ; k += 16 {
				select {
				case <-stop:
					return
				default:
				}
				b := keys[k%len(keys)]
				f := c.nodes[k%3]
				ans, err := postGrab(c.client, f.url(), item, b.user, b.key)
				mu.Lock()
				switch {
				case err != nil:
					answers["no answer"]++
				case ans.Code == http.StatusServiceUnavailable:
					answers["503"]++
				case ans.Code == http.StatusCreated && ans.GrabID == b.grabID:
					answers["201 same grab"]++
				default:
					answers[ans.String()]++
					wrong = append(wrong, fmt.Sprintf("%s (%s, shard %d) via %s: %v", b.user, b.grabID, b.shard, f.name, ans))
				}
				mu.Unlock()
			}
		})
	}
	code, raw, err = adminPost(c.client, n1.url()+"/admin/v1/cluster/nodes/n3/drain", "")
	if err != nil || code != http.StatusOK {
		close(stop)
		wg.Wait()
		t.Fatalf("drain n3: %d %s %v", code, raw, err)
	}
	took = waitFor(t, "no shard left on n3", func() (bool, string) {
		ps, raw := c.placement(n1, item)
		if ps == nil {
			return false, raw
		}
		for _, p := range ps {
			if e, ok := onN3[p.Shard]; p.Node == n3.name || p.State != "active" || (ok && p.Epoch != e+1) || p.Remaining == nil {
				return false, raw
			}
		}
		return true, raw
	})
	// One more round of every key on the new owners.
	s.replayAll(keys)
	close(stop)
	wg.Wait()
	t.Logf("drain of n3 after the sale: its %d shards active elsewhere after %v; %d keys they confirmed replayed meanwhile: %v",
		len(onN3), took.Round(time.Millisecond), len(keys), answers)
	if len(wrong) > 0 {
		t.Errorf("%d wrong answers to confirmed keys while their shards moved, e.g.:\n%s", len(wrong), strings.Join(wrong[:min(len(wrong), 10)], "\n"))
	}
	c.stopAndCheckOrders(s)
}

// adminPost sends one authorised POST; err only when no answer came back.
func adminPost(c *http.Client, url, body string) (int, string, error) {
	req, err := http.NewRequest(http.MethodPost, url, strings.NewReader(body))
	if err != nil {
		return 0, "", err
	}
	req.Header.Set("Authorization", "Bearer "+faultToken)
	if body != "" {
		req.Header.Set("Content-Type", "application/json")
	}
	resp, err := c.Do(req)
	if err != nil {
		return 0, "", err
	}
	defer resp.Body.Close()
	raw, err := io.ReadAll(resp.Body)
	return resp.StatusCode, string(raw), err
}

// TestCluster3ForceMove: a node is lost mid-sale (SIGKILLed, not
// restarted); once etcd expired its lease its shards are moved by force,
// each answer saying what it risks. The sale goes on and ends: sold never
// above the stock in any view, and at the end sold + frozen == stock (the
// units the lost node held beyond its last snapshot are frozen, never sold
// twice). The grabs the lost node confirmed after its last snapshot are
// the stated risk: their ids may be given again, and they are counted.
// When the node comes back after the sale it runs none of those shards
// and the numbers stay.
func TestCluster3ForceMove(t *testing.T) {
	const item = "fm"
	c := newC3(t, c3NoJournal)
	c.createItem(item)
	owners := c.owners(c.nodes[0], item)
	victim := c.node("n3")
	s := c.newSale(item, c3Buyers, 0, 1) // through the fronts that live
	a := c.audit(item)
	s.run()
	s.waitConfirmed(c3Stock * 3 / 10)
	victim.proc.kill(t)
	killed := s.sinceStart()
	t.Logf("%s SIGKILLed after %d of %d units sold; it comes back only after the sale", victim.name, s.confirmed.Load(), c3Stock)
	// A forced move is refused while the owner's lease lives.
	var lost []int
	for sh, n := range owners {
		if n == victim.name {
			lost = append(lost, sh)
		}
	}
	listed(t, c.client, c.nodes[0].proc, map[string]bool{victim.name: false})
	expired := s.sinceStart()
	for k, sh := range lost {
		to := c.nodes[k%2].name
		code, raw, _ := adminPost(c.client, c.nodes[0].url()+fmt.Sprintf("/admin/v1/cluster/shards/%s/%d/move", item, sh),
			fmt.Sprintf(`{"to":%q,"force":true}`, to))
		var ans struct {
			State string `json:"state"`
			Epoch uint64 `json:"epoch"`
			Risk  string `json:"risk"`
		}
		if code != http.StatusAccepted || json.Unmarshal([]byte(raw), &ans) != nil || ans.State != "moved" || ans.Epoch != 2 || ans.Risk == "" {
			t.Fatalf("forced move of shard %d to %s: %d %s", sh, to, code, raw)
		}
		// Not back to the node it was taken from, ever.
		if code, raw, _ := adminPost(c.client, c.nodes[1].url()+fmt.Sprintf("/admin/v1/cluster/shards/%s/%d/move", item, sh),
			fmt.Sprintf(`{"to":%q}`, victim.name)); code != http.StatusConflict {
			t.Fatalf("move of shard %d back to %s: %d %s, want 409", sh, victim.name, code, raw)
		}
	}
	c.waitFailedOver(item, victim)
	back := s.sinceStart()
	t.Logf("%d shards of %s: lease gone %v after the kill, forced elsewhere and serving %v after it", len(lost), victim.name,
		(expired - killed).Round(time.Millisecond), (back - killed).Round(time.Millisecond))
	s.wait()
	a.finish(t)

	var frozen int64
	waitFor(t, "the sale settles with sold + frozen == stock", func() (bool, string) {
		code, raw, err := adminGet(c.client, c.nodes[1].url()+"/admin/v1/cluster/health")
		var h struct {
			Frozen *int64 `json:"units_frozen"`
		}
		if err != nil || json.Unmarshal(raw, &h) != nil || h.Frozen == nil {
			return false, fmt.Sprintf("health %d %s %v", code, raw, err)
		}
		v, vraw, ok := c.itemView(c.nodes[1], item)
		frozen = *h.Frozen
		return ok && v.Sold+frozen == c3Stock && v.Sold <= c3Stock, fmt.Sprintf("frozen %d, view %s", frozen, vraw)
	})
	// Every buyer has a final answer, and no grab id was confirmed to two
	// buyers: the new owner numbered its grabs past every sequence the lost
	// node was granted (fence.SeqGrant), not from the snapshot's.
	ids := map[string]int{}
	confirmed := 0
	for _, b := range s.buyers {
		if r := b.result(); r == nil {
			t.Fatalf("%s has no final answer", b.user)
		} else if r.code == http.StatusCreated {
			confirmed++
			ids[b.grabID]++
		}
	}
	twice := 0
	for _, n := range ids {
		if n > 1 {
			twice += n - 1
		}
	}
	sold := c3Stock - frozen
	if int64(confirmed) < sold || int64(confirmed) > sold+frozen || twice != 0 {
		t.Fatalf("%d 201s (%d ids given twice) for %d units sold and %d frozen", confirmed, twice, sold, frozen)
	}
	t.Logf("%s: %d sold, %d frozen; buyers hold %d 201s, %d of them from the lost node after its last snapshot at most, no id given twice",
		item, sold, frozen, confirmed, int64(confirmed)-sold)

	// The "lost" node comes back on its data: it runs none of the shards
	// taken from it, and the sale's numbers stay as they were.
	c.start(victim)
	c.waitMembers(c.nodes...)
	waitFor(t, victim.name+" runs nothing of "+item, func() (bool, string) {
		code, raw, err := adminGet(c.client, victim.url()+"/admin/v1/cluster/local/"+item)
		var r struct {
			Shards []json.RawMessage `json:"shards"`
		}
		return err == nil && code == http.StatusOK && json.Unmarshal(raw, &r) == nil && len(r.Shards) == 0, fmt.Sprintf("%d %s %v", code, raw, err)
	})
	v, raw, ok := c.itemView(victim, item)
	if !ok || v.Sold != sold {
		t.Fatalf("after %s came back: view %s, want %d sold", victim.name, raw, sold)
	}
	c.stopAll()
}

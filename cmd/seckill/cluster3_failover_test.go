package main

// Failover on the replicated journal (the nodes run with --journal, the
// default with --cluster and --nats): a node lost mid-sale, its disk with
// it, or paused past its lease, and nobody acting. The sale goes through
// the two other fronts; it ends with the stock sold exactly, every 201
// replaying its grab id through any live front, one order a grab across
// the order stores, and the cluster's reconcile clean.

import (
	"net/http"
	"syscall"
	"testing"
	"time"
)

// waitFailedOver waits until no shard of item is placed on victim and each
// of them runs (its owner answers for it).
func (c *c3Cluster) waitFailedOver(item string, victim *c3Node) {
	c.t.Helper()
	waitFor(c.t, victim.name+"'s shards of "+item+" placed on the live nodes and running", func() (bool, string) {
		ps, raw := c.placement(c.live()[0], item)
		if ps == nil {
			return false, raw
		}
		for _, p := range ps {
			if p.Node == victim.name || p.State != "active" || p.Remaining == nil {
				return false, raw
			}
		}
		return true, raw
	})
}

// firstServed is when the first try of a buyer of victim's shards, issued
// after from, was answered with a final answer other than 503 (-1: none).
func firstServed(s *c3Sale, owners []string, victim *c3Node, from time.Duration) time.Duration {
	first := time.Duration(-1)
	for _, b := range s.buyers {
		if owners[b.shard] != victim.name {
			continue
		}
		for _, tr := range b.tries {
			if tr.issued < from || tr.code == 0 || tr.code == http.StatusServiceUnavailable {
				continue
			}
			if first < 0 || tr.answered < first {
				first = tr.answered
			}
		}
	}
	return first
}

// lostScenario runs a sale through the two other fronts, takes victim away
// after 30 % of the stock, and waits for its shards to fail over; restart
// starts it again, empty, once they have.
func lostScenario(t *testing.T, item, victimName string, restart bool) {
	c := newC3(t, nil)
	c.createItem(item)
	owners := c.owners(c.nodes[0], item)
	victim := c.node(victimName)
	var fronts []int
	for _, n := range c.nodes {
		if n != victim {
			fronts = append(fronts, n.idx)
		}
	}
	s := c.newSale(item, c3Buyers, fronts...)
	a := c.audit(item)
	s.run()
	s.waitConfirmed(c3Stock * 3 / 10)

	c.lose(victim)
	killed := s.sinceStart()
	t.Logf("%s SIGKILLed and its data directory removed after %d of %d units sold", victim.name, s.confirmed.Load(), c3Stock)
	c.waitFailedOver(item, victim)
	moved := s.sinceStart()
	if restart {
		c.start(victim)
		c.waitMembers(c.live()...)
		t.Logf("%s restarted empty %v after the kill", victim.name, (s.sinceStart() - killed).Round(time.Millisecond))
	}
	s.wait()
	served := firstServed(s, owners, victim, killed)
	t.Logf("failover of %s's shards: placed and running elsewhere %v after the kill; its buyers' first answer other than 503 %v after it",
		victim.name, (moved - killed).Round(time.Millisecond), sub(served, killed))
	if served < 0 {
		t.Errorf("no buyer of %s's shards was served after the kill", victim.name)
	}
	c.finishSale(s, a)
}

// TestCluster3Failover: n3 SIGKILLed mid-sale, its disk gone, not
// restarted.
func TestCluster3Failover(t *testing.T) { lostScenario(t, "fo", "n3", false) }

// TestCluster3FailoverWiped: n1, which runs shard 0 and the item's pool,
// SIGKILLed mid-sale, its disk gone, then restarted on an empty data
// directory: it joins as a node with nothing placed on it.
func TestCluster3FailoverWiped(t *testing.T) { lostScenario(t, "fw", "n1", true) }

// TestCluster3StopFailover: n3 SIGSTOPped for three leases mid-sale: its
// shards fail over meanwhile; continued, it confirms nothing for them (its
// appends are refused, it stops them) and gives no grab id twice.
func TestCluster3StopFailover(t *testing.T) {
	const item = "sf"
	c := newC3(t, nil)
	c.createItem(item)
	owners := c.owners(c.nodes[0], item)
	victim := c.node("n3")
	s := c.newSale(item, c3Buyers, 0, 1)
	a := c.audit(item)
	s.run()
	s.waitConfirmed(c3Stock * 3 / 10)

	if err := victim.proc.cmd.Process.Signal(syscall.SIGSTOP); err != nil {
		t.Fatal(err)
	}
	t.Cleanup(func() { _ = victim.proc.cmd.Process.Signal(syscall.SIGCONT) })
	stopped := s.sinceStart()
	c.lost = map[*c3Node]bool{victim: true} // for the placement reads meanwhile
	c.waitFailedOver(item, victim)
	moved := s.sinceStart()
	<-time.After(c3Fault - (moved - stopped)) // the rest of the fault's length, not a synchronisation
	if err := victim.proc.cmd.Process.Signal(syscall.SIGCONT); err != nil {
		t.Fatal(err)
	}
	delete(c.lost, victim)
	back := waitFor(t, victim.name+" lists every member again", func() (bool, string) {
		ms, raw := members(c.client, victim.proc)
		return len(ms) == 3 && ms[victim.name].LeaseLeftMs > 0, raw
	})
	s.wait()
	served := firstServed(s, owners, victim, stopped)
	t.Logf("%s SIGSTOPped for %v: its shards placed and running elsewhere %v after the stop, its buyers' first answer other than 503 %v after it; "+
		"continued, a member again after %v", victim.name, c3Fault, (moved - stopped).Round(time.Millisecond), sub(served, stopped), back.Round(time.Millisecond))
	// The resumed node runs none of the shards it lost.
	ps, raw := c.placement(victim, item)
	for _, p := range ps {
		if p.Node == victim.name {
			t.Fatalf("a shard is placed on %s again: %s", victim.name, raw)
		}
	}
	c.finishSale(s, a)
}

// TestCluster3NATSServerKilled: three NATS servers keep the journal and the
// order stream (R3, fsync before every ack); one is SIGKILLed mid-sale and
// not restarted. The sale goes on through the other two: nothing lost, one
// order a grab, reconcile clean.
func TestCluster3NATSServerKilled(t *testing.T) {
	const item = "nk"
	c := newC3With(t, nil, 3)
	c.createItem(item)
	s := c.newSale(item, c3Buyers, 0, 1, 2)
	a := c.audit(item)
	s.run()
	s.waitConfirmed(c3Stock * 3 / 10)
	victim := c.nats[1]
	victim.kill(t)
	sold := s.confirmed.Load()
	killed := s.sinceStart()
	t.Logf("%s SIGKILLed after %d of %d units sold", victim.name, sold, c3Stock)
	s.wait()
	t.Logf("after the kill: %d more units sold in %v", s.confirmed.Load()-sold, (s.sinceStart() - killed).Round(time.Millisecond))
	c.finishSale(s, a)
}

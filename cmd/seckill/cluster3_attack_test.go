package main

import (
	"bufio"
	"bytes"
	"crypto/tls"
	"fmt"
	"net/http"
	"os"
	"os/exec"
	"path/filepath"
	"strconv"
	"strings"
	"testing"

	"github.com/seckill/seckill/certs"
	"github.com/seckill/seckill/engine"
	"github.com/seckill/seckill/internal/peerattack"
	"github.com/seckill/seckill/remote"
)

// TestCluster3PeerAttack plays issue 20's attacker against three real
// nodes with certificates. With no certificate, or one of another CA, it
// cannot open a stream to any peer port; garbage, protoactor's unimplemented
// calls and a flood of silent connections are refused. Holding a valid
// certificate of a node that does not run the item's pool, it sends every
// node forged grants of 100 000 units "from the pool", a forged sold-out
// status, and grab requests for shards the node does not run: each is
// refused. Every refusal shows in seckill_peer_refused_total; every front
// still says on_sale; the sale then sells exactly its stock, audited, and no
// node exited.
func TestCluster3PeerAttack(t *testing.T) {
	const item = "atk"
	c := newC3(t, nil)
	c.createItem(item)
	owners := c.owners(c.nodes[0], item)
	pool := c.node(owners[0])
	var insider *c3Node // a node of the cluster that does not run the pool
	for _, n := range c.nodes {
		if n != pool {
			insider = n
			break
		}
	}
	insiderCert, err := certs.Load(c.certsDir, insider.name)
	if err != nil {
		t.Fatal(err)
	}
	otherCA := filepath.Join(t.TempDir(), "other")
	if err := certs.CreateCA(otherCA, false); err != nil {
		t.Fatal(err)
	}
	if err := certs.CreateNode(otherCA, insider.name, []string{insider.ip}, false); err != nil {
		t.Fatal(err)
	}
	stranger, err := certs.Load(otherCA, insider.name)
	if err != nil {
		t.Fatal(err)
	}
	noCert := insiderCert.ClientTLS()
	noCert.Certificates = nil
	poolPeer := peerOf(pool)

	for _, n := range c.nodes {
		peer := peerOf(n)
		for _, tc := range []struct {
			name string
			cfg  *tls.Config
		}{{"no TLS", nil}, {"no certificate", noCert}, {"another CA's certificate of " + insider.name, stranger.ClientTLS()}} {
			if a, err := peerattack.Dial(peer, tc.cfg); err == nil {
				a.Close()
				t.Fatalf("%s: an attacker with %s opened a stream", n.name, tc.name)
			}
		}
		if err := peerattack.ListProcesses(peer, nil); err == nil {
			t.Fatalf("%s: ListProcesses answered", n.name)
		}
		if err := peerattack.Garbage(peer, bytes.Repeat([]byte("garbage\x00\xff"), 100)); err != nil {
			t.Fatalf("%s: %v", n.name, err)
		}
		closeFlood, err := peerattack.Flood(peer, 200)
		if err != nil {
			t.Fatalf("%s: flood: %v", n.name, err)
		}
		t.Cleanup(closeFlood)

		// The insider: a valid certificate, wrong about who runs the pool.
		a, err := peerattack.Dial(peer, insiderCert.ClientTLS())
		if err != nil {
			t.Fatalf("%s: the insider cannot connect: %v", n.name, err)
		}
		for s := range c3Shards {
			grant := engine.Msg{Kind: engine.MsgGrant, From: engine.PoolAddr(item), To: engine.ShardAddr(item, s), Total: 100_000}
			if err := a.Msg(poolPeer, pool.name, grant); err != nil {
				t.Fatal(err)
			}
		}
		soldOut := engine.Msg{Kind: engine.MsgStatus, From: engine.PoolAddr(item), To: engine.Addr{Item: item, Shard: engine.FrontShard}, SoldOut: true, Seq: 1 << 40}
		if err := a.Msg(poolPeer, pool.name, soldOut); err != nil {
			t.Fatal(err)
		}
		for i := 0; ; i++ { // one grab for a shard n does not run
			u := fmt.Sprintf("forged-%d", i)
			if owners[engine.ShardFor(item, u, c3Shards)] != n.name {
				if err := a.Request(peerOf(insider), remote.Request{Kind: remote.ReqGrab, Item: item, User: u, Qty: 1}); err != nil {
					t.Fatal(err)
				}
				break
			}
		}
		if err := a.Raw("evil.Type", remote.ReceiverName, []byte{1, 2, 3}, nil); err != nil {
			t.Fatal(err)
		}
		env := remote.AppendEnvelope(nil, remote.MsgFromEnvelope(poolPeer, soldOut))
		if err := a.Payload(env[:len(env)-3], ""); err != nil { // truncated
			t.Fatal(err)
		}
		a.Close()
	}

	// Each attempt shows in the metric, on every node.
	for _, n := range c.nodes {
		want := map[string]float64{
			remote.RefusedHandshake: 5, // no TLS, no certificate, another CA, ListProcesses without TLS, garbage
			remote.RefusedEnvelope:  1, // the unknown type
			remote.RefusedPayload:   1, // the truncated envelope
			"sender":                c3Shards + 1,
			"not_owner":             1,
		}
		waitFor(t, n.name+"'s refusals counted", func() (bool, string) {
			got, raw := peerRefused(c.client, n)
			for reason, w := range want {
				if got[reason] < w {
					return false, raw
				}
			}
			return true, raw
		})
	}
	// No front took the forged status, no shard the forged grants.
	for _, n := range c.nodes {
		code, raw, err := adminGet(c.client, n.url()+"/v1/items/"+item)
		if err != nil || code != http.StatusOK || !strings.Contains(string(raw), `"status":"on_sale"`) {
			t.Fatalf("%s says %d %s %v, want on_sale", n.name, code, raw, err)
		}
		if v, raw, ok := c.itemView(n, item); !ok || v.Stock != c3Stock || v.Sold != 0 {
			t.Fatalf("%s: %s after the attack", n.name, raw)
		}
	}

	// The admin API the nodes call each other on takes only the cluster's
	// nodes, even with the admin token.
	ms, raw := members(c.client, c.nodes[0].proc)
	for _, n := range c.nodes {
		u := ms[n.name].PeerHTTP
		if !strings.HasPrefix(u, "https://"+n.ip+":") {
			t.Fatalf("%s's peer_http %q: %s", n.name, u, raw)
		}
		for _, tc := range []struct {
			name string
			cfg  *tls.Config
			ok   bool
		}{{"no certificate", noCert, false}, {"another CA", stranger.ClientTLS(), false}, {"a node's certificate", insiderCert.ClientTLS(), true}} {
			cl := &http.Client{Transport: &http.Transport{TLSClientConfig: tc.cfg}}
			code, body, err := adminGet(cl, u+"/admin/v1/items/"+item)
			if ok := err == nil && code == http.StatusOK; ok != tc.ok {
				t.Fatalf("%s's peer https with %s: %d %s %v", n.name, tc.name, code, body, err)
			}
			cl.CloseIdleConnections()
		}
	}

	s := c.newSale(item, c3Buyers, 0, 1, 2)
	au := c.audit(item)
	s.run()
	c.endSale(s, au)
	for _, n := range c.nodes {
		select {
		case <-n.proc.done:
			t.Fatalf("%s exited: %v", n.name, n.proc.err)
		default:
		}
	}
	c.stopAndCheckOrders(s)
}

func peerOf(n *c3Node) string { return n.ip + ":" + strconv.Itoa(n.peerPort) }

// peerRefused reads n's seckill_peer_refused_total by reason.
func peerRefused(c *http.Client, n *c3Node) (map[string]float64, string) {
	code, raw, err := adminGet(c, n.url()+"/metrics")
	if err != nil || code != http.StatusOK {
		return nil, fmt.Sprintf("%d %v", code, err)
	}
	out := map[string]float64{}
	var lines []string
	sc := bufio.NewScanner(bytes.NewReader(raw))
	for sc.Scan() {
		l := sc.Text()
		rest, ok := strings.CutPrefix(l, `seckill_peer_refused_total{reason="`)
		if !ok {
			continue
		}
		lines = append(lines, l)
		reason, val, _ := strings.Cut(rest, `"} `)
		v, _ := strconv.ParseFloat(val, 64)
		out[reason] = v
	}
	return out, strings.Join(lines, "\n")
}

// TestServeClusterNeedsCertificates: `serve --cluster` without certificates
// is refused with the commands that make them; --insecure-cluster is
// refused off loopback. Both before the node binds or dials anything.
func TestServeClusterNeedsCertificates(t *testing.T) {
	bin := buildSeckill(t)
	for _, c := range []struct {
		name string
		args []string
		want []string
	}{
		{"no certificates", nil, []string{"seckill cert create-ca --certs-dir DIR", "seckill cert create-node --certs-dir DIR n1 127.0.0.11", "--insecure-cluster"}},
		{"insecure off loopback", []string{"--insecure-cluster", "--peer", "10.255.255.1:7946"}, []string{"outside loopback"}},
		{"no such certificate", []string{"--certs-dir", t.TempDir()}, []string{"seckill cert create-node --certs-dir"}},
	} {
		t.Run(c.name, func(t *testing.T) {
			args := append([]string{"serve", "--data", t.TempDir(), "--http", "127.0.0.11:0", "--nats-listen", "", "--cluster",
				"--node", "n1", "--peer", "127.0.0.11:7946", "--etcd", "http://127.0.0.1:1"}, c.args...)
			cmd := exec.Command(bin, args...)
			cmd.Env = append(os.Environ(), "SECKILL_ADMIN_TOKEN="+faultToken)
			out, err := cmd.CombinedOutput()
			if err == nil {
				t.Fatalf("started:\n%s", out)
			}
			for _, w := range c.want {
				if !strings.Contains(string(out), w) {
					t.Errorf("the refusal does not say %q:\n%s", w, out)
				}
			}
		})
	}
}

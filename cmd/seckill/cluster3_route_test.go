package main

import (
	"bufio"
	"bytes"
	"context"
	"errors"
	"fmt"
	"net/http"
	"regexp"
	"strconv"
	"strings"
	"testing"
)

// TestCluster3RouteOwner: `seckill bench --route owner` sends each grab to
// the front of its shard's owner, read from the cluster's placement, so no
// front forwards a grab; round robin (`--route any`) forwards about two in
// three. Both read on every node's seckill_grabs_forwarded_total.
func TestCluster3RouteOwner(t *testing.T) {
	c := newC3(t, nil)
	fronts := make([]string, len(c.nodes))
	for i, n := range c.nodes {
		fronts[i] = n.url()
	}
	forwarded := func() float64 {
		var sum float64
		for _, n := range c.nodes {
			v, err := grabsForwarded(c.client, n)
			if err != nil {
				t.Fatalf("%s: %v", n.name, err)
			}
			sum += v
		}
		return sum
	}
	for _, tc := range []struct {
		route string
		// of the run's grabs (not the audit's probes, which go through
		// other fronts on purpose), at least min and at most max thirds
		// are forwarded: none with owner routing, about two in three
		// round robin
		min, max float64
	}{
		{"owner", 0, 0},
		{"any", 1, 3},
	} {
		before := forwarded()
		var out bytes.Buffer
		err := benchMain(context.Background(), []string{"--url", strings.Join(fronts, ","), "--token", faultToken,
			"--workload", "durable", "--conns", "8", "--duration", "1s", "--route", tc.route}, &out)
		if err != nil {
			t.Fatalf("--route %s: %v\n%s", tc.route, err, out.String())
		}
		report := out.String()
		if !strings.Contains(report, "audit seckill: ok") {
			t.Fatalf("--route %s: audit not ok:\n%s", tc.route, report)
		}
		grabs, probes := reportCount(report, `sold (\d+) == `), reportCount(report, `(\d+) more grabs by buyers at their limit`)
		if grabs == 0 || probes == 0 {
			t.Fatalf("--route %s: no grabs or probes in the report:\n%s", tc.route, report)
		}
		// Each probe is forwarded at most once.
		got := forwarded() - before
		if lo, hi := tc.min*grabs/3, tc.max*grabs/3+probes; got < lo || got > hi {
			t.Errorf("--route %s: %v grabs forwarded for %v grabs and %v probes, want %v..%v\n%s", tc.route, got, grabs, probes, lo, hi, report)
		}
	}
}

// reportCount is the number the first group of pattern finds in a bench
// report, or 0.
func reportCount(report, pattern string) float64 {
	m := regexp.MustCompile(pattern).FindStringSubmatch(report)
	if m == nil {
		return 0
	}
	v, _ := strconv.ParseFloat(m[1], 64)
	return v
}

// grabsForwarded reads n's seckill_grabs_forwarded_total.
func grabsForwarded(c *http.Client, n *c3Node) (float64, error) {
	code, raw, err := adminGet(c, n.url()+"/metrics")
	if err != nil {
		return 0, err
	}
	if code != http.StatusOK {
		return 0, fmt.Errorf("GET /metrics: HTTP %d", code)
	}
	sc := bufio.NewScanner(bytes.NewReader(raw))
	for sc.Scan() {
		if v, ok := strings.CutPrefix(sc.Text(), "seckill_grabs_forwarded_total "); ok {
			return strconv.ParseFloat(v, 64)
		}
	}
	return 0, errors.New("no seckill_grabs_forwarded_total in /metrics")
}

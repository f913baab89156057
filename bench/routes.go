package bench

import (
	"context"
	"encoding/json"
	"fmt"
	"net/http"
	"net/url"
	"strings"

	"github.com/seckill/seckill/engine"
)

// Route values of Config.Route: how the buyers pick a cluster's front.
const (
	// RouteAny sends job n to front n mod fronts (a load balancer that
	// knows nothing of shards): two grabs in three reach a node that does
	// not own their shard and take two remote hops.
	RouteAny = "any"
	// RouteOwner sends each grab to the front of the node that owns its
	// shard (engine.ShardFor over the cluster's placement, as a client or
	// load balancer holding the admin token can), so no grab takes a hop.
	// A retry goes to the next front, in case the owner is gone.
	RouteOwner = "owner"
)

// routes is a cluster's routing table for a plan: for each item, for each
// shard, the index of the front of the node that owns it (-1: none of the
// fronts).
type routes [][]int

// front is the front job's attempt try goes to: the owner's for the first
// attempt, the next ones after it for retries; round robin without an owner.
func (r routes) front(p *Plan, item int, user int64, job int64, try, fronts int) int {
	if r != nil {
		shards := r[item]
		if f := shards[engine.ShardFor(p.Items[item], UserID(user), len(shards))]; f >= 0 {
			return (f + try) % fronts
		}
	}
	return int(job % int64(fronts))
}

// ownerRoutes reads where t's cluster places each shard of the plan's items
// (GET /admin/v1/cluster/placement) and which front each node serves
// (GET /admin/v1/cluster/members), through t's first front.
func ownerRoutes(ctx context.Context, t *Target, plan *Plan) (routes, error) {
	a, ok := t.Admin.(*seckillAdmin)
	if !ok || len(t.Fronts) < 2 {
		return nil, fmt.Errorf("--route %s: %s is not a seckill cluster with several fronts", RouteOwner, t.Name)
	}
	members, err := a.members(ctx)
	if err != nil {
		return nil, err
	}
	frontOf := map[string]int{}
	for _, m := range members {
		for i, f := range t.Fronts {
			if sameHost(f, m.HTTP) {
				frontOf[m.Node] = i
			}
		}
	}
	r := make(routes, len(plan.Items))
	for i, item := range plan.Items {
		var placement struct {
			Shards []struct {
				Shard int    `json:"shard"`
				Node  string `json:"node"`
			} `json:"shards"`
		}
		if err := a.getJSON(ctx, "/admin/v1/cluster/placement?item="+url.QueryEscape(item), &placement); err != nil {
			return nil, err
		}
		if len(placement.Shards) == 0 {
			return nil, fmt.Errorf("placement of %s: no shards", item)
		}
		r[i] = make([]int, len(placement.Shards))
		for _, s := range placement.Shards {
			if s.Shard < 0 || s.Shard >= len(r[i]) {
				return nil, fmt.Errorf("placement of %s: shard %d of %d", item, s.Shard, len(r[i]))
			}
			f, ok := frontOf[s.Node]
			if !ok {
				f = -1
			}
			r[i][s.Shard] = f
		}
	}
	return r, nil
}

// sameHost reports whether two URLs (or a URL and a host:port) name the
// same host and port.
func sameHost(a, b string) bool {
	host := func(s string) string {
		if u, err := url.Parse(s); err == nil && u.Host != "" {
			return u.Host
		}
		return strings.TrimSuffix(s, "/")
	}
	return b != "" && host(a) == host(b)
}

// member is a node of GET /admin/v1/cluster/members: its name and its
// HTTP front.
type member struct {
	Node string `json:"node"`
	HTTP string `json:"http"`
}

// members lists the cluster's nodes with a lease.
func (a *seckillAdmin) members(ctx context.Context) ([]member, error) {
	var v struct {
		Members []member `json:"members"`
	}
	err := a.getJSON(ctx, "/admin/v1/cluster/members", &v)
	return v.Members, err
}

func (a *seckillAdmin) getJSON(ctx context.Context, path string, v any) error {
	status, body, err := a.doURL(ctx, http.MethodGet, a.base+path, nil)
	if err != nil {
		return fmt.Errorf("GET %s: %w", path, err)
	}
	if status != http.StatusOK {
		return fmt.Errorf("GET %s: HTTP %d %s", path, status, strings.TrimSpace(string(body)))
	}
	if err := json.Unmarshal(body, v); err != nil {
		return fmt.Errorf("GET %s: %w", path, err)
	}
	return nil
}

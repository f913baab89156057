package transport

import "testing"

// FuzzRouteOf: any path a client sends is counted under one of the fixed
// routes, and any status under a known code or "other": labels stay bounded.
func FuzzRouteOf(f *testing.F) {
	for _, s := range []string{"/v1/items/x/grab", "/v1/items/x", "/v1/orders/a.1.2/pay", "/metrics", "/debug/pprof/heap",
		"/admin/v1/cluster/shards/x/1/move", "", "/", "//grab", "/v1/items/"} {
		f.Add(s, 200)
	}
	f.Fuzz(func(t *testing.T, path string, status int) {
		if r := routeOf([]byte(path)); r >= numRoutes {
			t.Fatalf("route %d for %q", r, path)
		}
		if i := statusIndex(status); i < 0 || i >= numStatus {
			t.Fatalf("status index %d for %d", i, status)
		}
		failKindOf(status)
	})
}

package bench

import (
	"testing"

	"github.com/seckill/seckill/engine"
)

func TestSameHost(t *testing.T) {
	for _, c := range []struct {
		a, b string
		want bool
	}{
		{"http://127.0.0.11:8080", "http://127.0.0.11:8080", true},
		{"http://127.0.0.11:8080", "127.0.0.11:8080", true},
		{"http://127.0.0.11:8080", "http://127.0.0.11:8080/", true},
		{"http://127.0.0.11:8080", "http://127.0.0.11:8081", false},
		{"http://127.0.0.11:8080", "http://127.0.0.12:8080", false},
		{"http://127.0.0.11:8080", "", false},
	} {
		if got := sameHost(c.a, c.b); got != c.want {
			t.Errorf("sameHost(%q, %q) = %v, want %v", c.a, c.b, got, c.want)
		}
	}
}

// TestRoutesFront: a grab goes to its shard owner's front, a retry to the
// ones after it; a shard no front serves, or no table, is round robin.
func TestRoutesFront(t *testing.T) {
	p := &Plan{Items: []string{"sku"}}
	const shards, fronts = 8, 3
	r := routes{make([]int, shards)}
	for s := range shards {
		r[0][s] = s % fronts
	}
	r[0][7] = -1
	for user := int64(0); user < 200; user++ {
		shard := engine.ShardFor("sku", UserID(user), shards)
		job := user + 5
		for try := range 3 {
			want := (shard%fronts + try) % fronts
			if shard == 7 {
				want = int(job % fronts)
			}
			if got := r.front(p, 0, user, job, try, fronts); got != want {
				t.Fatalf("user %d (shard %d) try %d: front %d, want %d", user, shard, try, got, want)
			}
		}
		if got, want := routes(nil).front(p, 0, user, job, 0, fronts), int(job%fronts); got != want {
			t.Fatalf("no table: front %d, want %d", got, want)
		}
	}
}

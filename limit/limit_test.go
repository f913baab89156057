package limit

import (
	"fmt"
	"net/netip"
	"strings"
	"sync"
	"testing"
	"time"
)

func TestBucket(t *testing.T) {
	l := New[string](2, 3, 1024) // 2/s, bursts of 3
	now := time.Unix(1_800_000_000, 0)
	for i := range 3 {
		if ok, _ := l.Allow("a", now); !ok {
			t.Fatalf("request %d of the burst refused", i)
		}
	}
	ok, wait := l.Allow("a", now)
	if ok || wait <= 0 || wait > time.Second/2 {
		t.Fatalf("past the burst: ok %v, wait %v (want refused, ≤ 500ms)", ok, wait)
	}
	if ok, _ := l.Allow("b", now); !ok {
		t.Fatal("another key shares a's bucket")
	}
	if ok, _ := l.Allow("a", now.Add(wait)); !ok {
		t.Fatal("refused after the wait it named")
	}
	if !New[string](0, 1, 64).Off() || New[string](1, 1, 64).Off() {
		t.Fatal("Off")
	}
	var nilL *Limiter[string]
	if ok, _ := nilL.Allow("x", now); !ok {
		t.Fatal("a nil limiter refused")
	}
}

// TestBounded: the table never tracks more than its bound; the least
// recently seen key is the one forgotten (it starts again full), and a
// key in use stays.
func TestBounded(t *testing.T) {
	const maxTracked = 4 * Shards
	l := New[int](1, 1, maxTracked)
	now := time.Unix(1_800_000_000, 0)
	l.Allow(-1, now) // the hot key: empties its bucket
	for i := range 100 * maxTracked {
		l.Allow(i, now)
		if i%16 == 0 {
			l.Allow(-1, now) // kept recent
		}
		if n := l.Len(); n > l.Cap() {
			t.Fatalf("%d keys tracked, bound %d", n, l.Cap())
		}
	}
	if l.Cap() != maxTracked {
		t.Fatalf("cap %d", l.Cap())
	}
	if ok, _ := l.Allow(-1, now); ok {
		t.Fatal("the hot key was evicted (its bucket is full again)")
	}
	if ok, _ := l.Allow(0, now); !ok {
		t.Fatal("the oldest key was not evicted (its bucket is still empty)")
	}
}

func TestConcurrentAllow(t *testing.T) {
	l := New[string](1000, 10, 1024)
	var wg sync.WaitGroup
	now := time.Now()
	var mu sync.Mutex
	allowed := 0
	for g := range 8 {
		wg.Go(func() {
			n := 0
			for i := range 1000 {
				if ok, _ := l.Allow(fmt.Sprint("k", (g*1000+i)%50), now); ok {
					n++
				}
			}
			mu.Lock()
			allowed += n
			mu.Unlock()
		})
	}
	wg.Wait()
	// 50 keys, a burst of 10 each, no time passing: exactly 500.
	if allowed != 500 {
		t.Fatalf("allowed %d, want 500", allowed)
	}
}

func TestClientAddr(t *testing.T) {
	trusted, err := ParseCIDRs("10.0.0.0/8, 127.0.0.1 ,2001:db8::/32")
	if err != nil {
		t.Fatal(err)
	}
	a := netip.MustParseAddr
	h := func(vs ...string) [][]byte {
		var out [][]byte
		for _, v := range vs {
			out = append(out, []byte(v))
		}
		return out
	}
	for _, tc := range []struct {
		name    string
		peer    string
		xff     [][]byte
		trusted bool
		want    string
	}{
		{"untrusted peer: its XFF is ignored", "203.0.113.9", h("198.51.100.1"), true, "203.0.113.9"},
		{"no proxies configured", "127.0.0.1", h("198.51.100.1"), false, "127.0.0.1"},
		{"trusted peer", "127.0.0.1", h("198.51.100.1"), true, "198.51.100.1"},
		{"rightmost untrusted wins over a spoofed left", "127.0.0.1", h("1.2.3.4, 198.51.100.1"), true, "198.51.100.1"},
		{"a chain of proxies", "10.1.1.1", h("198.51.100.1, 10.2.2.2"), true, "198.51.100.1"},
		{"several headers", "10.1.1.1", h("1.1.1.1", "198.51.100.1, 10.3.3.3"), true, "198.51.100.1"},
		{"garbage stops at the last proxy", "10.1.1.1", h("198.51.100.1, nonsense"), true, "10.1.1.1"},
		{"only proxies", "10.1.1.1", h("10.2.2.2"), true, "10.2.2.2"},
		{"no header", "10.1.1.1", nil, true, "10.1.1.1"},
		{"IPv4-mapped peer", "::ffff:127.0.0.1", h("198.51.100.1"), true, "198.51.100.1"},
		{"IPv6 cut to its /64", "127.0.0.1", h("2a00:1450:4001:81a::200e"), true, "2a00:1450:4001:81a::"},
	} {
		t.Run(tc.name, func(t *testing.T) {
			var ps []netip.Prefix
			if tc.trusted {
				ps = trusted
			}
			if got := ClientAddr(a(tc.peer), tc.xff, ps); got != a(tc.want) {
				t.Fatalf("got %v, want %s", got, tc.want)
			}
		})
	}
	for _, bad := range []string{"nope", "10.0.0.0/33", strings.Repeat("10.0.0.1,", MaxTrustedProxies+1)} {
		if _, err := ParseCIDRs(bad); err == nil {
			t.Errorf("ParseCIDRs(%q) took it", bad)
		}
	}
}

// FuzzClientAddr: any X-Forwarded-For gives an address that is the peer,
// one of the header's entries (cut to /64 for IPv6), never a panic.
func FuzzClientAddr(f *testing.F) {
	for _, s := range []string{"1.2.3.4", "1.2.3.4, 10.0.0.1", ",,,", "::1,fe80::1%eth0", "", " 2001:db8::1 ,x"} {
		f.Add(s, "127.0.0.1/32,10.0.0.0/8")
	}
	f.Fuzz(func(t *testing.T, xff, cidrs string) {
		ps, err := ParseCIDRs(cidrs)
		if err != nil {
			return
		}
		peer := netip.MustParseAddr("127.0.0.1")
		got := ClientAddr(peer, [][]byte{[]byte(xff)}, ps)
		if !got.IsValid() {
			t.Fatalf("invalid address from %q", xff)
		}
		if got == peer {
			return
		}
		found := false
		for e := range strings.SplitSeq(xff, ",") {
			if a, err := netip.ParseAddr(strings.TrimSpace(e)); err == nil {
				a = a.Unmap()
				if a.Is6() {
					p, _ := a.WithZone("").Prefix(IPv6Prefix)
					a = p.Addr()
				}
				found = found || a == got
			}
		}
		if !found {
			t.Fatalf("%v is neither the peer nor in %q", got, xff)
		}
	})
}

// BenchmarkAllow: one Allow from parallel goroutines, the front's hot path
// (one per public request): one key, a table of 1024 warm keys under one
// lock and under Shards locks, and 65 536 keys (more than fit: misses).
func BenchmarkAllow(b *testing.B) {
	for _, bc := range []struct{ keys, shards int }{{1, Shards}, {1024, 1}, {1024, Shards}, {1 << 16, Shards}} {
		b.Run(fmt.Sprintf("keys=%d/shards=%d", bc.keys, bc.shards), func(b *testing.B) {
			l := newSharded[netip.Addr](1e9, 1e9, DefaultMaxTracked, bc.shards)
			addrs := make([]netip.Addr, bc.keys)
			for i := range addrs {
				addrs[i] = netip.AddrFrom4([4]byte{10, byte(i >> 16), byte(i >> 8), byte(i)})
			}
			b.ReportAllocs()
			b.RunParallel(func(pb *testing.PB) {
				i := 0
				now := time.Now()
				for pb.Next() {
					l.Allow(addrs[i%bc.keys], now)
					i += 7919
				}
			})
		})
	}
}

package transport

import (
	"net"
	"net/netip"
	"runtime"
	"strconv"
	"sync"
	"sync/atomic"
	"testing"

	"github.com/seckill/seckill/actors"
	"github.com/seckill/seckill/limit"
	"github.com/seckill/seckill/persistence"
	"github.com/valyala/fasthttp"
)

// floodAddrs is how many distinct client addresses the flood comes from.
const floodAddrs = 200_000

// TestFloodThroughTrustedProxy: 200 000 client addresses, named by a
// trusted proxy's X-Forwarded-For, each once, while other buyers keep
// asking. The limiter tracks no more than its bound (and the heap shows
// it), nobody within the limits is refused, the node answers everyone, and
// an address past its burst gets 429 with Retry-After.
func TestFloodThroughTrustedProxy(t *testing.T) {
	const tracked = 4096
	store, err := persistence.OpenPebble(t.TempDir())
	if err != nil {
		t.Fatal(err)
	}
	node, err := actors.Start(store, actors.Options{})
	if err != nil {
		t.Fatal(err)
	}
	trusted, _ := limit.ParseCIDRs("127.0.0.1/32")
	// One request per 1000 s, bursts of 2: within the test a bucket only
	// empties.
	addrs := limit.New[netip.Addr](0.001, 2, tracked)
	front := NewServer(actors.NewLocal(node), testToken, nil).WithSecurity(Security{AddrLimit: addrs, TrustedProxies: trusted})
	srv := front.FastHTTP()
	ln, err := net.Listen("tcp", "127.0.0.1:0")
	if err != nil {
		t.Fatal(err)
	}
	done := make(chan error, 1)
	go func() { done <- srv.Serve(ln) }()
	t.Cleanup(func() {
		srv.Shutdown()
		<-done
		node.Close()
	})
	ts := &testServer{url: "http://" + ln.Addr().String(), node: node}
	ts.create(t, "flood", `{"stock":10,"shards":2}`)
	client := &fasthttp.HostClient{Addr: ln.Addr().String(), MaxConns: 16}
	get := func(xff string) (int, string) {
		req, resp := fasthttp.AcquireRequest(), fasthttp.AcquireResponse()
		defer fasthttp.ReleaseRequest(req)
		defer fasthttp.ReleaseResponse(resp)
		req.SetRequestURI("http://flood/v1/items/flood")
		req.Header.Set("X-Forwarded-For", xff)
		if err := client.Do(req, resp); err != nil {
			return 0, err.Error()
		}
		return resp.StatusCode(), string(resp.Header.Peek("Retry-After"))
	}

	var before, after runtime.MemStats
	runtime.GC()
	runtime.ReadMemStats(&before)
	var next, refused, failed, others atomic.Int64
	var maxLen atomic.Int64
	var wg sync.WaitGroup
	for range 8 {
		wg.Go(func() {
			for {
				i := next.Add(1) - 1
				if i >= floodAddrs {
					return
				}
				// 10.x.y.z, each address once, behind the proxy's own hop.
				xff := "10." + strconv.Itoa(int(i>>16)) + "." + strconv.Itoa(int(i>>8&0xff)) + "." + strconv.Itoa(int(i&0xff)) + ", 127.0.0.1"
				switch code, _ := get(xff); code {
				case 200:
				case 429:
					refused.Add(1)
				default:
					failed.Add(1)
				}
				if i%1000 == 0 {
					if n := int64(addrs.Len()); n > maxLen.Load() {
						maxLen.Store(n)
					}
					// Another buyer, first seen now: answered at once.
					if code, _ := get("192.168." + strconv.Itoa(int(i/1000>>8)) + "." + strconv.Itoa(int(i/1000&0xff))); code != 200 {
						failed.Add(1)
					}
					others.Add(1)
				}
			}
		})
	}
	wg.Wait()
	runtime.GC()
	runtime.ReadMemStats(&after)
	if refused.Load() != 0 || failed.Load() != 0 {
		t.Fatalf("%d refused and %d failed of %d first requests of their address (and %d others)", refused.Load(), failed.Load(), floodAddrs, others.Load())
	}
	if maxLen.Load() > int64(addrs.Cap()) || addrs.Len() > addrs.Cap() || addrs.Cap() != tracked {
		t.Fatalf("tracked %d (max seen %d), bound %d", addrs.Len(), maxLen.Load(), addrs.Cap())
	}
	// Tracking every address (~200 B each) would take ~40 MiB.
	if grew := int64(after.HeapAlloc) - int64(before.HeapAlloc); grew > 8<<20 {
		t.Fatalf("heap grew by %d bytes over the flood", grew)
	}
	// Past its burst an address is refused, and told when to come back.
	for i, want := range []int{200, 200, 429, 429} {
		code, retry := get("198.51.100.7")
		if code != want {
			t.Fatalf("request %d of one address: %d, want %d", i, code, want)
		}
		if code == 429 {
			if n, err := strconv.Atoi(retry); err != nil || n < 1 {
				t.Fatalf("Retry-After %q", retry)
			}
		}
	}
	t.Logf("%d addresses, %d others, tracked %d of %d, heap %+d KiB", floodAddrs, others.Load(), addrs.Len(), addrs.Cap(),
		(int64(after.HeapAlloc)-int64(before.HeapAlloc))>>10)
}

//go:build !race

package remote

import (
	"testing"

	"github.com/seckill/seckill/certs"
)

// BenchmarkRequestTLS: what TLS on the peer wire costs a request and its
// reply between two transports on loopback, many in flight as a front sends
// them, with and without certificates, in one run:
//
//	go test -run '^$' -bench RequestTLS -benchtime 20000x ./remote
func BenchmarkRequestTLS(b *testing.B) {
	dir := b.TempDir()
	if err := certs.CreateCA(dir, false); err != nil {
		b.Fatal(err)
	}
	load := func(name string) *certs.Node {
		if err := certs.CreateNode(dir, name, []string{hostA, hostB}, false); err != nil {
			b.Fatal(err)
		}
		n, err := certs.Load(dir, name)
		if err != nil {
			b.Fatal(err)
		}
		return n
	}
	nodeA, nodeB := load("a"), load("b")
	for _, c := range []struct {
		name   string
		ca, cb *certs.Node
	}{{"plain", nil, nil}, {"tls", nodeA, nodeB}} {
		b.Run(c.name, func(b *testing.B) {
			a := startNodeCfg(b, Config{Addr: hostA + ":0", Certs: c.ca})
			srv := startNodeCfg(b, Config{Addr: hostB + ":0", Certs: c.cb, OnRequest: echo})
			if _, err := a.Request(srv.Addr(), reqN(0), wait); err != nil {
				b.Fatal(err) // connected, handshake done
			}
			b.SetParallelism(16) // 32 requesters on 2 cores, as a front's connections
			b.ResetTimer()
			b.RunParallel(func(pb *testing.PB) {
				for pb.Next() {
					if _, err := a.Request(srv.Addr(), reqN(1), wait); err != nil {
						b.Error(err)
						return
					}
				}
			})
		})
	}
}

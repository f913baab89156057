//go:build !race

package remote

import (
	"flag"
	"log/slog"
	"slices"
	"testing"
	"time"

	"github.com/seckill/seckill/engine"
)

var measure = flag.Bool("remote.measure", false, "measure the round trip between two transports on loopback (not part of the suite)")

// TestMeasureRoundTrip: B echoes every message back to A; one message in
// flight at a time. Logs durations, asserts none.
func TestMeasureRoundTrip(t *testing.T) {
	if !*measure {
		t.Skip("a measurement: run with -remote.measure")
	}
	a := startNode(t, hostA+":0")
	var b *Transport
	// Nothing arrives at B before A's first send, after b is set.
	b, err := Start(Config{Addr: hostB + ":0", Logger: slog.Default(), Handle: func(_ Sender, m engine.Msg) { b.Send(a.Addr(), m) }})
	if err != nil {
		t.Fatal(err)
	}
	defer b.Close()
	const warm, n = 200, 2000
	rtts := make([]time.Duration, 0, n)
	for i := range warm + n {
		start := time.Now()
		a.Send(b.Addr(), seqMsg(uint64(i)))
		a.recv(t)
		if i >= warm {
			rtts = append(rtts, time.Since(start))
		}
	}
	slices.Sort(rtts)
	t.Logf("round trip A→B→A, %d sequential: p50 %v, p99 %v, max %v", n, rtts[n/2], rtts[n*99/100], rtts[n-1])
}

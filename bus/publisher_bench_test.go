package bus

import (
	"context"
	"testing"
)

// BenchmarkPublishBatch publishes batches of 256 distinct grabs through an
// in-process server with the default window and waits for every ack.
func BenchmarkPublishBatch(b *testing.B) {
	e := startServer(b, b.TempDir(), "")
	js := inProcess(b, e, Config{})
	p := NewPublisher(js, DefaultPublishWindow)
	defer p.Close()
	const batch = 256
	ctx := context.Background()
	var n uint64
	for b.Loop() {
		b.StopTimer()
		gs := grabs("bench", n+1, batch) // fresh ids, or the window would dedupe them
		n += batch
		b.StartTimer()
		if err := p.PublishBatch(ctx, gs); err != nil {
			b.Fatal(err)
		}
	}
	b.ReportMetric(float64(n)/b.Elapsed().Seconds(), "msgs/s")
}

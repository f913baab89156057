package system

import (
	"log/slog"
	"testing"
)

// BenchmarkWritable is what every grab pays for the stores' health check
// (actors.Options.Writable) on a node with its order side.
func BenchmarkWritable(b *testing.B) {
	sys, err := Open(Config{DataDir: b.TempDir(), NATSName: "bench", OrderWriters: 1, Logger: slog.New(slog.DiscardHandler)})
	if err != nil {
		b.Fatal(err)
	}
	defer sys.Close()
	b.ReportAllocs()
	b.RunParallel(func(pb *testing.PB) {
		for pb.Next() {
			if err := sys.writable(); err != nil {
				b.Fatal(err)
			}
		}
	})
}

package bench

// The harness's own tests run the in-process seckill as the binary does.
// system does not import bench, so this test-only import makes no cycle.
import (
	"log/slog"
	"os"

	"github.com/seckill/seckill/system"
)

func testLocal(dataDir, token string, orders bool) (*Target, error) {
	sys, err := system.Open(system.Config{
		DataDir: dataDir, HTTPAddr: "127.0.0.1:0", AdminToken: token, NATSName: "bench-test",
		OrderWriters: 1, NoOrders: !orders,
		Logger: slog.New(slog.NewTextHandler(os.Stderr, &slog.HandlerOptions{Level: slog.LevelWarn})),
	})
	if err != nil {
		return nil, err
	}
	return LocalTarget(sys.URL(), token, sys.Close), nil
}

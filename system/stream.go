package system

import (
	"context"
	"log/slog"
	"path/filepath"
	"time"

	"github.com/nats-io/nats.go"
	"github.com/nats-io/nats.go/jetstream"
	"github.com/seckill/seckill/bus"
	"github.com/seckill/seckill/orders"
	"github.com/seckill/seckill/sale"
)

// ensureRetry is how often stream set-up is retried while NATS is away.
const ensureRetry = 2 * time.Second

// Stream is a connection to NATS JetStream, embedded or external.
type Stream struct {
	Emb *bus.Embedded // nil when the server is external
	nc  *nats.Conn
	JS  jetstream.JetStream
}

// Connected reports whether the connection to NATS is up.
func (s *Stream) Connected() bool { return s.nc != nil && s.nc.IsConnected() }

// OpenStream starts the embedded server under dataDir/nats (listening on
// listen, "" for in-process only; listening, it admits only the key in
// its CredsPath) or dials url with auth.
func OpenStream(url, dataDir, listen, name string, auth bus.ClientAuth) (*Stream, error) {
	s := &Stream{}
	var err error
	if url == "" {
		if s.Emb, err = bus.StartEmbedded(filepath.Join(dataDir, "nats"), listen); err != nil {
			return nil, err
		}
		s.nc, err = s.Emb.Connect(name)
	} else {
		s.nc, err = bus.Dial(url, name, auth)
	}
	if err != nil {
		s.Close()
		return nil, err
	}
	if s.JS, err = jetstream.New(s.nc); err != nil {
		s.Close()
		return nil, err
	}
	return s, nil
}

// Ensure sets up streams and consumer, retrying until it works or ctx ends:
// NATS being away at start does not stop the sale.
func (s *Stream) Ensure(ctx context.Context, cfg bus.Config, log *slog.Logger) error {
	for {
		c, cancel := context.WithTimeout(ctx, 10*time.Second)
		err := bus.Ensure(c, s.JS, cfg)
		cancel()
		if err == nil {
			return nil
		}
		log.Warn("nats: stream set-up failed, retrying", "err", err)
		select {
		case <-ctx.Done():
			return ctx.Err()
		case <-time.After(ensureRetry):
		}
	}
}

// Close ends the connection; nothing unacknowledged is lost with it (the
// relay republishes from its cursor, writers' messages are redelivered).
func (s *Stream) Close() {
	if s.Emb != nil {
		s.Emb.Shutdown() // drains its in-process connections first
		return
	}
	if s.nc != nil {
		s.nc.Close()
	}
}

// StreamReader lists the grab ids of an item in the stream.
func StreamReader(js jetstream.JetStream) orders.StreamReader {
	return func(ctx context.Context, item string, fn func(string, int64) error) error {
		return bus.GrabsInStreamAt(ctx, js, item, func(m bus.GrabMsg, storedMs int64) error { return fn(m.GrabID, storedMs) })
	}
}

// DeadLetters adapts the bus to the admin API (sale.DeadLetters).
type DeadLetters struct{ JS jetstream.JetStream }

func (d DeadLetters) ListDead(ctx context.Context, limit int) ([]sale.DeadLetter, error) {
	return bus.ListDead(ctx, d.JS, limit)
}

func (d DeadLetters) RetryDead(ctx context.Context, grabID string) error {
	return bus.RetryDead(ctx, d.JS, grabID)
}

package system

import (
	"context"
	"crypto/tls"
	"errors"
	"fmt"
	"log/slog"
	"net"
	"time"

	"github.com/redis/go-redis/v9"
	"github.com/seckill/seckill/engine"
	"github.com/seckill/seckill/persistence"
)

const (
	// DefaultSnapshotInterval: how often a clustered node writes the
	// snapshots of shards that changed. A move loads the last snapshot and
	// the shard's journal tail, so this bounds how much history a forced
	// move may miss, not what a cooperative move sees (it writes a final
	// one); five seconds keeps Redis writes to a few per shard per
	// lease.
	DefaultSnapshotInterval = 5 * time.Second
	// SnapshotTimeout bounds one snapshot write to Redis.
	SnapshotTimeout = 5 * time.Second
	// FinalSnapshotTimeout bounds the snapshots written on SIGTERM, so that
	// a Redis that went away cannot hold a stopping node (the journal in
	// Pebble has everything; a snapshot only speeds a move up).
	FinalSnapshotTimeout = 10 * time.Second
	// snapshotEpoch is the incarnation written when no placement says
	// otherwise (snapshotter.epochOf unset); a clustered node writes the
	// epoch etcd places each of its shards at.
	snapshotEpoch = 1
)

// snapshotter writes shard snapshots to Redis in the background and once
// more when the node stops. It reads only what is durable: a consistent
// read view of the store, never the actors' memory (which holds decisions
// still on their way to disk), so a snapshot never shows a grab that a
// crash could lose.
type snapshotter struct {
	store persistence.Viewer
	snaps *persistence.RedisSnapshots
	rdb   *redis.Client
	every time.Duration
	log   *slog.Logger
	// saved: the durable counters each shard's last snapshot was taken of.
	saved map[shardID]engine.Counters
	// epochOf, when set (a sale spread over nodes), says which shards this
	// node owns and as which incarnation: only those are written.
	epochOf func(item string, shard int) (uint64, bool)
	stop    chan struct{}
	done    chan struct{}
}

type shardID struct {
	item  string
	shard int
}

// openRedis connects to redis (a redis:// or rediss:// URL, its server
// verified by the certificates in caFile if set) dialling from ip, and
// checks that it answers. Its errors show the URL without its password.
func openRedis(url, caFile string, ip net.IP) (*redis.Client, error) {
	opts, err := persistence.RedisOptions(url, caFile)
	if err != nil {
		return nil, err
	}
	dialer := &net.Dialer{LocalAddr: &net.TCPAddr{IP: ip}, Timeout: SnapshotTimeout}
	// go-redis does TLS only in its own dialer: this one does it itself.
	tlsCfg := opts.TLSConfig
	opts.Dialer = func(ctx context.Context, network, addr string) (net.Conn, error) {
		conn, err := dialer.DialContext(ctx, network, addr)
		if err != nil || tlsCfg == nil {
			return conn, err
		}
		tc := tls.Client(conn, tlsCfg)
		if err := tc.HandshakeContext(ctx); err != nil {
			conn.Close()
			return nil, err
		}
		return tc, nil
	}
	rdb := redis.NewClient(opts)
	ctx, cancel := context.WithTimeout(context.Background(), SnapshotTimeout)
	defer cancel()
	if err := rdb.Ping(ctx).Err(); err != nil {
		rdb.Close()
		return nil, fmt.Errorf("redis %s unreachable from %s: %w", persistence.RedactURL(url), ip, persistence.ScrubURL(err, url))
	}
	return rdb, nil
}

func newSnapshotter(rdb *redis.Client, every time.Duration, log *slog.Logger) *snapshotter {
	if every <= 0 {
		every = DefaultSnapshotInterval
	}
	return &snapshotter{snaps: persistence.NewRedisSnapshots(rdb), rdb: rdb, every: every, log: log,
		saved: map[shardID]engine.Counters{}, stop: make(chan struct{}), done: make(chan struct{})}
}

// run writes changed shards every interval until stopped.
func (s *snapshotter) run() {
	defer close(s.done)
	t := time.NewTicker(s.every)
	defer t.Stop()
	for {
		select {
		case <-s.stop:
			return
		case <-t.C:
			view, release := s.store.ReadView()
			s.pass(view, time.Now().Add(s.every+SnapshotTimeout))
			release()
		}
	}
}

// final stops the background loop and writes every changed shard from r,
// the store once all decisions are durable (actors.Options.OnClose).
func (s *snapshotter) final(r persistence.Reader) {
	close(s.stop)
	<-s.done
	s.pass(r, time.Now().Add(FinalSnapshotTimeout))
}

// pass writes a snapshot of every shard whose durable counters changed
// since its last snapshot, until deadline. A write that fails ends the
// pass (Redis is likely away: the next pass tries again), so a pass never
// spends a timeout per shard.
func (s *snapshotter) pass(r persistence.Reader, deadline time.Time) {
	items, err := r.Items()
	if err != nil {
		s.log.Warn("snapshots: list items", "err", err)
		return
	}
	var wrote, failed int
	for _, cfg := range items {
		for i := range cfg.Shards {
			id := shardID{cfg.Item, i}
			epoch := uint64(snapshotEpoch)
			if s.epochOf != nil {
				e, ok := s.epochOf(cfg.Item, i)
				if !ok {
					continue
				}
				epoch = e
			}
			c, err := r.ShardCounters(cfg.Item, i)
			if errors.Is(err, persistence.ErrNoShard) {
				continue
			}
			if err != nil {
				failed++
				continue
			}
			if last, ok := s.saved[id]; ok && last == c {
				continue
			}
			if err := s.write(r, cfg, i, epoch, deadline); err != nil {
				s.log.Warn("snapshots: pass ended", "item", cfg.Item, "shard", i, "written", wrote, "err", err)
				return
			}
			s.saved[id] = c
			wrote++
		}
	}
	if wrote+failed > 0 {
		s.log.Debug("snapshots", "wrote", wrote, "failed", failed)
	}
}

func (s *snapshotter) write(r persistence.Reader, cfg engine.ItemConfig, i int, epoch uint64, deadline time.Time) error {
	sh, err := persistence.LoadShard(r, cfg, i)
	if err != nil {
		return err
	}
	if d := time.Now().Add(SnapshotTimeout); d.Before(deadline) {
		deadline = d
	}
	ctx, cancel := context.WithDeadline(context.Background(), deadline)
	defer cancel()
	err = s.snaps.SaveSnapshot(ctx, sh.Snapshot(epoch))
	if errors.Is(err, persistence.ErrStaleSnapshot) {
		// A newer one is there already (written before a restart from
		// an older copy of this data): nothing is lost.
		return nil
	}
	return err
}

func (s *snapshotter) close() error { return s.rdb.Close() }

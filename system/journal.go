package system

import (
	"context"
	"errors"
	"fmt"
	"time"

	"github.com/nats-io/nats.go"
	"github.com/nats-io/nats.go/jetstream"

	"github.com/seckill/seckill/bus"
)

// JournalEnsureTimeout bounds the wait for the journal's stream at start: a
// three-server NATS cluster elects its JetStream leader within seconds of
// its third server; past this the node does not start.
const JournalEnsureTimeout = 30 * time.Second

// journalRetry is the pause between attempts to create the journal stream
// while the NATS cluster is not ready; journalTry bounds one attempt.
const (
	journalRetry = 250 * time.Millisecond
	journalTry   = 5 * time.Second
)

// openJournal connects to the cluster's NATS (its own connection: the
// journal is on every commit round's path, the order pipeline is not) and
// makes sure the JOURNAL stream exists with replicas copies.
func openJournal(url, name string, auth bus.ClientAuth, replicas int) (*bus.Journal, *nats.Conn, error) {
	nc, err := bus.Dial(url, name+"-journal", auth)
	if err != nil {
		return nil, nil, err
	}
	js, err := jetstream.New(nc)
	if err != nil {
		nc.Close()
		return nil, nil, err
	}
	ctx, cancel := context.WithTimeout(context.Background(), JournalEnsureTimeout)
	defer cancel()
	for {
		// Each try bounded on its own: a JetStream cluster that has just
		// elected its meta leader may leave a first create unanswered.
		try, cancelTry := context.WithTimeout(ctx, journalTry)
		j, err := bus.EnsureJournal(try, js, replicas)
		cancelTry()
		if err == nil {
			return j, nc, nil
		}
		select {
		case <-ctx.Done():
			nc.Close()
			return nil, nil, fmt.Errorf("journal on %s (%d replicas): %w", url, replicas, err)
		case <-time.After(journalRetry):
		}
	}
}

// published is the grid's Published: what the order stream holds of a
// shard's grabs. Without an order side nothing is relayed, so nothing is.
func (s *System) published(cfg Config) func(context.Context, string, int) (uint64, error) {
	return func(ctx context.Context, item string, shard int) (uint64, error) {
		if cfg.NoOrders {
			return 0, nil
		}
		st := s.streamReady.Load()
		if st == nil {
			return 0, errors.New("the order stream is not open yet")
		}
		return bus.PublishedUpTo(ctx, st.JS, item, shard)
	}
}

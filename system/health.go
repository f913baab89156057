package system

import (
	"errors"

	"github.com/seckill/seckill/persistence"
)

// natsReserveBytes is what the embedded stream needs free beside the
// Pebble stores: a few of its 8 MiB message blocks and its index files.
const natsReserveBytes = 32 << 20

// diskReserve is the free space the data directory's file system must keep
// for writes to go on: each Pebble store's reserve and the stream's.
func diskReserve(cfg Config) uint64 {
	r := uint64(persistence.StoreReserveBytes)
	if !cfg.NoOrders {
		r += persistence.StoreReserveBytes
		if cfg.NATSURL == "" {
			r += natsReserveBytes
		}
	}
	return r
}

// Store names in StoreHealth.
const (
	StoreGrabs  = "grabs"
	StoreOrders = "orders"
	StoreNATS   = "nats"
)

// errJetStreamOff: the embedded server turned JetStream off, which it does
// on a storage error it cannot go on from.
var errJetStreamOff = errors.New("nats: JetStream is disabled (a storage error?)")

// StoreHealth says, per store, whether it takes writes now (nil) or why
// not: the disk below its reserve, a write Pebble failed, JetStream off.
// Grabs answer 503 while any of them cannot write; /healthz shows it, and
// a readiness check can use it as is.
func (s *System) StoreHealth() map[string]error {
	h := map[string]error{}
	if s.store != nil {
		h[StoreGrabs] = s.store.Health()
	}
	if s.ostore != nil {
		h[StoreOrders] = s.ostore.Health()
	}
	if s.Stream != nil {
		var err error
		if s.Stream.Emb != nil {
			if !s.Stream.Emb.JetStreamEnabled() {
				err = errJetStreamOff
			} else if gerr := s.guard.Err(); gerr != nil {
				err = gerr
			}
		}
		h[StoreNATS] = err
	}
	return h
}

// writable is nil while every store takes writes (actors.Options.Writable):
// atomic loads only, it runs on every grab.
func (s *System) writable() error {
	if err := s.store.Health(); err != nil {
		return err
	}
	if s.ostore != nil {
		if err := s.ostore.Health(); err != nil {
			return err
		}
	}
	if s.Stream != nil && s.Stream.Emb != nil && !s.Stream.Emb.JetStreamEnabled() {
		return errJetStreamOff
	}
	return nil
}

// healthStrings is StoreHealth for /healthz.
func (s *System) healthStrings() map[string]string {
	out := map[string]string{}
	for k, err := range s.StoreHealth() {
		out[k] = ""
		if err != nil {
			out[k] = err.Error()
		}
	}
	return out
}

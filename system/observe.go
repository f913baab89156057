package system

import (
	"context"
	"fmt"

	"github.com/cockroachdb/pebble/v2"
	"github.com/prometheus/client_golang/prometheus"
	"github.com/seckill/seckill/bus"
	"github.com/seckill/seckill/metrics"
	"github.com/seckill/seckill/persistence"
	"github.com/seckill/seckill/sale"
	"github.com/seckill/seckill/transport"
)

// ReadyMaxRelayLag is how many confirmed grabs the stream may lag behind
// before /readyz says the node is not ready: at the whole system's durable
// rate here (15-30 k grabs/s) about two seconds of sales, past which the
// relay is not keeping up (NATS down or slow) and orders fall behind.
const ReadyMaxRelayLag = 50_000

// observed is what the node's metrics need across Open.
type observed struct {
	reg    *prometheus.Registry
	rounds *metrics.Rounds
	grabs  *metrics.Grabs
	http   *transport.HTTPMetrics
}

// observeRounds starts the registry (unless metrics are off) and returns
// the group-commit observer for the node's options.
func (s *System) observeRounds(cfg Config) *metrics.Rounds {
	if cfg.NoMetrics {
		return nil
	}
	s.obs.reg = metrics.NewRegistry()
	s.obs.rounds = metrics.NewRounds()
	s.obs.reg.MustRegister(s.obs.rounds.Collectors()...)
	return s.obs.rounds
}

// frontService is the sale as the front calls it: counted by outcome when
// metrics are on.
func (s *System) frontService() sale.Service {
	if s.obs.reg == nil {
		return s.svc
	}
	s.obs.grabs = metrics.CountGrabs(s.svc)
	return s.obs.grabs
}

// observe registers the node's collectors and gives the front its
// metrics, readiness and dashboard sources.
func (s *System) observe(f *transport.Server, store *persistence.Pebble) *transport.Server {
	f = f.WithReadiness(s.readiness)
	board := &transport.Board{RelayLag: s.Node.RelayLag}
	if s.obs.reg == nil {
		return f.WithBoard(board)
	}
	reg := s.obs.reg
	s.obs.http = transport.NewHTTPMetrics()
	stores := map[string]func() *pebble.Metrics{"grabs": store.Metrics}
	p := &metrics.Pipeline{RelayLag: s.Node.RelayLag, Relayed: s.Node.Relayed}
	if s.Pipeline != nil {
		if o, ok := s.Pipeline.ostore.(interface{ Metrics() *pebble.Metrics }); ok {
			stores["orders"] = o.Metrics
		}
		js, node := s.Stream.JS, s.node
		p.Backlog = func(ctx context.Context) (int64, error) { return bus.Backlog(ctx, js, node) }
		p.Dead = func(ctx context.Context) (int64, error) { return bus.DeadCount(ctx, js) }
		p.Written = s.Pipeline.Orders.Written
		p.PublishErrors = s.Pipeline.PublishErrors
		board.Backlog, board.Dead = p.Backlog, p.Dead
	}
	reg.MustRegister(s.obs.http, s.obs.grabs, metrics.NewItems(s.svc), metrics.NewPebble(stores), p)
	if s.tr != nil {
		reg.MustRegister(&metrics.Peer{Refused: s.peerRefused, Forwarded: s.grabsForwarded})
	}
	g := s.obs.grabs
	board.Outcomes = func() map[string]uint64 {
		t := g.Totals()
		m := make(map[string]uint64, len(t))
		for k, v := range t {
			m[metrics.KindNames[k]] = v
		}
		return m
	}
	return f.WithMetrics(reg, s.obs.http).WithBoard(board)
}

// readiness lists what keeps the node from confirming grabs now.
func (s *System) readiness() []string {
	var problems []string
	if s.Node.CommitFailing() {
		problems = append(problems, "journal: the last group commit failed (Pebble not writable)")
	}
	stores := s.StoreHealth()
	for _, name := range []string{StoreGrabs, StoreOrders, StoreNATS} {
		if err := stores[name]; err != nil {
			problems = append(problems, name+": "+err.Error())
		}
	}
	if !s.Node.MayConfirm() {
		problems = append(problems, "cluster: the node's lease or placement is not current")
	}
	if lag := s.Node.RelayLag(); lag > ReadyMaxRelayLag {
		problems = append(problems, fmt.Sprintf("relay: %d confirmed grabs not in the stream (bound %d)", lag, ReadyMaxRelayLag))
	}
	if s.Stream != nil && !s.Stream.Connected() {
		problems = append(problems, "stream: NATS not connected")
	}
	return problems
}

// grabsForwarded is how many grabs this front sent to another node.
func (s *System) grabsForwarded() uint64 {
	if g := s.gridReady.Load(); g != nil {
		return uint64(g.Forwarded())
	}
	return 0
}

// peerRefused is what the peer port refused: the transport's reasons, and
// the grid's (messages a sender may not say, requests for shards elsewhere).
func (s *System) peerRefused() map[string]uint64 {
	m := s.tr.Refused()
	m["sender"], m["not_owner"] = 0, 0
	if g := s.gridReady.Load(); g != nil {
		m["sender"], m["not_owner"] = uint64(g.Unheard()), uint64(g.Foreign())
	}
	return m
}

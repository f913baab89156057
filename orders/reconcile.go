package orders

import (
	"context"
	"errors"
	"fmt"
	"slices"

	"github.com/seckill/seckill/engine"
	"github.com/seckill/seckill/persistence"
	"github.com/seckill/seckill/sale"
)

const (
	// ReconcileGraceMs is the in-flight allowance: a grab younger than this
	// without a message or an order is in flight, not missing; and a
	// message stored, or an order written, less than this ago whose grab
	// is not in the snapshot may be of a grab decided after it. Older, such
	// a message or order has no grab: forged onto the bus, or its grab lost.
	ReconcileGraceMs = 30_000
	// maxIDsPerMismatch bounds the grab ids listed per mismatch.
	maxIDsPerMismatch = 100
)

// StreamReader feeds fn every grab message of an item in the stream, with
// when the stream stored it (Unix ms, by the stream's clock, which no
// publisher sets).
type StreamReader func(ctx context.Context, item string, fn func(grabID string, storedMs int64) error) error

// Facts are what one node's stores hold of an item: the grabs in its grab
// log, the releases, the counters of the shards it answers for, and the
// orders its order writers wrote. One node holds all of them; in a cluster
// each node holds its part, and Check merges them.
type Facts struct {
	Node     string                  `json:"node"`
	Grabs    []engine.Grab           `json:"grabs"`
	Released []string                `json:"released"`
	Counters map[int]engine.Counters `json:"counters"`
	Orders   []engine.Order          `json:"orders"`
	// Releasing: cancelled orders whose units are not yet released.
	Releasing []string `json:"releasing"`
	// Broken: shards whose stored state does not add up.
	Broken []string `json:"broken"`
}

// Gather reads an item's facts from one node's stores, from one snapshot
// of the grab log. shards says which shards' counters count (nil: all).
// orders may be nil (no order store here).
func Gather(store persistence.Viewer, orders persistence.OrderStore, cfg engine.ItemConfig, shards func(int) bool) (Facts, error) {
	view, release := store.ReadView()
	defer release()
	return gather(view, orders, cfg, shards)
}

func gather(view persistence.Reader, orders persistence.OrderStore, cfg engine.ItemConfig, shards func(int) bool) (Facts, error) {
	f := Facts{Counters: map[int]engine.Counters{}}
	for i := 0; i < cfg.Shards; i++ {
		sh, err := persistence.LoadShard(view, cfg, i) // checks sold against the grabs
		if errors.Is(err, persistence.ErrNoShard) {
			continue // never ran here (a cluster)
		}
		if err != nil {
			f.Broken = append(f.Broken, fmt.Sprintf("%s.%d: %v", cfg.Item, i, err))
			continue
		}
		if shards == nil || shards(i) {
			f.Counters[i] = sh.Counters()
		}
		// Gap grabs (a forced move's skipped sequences) are nobody's:
		// no message, no order, and their release moved no unit.
		var gaps map[uint64]bool
		if err := view.ShardGrabs(cfg.Item, i, func(g engine.Grab) error {
			if g.IsGap() {
				if gaps == nil {
					gaps = map[uint64]bool{}
				}
				gaps[g.Seq] = true
				return nil
			}
			f.Grabs = append(f.Grabs, g)
			return nil
		}); err != nil {
			return f, err
		}
		if err := view.ShardReleases(cfg.Item, i, func(seq uint64) error {
			if !gaps[seq] {
				f.Released = append(f.Released, engine.Grab{Item: cfg.Item, Shard: i, Seq: seq}.ID())
			}
			return nil
		}); err != nil {
			return f, err
		}
	}
	if orders != nil {
		unreleased, err := orders.Unreleased(1 << 20)
		if err != nil {
			return f, err
		}
		f.Releasing = unreleased
		if err := orders.Scan(cfg.Item, func(o engine.Order) error { f.Orders = append(f.Orders, o); return nil }); err != nil {
			return f, err
		}
	}
	return f, nil
}

// Reconcile builds the report of one item. It only reads, and can run while
// the node sells: grabs, releases and counters come from one snapshot
// taken first; stream messages and orders of grabs newer than the snapshot
// are left out, and what is younger than ReconcileGraceMs is in flight, not
// missing. Offline (live false, a stopped node) nothing is newer than the
// snapshot, so every message and order must have its grab. stream may be
// nil (no stream to compare with).
func Reconcile(ctx context.Context, store persistence.Viewer, orders persistence.OrderStore, stream StreamReader, cfg engine.ItemConfig, nowMs int64, live bool) (sale.Report, error) {
	view, release := store.ReadView()
	defer release()
	st, err := view.Pool(cfg.Item)
	if err != nil {
		return sale.Report{Item: cfg.Item}, err
	}
	f, err := gather(view, orders, cfg, nil)
	if err != nil {
		return sale.Report{Item: cfg.Item}, err
	}
	return Check(ctx, cfg, st, []Facts{f}, stream, orders != nil, nowMs, live)
}

// Check builds the report of one item from the facts of every node that
// holds a part of it, the pool's ledger and the stream. hasOrders: the
// facts carry orders. The same grab in two nodes' logs (a shard that
// moved) must be the same grab; an order in two nodes' stores is a
// duplicate.
func Check(ctx context.Context, cfg engine.ItemConfig, st engine.PoolState, facts []Facts, stream StreamReader, hasOrders bool, nowMs int64, live bool) (sale.Report, error) {
	rep := sale.Report{Item: cfg.Item, Orders: map[string]int{}, Mismatches: []sale.Mismatch{}}
	bad := map[string][]string{}
	add := func(kind, id string) { bad[kind] = append(bad[kind], id) }
	pool, err := engine.RestorePool(cfg, st)
	if err != nil {
		return rep, err
	}
	grabs := map[string]engine.Grab{}
	released := map[string]bool{}
	releasing := map[string]bool{}
	counters := make([]engine.Counters, cfg.Shards)
	counted := make([]bool, cfg.Shards)
	for _, f := range facts {
		for _, b := range f.Broken {
			add("shard_counters", b)
		}
		for _, g := range f.Grabs {
			id := g.ID()
			if old, ok := grabs[id]; ok && (old.User != g.User || old.Qty != g.Qty || old.Key != g.Key) {
				add("grab_differs_between_nodes", id)
			}
			grabs[id] = g
		}
		for _, id := range f.Released {
			released[id] = true
		}
		for _, id := range f.Releasing {
			releasing[id] = true
		}
		for i, c := range f.Counters {
			if i < 0 || i >= cfg.Shards {
				continue
			}
			if counted[i] {
				add("shard_counted_twice", fmt.Sprintf("%s.%d", cfg.Item, i))
			}
			counters[i], counted[i] = c, true
		}
	}
	for i, ok := range counted {
		if !ok {
			add("shard_unreported", fmt.Sprintf("%s.%d", cfg.Item, i))
		}
	}
	b := engine.Account(pool, counters)
	rep.Stock, rep.Sold, rep.Remaining = b.Stock, b.Sold, b.Remaining()
	if len(facts) > 1 && live {
		// The ledger and each node's counters are read at different
		// moments: units moving between them may be counted on both
		// sides or neither. Only what no timing excuses is checked.
		rep.Remaining = b.Stock - b.Sold
		if b.Sold > b.Stock {
			add("conservation", fmt.Sprintf("sold %d of stock %d", b.Sold, b.Stock))
		}
	} else if err := b.Check(); err != nil {
		add("conservation", err.Error())
	}
	rep.Grabs, rep.Released = len(grabs), len(released)
	young := func(id string) bool { return nowMs-grabs[id].AtMs < ReconcileGraceMs }
	inFlight := map[string]bool{}
	// newer: a message or an order, made atMs, whose grab may have been
	// decided after the snapshot: its id is past what its shard had
	// confirmed then, and it is younger than the allowance (a grab is
	// durable before its message is published and its order written, so
	// one older than that had its grab in the snapshot, if it had one).
	// Such a grab is not counted in flight: in_flight counts grabs the
	// report holds.
	newer := func(id string, atMs int64) bool {
		_, sh, seq, ok := engine.ParseGrabID(id)
		return live && ok && sh < len(counters) && seq >= counters[sh].NextSeq && nowMs-atMs < ReconcileGraceMs
	}

	if stream != nil {
		rep.StreamCheck = true
		seen := map[string]bool{}
		if err := stream(ctx, cfg.Item, func(id string, storedMs int64) error {
			if _, ok := grabs[id]; !ok {
				if newer(id, storedMs) {
					return nil
				}
				add("message_without_grab", id)
			}
			seen[id] = true
			return nil
		}); err != nil {
			return rep, err
		}
		rep.InStream = len(seen)
		for id := range grabs {
			if !seen[id] {
				if young(id) {
					inFlight[id] = true
				} else {
					add("grab_not_in_stream", id)
				}
			}
		}
	}

	if hasOrders {
		have := map[string]bool{}
		for _, f := range facts {
			for _, o := range f.Orders {
				g, ok := grabs[o.GrabID]
				if !ok && newer(o.GrabID, o.CreatedMs) {
					continue
				}
				if have[o.GrabID] {
					add("duplicate_order", o.GrabID)
				}
				have[o.GrabID] = true
				rep.Orders[o.State.String()]++
				switch {
				case !ok:
					add("order_without_grab", o.GrabID)
				case g.User != o.User || g.Qty != o.Qty:
					add("order_differs_from_grab", o.GrabID)
				case o.State == engine.Cancelled && !released[o.GrabID] && !releasing[o.GrabID]:
					if nowMs-o.UpdatedMs < ReconcileGraceMs {
						inFlight[o.GrabID] = true // released after the snapshot
					} else {
						add("cancelled_not_released", o.GrabID)
					}
				case o.State != engine.Cancelled && released[o.GrabID]:
					add("released_not_cancelled", o.GrabID)
				}
			}
		}
		for id := range grabs {
			if !have[id] {
				if young(id) {
					inFlight[id] = true
				} else {
					add("grab_without_order", id)
				}
			}
		}
	}
	rep.InFlight = len(inFlight)
	kinds := make([]string, 0, len(bad))
	for k := range bad {
		kinds = append(kinds, k)
	}
	slices.Sort(kinds)
	for _, k := range kinds {
		ids := bad[k]
		slices.Sort(ids)
		rep.Mismatches = append(rep.Mismatches, sale.Mismatch{Kind: k, Count: len(ids), GrabIDs: ids[:min(len(ids), maxIDsPerMismatch)]})
	}
	rep.Clean = len(rep.Mismatches) == 0
	return rep, nil
}

package orders

import (
	"context"
	"fmt"
	"slices"

	"github.com/seckill/seckill/engine"
	"github.com/seckill/seckill/persistence"
	"github.com/seckill/seckill/sale"
)

const (
	// ReconcileGraceMs: a grab younger than this without a message or an
	// order is in flight, not missing.
	ReconcileGraceMs = 30_000
	// maxIDsPerMismatch bounds the grab ids listed per mismatch.
	maxIDsPerMismatch = 100
)

// StreamReader feeds fn every grab message of an item in the stream.
type StreamReader func(ctx context.Context, item string, fn func(grabID string) error) error

// Reconcile builds the report of one item. It only reads, and can run while
// the node sells: grabs, releases and counters come from one snapshot
// taken first; stream messages and orders of grabs newer than the snapshot
// are left out, and what is younger than ReconcileGraceMs is in flight, not
// missing. Offline (live false, a stopped node) nothing is newer than the
// snapshot, so every message and order must have its grab. stream may be
// nil (no stream to compare with).
func Reconcile(ctx context.Context, store persistence.Viewer, orders persistence.OrderStore, stream StreamReader, cfg engine.ItemConfig, nowMs int64, live bool) (sale.Report, error) {
	rep := sale.Report{Item: cfg.Item, Orders: map[string]int{}, Mismatches: []sale.Mismatch{}}
	bad := map[string][]string{}
	add := func(kind, id string) { bad[kind] = append(bad[kind], id) }
	view, release := store.ReadView()
	defer release()

	st, err := view.Pool(cfg.Item)
	if err != nil {
		return rep, err
	}
	pool, err := engine.RestorePool(cfg, st)
	if err != nil {
		return rep, err
	}
	grabs := map[string]engine.Grab{}
	released := map[string]bool{}
	counters := make([]engine.Counters, cfg.Shards)
	for i := 0; i < cfg.Shards; i++ {
		sh, err := persistence.LoadShard(view, cfg, i) // checks sold against the grabs
		if err != nil {
			add("shard_counters", fmt.Sprintf("%s.%d: %v", cfg.Item, i, err))
			continue
		}
		counters[i] = sh.Counters()
		if err := view.ShardGrabs(cfg.Item, i, func(g engine.Grab) error { grabs[g.ID()] = g; return nil }); err != nil {
			return rep, err
		}
		if err := view.ShardReleases(cfg.Item, i, func(seq uint64) error {
			released[engine.Grab{Item: cfg.Item, Shard: i, Seq: seq}.ID()] = true
			return nil
		}); err != nil {
			return rep, err
		}
	}
	b := engine.Account(pool, counters)
	rep.Stock, rep.Sold, rep.Remaining = b.Stock, b.Sold, b.Remaining()
	if err := b.Check(); err != nil {
		add("conservation", err.Error())
	}
	rep.Grabs, rep.Released = len(grabs), len(released)
	young := func(id string) bool { return nowMs-grabs[id].AtMs < ReconcileGraceMs }
	// newer: a grab decided after the snapshot (its message or order may
	// already exist).
	newer := func(id string) bool {
		_, sh, seq, ok := engine.ParseGrabID(id)
		return live && ok && sh < len(counters) && seq >= counters[sh].NextSeq
	}
	inFlight := map[string]bool{}

	if stream != nil {
		rep.StreamCheck = true
		seen := map[string]bool{}
		if err := stream(ctx, cfg.Item, func(id string) error {
			if _, ok := grabs[id]; !ok {
				if newer(id) {
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

	if orders != nil {
		unreleased, err := orders.Unreleased(1 << 20)
		if err != nil {
			return rep, err
		}
		releasing := map[string]bool{}
		for _, id := range unreleased {
			releasing[id] = true
		}
		have := map[string]bool{}
		if err := orders.Scan(cfg.Item, func(o engine.Order) error {
			g, ok := grabs[o.GrabID]
			if !ok && newer(o.GrabID) {
				return nil
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
			return nil
		}); err != nil {
			return rep, err
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

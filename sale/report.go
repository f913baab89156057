package sale

import (
	"context"

	"github.com/seckill/seckill/engine"
)

// Reconciler reports on one item.
type Reconciler func(ctx context.Context, item engine.ItemConfig) (Report, error)

// Report compares, for one item, the confirmed grabs on disk, the messages
// in the stream, the orders by state, the units released and the counters.
type Report struct {
	Item        string         `json:"item"`
	Stock       int64          `json:"stock"`
	Sold        int64          `json:"sold"`
	Remaining   int64          `json:"remaining"`
	Grabs       int            `json:"grabs"`
	Released    int            `json:"released"`
	InStream    int            `json:"in_stream"`
	Orders      map[string]int `json:"orders"`
	InFlight    int            `json:"in_flight"` // younger than the grace period, not yet everywhere
	Mismatches  []Mismatch     `json:"mismatches"`
	Clean       bool           `json:"clean"`
	StreamCheck bool           `json:"stream_checked"`
}

// Mismatch is one kind of disagreement, with the grab ids involved.
type Mismatch struct {
	Kind    string   `json:"kind"`
	Count   int      `json:"count"`
	GrabIDs []string `json:"grab_ids"`
}

package transport

import (
	"context"

	"github.com/valyala/fasthttp"
)

// Board is where the dashboard's event stream reads what the front alone
// does not know. Any func may be nil.
type Board struct {
	// Node is the sale's clock (Unix ms).
	Node func() int64
	// Outcomes: grab outcomes so far, summed over items, by kind.
	Outcomes func() map[string]uint64
	// Backlog: stream messages not yet orders; Dead: dead letters.
	Backlog, Dead func(ctx context.Context) (int64, error)
}

// WithBoard gives the event stream its sources.
func (s *Server) WithBoard(b *Board) *Server {
	s.board = b
	return s
}

func (s *Server) dashboard(ctx *fasthttp.RequestCtx) {
	writeError(ctx, fasthttp.StatusNotFound, "not_found", "not yet")
}

func (s *Server) events(ctx *fasthttp.RequestCtx) {
	writeError(ctx, fasthttp.StatusNotFound, "not_found", "not yet")
}

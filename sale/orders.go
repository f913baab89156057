package sale

import (
	"context"
	"errors"

	"github.com/seckill/seckill/engine"
)

// Orders runs the lifecycle of the orders that confirmed grabs make.
type Orders interface {
	// Get returns an order; ErrProcessing when the grab is confirmed but
	// its order is not written yet, ErrNoOrder when there is no such grab.
	Get(grabID string) (engine.Order, error)
	// Pay marks an order paid.
	Pay(grabID string) (engine.Order, engine.OrderOutcome, error)
	// Cancel cancels user's order and returns its units to stock;
	// ErrNotBuyer when the order is another user's.
	Cancel(grabID, user string) (engine.Order, engine.OrderOutcome, error)
}

// Errors of the order lifecycle.
var (
	ErrNoOrder    = engine.ErrNoOrder
	ErrProcessing = errors.New("grab confirmed, order not written yet")
	ErrNotBuyer   = errors.New("the order belongs to another user")
)

// DeadLetter is a grab message that no order writer could write after
// every retry: one grab, or a run of them that died whole (never acked: no
// writer running). The admin API lists it as JSON; Seq and Body stay with
// the stream that keeps it.
type DeadLetter struct {
	// GrabID is the grab's id, or a run's Msg-Id ("<first grab id>+<last
	// seq>"); "" when the original had neither Msg-Id nor a decodable body.
	GrabID     string `json:"grab_id"`
	Item       string `json:"item"`
	Seq        uint64 `json:"-"` // sequence in the dead-letter stream
	Deliveries int    `json:"deliveries"`
	Reason     string `json:"reason,omitempty"` // the writer's last error, or why the server gave up
	Body       []byte `json:"-"`                // the original message body
	// Subject is the original's subject (a cluster node's lane), where a
	// retry sends it back; "" for dead letters of before.
	Subject string `json:"-"`
}

// DeadLetters lists and retries dead letters.
type DeadLetters interface {
	ListDead(ctx context.Context, limit int) ([]DeadLetter, error)
	// RetryDead sends a dead letter to the order writers again; it returns
	// ErrNoDeadLetter when there is none for grabID.
	RetryDead(ctx context.Context, grabID string) error
}

// ErrNoDeadLetter: no dead letter for that grab id.
var ErrNoDeadLetter = errors.New("no such dead letter")

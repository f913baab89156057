package transport

import (
	"bytes"
	"context"
	"errors"
	"time"

	"github.com/seckill/seckill/engine"
	"github.com/seckill/seckill/sale"
	"github.com/valyala/fasthttp"
)

const (
	// adminCallTimeout bounds admin calls that reach the stream.
	adminCallTimeout = 10 * time.Second
	// maxDeadListed bounds one listing of dead letters.
	maxDeadListed = 1000
)

// WithOrders adds the order endpoints: the order service, the dead letters
// and the reconciler (each may be nil when that part is not running here).
func (s *Server) WithOrders(o sale.Orders, dead sale.DeadLetters, rec sale.Reconciler) *Server {
	s.orders, s.dead, s.reconcile = o, dead, rec
	return s
}

// WithLocalOrders names the node's own order store's service, which the
// order calls of other nodes of the cluster (admin calls under
// /admin/v1/cluster/orders/) are answered from, while the public ones go
// through the cluster-wide one.
func (s *Server) WithLocalOrders(o sale.Orders) *Server {
	s.localOrders = o
	return s
}

var (
	pathV1Orders    = []byte("/v1/orders/")
	pathAdminOrders = []byte("/admin/v1/orders/dead")
	pathReconcile   = "/admin/v1/reconcile"

	respProcessing   = []byte(`{"status":"processing"}`)
	respUnknownOrder = []byte(`{"status":"unknown_order"}`)
	respNoOrders     = []byte(`{"status":"unavailable","error":"orders are not served by this node"}`)
)

type orderView struct {
	GrabID    string `json:"grab_id"`
	Item      string `json:"item"`
	UserID    string `json:"user_id"`
	Qty       int64  `json:"qty"`
	Status    string `json:"status"`
	CreatedAt string `json:"created_at"`
	PayBy     string `json:"pay_by"`
	UpdatedAt string `json:"updated_at"`
	Reason    string `json:"reason,omitempty"`
}

func viewOrder(o engine.Order) orderView {
	ts := func(ms int64) string { return time.UnixMilli(ms).UTC().Format(time.RFC3339Nano) }
	return orderView{GrabID: o.GrabID, Item: o.Item, UserID: o.User, Qty: o.Qty, Status: o.State.String(),
		CreatedAt: ts(o.CreatedMs), PayBy: ts(o.PayByMs), UpdatedAt: ts(o.UpdatedMs), Reason: o.Reason}
}

// order routes /v1/orders/{grab_id}[/pay|/cancel]. With buyer auth, an
// order is read and cancelled only with its buyer's token; another buyer
// gets the 404 of an unknown order, so that ids cannot be probed.
func (s *Server) order(ctx *fasthttp.RequestCtx, rest []byte) {
	if s.orders == nil {
		writeJSON(ctx, fasthttp.StatusServiceUnavailable, respNoOrders)
		return
	}
	grabID, action, ok := orderPath(ctx, rest)
	if !ok {
		return
	}
	var (
		o   engine.Order
		out engine.OrderOutcome
		err error
	)
	switch action {
	case "":
		if !s.method(ctx, fasthttp.MethodGet) {
			return
		}
		var user string
		if s.buyerAuth() {
			if user, ok = s.tokenBuyer(ctx); !ok {
				return
			}
		}
		o, err = s.orders.Get(grabID)
		if err == nil && user != "" && o.User != user {
			err = sale.ErrNoOrder
		}
		out = engine.OrderUnchanged
	case "pay":
		if !s.method(ctx, fasthttp.MethodPost) || !s.verifyPayment(ctx, grabID) {
			return
		}
		o, out, err = s.orders.Pay(grabID)
	case "cancel":
		if !s.method(ctx, fasthttp.MethodPost) {
			return
		}
		body, derr := s.decodeBuyerBody(ctx.PostBody()) // {"user_id":...}
		if derr != nil {
			writeError(ctx, fasthttp.StatusBadRequest, "bad_request", derr.Error())
			return
		}
		user, ok := s.buyerOf(ctx, body.UserID)
		if !ok {
			return
		}
		o, out, err = s.orders.Cancel(grabID, user)
	default:
		writeError(ctx, fasthttp.StatusNotFound, "not_found", "no such path")
		return
	}
	if errors.Is(err, sale.ErrNotBuyer) && s.buyerAuth() {
		err = sale.ErrNoOrder
	}
	s.writeOrder(ctx, grabID, action, o, out, err)
}

// orderPath splits {grab_id}[/action]; false: answered 400.
func orderPath(ctx *fasthttp.RequestCtx, rest []byte) (grabID, action string, ok bool) {
	id := rest
	if i := bytes.IndexByte(rest, '/'); i >= 0 {
		id, action = rest[:i], string(rest[i+1:])
	}
	grabID = string(id)
	if _, _, _, ok := engine.ParseGrabID(grabID); !ok {
		writeError(ctx, fasthttp.StatusBadRequest, "bad_request", "grab id must look like <item>.<shard>.<seq>")
		return "", "", false
	}
	return grabID, action, true
}

var pathPeerOrders = []byte("/admin/v1/cluster/orders/")

// peerOrder answers an order call another node of the cluster makes
// (grid.Orders, an admin call): from this node's own order store, for the
// front that asks, which checked the buyer's token or the payment's
// signature itself; a cancel names its buyer in the body.
func (s *Server) peerOrder(ctx *fasthttp.RequestCtx, rest []byte) {
	if s.localOrders == nil {
		writeJSON(ctx, fasthttp.StatusNotFound, respNotClustered)
		return
	}
	grabID, action, ok := orderPath(ctx, rest)
	if !ok {
		return
	}
	var (
		o   engine.Order
		out engine.OrderOutcome
		err error
	)
	switch action {
	case "":
		if !s.method(ctx, fasthttp.MethodGet) {
			return
		}
		o, err = s.localOrders.Get(grabID)
	case "pay":
		if !s.method(ctx, fasthttp.MethodPost) {
			return
		}
		o, out, err = s.localOrders.Pay(grabID)
	case "cancel":
		if !s.method(ctx, fasthttp.MethodPost) {
			return
		}
		body, derr := DecodeGrabBody(ctx.PostBody())
		if derr != nil {
			writeError(ctx, fasthttp.StatusBadRequest, "bad_request", derr.Error())
			return
		}
		o, out, err = s.localOrders.Cancel(grabID, body.UserID)
	default:
		writeError(ctx, fasthttp.StatusNotFound, "not_found", "no such path")
		return
	}
	s.writeOrder(ctx, grabID, action, o, out, err)
}

func (s *Server) writeOrder(ctx *fasthttp.RequestCtx, grabID, action string, o engine.Order, out engine.OrderOutcome, err error) {
	switch {
	case errors.Is(err, sale.ErrProcessing):
		ctx.Response.Header.Set("Retry-After", RetryAfterSeconds)
		writeJSON(ctx, fasthttp.StatusAccepted, respProcessing)
	case errors.Is(err, sale.ErrNoOrder):
		writeJSON(ctx, fasthttp.StatusNotFound, respUnknownOrder)
	case errors.Is(err, sale.ErrNotBuyer):
		writeError(ctx, fasthttp.StatusForbidden, "forbidden", "the order belongs to another user")
	case err != nil:
		s.log.Error("order", "grab", grabID, "action", action, "err", err)
		ctx.Response.Header.Set("Retry-After", RetryAfterSeconds)
		writeJSON(ctx, fasthttp.StatusServiceUnavailable, respUnavailable)
	case out == engine.OrderConflict:
		// Paid wins over a later cancel and the other way round.
		writeValue(ctx, fasthttp.StatusConflict, viewOrder(o))
	default:
		writeValue(ctx, fasthttp.StatusOK, viewOrder(o))
	}
}

// adminDead routes /admin/v1/orders/dead[/{grab_id}/retry].
func (s *Server) adminDead(ctx *fasthttp.RequestCtx, rest []byte) {
	if s.dead == nil {
		writeJSON(ctx, fasthttp.StatusServiceUnavailable, respNoOrders)
		return
	}
	c, cancel := context.WithTimeout(context.Background(), adminCallTimeout)
	defer cancel()
	if len(rest) == 0 {
		if !s.method(ctx, fasthttp.MethodGet) {
			return
		}
		dead, err := s.dead.ListDead(c, maxDeadListed)
		if err != nil {
			s.log.Error("list dead letters", "err", err)
			writeJSON(ctx, fasthttp.StatusServiceUnavailable, respUnavailable)
			return
		}
		if dead == nil {
			dead = []sale.DeadLetter{}
		}
		writeValue(ctx, fasthttp.StatusOK, struct {
			Dead []sale.DeadLetter `json:"dead"`
		}{dead})
		return
	}
	id, ok := bytes.CutSuffix(rest, []byte("/retry"))
	if !ok || len(id) < 2 || id[0] != '/' {
		writeError(ctx, fasthttp.StatusNotFound, "not_found", "no such path")
		return
	}
	if !s.method(ctx, fasthttp.MethodPost) {
		return
	}
	grabID := string(id[1:])
	switch err := s.dead.RetryDead(c, grabID); {
	case err == nil:
		writeValue(ctx, fasthttp.StatusOK, map[string]string{"status": "retried", "grab_id": grabID})
	case errors.Is(err, sale.ErrNoDeadLetter):
		writeError(ctx, fasthttp.StatusNotFound, "unknown_dead_letter", "no dead letter for "+grabID)
	default:
		s.log.Error("retry dead letter", "grab", grabID, "err", err)
		writeJSON(ctx, fasthttp.StatusServiceUnavailable, respUnavailable)
	}
}

// adminReconcile answers GET /admin/v1/reconcile[?item=X]: 200 when clean,
// 409 with the mismatches otherwise.
func (s *Server) adminReconcile(ctx *fasthttp.RequestCtx) {
	if !s.method(ctx, fasthttp.MethodGet) {
		return
	}
	if s.reconcile == nil {
		writeJSON(ctx, fasthttp.StatusServiceUnavailable, respNoOrders)
		return
	}
	c, cancel := context.WithTimeout(context.Background(), adminCallTimeout)
	defer cancel()
	var items []sale.ItemView
	if q := ctx.QueryArgs().Peek("item"); q != nil {
		it, ok := s.svc.Item(string(q))
		if !ok {
			writeJSON(ctx, fasthttp.StatusNotFound, respUnknownItem)
			return
		}
		items = append(items, it)
	} else {
		items = s.svc.Items()
	}
	out := struct {
		Clean bool          `json:"clean"`
		Items []sale.Report `json:"items"`
	}{Clean: true, Items: []sale.Report{}}
	for _, it := range items {
		rep, err := s.reconcile(c, it.Config)
		if err != nil {
			s.log.Error("reconcile", "item", it.Config.Item, "err", err)
			writeJSON(ctx, fasthttp.StatusServiceUnavailable, respUnavailable)
			return
		}
		out.Clean = out.Clean && rep.Clean
		out.Items = append(out.Items, rep)
	}
	status := fasthttp.StatusOK
	if !out.Clean {
		status = fasthttp.StatusConflict
	}
	writeValue(ctx, status, out)
}

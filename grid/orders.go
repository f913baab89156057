package grid

import (
	"context"
	"encoding/json"
	"errors"
	"io"
	"net/http"
	"strings"
	"sync"
	"time"

	"github.com/seckill/seckill/engine"
	"github.com/seckill/seckill/sale"
)

// PeerOrdersPath is where a node asks another for an order: an admin call
// (the admin token), answered from that node's own order store without
// asking the others in turn. The asking front has checked the buyer's
// token or the payment's signature already; the public API has no way
// around those checks.
const PeerOrdersPath = "/admin/v1/cluster/orders/"

// Orders answers for the orders of the whole cluster: each node's order
// writers write the orders of the grabs they consumed from the shared
// stream into their own store, so an order is on exactly one node. A call
// tries this node's store, then asks the others (each from its own store).
type Orders struct {
	g     *Grid
	local sale.Orders
}

// Orders wraps this node's order service.
func (g *Grid) Orders(local sale.Orders) *Orders { return &Orders{g: g, local: local} }

// Get implements sale.Orders.
func (o *Orders) Get(grabID string) (engine.Order, error) {
	ord, err := o.local.Get(grabID)
	if !elsewhere(err) {
		return ord, err
	}
	r, ok := o.ask(http.MethodGet, grabID, "", "")
	if !ok {
		return ord, err
	}
	return r.order, r.err
}

// Pay implements sale.Orders.
func (o *Orders) Pay(grabID string) (engine.Order, engine.OrderOutcome, error) {
	ord, out, err := o.local.Pay(grabID)
	if !elsewhere(err) {
		return ord, out, err
	}
	r, ok := o.ask(http.MethodPost, grabID, "/pay", "")
	if !ok {
		return ord, out, err
	}
	return r.order, r.out, r.err
}

// Cancel implements sale.Orders.
func (o *Orders) Cancel(grabID, user string) (engine.Order, engine.OrderOutcome, error) {
	ord, out, err := o.local.Cancel(grabID, user)
	if !elsewhere(err) {
		return ord, out, err
	}
	body, _ := json.Marshal(struct {
		User string `json:"user_id"`
	}{user})
	r, ok := o.ask(http.MethodPost, grabID, "/cancel", string(body))
	if !ok {
		return ord, out, err
	}
	return r.order, r.out, r.err
}

// elsewhere: this node's store has no order for the grab; another may.
func elsewhere(err error) bool {
	return errors.Is(err, sale.ErrNoOrder) || errors.Is(err, sale.ErrProcessing)
}

type peerAnswer struct {
	order engine.Order
	out   engine.OrderOutcome
	err   error
}

// ask puts the call to every other live node at once and keeps the answer
// of the one that holds the order; false when none does.
func (o *Orders) ask(method, grabID, action, body string) (peerAnswer, bool) {
	v := o.g.view.Load()
	var mu sync.Mutex
	var found *peerAnswer
	var wg sync.WaitGroup
	for id, m := range v.peers {
		if id == o.g.cfg.Self.ID || m.CallURL() == "" {
			continue
		}
		wg.Go(func() {
			a, ok := o.g.orderCall(m.CallURL(), method, grabID, action, body)
			if !ok {
				return
			}
			mu.Lock()
			if found == nil {
				found = &a
			}
			mu.Unlock()
		})
	}
	wg.Wait()
	if found == nil {
		return peerAnswer{}, false
	}
	return *found, true
}

type orderJSON struct {
	GrabID    string `json:"grab_id"`
	Item      string `json:"item"`
	UserID    string `json:"user_id"`
	Qty       int64  `json:"qty"`
	Status    string `json:"status"`
	CreatedAt string `json:"created_at"`
	PayBy     string `json:"pay_by"`
	UpdatedAt string `json:"updated_at"`
	Reason    string `json:"reason"`
}

// orderCall makes one order call of the node at base; ok when that node's
// store holds the order (or its owner refused the caller).
func (g *Grid) orderCall(base, method, grabID, action, body string) (peerAnswer, bool) {
	ctx, cancel := context.WithTimeout(context.Background(), ViewTimeout)
	defer cancel()
	url := strings.TrimRight(base, "/") + PeerOrdersPath + grabID + action
	req, err := http.NewRequestWithContext(ctx, method, url, strings.NewReader(body))
	if err != nil {
		return peerAnswer{}, false
	}
	req.Header.Set("Authorization", "Bearer "+g.token)
	resp, err := g.httpClient().Do(req)
	if err != nil {
		return peerAnswer{}, false
	}
	defer drainClose(resp.Body)
	raw, err := io.ReadAll(io.LimitReader(resp.Body, 1<<16))
	if err != nil {
		return peerAnswer{}, false
	}
	var a peerAnswer
	switch resp.StatusCode {
	case http.StatusOK:
		a.out = engine.OrderChanged
	case http.StatusConflict:
		a.out = engine.OrderConflict
	case http.StatusForbidden:
		return peerAnswer{err: sale.ErrNotBuyer}, true
	default:
		return peerAnswer{}, false
	}
	var j orderJSON
	if json.Unmarshal(raw, &j) != nil {
		return peerAnswer{}, false
	}
	a.order = engine.Order{GrabID: j.GrabID, Item: j.Item, User: j.UserID, Qty: j.Qty, Reason: j.Reason,
		CreatedMs: ms(j.CreatedAt), PayByMs: ms(j.PayBy), UpdatedMs: ms(j.UpdatedAt)}
	for s := engine.PendingPayment; s <= engine.Cancelled; s++ {
		if s.String() == j.Status {
			a.order.State = s
		}
	}
	return a, a.order.State != 0
}

func ms(s string) int64 {
	t, err := time.Parse(time.RFC3339Nano, s)
	if err != nil {
		return 0
	}
	return t.UnixMilli()
}

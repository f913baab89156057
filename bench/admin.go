package bench

import (
	"bytes"
	"context"
	"encoding/json"
	"fmt"
	"net/http"

	"github.com/seckill/seckill/transport"
	"github.com/valyala/fasthttp"
)

// The harness's own targets (redis+lua, seeds) serve seckill's admin
// routes for the items the harness creates and reads, so that the harness
// reaches them alike in this process or in a child process:
//
//	PUT  /admin/v1/items/{item}                 {"stock":N,"shards":N,"per_user_limit":N} → 201
//	GET  /admin/v1/items/{item}                 {"stock","sold","remaining","per_user_limit","buyers"[,"orders"]}
//	POST /admin/v1/items/{item}/missing-orders  ["grab id", …] → {"missing":[…]} (seeds)
//
// each with Authorization: Bearer <the in-process token>.
var adminPrefix = []byte("/admin/v1/items/")

// missingSuffix ends the path of the order check.
var missingSuffix = []byte("/missing-orders")

// maxMissingIDs bounds the grab ids of one order check: a few hundred
// kilobytes of request, well within maxAdminBody.
const maxMissingIDs = 10_000

type adminWire struct {
	Stock        int64  `json:"stock"`
	Sold         int64  `json:"sold"`
	Remaining    int64  `json:"remaining"`
	PerUserLimit int64  `json:"per_user_limit"`
	Buyers       int64  `json:"buyers"`
	Orders       *int64 `json:"orders,omitempty"`
}

func adminError(ctx *fasthttp.RequestCtx, status int, msg string) {
	ctx.SetStatusCode(status)
	ctx.SetContentType("application/json")
	b, _ := json.Marshal(map[string]string{"error": msg})
	ctx.SetBody(b)
}

func adminJSON(ctx *fasthttp.RequestCtx, status int, v any) {
	b, err := json.Marshal(v)
	if err != nil {
		adminError(ctx, fasthttp.StatusInternalServerError, err.Error())
		return
	}
	ctx.SetStatusCode(status)
	ctx.SetContentType("application/json")
	ctx.SetBody(b)
}

// serveAdmin answers the admin routes from a.
func serveAdmin(ctx *fasthttp.RequestCtx, a Admin) {
	if string(ctx.Request.Header.Peek("Authorization")) != "Bearer "+localToken {
		adminError(ctx, fasthttp.StatusUnauthorized, "admin token required")
		return
	}
	if len(ctx.PostBody()) > maxAdminBody {
		adminError(ctx, fasthttp.StatusRequestEntityTooLarge, fmt.Sprintf("body over %d bytes", maxAdminBody))
		return
	}
	rest := bytes.TrimPrefix(ctx.Path(), adminPrefix)
	item, check := bytes.CutSuffix(rest, missingSuffix)
	if !transport.ValidID(item) {
		adminError(ctx, fasthttp.StatusNotFound, "no such route")
		return
	}
	it := string(item)
	c := context.Background()
	switch {
	case check && ctx.IsPost():
		oc, ok := a.(OrderChecker)
		if !ok {
			adminError(ctx, fasthttp.StatusNotFound, "this target keeps no orders")
			return
		}
		var ids []string
		if err := json.Unmarshal(ctx.PostBody(), &ids); err != nil || len(ids) > maxMissingIDs {
			adminError(ctx, fasthttp.StatusBadRequest, fmt.Sprintf("want a JSON array of up to %d grab ids", maxMissingIDs))
			return
		}
		missing, err := oc.Missing(c, it, ids)
		if err != nil {
			adminError(ctx, fasthttp.StatusServiceUnavailable, err.Error())
			return
		}
		adminJSON(ctx, fasthttp.StatusOK, map[string][]string{"missing": missing})
	case !check && ctx.IsPut():
		var req struct {
			Stock        int64 `json:"stock"`
			Shards       int   `json:"shards"`
			PerUserLimit int64 `json:"per_user_limit"`
		}
		if err := json.Unmarshal(ctx.PostBody(), &req); err != nil {
			adminError(ctx, fasthttp.StatusBadRequest, "bad item: "+err.Error())
			return
		}
		if err := a.CreateItem(c, it, req.Stock, req.Shards, req.PerUserLimit); err != nil {
			adminError(ctx, fasthttp.StatusBadRequest, err.Error())
			return
		}
		ctx.SetStatusCode(fasthttp.StatusCreated)
	case !check && ctx.IsGet():
		st, err := a.Item(c, it)
		if err != nil {
			adminError(ctx, fasthttp.StatusServiceUnavailable, err.Error())
			return
		}
		w := adminWire{Stock: st.Stock, Sold: st.Sold, Remaining: st.Remaining, PerUserLimit: st.PerUserLimit, Buyers: st.Buyers}
		if st.Orders >= 0 {
			w.Orders = &st.Orders
		}
		adminJSON(ctx, fasthttp.StatusOK, w)
	default:
		adminError(ctx, fasthttp.StatusMethodNotAllowed, "method not allowed")
	}
}

// Missing asks a harness target's admin routes which of ids have no order.
func (a *seckillAdmin) Missing(ctx context.Context, item string, ids []string) ([]string, error) {
	var missing []string
	for len(ids) > 0 {
		n := min(len(ids), maxMissingIDs)
		body, err := json.Marshal(ids[:n])
		if err != nil {
			return nil, err
		}
		ids = ids[n:]
		status, resp, err := a.doURL(ctx, http.MethodPost, a.base+"/admin/v1/items/"+item+string(missingSuffix), body)
		if err != nil {
			return nil, fmt.Errorf("check orders at %s: %w", a.base, err)
		}
		if status != http.StatusOK {
			return nil, fmt.Errorf("check orders at %s: HTTP %d %s", a.base, status, bytes.TrimSpace(resp))
		}
		var r struct {
			Missing []string `json:"missing"`
		}
		if err := json.Unmarshal(resp, &r); err != nil {
			return nil, fmt.Errorf("check orders at %s: %w", a.base, err)
		}
		missing = append(missing, r.Missing...)
	}
	return missing, nil
}

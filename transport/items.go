package transport

import (
	"bytes"
	"encoding/json"
	"errors"
	"fmt"
	"io"
	"math"
	"time"

	"github.com/seckill/seckill/engine"
	"github.com/seckill/seckill/sale"
	"github.com/valyala/fasthttp"
)

// itemStatus is the sale state a buyer sees.
func itemStatus(it sale.ItemView, nowMs int64) string {
	switch it.Config.Window(nowMs) {
	case engine.NotStarted:
		return "not_started"
	case engine.Ended:
		return "ended"
	}
	if it.SoldOut {
		return "sold_out"
	}
	return "on_sale"
}

// rfc3339 renders a sale boundary, or null when it is unset.
func rfc3339(ms int64, unset bool) *string {
	if unset {
		return nil
	}
	s := time.UnixMilli(ms).UTC().Format(time.RFC3339Nano)
	return &s
}

type publicItemView struct {
	Item      string  `json:"item"`
	Remaining int64   `json:"remaining"`
	Status    string  `json:"status"`
	StartsAt  *string `json:"starts_at"`
	EndsAt    *string `json:"ends_at"`
}

func (s *Server) publicItem(ctx *fasthttp.RequestCtx, itemB []byte) {
	if !ValidID(itemB) {
		writeError(ctx, fasthttp.StatusBadRequest, "bad_request", errBadItemID)
		return
	}
	it, ok := s.svc.Item(string(itemB))
	if !ok {
		writeJSON(ctx, fasthttp.StatusNotFound, respUnknownItem)
		return
	}
	c := it.Config
	writeValue(ctx, fasthttp.StatusOK, publicItemView{
		Item: c.Item, Remaining: it.Balance.Remaining(), Status: itemStatus(it, s.svc.Now()),
		StartsAt: rfc3339(c.StartsAtMs, c.StartsAtMs == 0), EndsAt: rfc3339(c.EndsAtMs, c.EndsAtMs == 0),
	})
}

type shardAdminView struct {
	Shard     int   `json:"shard"`
	Allocated int64 `json:"allocated"`
	Remaining int64 `json:"remaining"`
	Sold      int64 `json:"sold"`
	Refills   int64 `json:"refills"`
	Steals    int64 `json:"steals"`
}

type itemAdminView struct {
	Item         string           `json:"item"`
	Status       string           `json:"status"`
	Stock        int64            `json:"stock"`
	Remaining    int64            `json:"remaining"`
	Sold         int64            `json:"sold"`
	Pool         int64            `json:"pool"`
	InTransit    int64            `json:"in_transit"`
	PerUserLimit int64            `json:"per_user_limit"`
	PaymentS     int64            `json:"payment_window_s"`
	StartsAt     *string          `json:"starts_at"`
	EndsAt       *string          `json:"ends_at"`
	Shards       []shardAdminView `json:"shards,omitempty"`
}

func (s *Server) adminView(it sale.ItemView, withShards bool) itemAdminView {
	c := it.Config
	// Balance and shards come from one read of pool and shards, so sold +
	// remaining == stock in every answer; remaining counts shards, pool and
	// units in transit.
	b := it.Balance
	v := itemAdminView{Item: c.Item, Status: itemStatus(it, s.svc.Now()), Stock: b.Stock, PerUserLimit: c.PerUserLimit,
		Remaining: b.Remaining(), Sold: b.Sold, Pool: b.Pool, InTransit: b.InTransit, PaymentS: c.PaymentWindow() / 1000,
		StartsAt: rfc3339(c.StartsAtMs, c.StartsAtMs == 0), EndsAt: rfc3339(c.EndsAtMs, c.EndsAtMs == 0)}
	if withShards {
		for _, sh := range it.Shards {
			v.Shards = append(v.Shards, shardAdminView{Shard: sh.Shard, Allocated: sh.Allocated, Remaining: sh.Remaining(),
				Sold: sh.Sold, Refills: sh.Refills, Steals: sh.Steals})
		}
	}
	return v
}

// admin routes /admin/v1/items[/{item}]; rest is what follows the prefix.
func (s *Server) admin(ctx *fasthttp.RequestCtx, rest []byte) {
	if !s.auth(ctx) {
		return
	}
	if len(rest) == 0 || string(rest) == "/" {
		if !s.method(ctx, fasthttp.MethodGet) {
			return
		}
		items := s.svc.Items()
		out := struct {
			Items []itemAdminView `json:"items"`
		}{Items: make([]itemAdminView, 0, len(items))}
		for _, it := range items {
			out.Items = append(out.Items, s.adminView(it, false))
		}
		writeValue(ctx, fasthttp.StatusOK, out)
		return
	}
	if rest[0] != '/' {
		writeError(ctx, fasthttp.StatusNotFound, "not_found", "no such path")
		return
	}
	itemB := rest[1:]
	if i := bytes.IndexByte(itemB, '/'); i >= 0 {
		item, action := itemB[:i], string(itemB[i+1:])
		if !ValidID(item) {
			writeError(ctx, fasthttp.StatusBadRequest, "bad_request", errBadItemID)
			return
		}
		switch action {
		case "stock":
			if s.method(ctx, fasthttp.MethodPost) {
				s.changeStock(ctx, string(item))
			}
		case "release":
			if s.method(ctx, fasthttp.MethodPost) {
				s.release(ctx, string(item))
			}
		default:
			writeError(ctx, fasthttp.StatusNotFound, "not_found", "no such path")
		}
		return
	}
	if !ValidID(itemB) {
		writeError(ctx, fasthttp.StatusBadRequest, "bad_request", errBadItemID)
		return
	}
	switch string(ctx.Method()) {
	case fasthttp.MethodGet:
		it, ok := s.svc.Item(string(itemB))
		if !ok {
			writeJSON(ctx, fasthttp.StatusNotFound, respUnknownItem)
			return
		}
		writeValue(ctx, fasthttp.StatusOK, s.adminView(it, true))
	case fasthttp.MethodPut:
		s.createItem(ctx, string(itemB))
	default:
		ctx.Response.Header.Set("Allow", "GET, PUT")
		writeError(ctx, fasthttp.StatusMethodNotAllowed, "method_not_allowed", "use GET or PUT")
	}
}

// createItemBody is the PUT body; pointers tell absent from zero.
type createItemBody struct {
	Stock        *int64  `json:"stock"`
	Shards       *int    `json:"shards"`
	PerUserLimit *int64  `json:"per_user_limit"`
	StartsAt     *string `json:"starts_at"`
	EndsAt       *string `json:"ends_at"`
	PaymentS     *int64  `json:"payment_window_s"`
}

// DecodeCreateItem parses and checks a PUT /admin/v1/items/{item} body.
func DecodeCreateItem(item string, body []byte) (engine.ItemConfig, error) {
	var b createItemBody
	if err := decodeStrict(body, &b); err != nil {
		return engine.ItemConfig{}, err
	}
	cfg := engine.ItemConfig{Item: item, Shards: engine.DefaultShards, PerUserLimit: engine.DefaultPerUserLimit}
	if b.Stock == nil {
		return cfg, errors.New("stock is required")
	}
	cfg.Stock = *b.Stock
	if b.Shards != nil {
		cfg.Shards = *b.Shards
	}
	if b.PerUserLimit != nil {
		cfg.PerUserLimit = *b.PerUserLimit
	}
	var err error
	if cfg.StartsAtMs, err = parseTime("starts_at", b.StartsAt); err != nil {
		return cfg, err
	}
	if cfg.EndsAtMs, err = parseTime("ends_at", b.EndsAt); err != nil {
		return cfg, err
	}
	if b.PaymentS != nil {
		if *b.PaymentS < engine.MinPaymentWindowMs/1000 || *b.PaymentS > engine.MaxPaymentWindowMs/1000 {
			return cfg, engine.ErrBadPayment
		}
		cfg.PaymentWindowMs = *b.PaymentS * 1000
	}
	return cfg, cfg.Validate()
}

func parseTime(field string, s *string) (int64, error) {
	if s == nil {
		return 0, nil
	}
	t, err := time.Parse(time.RFC3339Nano, *s)
	if err != nil {
		return 0, fmt.Errorf("%s must be an RFC 3339 time such as 2026-11-21T12:00:00Z", field)
	}
	ms := t.UnixMilli()
	if ms <= 0 || ms > math.MaxInt64/2 {
		return 0, fmt.Errorf("%s is out of range", field)
	}
	return ms, nil
}

// jsonProblem turns encoding/json's errors into messages naming the field.
func jsonProblem(err error) error {
	var te *json.UnmarshalTypeError
	var se *json.SyntaxError
	switch {
	case errors.As(err, &te):
		return fmt.Errorf("%s must be a JSON %s", te.Field, want(te.Type.Kind().String()))
	case errors.As(err, &se), errors.Is(err, io.ErrUnexpectedEOF):
		return errors.New("body is not valid JSON")
	case errors.Is(err, io.EOF):
		return errors.New("body is empty")
	}
	msg := err.Error()
	if f, ok := bytes.CutPrefix([]byte(msg), []byte("json: unknown field ")); ok {
		return fmt.Errorf("unknown field %s", f)
	}
	return errors.New("body is not valid JSON")
}

func want(kind string) string {
	switch kind {
	case "int", "int64":
		return "integer"
	case "ptr":
		return "value of the right type"
	}
	return kind
}

func (s *Server) createItem(ctx *fasthttp.RequestCtx, item string) {
	cfg, err := DecodeCreateItem(item, ctx.PostBody())
	if err != nil {
		writeError(ctx, fasthttp.StatusBadRequest, "bad_request", err.Error())
		return
	}
	switch err := s.svc.CreateItem(cfg); {
	case err == nil:
	case errors.Is(err, sale.ErrItemExists):
		writeError(ctx, fasthttp.StatusConflict, "exists", "item "+item+" exists; stock changes come with the stock API")
		return
	case errors.Is(err, sale.ErrUnavailable):
		writeJSON(ctx, fasthttp.StatusServiceUnavailable, respUnavailable)
		return
	default:
		s.log.Error("create item", "item", item, "err", err)
		writeJSON(ctx, fasthttp.StatusServiceUnavailable, respUnavailable)
		return
	}
	it, _ := s.svc.Item(item)
	writeValue(ctx, fasthttp.StatusCreated, s.adminView(it, true))
}

func writeValue(ctx *fasthttp.RequestCtx, status int, v any) {
	b, err := json.Marshal(v)
	if err != nil {
		writeError(ctx, fasthttp.StatusInternalServerError, "internal", "encode response")
		return
	}
	writeJSON(ctx, status, b)
}

// decodeStrict decodes a small admin JSON body into v: one object, no
// unknown fields, nothing after it.
func decodeStrict(body []byte, v any) error {
	if len(body) > MaxBodyBytes {
		return errors.New("body exceeds 4096 bytes")
	}
	if bytes.IndexByte(body, 0) >= 0 {
		return errors.New("body contains a NUL byte")
	}
	dec := json.NewDecoder(bytes.NewReader(body))
	dec.DisallowUnknownFields()
	if err := dec.Decode(v); err != nil {
		return jsonProblem(err)
	}
	if _, err := dec.Token(); !errors.Is(err, io.EOF) {
		return errors.New("body has data after the JSON object")
	}
	return nil
}

// DecodeStockChange parses a POST /admin/v1/items/{item}/stock body.
func DecodeStockChange(body []byte) (int64, error) {
	var b struct {
		Delta *int64 `json:"delta"`
	}
	if err := decodeStrict(body, &b); err != nil {
		return 0, err
	}
	switch {
	case b.Delta == nil:
		return 0, errors.New("delta is required")
	case *b.Delta == 0:
		return 0, errors.New("delta must not be zero")
	case *b.Delta > engine.MaxStock || *b.Delta < -engine.MaxStock:
		return 0, fmt.Errorf("delta must be within ±%d", engine.MaxStock)
	}
	return *b.Delta, nil
}

func (s *Server) changeStock(ctx *fasthttp.RequestCtx, item string) {
	delta, err := DecodeStockChange(ctx.PostBody())
	if err != nil {
		writeError(ctx, fasthttp.StatusBadRequest, "bad_request", err.Error())
		return
	}
	r := s.svc.ChangeStock(item, delta)
	switch {
	case r.Err == nil:
		it, _ := s.svc.Item(item)
		writeValue(ctx, fasthttp.StatusOK, s.adminView(it, false))
	case errors.Is(r.Err, sale.ErrUnknownItem):
		writeJSON(ctx, fasthttp.StatusNotFound, respUnknownItem)
	case errors.Is(r.Err, sale.ErrInsufficient):
		writeValue(ctx, fasthttp.StatusConflict, struct {
			Status    string `json:"status"`
			Error     string `json:"error"`
			Available int64  `json:"available"`
		}{"insufficient", fmt.Sprintf("only %d unsold units can be taken back", r.Available), r.Available})
	case errors.Is(r.Err, engine.ErrBadStock):
		writeError(ctx, fasthttp.StatusBadRequest, "bad_request", "stock would exceed "+fmt.Sprint(engine.MaxStock))
	default:
		ctx.Response.Header.Set("Retry-After", RetryAfterSeconds)
		writeJSON(ctx, fasthttp.StatusServiceUnavailable, respUnavailable)
	}
}

// DecodeRelease parses a POST /admin/v1/items/{item}/release body.
func DecodeRelease(body []byte) (string, error) {
	var b struct {
		GrabID *string `json:"grab_id"`
	}
	if err := decodeStrict(body, &b); err != nil {
		return "", err
	}
	if b.GrabID == nil {
		return "", errors.New("grab_id is required")
	}
	if _, _, _, ok := engine.ParseGrabID(*b.GrabID); !ok {
		return "", errors.New("grab_id must look like <item>.<shard>.<seq>")
	}
	return *b.GrabID, nil
}

func (s *Server) release(ctx *fasthttp.RequestCtx, item string) {
	id, err := DecodeRelease(ctx.PostBody())
	if err != nil {
		writeError(ctx, fasthttp.StatusBadRequest, "bad_request", err.Error())
		return
	}
	r := s.svc.Release(item, id)
	switch {
	case r.Err == nil:
		writeValue(ctx, fasthttp.StatusOK, struct {
			Status   string `json:"status"`
			GrabID   string `json:"grab_id"`
			Released bool   `json:"released"`
			UserID   string `json:"user_id"`
			Qty      int64  `json:"qty"`
		}{r.Outcome.String(), id, r.Outcome == engine.Released, r.Grab.User, r.Grab.Qty})
	case errors.Is(r.Err, sale.ErrUnknownItem):
		writeJSON(ctx, fasthttp.StatusNotFound, respUnknownItem)
	case errors.Is(r.Err, sale.ErrUnknownGrab):
		writeError(ctx, fasthttp.StatusNotFound, "unknown_grab", "no grab "+id+" of item "+item)
	default:
		ctx.Response.Header.Set("Retry-After", RetryAfterSeconds)
		writeJSON(ctx, fasthttp.StatusServiceUnavailable, respUnavailable)
	}
}

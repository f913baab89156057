package transport

import (
	"bytes"
	"encoding/json"
	"errors"
	"fmt"
	"io"
	"math"
	"time"

	"github.com/seckill/seckill/actors"
	"github.com/seckill/seckill/engine"
	"github.com/valyala/fasthttp"
)

// itemStatus is the sale state a buyer sees.
func itemStatus(it *actors.Item, nowMs int64) string {
	switch it.Config.Window(nowMs) {
	case engine.NotStarted:
		return "not_started"
	case engine.Ended:
		return "ended"
	}
	if it.SoldOut() {
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
	it, ok := s.node.Item(string(itemB))
	if !ok {
		writeJSON(ctx, fasthttp.StatusNotFound, respUnknownItem)
		return
	}
	c := it.Config
	writeValue(ctx, fasthttp.StatusOK, publicItemView{
		Item: c.Item, Remaining: it.Remaining(), Status: itemStatus(it, s.node.Now()),
		StartsAt: rfc3339(c.StartsAtMs, c.StartsAtMs == 0), EndsAt: rfc3339(c.EndsAtMs, c.EndsAtMs == 0),
	})
}

type shardAdminView struct {
	Shard     int   `json:"shard"`
	Allocated int64 `json:"allocated"`
	Remaining int64 `json:"remaining"`
	Sold      int64 `json:"sold"`
}

type itemAdminView struct {
	Item         string           `json:"item"`
	Status       string           `json:"status"`
	Stock        int64            `json:"stock"`
	Remaining    int64            `json:"remaining"`
	Sold         int64            `json:"sold"`
	PerUserLimit int64            `json:"per_user_limit"`
	StartsAt     *string          `json:"starts_at"`
	EndsAt       *string          `json:"ends_at"`
	Shards       []shardAdminView `json:"shards,omitempty"`
}

func (s *Server) adminView(it *actors.Item, withShards bool) itemAdminView {
	c := it.Config
	v := itemAdminView{Item: c.Item, Status: itemStatus(it, s.node.Now()), Stock: c.Stock, PerUserLimit: c.PerUserLimit,
		StartsAt: rfc3339(c.StartsAtMs, c.StartsAtMs == 0), EndsAt: rfc3339(c.EndsAtMs, c.EndsAtMs == 0)}
	// One read of the shards, so sold + remaining == stock in every answer.
	for _, sh := range it.Shards() {
		v.Remaining += sh.Remaining()
		v.Sold += sh.Sold
		if withShards {
			v.Shards = append(v.Shards, shardAdminView{Shard: sh.Shard, Allocated: sh.Allocated, Remaining: sh.Remaining(), Sold: sh.Sold})
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
		items := s.node.Items()
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
	if !ValidID(itemB) {
		writeError(ctx, fasthttp.StatusBadRequest, "bad_request", errBadItemID)
		return
	}
	switch string(ctx.Method()) {
	case fasthttp.MethodGet:
		it, ok := s.node.Item(string(itemB))
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
}

// DecodeCreateItem parses and checks a PUT /admin/v1/items/{item} body.
func DecodeCreateItem(item string, body []byte) (engine.ItemConfig, error) {
	if len(body) > MaxBodyBytes {
		return engine.ItemConfig{}, errors.New("body exceeds 4096 bytes")
	}
	if bytes.IndexByte(body, 0) >= 0 {
		return engine.ItemConfig{}, errors.New("body contains a NUL byte")
	}
	dec := json.NewDecoder(bytes.NewReader(body))
	dec.DisallowUnknownFields()
	var b createItemBody
	if err := dec.Decode(&b); err != nil {
		return engine.ItemConfig{}, jsonProblem(err)
	}
	if _, err := dec.Token(); !errors.Is(err, io.EOF) {
		return engine.ItemConfig{}, errors.New("body has data after the JSON object")
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
	switch err := s.node.CreateItem(cfg); {
	case err == nil:
	case errors.Is(err, actors.ErrItemExists):
		writeError(ctx, fasthttp.StatusConflict, "exists", "item "+item+" exists; stock changes come with the stock API")
		return
	case errors.Is(err, actors.ErrUnavailable):
		writeJSON(ctx, fasthttp.StatusServiceUnavailable, respUnavailable)
		return
	default:
		s.log.Error("create item", "item", item, "err", err)
		writeJSON(ctx, fasthttp.StatusServiceUnavailable, respUnavailable)
		return
	}
	it, _ := s.node.Item(item)
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

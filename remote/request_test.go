package remote

import (
	"bytes"
	"errors"
	"fmt"
	"math"
	"reflect"
	"strings"
	"testing"

	"github.com/seckill/seckill/engine"
	"github.com/seckill/seckill/sale"
)

var (
	longID   = strings.Repeat("i", engine.MaxIDLen)
	longKey  = strings.Repeat("~", engine.MaxKeyLen)
	longPeer = "[ffff:ffff:ffff:ffff:ffff:ffff:255.255.255.255]:65535"
	// longGrabID is a grab id of MaxGrabIDLen bytes.
	longGrabID = longID + ".1023.18446744073709551615"
)

// reqOfEveryKind is requests of every kind, with the extremes of some
// fields.
func reqOfEveryKind() []Request {
	return []Request{
		{ID: 1, From: "127.0.0.11:40000", Kind: ReqGrab, Item: "item-1", User: "u1", Qty: 1},
		{ID: 2, From: "127.0.0.11:40000", Kind: ReqGrab, Item: "item-1", User: "u1", Key: "key 1", Qty: 3},
		{ID: math.MaxUint64, From: longestFrom, Kind: ReqGrab, Item: longID, User: longID, Key: longKey, Qty: math.MinInt64},
		{ID: 0, From: "", Kind: ReqGrab, Item: "i", User: "u", Qty: math.MaxInt64},
		{ID: 3, From: longPeer, Kind: ReqRelease, Item: "item-1", GrabID: "item-1.3.17"},
		{ID: 4, From: longestFrom, Kind: ReqRelease, Item: longID, GrabID: longGrabID},
		{ID: 5, From: "127.0.0.11:40000", Kind: ReqStock, Item: "item-1", Delta: 100},
		{ID: 6, From: "127.0.0.11:40000", Kind: ReqStock, Item: "item-1", Delta: -5},
		{ID: 7, From: longestFrom, Kind: ReqStock, Item: longID, Delta: math.MinInt64},
		{ID: 8, From: "127.0.0.11:40000", Kind: ReqStock, Item: "item-1"},
	}
}

func TestRequestRoundTrip(t *testing.T) {
	if len(longGrabID) != MaxGrabIDLen {
		t.Fatalf("the longest grab id is %d bytes, MaxGrabIDLen %d", len(longGrabID), MaxGrabIDLen)
	}
	for _, r := range reqOfEveryKind() {
		b := AppendRequest(nil, r)
		if len(b) > maxRequestLen {
			t.Fatalf("%+v: %d bytes, more than maxRequestLen %d", r, len(b), maxRequestLen)
		}
		if got, err := DecodeRequest(b); err != nil || got != r {
			t.Fatalf("decoded %+v, %v; want %+v", got, err, r)
		}
		e := AppendEnvelope(nil, RequestEnvelope(r))
		if len(e) > MaxEnvelopeLen {
			t.Fatalf("%+v: envelope of %d bytes, more than MaxEnvelopeLen %d", r, len(e), MaxEnvelopeLen)
		}
		if got, err := DecodeEnvelope(e); err != nil || got != RequestEnvelope(r) {
			t.Fatalf("envelope decoded %+v, %v; want %+v", got, err, r)
		}
	}
}

func TestRequestRefuses(t *testing.T) {
	grab := Request{ID: 9, From: "127.0.0.11:40000", Kind: ReqGrab, Item: "item-1", User: "u1", Qty: 1}
	rel := Request{ID: 9, From: "127.0.0.11:40000", Kind: ReqRelease, Item: "item-1", GrabID: "item-1.0.1"}
	stock := Request{ID: 9, From: "127.0.0.11:40000", Kind: ReqStock, Item: "item-1", Delta: 1}
	with := func(r Request, f func(*Request)) []byte { f(&r); return AppendRequest(nil, r) }
	good := AppendRequest(nil, grab)
	for _, tc := range []struct {
		name string
		b    []byte
	}{
		{"empty", nil},
		{"truncated", good[:len(good)-1]},
		{"trailing byte", append(append([]byte{}, good...), 0)},
		{"too long", make([]byte, maxRequestLen+1)},
		{"id not shortest", append([]byte{0x89, 0}, good[1:]...)},
		{"kind 0", with(grab, func(r *Request) { r.Kind = 0 })},
		{"kind 4", with(grab, func(r *Request) { r.Kind = 4 })},
		{"from too long", with(grab, func(r *Request) { r.From = longestFrom + "9" })},
		{"no item", with(grab, func(r *Request) { r.Item = "" })},
		{"item too long", with(grab, func(r *Request) { r.Item = longID + "i" })},
		{"item outside the alphabet", with(grab, func(r *Request) { r.Item = "item 1" })},
		{"grab: no user", with(grab, func(r *Request) { r.User = "" })},
		{"grab: user outside the alphabet", with(grab, func(r *Request) { r.User = "u/1" })},
		{"grab: key not printable", with(grab, func(r *Request) { r.Key = "k\n" })},
		{"grab: key too long", with(grab, func(r *Request) { r.Key = longKey + "k" })},
		{"grab: grab id", with(grab, func(r *Request) { r.GrabID = "item-1.0.1" })},
		{"grab: delta", with(grab, func(r *Request) { r.Delta = 1 })},
		{"release: no grab id", with(rel, func(r *Request) { r.GrabID = "" })},
		{"release: bad grab id", with(rel, func(r *Request) { r.GrabID = "item-1.0.01" })},
		{"release: grab id too long", with(rel, func(r *Request) { r.GrabID = longGrabID + "0" })},
		{"release: user", with(rel, func(r *Request) { r.User = "u1" })},
		{"release: key", with(rel, func(r *Request) { r.Key = "k" })},
		{"release: qty", with(rel, func(r *Request) { r.Qty = 1 })},
		{"release: delta", with(rel, func(r *Request) { r.Delta = 1 })},
		{"stock: user", with(stock, func(r *Request) { r.User = "u1" })},
		{"stock: key", with(stock, func(r *Request) { r.Key = "k" })},
		{"stock: grab id", with(stock, func(r *Request) { r.GrabID = "item-1.0.1" })},
		{"stock: qty", with(stock, func(r *Request) { r.Qty = 1 })},
	} {
		t.Run(tc.name, func(t *testing.T) {
			if r, err := DecodeRequest(tc.b); !errors.Is(err, ErrBadRequest) {
				t.Fatalf("decoded %+v, %v", r, err)
			}
			if len(tc.b) > 0 {
				if _, err := DecodeEnvelope(append([]byte{byte(TagRequest)}, tc.b...)); !errors.Is(err, ErrBadEnvelope) {
					t.Fatalf("envelope: %v", err)
				}
			}
		})
	}
}

func testGrab() engine.Grab {
	return engine.Grab{Item: "item-1", Shard: 3, Seq: 17, User: "u1", Qty: 2, Key: "key 1", AtMs: 1_700_000_000_000}
}

// replyOfEveryCode is replies of every code, with the extremes of some
// fields.
func replyOfEveryCode() []Reply {
	long := engine.Grab{Item: longID, Shard: engine.MaxShards - 1, Seq: math.MaxUint64, User: longID,
		Qty: engine.MaxPerUserLimit, Key: longKey, AtMs: math.MinInt64}
	return []Reply{
		{ID: 1, Code: ReplyOK, Outcome: engine.Confirmed, Grab: testGrab()},
		{ID: math.MaxUint64, Code: ReplyOK, Outcome: engine.Released, Grab: long},
		{ID: 2, Code: ReplyOK, Outcome: engine.SoldOut},
		{ID: 3, Code: ReplyOK, Stock: engine.MaxStock},
		{ID: 4, Code: ReplyOK},
		{ID: 5, Code: ReplyUnavailable},
		{ID: 6, Code: ReplyOverloaded},
		{ID: 7, Code: ReplyUnknownItem},
		{ID: 8, Code: ReplyUnknownGrab},
		{ID: 9, Code: ReplyUnknownGrab, Outcome: engine.UnknownGrab},
		{ID: 10, Code: ReplyQty, Limit: engine.MaxPerUserLimit},
		{ID: 11, Code: ReplyInsufficient, Available: 3},
		{ID: 12, Code: ReplyBadStock},
		{ID: 0, Code: ReplyItemExists},
	}
}

func TestReplyRoundTrip(t *testing.T) {
	for _, r := range replyOfEveryCode() {
		b := AppendReply(nil, r)
		if len(b) > maxReplyLen {
			t.Fatalf("%+v: %d bytes, more than maxReplyLen %d", r, len(b), maxReplyLen)
		}
		if got, err := DecodeReply(b); err != nil || got != r {
			t.Fatalf("decoded %+v, %v; want %+v", got, err, r)
		}
		if got, err := DecodeEnvelope(AppendEnvelope(nil, ReplyEnvelope(r))); err != nil || got != ReplyEnvelope(r) {
			t.Fatalf("envelope decoded %+v, %v; want %+v", got, err, r)
		}
	}
}

func TestReplyRefuses(t *testing.T) {
	ok := Reply{ID: 1, Code: ReplyOK, Outcome: engine.Confirmed, Grab: testGrab()}
	with := func(r Reply, f func(*Reply)) []byte { f(&r); return AppendReply(nil, r) }
	grab := func(f func(*engine.Grab)) []byte {
		return with(ok, func(r *Reply) { f(&r.Grab) })
	}
	good := AppendReply(nil, ok)
	noGrab := AppendReply(nil, Reply{ID: 1, Code: ReplyOK, Outcome: engine.SoldOut})
	for _, tc := range []struct {
		name string
		b    []byte
	}{
		{"empty", nil},
		{"truncated", good[:len(good)-1]},
		{"trailing byte", append(append([]byte{}, good...), 0)},
		{"too long", make([]byte, maxReplyLen+1)},
		{"id not shortest", append([]byte{0x81, 0}, good[1:]...)},
		{"code 0", with(ok, func(r *Reply) { r.Code = 0 })},
		{"code past the last", with(ok, func(r *Reply) { r.Code = replyCodes })},
		{"outcome past the last", with(ok, func(r *Reply) { r.Outcome = lastOutcome + 1 })},
		{"outcome with an error", with(ok, func(r *Reply) { r.Code, r.Grab = ReplyOverloaded, engine.Grab{} })},
		{"grab with an error", with(ok, func(r *Reply) { r.Code, r.Outcome = ReplyUnavailable, 0 })},
		{"grab flag 2", append(noGrab[:len(noGrab)-1:len(noGrab)-1], 2)},
		// A present grab's seven fields, all zero.
		{"present zero grab", append(append(noGrab[:len(noGrab)-1:len(noGrab)-1], 1), make([]byte, 7)...)},
		{"grab: no item", grab(func(g *engine.Grab) { g.Item = "" })},
		{"grab: shard -1", grab(func(g *engine.Grab) { g.Shard = -1 })},
		{"grab: shard MaxShards", grab(func(g *engine.Grab) { g.Shard = engine.MaxShards })},
		{"grab: seq 0", grab(func(g *engine.Grab) { g.Seq = 0 })},
		{"grab: no user", grab(func(g *engine.Grab) { g.User = "" })},
		{"grab: qty 0", grab(func(g *engine.Grab) { g.Qty = 0 })},
		{"grab: qty past the limit", grab(func(g *engine.Grab) { g.Qty = engine.MaxPerUserLimit + 1 })},
		{"grab: key not printable", grab(func(g *engine.Grab) { g.Key = "k\x00" })},
		{"stock with an error", with(ok, func(r *Reply) { *r = Reply{ID: 1, Code: ReplyBadStock, Stock: 1} })},
		{"stock negative", with(ok, func(r *Reply) { *r = Reply{ID: 1, Code: ReplyOK, Stock: -1} })},
		{"stock past MaxStock", with(ok, func(r *Reply) { *r = Reply{ID: 1, Code: ReplyOK, Stock: engine.MaxStock + 1} })},
		{"available when ok", with(ok, func(r *Reply) { r.Available = 1 })},
		{"available negative", with(ok, func(r *Reply) { *r = Reply{ID: 1, Code: ReplyInsufficient, Available: -1} })},
		{"limit when ok", with(ok, func(r *Reply) { r.Limit = 1 })},
		{"qty: no limit", with(ok, func(r *Reply) { *r = Reply{ID: 1, Code: ReplyQty} })},
		{"qty: limit too big", with(ok, func(r *Reply) { *r = Reply{ID: 1, Code: ReplyQty, Limit: engine.MaxPerUserLimit + 1} })},
	} {
		t.Run(tc.name, func(t *testing.T) {
			if r, err := DecodeReply(tc.b); !errors.Is(err, ErrBadReply) {
				t.Fatalf("decoded %+v, %v", r, err)
			}
		})
	}
}

// TestLastOutcome: lastOutcome is engine's last Outcome. When this fails,
// engine has a new Outcome: move lastOutcome to it.
func TestLastOutcome(t *testing.T) {
	if s := lastOutcome.String(); strings.HasPrefix(s, "outcome(") {
		t.Fatalf("lastOutcome %s is not an outcome", s)
	}
	if s := (lastOutcome + 1).String(); !strings.HasPrefix(s, "outcome(") {
		t.Fatalf("engine has an outcome past lastOutcome: %s", s)
	}
}

// TestSaleReplies: every answer the local service gives crosses the wire
// and comes back as itself.
func TestSaleReplies(t *testing.T) {
	g := testGrab()
	for _, r := range []sale.Reply{
		{Outcome: engine.Confirmed, Grab: g},
		{Outcome: engine.Replayed, Grab: g},
		{Outcome: engine.Released, Grab: g},
		{Outcome: engine.AlreadyReleased, Grab: g},
		{Outcome: engine.SoldOut},
		{Outcome: engine.NotStarted},
		{Outcome: engine.Ended},
		{Outcome: engine.LimitReached},
		{Outcome: engine.KeyReused},
		{Err: sale.ErrUnavailable},
		{Err: sale.ErrOverloaded},
		{Err: sale.ErrUnknownItem},
		{Err: sale.ErrUnknownGrab},
		{Outcome: engine.UnknownGrab, Err: sale.ErrUnknownGrab},
		{Err: &sale.QtyError{Limit: 1}},
		{Err: &sale.QtyError{Limit: engine.MaxPerUserLimit}},
		{Err: sale.ErrItemExists},
	} {
		rep := ReplyFromSale(42, r)
		got, err := DecodeReply(AppendReply(nil, rep))
		if err != nil || got.ID != 42 {
			t.Fatalf("%+v → %+v: %v", r, rep, err)
		}
		if back := got.Sale(); !reflect.DeepEqual(back, r) {
			t.Fatalf("%+v came back as %+v", r, back)
		}
	}
	for _, r := range []sale.StockReply{
		{Stock: 500},
		{Stock: 0},
		{Stock: engine.MaxStock},
		{Err: sale.ErrInsufficient, Available: 3},
		{Err: sale.ErrInsufficient},
		{Err: engine.ErrBadStock},
		{Err: sale.ErrUnavailable},
		{Err: sale.ErrUnknownItem},
	} {
		rep := StockReplyFromSale(43, r)
		got, err := DecodeReply(AppendReply(nil, rep))
		if err != nil || got.ID != 43 {
			t.Fatalf("%+v → %+v: %v", r, rep, err)
		}
		if back := got.SaleStock(); !reflect.DeepEqual(back, r) {
			t.Fatalf("%+v came back as %+v", r, back)
		}
	}
}

// TestSaleErrors: wrapped sentinels keep their code; an error the wire does
// not know is unavailable, and fields the code does not carry are left
// behind.
func TestSaleErrors(t *testing.T) {
	for _, tc := range []struct {
		err  error
		want ReplyCode
	}{
		{fmt.Errorf("shard 3: %w", sale.ErrOverloaded), ReplyOverloaded},
		{fmt.Errorf("item: %w", &sale.QtyError{Limit: 2}), ReplyQty},
		{errors.New("disk on fire"), ReplyUnavailable},
	} {
		rep := ReplyFromSale(1, sale.Reply{Outcome: engine.Confirmed, Grab: testGrab(), Err: tc.err})
		if rep.Code != tc.want || rep.Outcome != 0 || rep.Grab != (engine.Grab{}) || !rep.valid() {
			t.Errorf("%v: %+v, want code %v and nothing else", tc.err, rep, tc.want)
		}
		if srep := StockReplyFromSale(1, sale.StockReply{Stock: 5, Available: 5, Err: tc.err}); srep.Code != tc.want || srep.Stock != 0 || srep.Available != 0 {
			t.Errorf("%v: %+v, want code %v and nothing else", tc.err, srep, tc.want)
		}
	}
	if r := (Reply{Code: replyCodes}).Sale(); r.Err != sale.ErrUnavailable {
		t.Errorf("an unknown code is %v", r.Err)
	}
	if r := (Reply{Code: ReplyQty, Limit: 2}).Sale(); !reflect.DeepEqual(r.Err, &sale.QtyError{Limit: 2}) {
		t.Errorf("qty is %v", r.Err)
	}
}

// FuzzDecodeRequest: no input panics the decoder, and whatever decodes
// re-encodes to the same bytes (one encoding per request).
func FuzzDecodeRequest(f *testing.F) {
	for _, r := range reqOfEveryKind() {
		b := AppendRequest(nil, r)
		f.Add(b)
		f.Add(b[:len(b)/2])
	}
	f.Add([]byte{})
	f.Fuzz(func(t *testing.T, b []byte) {
		r, err := DecodeRequest(b)
		if err != nil {
			return
		}
		if again := AppendRequest(nil, r); !bytes.Equal(again, b) {
			t.Fatalf("%x decodes to %+v, which encodes to %x", b, r, again)
		}
	})
}

// FuzzDecodeReply: no input panics the decoder, and whatever decodes
// re-encodes to the same bytes (one encoding per reply).
func FuzzDecodeReply(f *testing.F) {
	for _, r := range replyOfEveryCode() {
		b := AppendReply(nil, r)
		f.Add(b)
		f.Add(b[:len(b)/2])
	}
	f.Add([]byte{})
	f.Fuzz(func(t *testing.T, b []byte) {
		r, err := DecodeReply(b)
		if err != nil {
			return
		}
		if again := AppendReply(nil, r); !bytes.Equal(again, b) {
			t.Fatalf("%x decodes to %+v, which encodes to %x", b, r, again)
		}
	})
}

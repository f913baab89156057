package transport

import (
	"errors"
	"strconv"

	"github.com/seckill/seckill/auth"
	"github.com/valyala/fasthttp"
)

// MaxAmountCents bounds a payment's amount: 10¹² cents, far above any
// order, far below int64's overflow in any sum of them.
const MaxAmountCents = 1_000_000_000_000

// PaymentBody is the body the payment provider signs:
// {"grab_id":"<the order's grab id>","amount_cents":N}. The order paid is
// the body's, which must be the URL's too.
type PaymentBody struct {
	GrabID      *string `json:"grab_id"`
	AmountCents *int64  `json:"amount_cents"`
}

// DecodePaymentBody parses and bounds a payment callback's body.
func DecodePaymentBody(body []byte) (string, int64, error) {
	var b PaymentBody
	if err := decodeStrict(body, &b); err != nil {
		return "", 0, err
	}
	switch {
	case b.GrabID == nil || *b.GrabID == "":
		return "", 0, errors.New("grab_id is required")
	case b.AmountCents == nil:
		return "", 0, errors.New("amount_cents is required")
	case *b.AmountCents < 1 || *b.AmountCents > MaxAmountCents:
		return "", 0, errors.New("amount_cents must be 1.." + strconv.FormatInt(MaxAmountCents, 10))
	}
	return *b.GrabID, *b.AmountCents, nil
}

// verifyPayment checks a payment callback before the order is touched:
// the endpoint exists only with a payment secret; the X-Signature must be
// the secret's HMAC of the timestamp and the raw body, not older than
// auth.MaxSignatureAge; the signed body names this order. False: answered.
func (s *Server) verifyPayment(ctx *fasthttp.RequestCtx, grabID string) bool {
	secret := s.sec.PaymentSecret
	if secret == nil {
		s.sec.payOffOnce.Do(func() {
			s.log.Warn("payment callback refused: no --payment-secret, so POST /v1/orders/{id}/pay answers 404")
		})
		writeError(ctx, fasthttp.StatusNotFound, "not_found", "payment callbacks are off on this node (no payment secret)")
		return false
	}
	body := ctx.PostBody()
	err := auth.VerifyPayment(secret, ctx.Request.Header.Peek("X-Signature"), body, s.sec.Now())
	if err != nil {
		code := "bad_signature"
		if errors.Is(err, auth.ErrStale) {
			code = "stale_signature"
		}
		writeError(ctx, fasthttp.StatusUnauthorized, code, err.Error())
		return false
	}
	id, amount, err := DecodePaymentBody(body)
	if err != nil {
		writeError(ctx, fasthttp.StatusBadRequest, "bad_request", err.Error())
		return false
	}
	if id != grabID {
		writeError(ctx, fasthttp.StatusBadRequest, "bad_request", "the signed body's grab_id is not the order of the URL")
		return false
	}
	// Items carry no price, so the amount is not compared with one: it is
	// bounded and kept in the log beside the order it paid.
	s.log.Info("payment", "grab", grabID, "amount_cents", amount)
	return true
}

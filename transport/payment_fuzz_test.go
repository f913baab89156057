package transport

import "testing"

// FuzzDecodePaymentBody: no body panics; what decodes names an order and
// an amount within bounds.
func FuzzDecodePaymentBody(f *testing.F) {
	for _, s := range []string{`{"grab_id":"a.0.1","amount_cents":100}`, `{}`, `{"grab_id":"","amount_cents":0}`,
		`{"grab_id":"a.0.1","amount_cents":1e3}`, `{"grab_id":"a.0.1","amount_cents":100,"x":1}`, `[]`, `{"grab_id":"a.0.1","amount_cents":100}{}`} {
		f.Add([]byte(s))
	}
	f.Fuzz(func(t *testing.T, body []byte) {
		id, amount, err := DecodePaymentBody(body)
		if err != nil {
			return
		}
		if id == "" || amount < 1 || amount > MaxAmountCents {
			t.Fatalf("%q decoded to %q %d", body, id, amount)
		}
	})
}

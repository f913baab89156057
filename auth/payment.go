package auth

import (
	"bytes"
	"crypto/hmac"
	"crypto/sha256"
	"encoding/hex"
	"errors"
	"fmt"
	"strconv"
	"time"
)

const (
	// MaxSignatureAge is how old a signed callback may be: older ones are
	// refused as replays (the provider signs each delivery afresh).
	MaxSignatureAge = 5 * time.Minute
	// MaxSignatureAhead is how far in the future a timestamp may be: the
	// provider's clock may run ahead by a little.
	MaxSignatureAhead = ClockSkew
	// MaxSignatureHeader bounds the X-Signature value: a timestamp and a
	// few v1 signatures (a provider rotating its secret sends two).
	MaxSignatureHeader = 512
	// MaxSignatures bounds the v1 entries in one header.
	MaxSignatures = 4
)

// Errors of payment signatures; the front answers each 401.
var (
	ErrNoSignature  = errors.New("missing X-Signature")
	ErrBadSignature = errors.New("bad signature")
	ErrStale        = errors.New("signature timestamp outside the allowed window")
)

// Signature is a parsed X-Signature header: t=<unix>,v1=<hex>[,v1=<hex>].
type Signature struct {
	T  int64
	V1 [][sha256.Size]byte
}

// ParseSignature reads an X-Signature value. Unknown schemes (a later
// v2) are skipped; a t or v1 that is malformed is an error, as is a
// header without t or without a v1.
func ParseSignature(h []byte) (Signature, error) {
	var s Signature
	if len(h) == 0 {
		return s, ErrNoSignature
	}
	if len(h) > MaxSignatureHeader {
		return s, fmt.Errorf("%w: header longer than %d bytes", ErrBadSignature, MaxSignatureHeader)
	}
	haveT := false
	for part := range bytes.SplitSeq(h, []byte{','}) {
		k, v, ok := bytes.Cut(bytes.TrimSpace(part), []byte{'='})
		if !ok {
			return Signature{}, fmt.Errorf("%w: %q is not key=value", ErrBadSignature, part)
		}
		switch string(k) {
		case "t":
			t, err := strconv.ParseInt(string(v), 10, 64)
			if err != nil || t <= 0 || haveT {
				return Signature{}, fmt.Errorf("%w: t must be one positive unix time", ErrBadSignature)
			}
			s.T, haveT = t, true
		case "v1":
			var sig [sha256.Size]byte
			if len(v) != hex.EncodedLen(sha256.Size) {
				return Signature{}, fmt.Errorf("%w: v1 must be %d hex digits", ErrBadSignature, hex.EncodedLen(sha256.Size))
			}
			if _, err := hex.Decode(sig[:], v); err != nil {
				return Signature{}, fmt.Errorf("%w: v1 is not hex", ErrBadSignature)
			}
			if len(s.V1) == MaxSignatures {
				return Signature{}, fmt.Errorf("%w: more than %d v1 signatures", ErrBadSignature, MaxSignatures)
			}
			s.V1 = append(s.V1, sig)
		}
	}
	if !haveT || len(s.V1) == 0 {
		return Signature{}, fmt.Errorf("%w: need t=<unix> and v1=<hex>", ErrBadSignature)
	}
	return s, nil
}

// Sign returns the X-Signature value for body at unix time t.
func Sign(secret, body []byte, t int64) string {
	mac := mac(secret, t, body)
	return "t=" + strconv.FormatInt(t, 10) + ",v1=" + hex.EncodeToString(mac[:])
}

func mac(secret []byte, t int64, body []byte) [sha256.Size]byte {
	m := hmac.New(sha256.New, secret)
	var ts [20]byte
	m.Write(strconv.AppendInt(ts[:0], t, 10))
	m.Write([]byte{'.'})
	m.Write(body)
	var out [sha256.Size]byte
	m.Sum(out[:0])
	return out
}

// VerifyPayment checks header against body: one v1 must be the
// HMAC-SHA256 of "t.body" (compared in constant time) and t within
// [now-MaxSignatureAge, now+MaxSignatureAhead].
func VerifyPayment(secret, header, body []byte, now time.Time) error {
	s, err := ParseSignature(header)
	if err != nil {
		return err
	}
	want := mac(secret, s.T, body)
	ok := false
	for _, v := range s.V1 {
		// Every entry is compared, so time does not tell which matched.
		if hmac.Equal(v[:], want[:]) {
			ok = true
		}
	}
	if !ok {
		return ErrBadSignature
	}
	at := time.Unix(s.T, 0)
	if now.Sub(at) > MaxSignatureAge || at.Sub(now) > MaxSignatureAhead {
		return ErrStale
	}
	return nil
}

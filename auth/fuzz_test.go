package auth

import (
	"errors"
	"testing"
	"time"
)

// FuzzParseSignature: no header panics, and whatever parses is what the
// header said (a t, 1..MaxSignatures v1 of 32 bytes).
func FuzzParseSignature(f *testing.F) {
	for _, s := range []string{
		Sign([]byte(secret), []byte("{}"), 1_800_000_000), "t=1,v1=" + string(make([]byte, 64)), "", "t=", "v1=",
		"t=1,v1=00,v2=zz", ",,,", "t=1 , v1=" + "ab" + "cd", "t=99999999999999999999",
	} {
		f.Add([]byte(s))
	}
	f.Fuzz(func(t *testing.T, h []byte) {
		s, err := ParseSignature(h)
		if err != nil {
			if !errors.Is(err, ErrBadSignature) && !errors.Is(err, ErrNoSignature) {
				t.Fatalf("unexpected error kind %v", err)
			}
			return
		}
		if s.T <= 0 || len(s.V1) == 0 || len(s.V1) > MaxSignatures || len(h) > MaxSignatureHeader {
			t.Fatalf("parsed %q into %+v", h, s)
		}
		// It verifies exactly when one of its v1 is the MAC of t and the body.
		want := mac([]byte(secret), s.T, []byte("body"))
		match := false
		for _, v := range s.V1 {
			match = match || v == want
		}
		if ok := VerifyPayment([]byte(secret), h, []byte("body"), time.Unix(s.T, 0)) == nil; ok != match {
			t.Fatalf("%q: verified %v, a v1 matches %v", h, ok, match)
		}
	})
}

// FuzzVerifyToken: the token path (bearer header, size bound, JWT parse,
// key choice, claims) never panics, and only a token of the secret names
// a buyer.
func FuzzVerifyToken(f *testing.F) {
	b, err := HS256([]byte(secret))
	if err != nil {
		f.Fatal(err)
	}
	good, _ := Mint("alice", []byte(secret), time.Hour, time.Now())
	for _, s := range []string{"Bearer " + good, good, "Bearer ", "bearer a.b.c", "Bearer eyJhbGciOiJub25lIn0.e30.", "Basic abc"} {
		f.Add([]byte(s))
	}
	f.Fuzz(func(t *testing.T, h []byte) {
		tok := BearerToken(h)
		user, err := b.Verify(tok)
		if err == nil && user == "" {
			t.Fatal("a buyer without a name")
		}
		if err == nil && len(tok) > MaxTokenBytes {
			t.Fatal("an oversized token verified")
		}
	})
}

// FuzzParseJWKS: no key file panics; what parses holds 1..MaxJWKSKeys
// keys, each tied to an algorithm.
func FuzzParseJWKS(f *testing.F) {
	for _, s := range []string{`{"keys":[{"kty":"OKP","crv":"Ed25519","x":"11qYAYKxCrfVS_7TyWQHOg7hcvPapiMlrwIaaPcHURo"}]}`,
		`{"keys":[{"kty":"RSA","n":"AQAB","e":"AQAB"}]}`, `{"keys":[{"kty":"EC","crv":"P-256","x":"","y":""}]}`, `{}`, `null`} {
		f.Add([]byte(s))
	}
	f.Fuzz(func(t *testing.T, doc []byte) {
		b, err := ParseJWKS(doc)
		if err != nil {
			return
		}
		if len(b.keys) == 0 || len(b.keys) > MaxJWKSKeys || len(b.methods()) == 0 {
			t.Fatalf("%q parsed into %d keys", doc, len(b.keys))
		}
		for _, k := range b.keys {
			if k.alg != "EdDSA" && k.alg != "RS256" && k.alg != "ES256" {
				t.Fatalf("key for %q", k.alg)
			}
		}
	})
}

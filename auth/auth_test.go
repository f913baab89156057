package auth

import (
	"crypto"
	"crypto/ecdsa"
	"crypto/ed25519"
	"crypto/elliptic"
	"crypto/rand"
	"crypto/rsa"
	"encoding/base64"
	"encoding/json"
	"errors"
	"fmt"
	"math/big"
	"os"
	"path/filepath"
	"strings"
	"testing"
	"time"

	"github.com/golang-jwt/jwt/v5"
)

const secret = "0123456789abcdef0123456789abcdef"

var enc = base64.RawURLEncoding.EncodeToString

func claims(sub string, exp time.Time) jwt.RegisteredClaims {
	return jwt.RegisteredClaims{Subject: sub, ExpiresAt: jwt.NewNumericDate(exp), IssuedAt: jwt.NewNumericDate(exp.Add(-time.Hour))}
}

func sign(t *testing.T, m jwt.SigningMethod, kid string, c jwt.Claims, k any) string {
	t.Helper()
	tok := jwt.NewWithClaims(m, c)
	if kid != "" {
		tok.Header["kid"] = kid
	}
	s, err := tok.SignedString(k)
	if err != nil {
		t.Fatal(err)
	}
	return s
}

// rawToken builds a token from its header and claims JSON with sig.
func rawToken(header, body string, sig []byte) string {
	return enc([]byte(header)) + "." + enc([]byte(body)) + "." + enc(sig)
}

func TestHS256(t *testing.T) {
	b, err := HS256([]byte(secret))
	if err != nil {
		t.Fatal(err)
	}
	now := time.Now()
	good, _ := Mint("alice", []byte(secret), time.Hour, now)
	expiredWithinSkew, _ := Mint("alice", []byte(secret), time.Minute, now.Add(-time.Minute-ClockSkew/2))
	expired, _ := Mint("alice", []byte(secret), time.Minute, now.Add(-time.Minute-ClockSkew-time.Second))
	otherKey, _ := Mint("alice", []byte(strings.Repeat("x", 32)), time.Hour, now)
	hdrBody := fmt.Sprintf(`{"sub":"alice","exp":%d}`, now.Add(time.Hour).Unix())
	noExp := sign(t, jwt.SigningMethodHS256, "", jwt.RegisteredClaims{Subject: "alice"}, []byte(secret))
	noSub := sign(t, jwt.SigningMethodHS256, "", jwt.RegisteredClaims{ExpiresAt: jwt.NewNumericDate(now.Add(time.Hour))}, []byte(secret))
	hs512 := sign(t, jwt.SigningMethodHS512, "", claims("alice", now.Add(time.Hour)), []byte(secret))
	futureIat := sign(t, jwt.SigningMethodHS256, "", jwt.RegisteredClaims{Subject: "alice", ExpiresAt: jwt.NewNumericDate(now.Add(2 * time.Hour)), IssuedAt: jwt.NewNumericDate(now.Add(time.Hour))}, []byte(secret))
	for _, tc := range []struct {
		name, tok string
		want      error
	}{
		{"good", good, nil},
		{"expired within the skew", expiredWithinSkew, nil},
		{"expired", expired, ErrExpired},
		{"another key", otherKey, ErrBadToken},
		{"alg none", rawToken(`{"alg":"none","typ":"JWT"}`, hdrBody, nil), ErrBadToken},
		{"alg None", rawToken(`{"alg":"None","typ":"JWT"}`, hdrBody, nil), ErrBadToken},
		{"HS512", hs512, ErrBadToken},
		{"no exp", noExp, ErrBadToken},
		{"no sub", noSub, ErrBadToken},
		{"issued in the future", futureIat, ErrBadToken},
		{"empty", "", ErrNoToken},
		{"garbage", "a.b.c", ErrBadToken},
		{"too long", strings.Repeat("a", MaxTokenBytes+1), ErrBadToken},
	} {
		t.Run(tc.name, func(t *testing.T) {
			user, err := b.Verify([]byte(tc.tok))
			if !errors.Is(err, tc.want) || (err == nil && user != "alice") {
				t.Fatalf("Verify: %q %v, want %v", user, err, tc.want)
			}
		})
	}
	if _, err := HS256([]byte("short")); err == nil {
		t.Fatal("a short secret was taken")
	}
}

// TestJWKS: each key type verifies its own algorithm only; an HMAC token
// made with a public key's bytes as secret (alg confusion) is refused.
func TestJWKS(t *testing.T) {
	edPub, edKey, _ := ed25519.GenerateKey(rand.Reader)
	rsaKey, _ := rsa.GenerateKey(rand.Reader, 2048)
	ecKey, _ := ecdsa.GenerateKey(elliptic.P256(), rand.Reader)
	ecPub, _ := ecKey.PublicKey.Bytes() // uncompressed point
	jwks := map[string]any{"keys": []map[string]string{
		{"kty": "OKP", "crv": "Ed25519", "kid": "ed", "x": enc(edPub)},
		{"kty": "RSA", "kid": "rsa", "alg": "RS256", "n": enc(rsaKey.N.Bytes()), "e": enc(big.NewInt(int64(rsaKey.E)).Bytes())},
		{"kty": "EC", "crv": "P-256", "kid": "ec", "x": enc(ecPub[1:33]), "y": enc(ecPub[33:])},
	}}
	raw, _ := json.Marshal(jwks)
	path := filepath.Join(t.TempDir(), "jwks.json")
	if err := os.WriteFile(path, raw, 0o600); err != nil {
		t.Fatal(err)
	}
	b, err := LoadJWKS(path)
	if err != nil {
		t.Fatal(err)
	}
	c := claims("bob", time.Now().Add(time.Hour))
	for _, tc := range []struct {
		name, tok string
		ok        bool
	}{
		{"EdDSA", sign(t, jwt.SigningMethodEdDSA, "ed", c, edKey), true},
		{"RS256", sign(t, jwt.SigningMethodRS256, "rsa", c, rsaKey), true},
		{"ES256", sign(t, jwt.SigningMethodES256, "ec", c, ecKey), true},
		{"RS256 under the EC kid", sign(t, jwt.SigningMethodRS256, "ec", c, rsaKey), false},
		{"PS256 with the RSA key", sign(t, jwt.SigningMethodPS256, "rsa", c, rsaKey), false},
		{"unknown kid", sign(t, jwt.SigningMethodEdDSA, "nope", c, edKey), false},
		{"no kid among several keys", sign(t, jwt.SigningMethodEdDSA, "", c, edKey), false},
		{"HS256 keyed with the Ed25519 public key", sign(t, jwt.SigningMethodHS256, "ed", c, []byte(edPub)), false},
		{"HS256 keyed with the RSA modulus", sign(t, jwt.SigningMethodHS256, "rsa", c, rsaKey.N.Bytes()), false},
	} {
		t.Run(tc.name, func(t *testing.T) {
			user, err := b.Verify([]byte(tc.tok))
			if (err == nil) != tc.ok || (tc.ok && user != "bob") {
				t.Fatalf("Verify: %q %v, want ok=%v", user, err, tc.ok)
			}
		})
	}
	// A lone key needs no kid.
	one, _ := json.Marshal(map[string]any{"keys": []map[string]string{{"kty": "OKP", "crv": "Ed25519", "x": enc(edPub)}}})
	lone, err := ParseJWKS(one)
	if err != nil {
		t.Fatal(err)
	}
	if _, err := lone.Verify([]byte(sign(t, jwt.SigningMethodEdDSA, "", c, edKey))); err != nil {
		t.Fatal(err)
	}
	var _ crypto.Signer = edKey
}

func TestParseJWKSRefuses(t *testing.T) {
	small, _ := rsa.GenerateKey(rand.Reader, 1024)
	for _, tc := range []struct{ name, doc string }{
		{"not JSON", `nope`},
		{"no keys", `{"keys":[]}`},
		{"symmetric", `{"keys":[{"kty":"oct","k":"c2VjcmV0"}]}`},
		{"alg that does not fit", `{"keys":[{"kty":"OKP","crv":"Ed25519","alg":"HS256","x":"` + enc(make([]byte, 32)) + `"}]}`},
		{"encryption key", `{"keys":[{"kty":"OKP","crv":"Ed25519","use":"enc","x":"` + enc(make([]byte, 32)) + `"}]}`},
		{"short RSA", `{"keys":[{"kty":"RSA","n":"` + enc(small.N.Bytes()) + `","e":"AQAB"}]}`},
		{"point off the curve", `{"keys":[{"kty":"EC","crv":"P-256","x":"` + enc(make([]byte, 32)) + `","y":"` + enc(make([]byte, 32)) + `"}]}`},
		{"P-384", `{"keys":[{"kty":"EC","crv":"P-384","x":"","y":""}]}`},
		{"duplicate kid", `{"keys":[{"kty":"OKP","crv":"Ed25519","kid":"a","x":"` + enc(make([]byte, 32)) + `"},{"kty":"OKP","crv":"Ed25519","kid":"a","x":"` + enc(make([]byte, 32)) + `"}]}`},
	} {
		if _, err := ParseJWKS([]byte(tc.doc)); err == nil {
			t.Errorf("%s: taken", tc.name)
		}
	}
}

func TestPaymentSignature(t *testing.T) {
	body := []byte(`{"grab_id":"a.0.1","amount_cents":100}`)
	now := time.Unix(1_800_000_000, 0)
	good := Sign([]byte(secret), body, now.Unix())
	other := Sign([]byte(strings.Repeat("y", 32)), body, now.Unix())
	_, v1, _ := strings.Cut(good, ",")
	for _, tc := range []struct {
		name, header string
		body         []byte
		at           time.Time
		want         error
	}{
		{"good", good, body, now, nil},
		{"rotating: a second v1 matches", other + "," + v1, body, now, nil},
		{"unknown scheme skipped", good + ",v0=abc", body, now, nil},
		{"4 minutes old", good, body, now.Add(4 * time.Minute), nil},
		{"6 minutes old", good, body, now.Add(6 * time.Minute), ErrStale},
		{"from the future", good, body, now.Add(-MaxSignatureAhead - time.Second), ErrStale},
		{"another secret", other, body, now, ErrBadSignature},
		{"body changed", good, []byte(`{"grab_id":"a.0.1","amount_cents":1}`), now, ErrBadSignature},
		{"missing", "", body, now, ErrNoSignature},
		{"no t", v1, body, now, ErrBadSignature},
		{"no v1", "t=1", body, now, ErrBadSignature},
		{"two t", "t=1,t=2," + v1, body, now, ErrBadSignature},
		{"short v1", "t=1,v1=abcd", body, now, ErrBadSignature},
		{"not hex", "t=1,v1=" + strings.Repeat("zz", 32), body, now, ErrBadSignature},
		{"negative t", "t=-5," + v1, body, now, ErrBadSignature},
		{"too many v1", good + strings.Repeat(","+v1, MaxSignatures), body, now, ErrBadSignature},
		{"too long", good + strings.Repeat(" ", MaxSignatureHeader), body, now, ErrBadSignature},
	} {
		t.Run(tc.name, func(t *testing.T) {
			if err := VerifyPayment([]byte(secret), []byte(tc.header), tc.body, tc.at); !errors.Is(err, tc.want) {
				t.Fatalf("got %v, want %v", err, tc.want)
			}
		})
	}
}

func TestMintBounds(t *testing.T) {
	now := time.Now()
	for _, tc := range []struct {
		user, secret string
		ttl          time.Duration
	}{{"u", "short", time.Hour}, {"u", secret, 0}, {"u", secret, MaxTokenTTL + 1}, {"", secret, time.Hour}} {
		if _, err := Mint(tc.user, []byte(tc.secret), tc.ttl, now); err == nil {
			t.Errorf("Mint(%q, %q, %v) took it", tc.user, tc.secret, tc.ttl)
		}
	}
}

// TestVerifiedCache: a cached token still expires, a changed byte is not
// the cached token, and the cache stays within its bound.
func TestVerifiedCache(t *testing.T) {
	t0 := time.Unix(1_800_000_000, 0)
	clock := t0
	b, err := HS256([]byte(secret))
	if err != nil {
		t.Fatal(err)
	}
	b = b.WithClock(func() time.Time { return clock })
	tok, _ := Mint("alice", []byte(secret), time.Minute, t0)
	for range 2 { // the second from the cache
		if u, err := b.Verify([]byte(tok)); err != nil || u != "alice" {
			t.Fatalf("Verify: %q %v", u, err)
		}
	}
	forged := []byte(tok)
	forged[len(forged)-2] ^= 1
	if _, err := b.Verify(forged); !errors.Is(err, ErrBadToken) {
		t.Fatalf("a changed signature: %v", err)
	}
	clock = t0.Add(time.Minute + ClockSkew + time.Second)
	if _, err := b.Verify([]byte(tok)); !errors.Is(err, ErrExpired) {
		t.Fatalf("past exp and skew, cached: %v", err)
	}
	clock = t0
	for i := range MaxCachedTokens + 500 {
		tk, _ := Mint(fmt.Sprint("u", i), []byte(secret), time.Minute, t0)
		if _, err := b.Verify([]byte(tk)); err != nil {
			t.Fatal(err)
		}
	}
	if n := b.cache.len(); n > MaxCachedTokens {
		t.Fatalf("%d tokens cached, bound %d", n, MaxCachedTokens)
	}
}

// Package auth decides who a request comes from: buyers by a bearer token
// the shop signs (JWT: HS256 with a shared secret, or EdDSA, RS256 and
// ES256 with public keys from a JWKS file), and the payment provider by an
// HMAC signature over its callback's body. It knows no HTTP: the front
// hands it bytes and maps its errors to answers.
package auth

import (
	"bytes"
	"errors"
	"fmt"
	"time"

	"github.com/golang-jwt/jwt/v5"
)

const (
	// ClockSkew is how far the shop's clock and ours may disagree: a token
	// is taken up to this long after its exp (and before its nbf/iat).
	// Tokens live minutes; 30 s covers NTP-kept clocks without keeping
	// stolen tokens alive noticeably longer.
	ClockSkew = 30 * time.Second
	// MaxTokenBytes bounds a bearer token before any decoding: a buyer's
	// token holds a few claims (a few hundred bytes; an RS256 signature
	// adds 342), and the front reads it on every grab.
	MaxTokenBytes = 2048
	// MinSecretBytes is the shortest HMAC secret taken (buyer tokens and
	// payment signatures): RFC 7518 §3.2 asks HS256 keys of at least the
	// hash's size, 256 bits.
	MinSecretBytes = 32
	// MaxTokenTTL bounds what `seckill token` mints: a test token.
	MaxTokenTTL = 7 * 24 * time.Hour
)

// Errors of token verification; the front answers each 401.
var (
	ErrNoToken  = errors.New("missing bearer token: send Authorization: Bearer <token>")
	ErrBadToken = errors.New("invalid token")
	ErrExpired  = errors.New("token expired")
)

// Buyers verifies buyer tokens: the algorithms and keys it was built with,
// and no others (alg "none" and an HMAC token checked against a public key
// are refused by construction: each key is tied to its one algorithm).
type Buyers struct {
	parser *jwt.Parser
	hmac   []byte         // HS256 secret; nil with JWKS
	keys   map[string]key // by kid; JWKS
	single *key           // the only JWKS key: tokens without kid use it
	cache  *verified
	now    func() time.Time
}

type key struct {
	alg string
	pub any // ed25519.PublicKey, *rsa.PublicKey, *ecdsa.PublicKey
}

func newParser(methods []string, now func() time.Time) *jwt.Parser {
	opts := []jwt.ParserOption{
		jwt.WithValidMethods(methods),
		jwt.WithLeeway(ClockSkew),
		jwt.WithExpirationRequired(),
		jwt.WithIssuedAt(),
	}
	if now != nil {
		opts = append(opts, jwt.WithTimeFunc(now))
	}
	return jwt.NewParser(opts...)
}

// HS256 verifies tokens signed with secret (at least MinSecretBytes).
func HS256(secret []byte) (*Buyers, error) {
	if len(secret) < MinSecretBytes {
		return nil, fmt.Errorf("buyer secret: %d bytes, need at least %d", len(secret), MinSecretBytes)
	}
	return &Buyers{parser: newParser([]string{"HS256"}, nil), hmac: bytes.Clone(secret), cache: newVerified(), now: time.Now}, nil
}

// WithClock returns b reading the time from now (tests).
func (b *Buyers) WithClock(now func() time.Time) *Buyers {
	c := *b
	methods := []string{"HS256"}
	if b.hmac == nil {
		methods = b.methods()
	}
	c.parser = newParser(methods, now)
	c.now = now
	c.cache = newVerified()
	return &c
}

// Verify checks a token and returns its subject, the buyer.
func (b *Buyers) Verify(token []byte) (string, error) {
	if len(token) == 0 {
		return "", ErrNoToken
	}
	if len(token) > MaxTokenBytes {
		return "", fmt.Errorf("%w: longer than %d bytes", ErrBadToken, MaxTokenBytes)
	}
	if sub, ok := b.cache.get(token, b.now()); ok {
		return sub, nil
	}
	return b.verify(token)
}

// verify checks a token without the cache, and caches it when it holds.
func (b *Buyers) verify(token []byte) (string, error) {
	var claims jwt.RegisteredClaims
	_, err := b.parser.ParseWithClaims(string(token), &claims, b.keyFor)
	switch {
	case errors.Is(err, jwt.ErrTokenExpired):
		return "", ErrExpired
	case err != nil:
		return "", fmt.Errorf("%w: %v", ErrBadToken, err)
	case claims.Subject == "":
		return "", fmt.Errorf("%w: no sub claim", ErrBadToken)
	}
	b.cache.put(token, claims.Subject, claims.ExpiresAt.Time)
	return claims.Subject, nil
}

// keyFor picks the key a token is checked against, and refuses a token
// whose alg is not that key's.
func (b *Buyers) keyFor(t *jwt.Token) (any, error) {
	alg := t.Method.Alg()
	if b.hmac != nil {
		if alg != "HS256" {
			return nil, fmt.Errorf("alg %q not accepted", alg)
		}
		return b.hmac, nil
	}
	k := b.single
	if kid, ok := t.Header["kid"].(string); ok {
		kk, found := b.keys[kid]
		if !found {
			return nil, fmt.Errorf("unknown kid %q", kid)
		}
		k = &kk
	}
	if k == nil {
		return nil, errors.New("token has no kid and the key set holds several keys")
	}
	if k.alg != alg {
		return nil, fmt.Errorf("alg %q, but the key is for %s", alg, k.alg)
	}
	return k.pub, nil
}

// Mint signs an HS256 token for user, valid for ttl from now: what a shop
// issues after its login, and what `seckill token` makes for tests.
func Mint(user string, secret []byte, ttl time.Duration, now time.Time) (string, error) {
	if len(secret) < MinSecretBytes {
		return "", fmt.Errorf("secret: %d bytes, need at least %d", len(secret), MinSecretBytes)
	}
	if ttl <= 0 || ttl > MaxTokenTTL {
		return "", fmt.Errorf("ttl %v: must be in (0, %v]", ttl, MaxTokenTTL)
	}
	if user == "" {
		return "", errors.New("empty user")
	}
	c := jwt.RegisteredClaims{
		Subject:   user,
		IssuedAt:  jwt.NewNumericDate(now),
		ExpiresAt: jwt.NewNumericDate(now.Add(ttl)),
	}
	return jwt.NewWithClaims(jwt.SigningMethodHS256, c).SignedString(secret)
}

var bearerPrefix = []byte("Bearer ")

// BearerToken is the token of an Authorization header value, nil if the
// header is not a bearer one.
func BearerToken(h []byte) []byte {
	if len(h) <= len(bearerPrefix) || !bytes.EqualFold(h[:len(bearerPrefix)], bearerPrefix) {
		return nil
	}
	return bytes.TrimSpace(h[len(bearerPrefix):])
}

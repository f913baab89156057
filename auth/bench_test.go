package auth

import (
	"crypto/ecdsa"
	"crypto/ed25519"
	"crypto/elliptic"
	"crypto/rand"
	"crypto/rsa"
	"encoding/json"
	"math/big"
	"testing"
	"time"

	"github.com/golang-jwt/jwt/v5"
)

// BenchmarkVerify: what checking one buyer's token costs the front, per
// algorithm, the first time (the signature checked) and again (cached).
func BenchmarkVerify(b *testing.B) {
	edPub, edKey, _ := ed25519.GenerateKey(rand.Reader)
	rsaKey, _ := rsa.GenerateKey(rand.Reader, 2048)
	ecKey, _ := ecdsa.GenerateKey(elliptic.P256(), rand.Reader)
	ecPub, _ := ecKey.PublicKey.Bytes()
	doc, _ := json.Marshal(map[string]any{"keys": []map[string]string{
		{"kty": "OKP", "crv": "Ed25519", "kid": "ed", "x": enc(edPub)},
		{"kty": "RSA", "kid": "rsa", "n": enc(rsaKey.N.Bytes()), "e": enc(big.NewInt(int64(rsaKey.E)).Bytes())},
		{"kty": "EC", "crv": "P-256", "kid": "ec", "x": enc(ecPub[1:33]), "y": enc(ecPub[33:])},
	}})
	jwks, err := ParseJWKS(doc)
	if err != nil {
		b.Fatal(err)
	}
	hs, _ := HS256([]byte(secret))
	c := claims("u123456", time.Now().Add(time.Hour))
	t := &testing.T{}
	for _, bc := range []struct {
		name string
		v    *Buyers
		tok  string
	}{
		{"HS256", hs, sign(t, jwt.SigningMethodHS256, "", c, []byte(secret))},
		{"EdDSA", jwks, sign(t, jwt.SigningMethodEdDSA, "ed", c, edKey)},
		{"ES256", jwks, sign(t, jwt.SigningMethodES256, "ec", c, ecKey)},
		{"RS256", jwks, sign(t, jwt.SigningMethodRS256, "rsa", c, rsaKey)},
	} {
		if bc.name == "HS256" {
			b.Run("cached", func(b *testing.B) {
				tok := []byte(bc.tok)
				b.ReportAllocs()
				for b.Loop() {
					if _, err := bc.v.Verify(tok); err != nil {
						b.Fatal(err)
					}
				}
			})
		}
		b.Run(bc.name, func(b *testing.B) {
			tok := []byte(bc.tok)
			b.ReportAllocs()
			for b.Loop() {
				if _, err := bc.v.verify(tok); err != nil {
					b.Fatal(err)
				}
			}
		})
	}
}

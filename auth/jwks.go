package auth

import (
	"crypto/ecdsa"
	"crypto/ed25519"
	"crypto/elliptic"
	"crypto/rsa"
	"encoding/base64"
	"encoding/json"
	"errors"
	"fmt"
	"io"
	"math/big"
	"os"
	"slices"
	"time"
)

const (
	// MaxJWKSBytes bounds the key file: a JWKS of a handful of keys is a
	// few KiB.
	MaxJWKSBytes = 1 << 20
	// MaxJWKSKeys bounds the keys in it: a shop rotates between a few.
	MaxJWKSKeys = 64
	// MinRSABits is the smallest RSA modulus taken (NIST SP 800-131A).
	MinRSABits = 2048
)

type jwk struct {
	Kty string `json:"kty"`
	Kid string `json:"kid"`
	Alg string `json:"alg"`
	Use string `json:"use"`
	Crv string `json:"crv"`
	X   string `json:"x"`
	Y   string `json:"y"`
	N   string `json:"n"`
	E   string `json:"e"`
}

// LoadJWKS reads a JWKS file (RFC 7517) of public keys: OKP Ed25519
// (EdDSA), RSA (RS256) and EC P-256 (ES256).
func LoadJWKS(path string) (*Buyers, error) {
	f, err := os.Open(path)
	if err != nil {
		return nil, fmt.Errorf("jwks: %w", err)
	}
	defer f.Close()
	data, err := io.ReadAll(io.LimitReader(f, MaxJWKSBytes+1))
	if err != nil {
		return nil, fmt.Errorf("jwks: %w", err)
	}
	if len(data) > MaxJWKSBytes {
		return nil, fmt.Errorf("jwks %s: larger than %d bytes", path, MaxJWKSBytes)
	}
	b, err := ParseJWKS(data)
	if err != nil {
		return nil, fmt.Errorf("jwks %s: %w", path, err)
	}
	return b, nil
}

// ParseJWKS builds a verifier from a JWKS document. Every key is tied to
// one algorithm by its type; an "alg" member that says otherwise, a
// private key or an encryption key is refused.
func ParseJWKS(data []byte) (*Buyers, error) {
	var set struct {
		Keys []jwk `json:"keys"`
	}
	if err := json.Unmarshal(data, &set); err != nil {
		return nil, fmt.Errorf("not a JWKS: %w", err)
	}
	if len(set.Keys) == 0 {
		return nil, errors.New("no keys")
	}
	if len(set.Keys) > MaxJWKSKeys {
		return nil, fmt.Errorf("%d keys, at most %d", len(set.Keys), MaxJWKSKeys)
	}
	b := &Buyers{keys: map[string]key{}, cache: newVerified(), now: time.Now}
	for i, j := range set.Keys {
		k, err := j.key()
		if err != nil {
			return nil, fmt.Errorf("key %d (kid %q): %w", i, j.Kid, err)
		}
		if _, dup := b.keys[j.Kid]; dup {
			return nil, fmt.Errorf("key %d: kid %q twice", i, j.Kid)
		}
		b.keys[j.Kid] = k
	}
	if len(b.keys) == 1 {
		for _, k := range b.keys {
			b.single = &k
		}
	}
	b.parser = newParser(b.methods(), nil)
	return b, nil
}

func (b *Buyers) methods() []string {
	var ms []string
	for _, k := range b.keys {
		if !slices.Contains(ms, k.alg) {
			ms = append(ms, k.alg)
		}
	}
	slices.Sort(ms)
	return ms
}

func (j jwk) key() (key, error) {
	if j.Use != "" && j.Use != "sig" {
		return key{}, fmt.Errorf("use %q: only signing keys", j.Use)
	}
	var k key
	switch j.Kty {
	case "OKP":
		if j.Crv != "Ed25519" {
			return key{}, fmt.Errorf("OKP curve %q: only Ed25519", j.Crv)
		}
		x, err := b64(j.X)
		if err != nil || len(x) != ed25519.PublicKeySize {
			return key{}, errors.New("bad Ed25519 x")
		}
		k = key{alg: "EdDSA", pub: ed25519.PublicKey(x)}
	case "RSA":
		n, err1 := b64(j.N)
		e, err2 := b64(j.E)
		if err1 != nil || err2 != nil || len(e) == 0 || len(e) > 4 {
			return key{}, errors.New("bad RSA n or e")
		}
		pub := &rsa.PublicKey{N: new(big.Int).SetBytes(n), E: int(new(big.Int).SetBytes(e).Int64())}
		if pub.N.BitLen() < MinRSABits || pub.E < 3 || pub.E%2 == 0 {
			return key{}, fmt.Errorf("RSA key of %d bits (need %d) or bad exponent", pub.N.BitLen(), MinRSABits)
		}
		k = key{alg: "RS256", pub: pub}
	case "EC":
		if j.Crv != "P-256" {
			return key{}, fmt.Errorf("EC curve %q: only P-256", j.Crv)
		}
		x, err1 := b64(j.X)
		y, err2 := b64(j.Y)
		if err1 != nil || err2 != nil || len(x) != 32 || len(y) != 32 {
			return key{}, errors.New("bad P-256 x or y")
		}
		// The uncompressed point, checked to be on the curve.
		raw := append(append([]byte{4}, x...), y...)
		pub, err := ecdsa.ParseUncompressedPublicKey(elliptic.P256(), raw)
		if err != nil {
			return key{}, fmt.Errorf("P-256 point: %w", err)
		}
		k = key{alg: "ES256", pub: pub}
	default:
		return key{}, fmt.Errorf("kty %q: only OKP, RSA, EC", j.Kty)
	}
	if j.Alg != "" && j.Alg != k.alg {
		return key{}, fmt.Errorf("alg %q does not fit a %s key (%s)", j.Alg, j.Kty, k.alg)
	}
	return k, nil
}

func b64(s string) ([]byte, error) { return base64.RawURLEncoding.DecodeString(s) }

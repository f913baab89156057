package bench

import (
	"fmt"
	"sync"
	"time"

	"github.com/seckill/seckill/auth"
)

const (
	// DefaultPremintTokens is how many buyer tokens are minted before a
	// run whose every request is a new user (--users 0): the first ones
	// of the run; beyond them a token is minted as its request is built.
	DefaultPremintTokens = 200_000
	// MaxPremintTokens bounds the tokens minted ahead: about 200 bytes
	// each, 400 MiB at most (a flash sale of 2 M buyers).
	MaxPremintTokens = 2_000_000
	// tokenTTL outlives any run and its audit.
	tokenTTL = 6 * time.Hour
)

// tokenBook holds the bearer header of each simulated buyer, minted with
// the shop's secret before the run, so that signing is off the measured
// path (an HS256 token takes a few µs to make).
type tokenBook struct {
	secret []byte
	at     time.Time
	pre    [][]byte // "Bearer <token>" of user n
}

func premint(secret string, users int64) (*tokenBook, error) {
	n := users
	if n == 0 {
		n = DefaultPremintTokens
	}
	n = min(n, MaxPremintTokens)
	b := &tokenBook{secret: []byte(secret), at: time.Now(), pre: make([][]byte, n)}
	if _, err := b.mint(0); err != nil {
		return nil, fmt.Errorf("buyer secret: %w", err)
	}
	const workers = 4
	var wg sync.WaitGroup
	for w := range workers {
		wg.Go(func() {
			for u := int64(w); u < n; u += workers {
				b.pre[u], _ = b.mint(u)
			}
		})
	}
	wg.Wait()
	return b, nil
}

func (b *tokenBook) mint(user int64) ([]byte, error) {
	tok, err := auth.Mint(UserID(user), b.secret, tokenTTL, b.at)
	if err != nil {
		return nil, err
	}
	return []byte("Bearer " + tok), nil
}

// header is user's Authorization value.
func (b *tokenBook) header(user int64) []byte {
	if user < int64(len(b.pre)) {
		return b.pre[user]
	}
	h, _ := b.mint(user)
	return h
}

// authz is user's Authorization header value, nil without buyer tokens.
func (p *Plan) authz(user int64) []byte {
	if p.tokens == nil {
		return nil
	}
	return p.tokens.header(user)
}

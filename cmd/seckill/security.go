package main

import (
	"flag"
	"fmt"
	"net"
	"net/netip"
	"os"
	"strconv"
	"time"

	"github.com/seckill/seckill/auth"
	"github.com/seckill/seckill/limit"
	"github.com/seckill/seckill/transport"
)

// Rate limit defaults. A flash sale has many buyers behind one address
// (a carrier-grade NAT, an office, a campus: thousands), so the address
// limit is a flood guard, not a per-person one: 2000 requests a second
// with bursts of 4000 lets a NAT of thousands of buyers all press "buy"
// in the same second, while one address flooding gets about 3% of what
// this front answers on the 2-core build machine (~70 k/s bare). The
// buyer limit is the per-person one: a person, or their script, retrying
// gets 5 a second after a burst of 10.
const (
	DefaultRateAddr       = 2000
	DefaultRateAddrBurst  = 4000
	DefaultRateBuyer      = 5
	DefaultRateBuyerBurst = 10
)

type securityFlags struct {
	buyerAuth, buyerSecret, buyerJWKS, paymentSecret, trusted *string
	insecureIDs                                               *bool
	rateAddr, rateBuyer                                       *float64
	addrBurst, buyerBurst, tracked                            *int
}

func envFloat(name string, def float64) float64 {
	if v, err := strconv.ParseFloat(os.Getenv(name), 64); err == nil {
		return v
	}
	return def
}

func envInt(name string, def int) int {
	if v, err := strconv.Atoi(os.Getenv(name)); err == nil {
		return v
	}
	return def
}

func addSecurityFlags(fs *flag.FlagSet) *securityFlags {
	return &securityFlags{
		buyerAuth:     fs.String("buyer-auth", envOr("SECKILL_BUYER_AUTH", "none"), "how buyers are known: jwt (a bearer token the shop signs; sub is the buyer) or none (the body's user_id; only on a loopback --http unless --insecure-buyer-ids) (env SECKILL_BUYER_AUTH)"),
		buyerSecret:   fs.String("buyer-secret", envOr("SECKILL_BUYER_SECRET", ""), "with --buyer-auth jwt: the HS256 secret buyer tokens are signed with, at least 32 bytes (env SECKILL_BUYER_SECRET)"),
		buyerJWKS:     fs.String("buyer-jwks", envOr("SECKILL_BUYER_JWKS", ""), "with --buyer-auth jwt: a JWKS file of the shop's public keys (EdDSA Ed25519, RS256, ES256 P-256) instead of --buyer-secret (env SECKILL_BUYER_JWKS)"),
		insecureIDs:   fs.Bool("insecure-buyer-ids", os.Getenv("SECKILL_INSECURE_BUYER_IDS") == "1", "allow --buyer-auth none on a non-loopback --http: anyone may buy, read and cancel as anyone (env SECKILL_INSECURE_BUYER_IDS=1)"),
		paymentSecret: fs.String("payment-secret", envOr("SECKILL_PAYMENT_SECRET", ""), "the secret the payment provider signs callbacks with (X-Signature), at least 32 bytes; empty: POST /v1/orders/{id}/pay answers 404 (env SECKILL_PAYMENT_SECRET)"),
		trusted:       fs.String("trusted-proxies", envOr("SECKILL_TRUSTED_PROXIES", ""), "CIDR,... of proxies whose X-Forwarded-For names the client for rate limits; empty: the peer address is the client (env SECKILL_TRUSTED_PROXIES)"),
		rateAddr:      fs.Float64("rate-addr", envFloat("SECKILL_RATE_ADDR", DefaultRateAddr), "public requests a second per client address (0: no limit) (env SECKILL_RATE_ADDR)"),
		addrBurst:     fs.Int("rate-addr-burst", envInt("SECKILL_RATE_ADDR_BURST", DefaultRateAddrBurst), "burst per client address (env SECKILL_RATE_ADDR_BURST)"),
		rateBuyer:     fs.Float64("rate-buyer", envFloat("SECKILL_RATE_BUYER", DefaultRateBuyer), "grabs and cancels a second per buyer (0: no limit) (env SECKILL_RATE_BUYER)"),
		buyerBurst:    fs.Int("rate-buyer-burst", envInt("SECKILL_RATE_BUYER_BURST", DefaultRateBuyerBurst), "burst per buyer (env SECKILL_RATE_BUYER_BURST)"),
		tracked:       fs.Int("rate-tracked", envInt("SECKILL_RATE_TRACKED", limit.DefaultMaxTracked), "client addresses, and buyers, whose buckets are kept (each table; the least recently seen are forgotten) (env SECKILL_RATE_TRACKED)"),
	}
}

// MaxRateTracked bounds --rate-tracked: 2²² keys are about 640 MiB.
const MaxRateTracked = 1 << 22

// build checks the flags against the public listener's address and
// returns the front's security.
func (f *securityFlags) build(httpAddr string) (transport.Security, error) {
	var sec transport.Security
	switch *f.buyerAuth {
	case "jwt":
		var err error
		switch {
		case (*f.buyerSecret == "") == (*f.buyerJWKS == ""):
			return sec, fmt.Errorf("--buyer-auth jwt needs one of --buyer-secret or --buyer-jwks")
		case *f.buyerSecret != "":
			sec.Buyers, err = auth.HS256([]byte(*f.buyerSecret))
		default:
			sec.Buyers, err = auth.LoadJWKS(*f.buyerJWKS)
		}
		if err != nil {
			return sec, err
		}
	case "none":
		if *f.buyerSecret != "" || *f.buyerJWKS != "" {
			return sec, fmt.Errorf("--buyer-secret and --buyer-jwks need --buyer-auth jwt")
		}
		if !loopback(httpAddr) && !*f.insecureIDs {
			return sec, fmt.Errorf("--http %s is not a loopback address: buyers must prove who they are there "+
				"(--buyer-auth jwt with --buyer-secret or --buyer-jwks), or accept anyone buying as anyone with --insecure-buyer-ids", httpAddr)
		}
	default:
		return sec, fmt.Errorf("--buyer-auth %q: jwt or none", *f.buyerAuth)
	}
	if *f.paymentSecret != "" {
		if len(*f.paymentSecret) < auth.MinSecretBytes {
			return sec, fmt.Errorf("--payment-secret: at least %d bytes", auth.MinSecretBytes)
		}
		sec.PaymentSecret = []byte(*f.paymentSecret)
	}
	var err error
	if sec.TrustedProxies, err = limit.ParseCIDRs(*f.trusted); err != nil {
		return sec, fmt.Errorf("--trusted-proxies: %w", err)
	}
	if *f.tracked < limit.Shards || *f.tracked > MaxRateTracked {
		return sec, fmt.Errorf("--rate-tracked: %d..%d", limit.Shards, MaxRateTracked)
	}
	if *f.rateAddr > 0 {
		sec.AddrLimit = limit.New[netip.Addr](*f.rateAddr, *f.addrBurst, *f.tracked)
	}
	if *f.rateBuyer > 0 {
		sec.BuyerLimit = limit.New[string](*f.rateBuyer, *f.buyerBurst, *f.tracked)
	}
	return sec, nil
}

// loopback reports whether every address host:port listens on is a
// loopback one ("localhost" counts when it resolves only to loopback).
func loopback(hostport string) bool {
	host, _, err := net.SplitHostPort(hostport)
	if err != nil || host == "" {
		return false
	}
	if ip, err := netip.ParseAddr(host); err == nil {
		return ip.IsLoopback()
	}
	ips, err := net.LookupIP(host)
	if err != nil || len(ips) == 0 {
		return false
	}
	for _, ip := range ips {
		if !ip.IsLoopback() {
			return false
		}
	}
	return true
}

// runToken is `seckill token`: mint an HS256 buyer token.
func runToken(args []string) error {
	fs := flag.NewFlagSet("token", flag.ContinueOnError)
	user := fs.String("user", "", "the buyer (the token's sub)")
	secret := fs.String("secret", os.Getenv("SECKILL_BUYER_SECRET"), "the HS256 secret, as serve's --buyer-secret (env SECKILL_BUYER_SECRET)")
	ttl := fs.Duration("ttl", time.Hour, "how long the token is valid")
	if err := fs.Parse(args); err != nil {
		return err
	}
	if !transport.ValidID([]byte(*user)) {
		return fmt.Errorf("token: --user must be 1-%d bytes of [A-Za-z0-9_.:-]", transport.MaxIDLen)
	}
	tok, err := auth.Mint(*user, []byte(*secret), *ttl, time.Now())
	if err != nil {
		return fmt.Errorf("token: %w", err)
	}
	fmt.Println(tok)
	return nil
}

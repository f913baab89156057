package limit

import (
	"bytes"
	"fmt"
	"net/netip"
	"strings"
)

const (
	// MaxTrustedProxies bounds --trusted-proxies: a front has a few load
	// balancers.
	MaxTrustedProxies = 64
	// MaxForwardedHops bounds how many X-Forwarded-For entries are read
	// from the right: a chain of proxies is a few deep; beyond that the
	// entries are the client's to write and not believed anyway.
	MaxForwardedHops = 16
	// IPv6Prefix is how much of an IPv6 address names a client: a host is
	// handed a /64, so one bucket per /64 (else every address of it would
	// get a bucket of its own).
	IPv6Prefix = 64
)

// ParseCIDRs reads a comma-separated list of CIDR prefixes (a lone address
// is its /32 or /128).
func ParseCIDRs(s string) ([]netip.Prefix, error) {
	var out []netip.Prefix
	for part := range strings.SplitSeq(s, ",") {
		part = strings.TrimSpace(part)
		if part == "" {
			continue
		}
		p, err := netip.ParsePrefix(part)
		if err != nil {
			a, aerr := netip.ParseAddr(part)
			if aerr != nil {
				return nil, fmt.Errorf("trusted proxy %q: not an address or CIDR prefix", part)
			}
			p = netip.PrefixFrom(a, a.BitLen())
		}
		out = append(out, p.Masked())
		if len(out) > MaxTrustedProxies {
			return nil, fmt.Errorf("more than %d trusted proxies", MaxTrustedProxies)
		}
	}
	return out, nil
}

// Trusted reports whether a is in one of ps.
func Trusted(a netip.Addr, ps []netip.Prefix) bool {
	a = a.Unmap()
	for _, p := range ps {
		if p.Contains(a) {
			return true
		}
	}
	return false
}

// ClientAddr is the address a request is counted against: the peer's,
// unless the peer is a trusted proxy; then the X-Forwarded-For entries
// (each header value in order, comma-separated) are read from the right,
// and the first that is not itself a trusted proxy is the client. An
// entry that does not parse ends the walk at the proxy that added it (the
// last trusted hop is the client then). IPv6 addresses are cut to their
// /64 (IPv6Prefix).
func ClientAddr(peer netip.Addr, xff [][]byte, trusted []netip.Prefix) netip.Addr {
	client := peer.Unmap()
	if len(trusted) > 0 && Trusted(client, trusted) {
		hops := 0
	walk:
		for i := len(xff) - 1; i >= 0; i-- {
			v := xff[i]
			for len(v) > 0 && hops < MaxForwardedHops {
				hops++
				entry := v
				if j := bytes.LastIndexByte(v, ','); j >= 0 {
					entry, v = v[j+1:], v[:j]
				} else {
					v = nil
				}
				a, err := netip.ParseAddr(string(bytes.TrimSpace(entry)))
				if err != nil {
					break walk
				}
				client = a.Unmap()
				if !Trusted(client, trusted) {
					break walk
				}
			}
		}
	}
	if client.Is6() {
		p, _ := client.WithZone("").Prefix(IPv6Prefix)
		client = p.Addr()
	}
	return client
}

package persistence

import (
	"crypto/x509"
	"fmt"
	"net/url"
	"os"
	"strings"

	"github.com/redis/go-redis/v9"
)

// redacted stands for a password in what is printed.
const redacted = "xxxxx"

// RedisOptions parses a Redis URL, redis://[USER:PASSWORD@]HOST:PORT or
// rediss:// for TLS (USER an ACL user), into go-redis options. caFile, when
// set, holds the PEM certificates that verify a rediss:// server (the
// cluster's CA) instead of the system's roots. No error it returns holds the
// URL's password: an unparseable URL makes net/url quote it whole.
func RedisOptions(rawURL, caFile string) (*redis.Options, error) {
	opts, err := redis.ParseURL(rawURL)
	if err != nil {
		return nil, fmt.Errorf("redis %s: %w", RedactURL(rawURL), ScrubURL(err, rawURL))
	}
	if caFile == "" {
		return opts, nil
	}
	if opts.TLSConfig == nil {
		return nil, fmt.Errorf("redis %s: a CA (%s) verifies a TLS server: use a rediss:// URL", RedactURL(rawURL), caFile)
	}
	pem, err := os.ReadFile(caFile)
	if err != nil {
		return nil, fmt.Errorf("redis CA: %w", err)
	}
	pool := x509.NewCertPool()
	if !pool.AppendCertsFromPEM(pem) {
		return nil, fmt.Errorf("redis CA: %s holds no PEM certificate", caFile)
	}
	opts.TLSConfig.RootCAs = pool
	return opts, nil
}

// RedactURL is rawURL with its password, if it holds one, replaced by
// "xxxxx": what logs and errors show of a URL. A URL that does not parse
// is cut by hand: everything between "://" and the last '@' is the
// userinfo, and what follows its first ':' the password.
func RedactURL(rawURL string) string {
	if u, err := url.Parse(rawURL); err == nil {
		if _, ok := u.User.Password(); !ok {
			return rawURL
		}
		return u.Redacted()
	}
	start, end, ok := passwordSpan(rawURL)
	if !ok {
		return rawURL
	}
	return rawURL[:start] + redacted + rawURL[end:]
}

// ScrubURL is err with every copy of rawURL in its message redacted, and of
// rawURL's password, as written and unescaped, replaced: for errors of
// libraries that quote the URL they were given. errors.Is and errors.As
// still see err.
func ScrubURL(err error, rawURL string) error {
	if err == nil {
		return nil
	}
	msg := strings.ReplaceAll(err.Error(), rawURL, RedactURL(rawURL))
	if start, end, ok := passwordSpan(rawURL); ok {
		pass := rawURL[start:end]
		msg = strings.ReplaceAll(msg, pass, redacted)
		if p, uerr := url.PathUnescape(pass); uerr == nil && p != "" {
			msg = strings.ReplaceAll(msg, p, redacted)
		}
	}
	if msg == err.Error() {
		return err
	}
	return &scrubbed{msg: msg, err: err}
}

// passwordSpan finds the password of rawURL without parsing it (it may
// not parse): [start, end) in rawURL, ok false when it has none.
func passwordSpan(rawURL string) (start, end int, ok bool) {
	i := strings.Index(rawURL, "://")
	if i < 0 {
		return 0, 0, false
	}
	auth := i + len("://")
	at := strings.LastIndexByte(rawURL[auth:], '@')
	if at < 0 {
		return 0, 0, false
	}
	colon := strings.IndexByte(rawURL[auth:auth+at], ':')
	if colon < 0 || colon+1 == at {
		return 0, 0, false
	}
	return auth + colon + 1, auth + at, true
}

// scrubbed is an error whose message had a secret taken out; it unwraps
// to the original, for errors.Is, which only callers that print nothing
// should look into.
type scrubbed struct {
	msg string
	err error
}

func (e *scrubbed) Error() string { return e.msg }
func (e *scrubbed) Unwrap() error { return e.err }

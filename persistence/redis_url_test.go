package persistence

import (
	"errors"
	"os"
	"path/filepath"
	"strings"
	"testing"
)

func TestRedactURL(t *testing.T) {
	for _, c := range []struct{ in, want string }{
		{"redis://127.0.0.1:6379", "redis://127.0.0.1:6379"},
		{"redis://seckill:s3cret@127.0.0.1:6379", "redis://seckill:xxxxx@127.0.0.1:6379"},
		{"rediss://:s3cret@127.0.0.1:6380/0", "rediss://:xxxxx@127.0.0.1:6380/0"},
		{"redis://user@127.0.0.1:6379", "redis://user@127.0.0.1:6379"},
		// unparseable (a bad port; a '/' and '%' left unescaped): cut by hand
		{"redis://u:pa/ss@127.0.0.1:port", "redis://u:xxxxx@127.0.0.1:port"},
		{"redis://u:p%zz@127.0.0.1:6379", "redis://u:xxxxx@127.0.0.1:6379"},
		{"not a url", "not a url"},
	} {
		if got := RedactURL(c.in); got != c.want {
			t.Errorf("RedactURL(%q) = %q, want %q", c.in, got, c.want)
		}
	}
}

// TestRedisOptionsHideThePassword: an URL that go-redis (net/url) cannot
// parse is quoted whole in its error; ours never shows the password.
func TestRedisOptionsHideThePassword(t *testing.T) {
	ca := filepath.Join(t.TempDir(), "ca.crt")
	if err := os.WriteFile(ca, []byte("no certificate here"), 0o600); err != nil {
		t.Fatal(err)
	}
	for _, c := range []struct {
		name, url, ca, want string
	}{
		{"bad port", "redis://u:topsecret@127.0.0.1:port", "", "invalid port"},
		{"bad escape", "redis://u:top%zzsecret@127.0.0.1:6379", "", "invalid URL escape"},
		{"bad scheme", "http://u:topsecret@127.0.0.1:6379", "", "invalid URL scheme"},
		{"CA without TLS", "redis://u:topsecret@127.0.0.1:6379", ca, "rediss://"},
		{"CA not PEM", "rediss://u:topsecret@127.0.0.1:6379", ca, "no PEM certificate"},
	} {
		t.Run(c.name, func(t *testing.T) {
			_, err := RedisOptions(c.url, c.ca)
			if err == nil {
				t.Fatal("no error")
			}
			if msg := err.Error(); strings.Contains(msg, "secret") || !strings.Contains(msg, c.want) {
				t.Fatalf("error %q: want %q in it and no password", msg, c.want)
			}
		})
	}
	opts, err := RedisOptions("rediss://seckill:topsecret@127.0.0.1:6380", "")
	if err != nil || opts.Username != "seckill" || opts.Password != "topsecret" || opts.TLSConfig == nil {
		t.Fatalf("rediss with an ACL user: %+v, %v", opts, err)
	}
}

func TestScrubURLKeepsTheCause(t *testing.T) {
	cause := errors.New("dial redis://u:pw1234@h:1 (pw1234)")
	err := ScrubURL(cause, "redis://u:pw1234@h:1")
	if !errors.Is(err, cause) || strings.Contains(err.Error(), "pw1234") {
		t.Fatalf("%v", err)
	}
}

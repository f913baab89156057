package bus

import (
	"errors"
	"os"
	"path/filepath"
	"strings"
	"testing"
	"time"

	"github.com/nats-io/nats.go"
	"github.com/nats-io/nkeys"
)

// connectOnce dials url once (no retries) with opts.
func connectOnce(url string, opts ...nats.Option) error {
	nc, err := nats.Connect(url, append(opts, nats.Timeout(5*time.Second), nats.MaxReconnects(0))...)
	if err == nil {
		nc.Close()
	}
	return err
}

// TestEmbeddedRequiresCredentials: a listening embedded server refuses a
// client without its key, with another key or with a password, admits the
// holder of the seed it wrote (0600), and keeps that seed across restarts.
func TestEmbeddedRequiresCredentials(t *testing.T) {
	dir := t.TempDir()
	e := startServer(t, dir, "127.0.0.1:0")
	url := e.ClientURL()
	path := e.CredsPath()
	if path != filepath.Join(dir, CredsFile) {
		t.Fatalf("creds at %q, want %q", path, filepath.Join(dir, CredsFile))
	}
	fi, err := os.Stat(path)
	if err != nil {
		t.Fatal(err)
	}
	if fi.Mode().Perm() != 0o600 {
		t.Fatalf("%s has mode %v, want 0600", path, fi.Mode().Perm())
	}
	other, err := nkeys.CreateUser()
	if err != nil {
		t.Fatal(err)
	}
	otherSeed, _ := other.Seed()
	otherFile := filepath.Join(t.TempDir(), "other.nk")
	if err := os.WriteFile(otherFile, otherSeed, 0o600); err != nil {
		t.Fatal(err)
	}
	pwFile := filepath.Join(t.TempDir(), "pw")
	if err := os.WriteFile(pwFile, []byte("seckill:guess\n"), 0o600); err != nil {
		t.Fatal(err)
	}
	for _, tc := range []struct {
		name  string
		creds string
	}{{"none", ""}, {"another key", otherFile}, {"a password", pwFile}} {
		opts, err := ClientAuth{CredsFile: tc.creds}.Options()
		if err != nil {
			t.Fatal(err)
		}
		err = connectOnce(url, opts...)
		if !errors.Is(err, nats.ErrAuthorization) && (err == nil || !strings.Contains(strings.ToLower(err.Error()), "authorization")) {
			t.Errorf("%s: connect = %v, want an authorization violation", tc.name, err)
		}
	}
	opts, err := ClientAuth{CredsFile: path}.Options()
	if err != nil {
		t.Fatal(err)
	}
	if err := connectOnce(url, opts...); err != nil {
		t.Fatalf("with %s: %v", path, err)
	}
	// In-process clients present the key too.
	js := inProcess(t, e, Config{})
	_ = js

	before, _ := os.ReadFile(path)
	e.Shutdown()
	e2 := startServer(t, dir, "127.0.0.1:0")
	after, _ := os.ReadFile(path)
	if string(before) != string(after) {
		t.Fatal("the seed changed across a restart")
	}
	if err := connectOnce(e2.ClientURL(), opts...); err != nil {
		t.Fatalf("after restart with %s: %v", path, err)
	}
	if err := connectOnce(e2.ClientURL()); err == nil {
		t.Fatal("after restart: connected without credentials")
	}
}

// TestEmbeddedInProcessOnly: a server that does not listen writes no key.
func TestEmbeddedInProcessOnly(t *testing.T) {
	dir := t.TempDir()
	e := startServer(t, dir, "")
	if e.CredsPath() != "" {
		t.Fatalf("CredsPath %q without a listener", e.CredsPath())
	}
	if _, err := os.Stat(filepath.Join(dir, CredsFile)); !errors.Is(err, os.ErrNotExist) {
		t.Fatalf("key written without a listener: %v", err)
	}
	inProcess(t, e, Config{})
}

func TestParseCreds(t *testing.T) {
	kp, _ := nkeys.CreateUser()
	seed, _ := kp.Seed()
	acct, _ := nkeys.CreateAccount()
	aseed, _ := acct.Seed()
	for _, tc := range []struct {
		name string
		in   string
		kind CredsKind
		err  bool
	}{
		{"bare seed", string(seed) + "\n", CredsNkey, false},
		{"decorated seed", "# c\n-----BEGIN USER NKEY SEED-----\n" + string(seed) + "\n------END USER NKEY SEED------\n", CredsNkey, false},
		{"user password", "\n# comment\nalice:s3cret\n", CredsPassword, false},
		{"password with colon", "alice:a:b\n", CredsPassword, false},
		{"empty", "", 0, true},
		{"comments only", "# x\n\n", 0, true},
		{"no colon", "alice\n", 0, true},
		{"empty password", "alice:\n", 0, true},
		{"bad seed", "SUAAAAAA\n", 0, true},
		{"account seed", string(aseed) + "\n", 0, true},
		{"jwt without seed", "-----BEGIN NATS USER JWT-----\neyJhbGciOi\n------END NATS USER JWT------\n", 0, true},
		{"too big", strings.Repeat("a", MaxCredsBytes+1), 0, true},
	} {
		t.Run(tc.name, func(t *testing.T) {
			c, err := ParseCreds([]byte(tc.in))
			if (err != nil) != tc.err {
				t.Fatalf("err = %v, want error %v", err, tc.err)
			}
			if err != nil && !errors.Is(err, ErrBadCreds) {
				t.Fatalf("err = %v, want ErrBadCreds", err)
			}
			if c.Kind != tc.kind {
				t.Fatalf("kind %d, want %d", c.Kind, tc.kind)
			}
			if err == nil {
				if _, err := c.Option(); err != nil {
					t.Fatal(err)
				}
			}
		})
	}
}

func FuzzParseCreds(f *testing.F) {
	kp, _ := nkeys.CreateUser()
	seed, _ := kp.Seed()
	f.Add([]byte(string(seed)))
	f.Add([]byte("-----BEGIN USER NKEY SEED-----\n" + string(seed) + "\n------END USER NKEY SEED------\n"))
	f.Add([]byte("alice:pw\n"))
	f.Add([]byte("-----BEGIN NATS USER JWT-----\nx\n------END NATS USER JWT------\n"))
	f.Fuzz(func(t *testing.T, data []byte) {
		c, err := ParseCreds(data)
		if err != nil {
			return
		}
		if _, err := c.Option(); err != nil {
			t.Fatalf("parsed %q but no option: %v", data, err)
		}
		if c.Kind == CredsPassword && (c.User == "" || c.Password == "") {
			t.Fatalf("empty user or password from %q", data)
		}
	})
}

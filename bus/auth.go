package bus

import (
	"bytes"
	"errors"
	"fmt"
	"io"
	"os"
	"path/filepath"
	"strings"

	"github.com/nats-io/nats.go"
	"github.com/nats-io/nkeys"
)

// Credentials of the bus.
//
// The embedded server, whenever it listens, admits only the holder of one
// nkey (a user key pair). An nkey rather than a random user and password:
// the server keeps only the public key, and a client proves it holds the
// seed by signing the server's nonce, so the secret never crosses the wire
// (NATS without TLS sends a password in clear, and the listener may be on
// another interface than loopback). The seed is generated on the first
// start and kept, mode 0600, as CredsFile in the server's store directory,
// in the format `nsc` writes; that file is also what `--nats-creds` takes.
const (
	// CredsFile is the embedded server's client seed, in its store dir.
	CredsFile = "client.nk"
	// MaxCredsBytes bounds a credentials file: a .creds file (a user JWT
	// and a seed) is about 1 KiB; more is not a credentials file.
	MaxCredsBytes = 64 << 10
)

// ErrBadCreds is returned for a credentials file that is none of the
// kinds ParseCreds knows.
var ErrBadCreds = errors.New("not a NATS credentials file (a .creds file, an nkey seed, or user:password)")

// CredsKind says what a credentials file holds.
type CredsKind int

const (
	CredsJWT      CredsKind = iota + 1 // a .creds file: a user JWT and its seed
	CredsNkey                          // an nkey user seed
	CredsPassword                      // a line "user:password"
)

// Creds are parsed client credentials.
type Creds struct {
	Kind     CredsKind
	raw      []byte        // CredsJWT: the file
	kp       nkeys.KeyPair // CredsNkey
	User     string        // CredsPassword
	Password string        // CredsPassword
}

// ParseCreds reads credentials: a NATS .creds file (a user JWT and its nkey
// seed between BEGIN/END lines), an nkey user seed (decorated or alone on a
// line), or the first line that is not empty nor a # comment as
// "user:password" (neither empty).
func ParseCreds(data []byte) (Creds, error) {
	if len(data) > MaxCredsBytes {
		return Creds{}, fmt.Errorf("%w: over %d bytes", ErrBadCreds, MaxCredsBytes)
	}
	if bytes.Contains(data, []byte("BEGIN NATS USER JWT")) {
		jwt, err := nkeys.ParseDecoratedJWT(data)
		if err != nil || jwt == "" {
			return Creds{}, fmt.Errorf("%w: bad user JWT", ErrBadCreds)
		}
		if _, err := nkeys.ParseDecoratedUserNKey(data); err != nil {
			return Creds{}, fmt.Errorf("%w: .creds without a user seed: %v", ErrBadCreds, err)
		}
		return Creds{Kind: CredsJWT, raw: bytes.Clone(data)}, nil
	}
	for _, line := range strings.Split(string(data), "\n") {
		line = strings.TrimSpace(line)
		if line == "" || strings.HasPrefix(line, "#") || strings.HasPrefix(line, "---") {
			continue
		}
		if strings.HasPrefix(line, "SU") && !strings.Contains(line, ":") {
			kp, err := nkeys.FromSeed([]byte(line))
			if err != nil {
				return Creds{}, fmt.Errorf("%w: bad nkey seed: %v", ErrBadCreds, err)
			}
			return Creds{Kind: CredsNkey, kp: kp}, nil
		}
		user, pass, ok := strings.Cut(line, ":")
		if !ok || user == "" || pass == "" {
			return Creds{}, ErrBadCreds
		}
		return Creds{Kind: CredsPassword, User: user, Password: pass}, nil
	}
	return Creds{}, fmt.Errorf("%w: empty", ErrBadCreds)
}

// ReadCreds reads and parses a credentials file.
func ReadCreds(path string) (Creds, error) {
	f, err := os.Open(path)
	if err != nil {
		return Creds{}, fmt.Errorf("nats credentials: %w", err)
	}
	defer f.Close()
	data, err := io.ReadAll(io.LimitReader(f, MaxCredsBytes+1))
	if err != nil {
		return Creds{}, fmt.Errorf("nats credentials %s: %w", path, err)
	}
	c, err := ParseCreds(data)
	if err != nil {
		return Creds{}, fmt.Errorf("nats credentials %s: %w", path, err)
	}
	return c, nil
}

// Option is the nats.go option that presents the credentials.
func (c Creds) Option() (nats.Option, error) {
	switch c.Kind {
	case CredsJWT:
		return nats.UserCredentialBytes(c.raw), nil
	case CredsNkey:
		pub, err := c.kp.PublicKey()
		if err != nil {
			return nil, err
		}
		kp := c.kp
		return nats.Nkey(pub, func(nonce []byte) ([]byte, error) { return kp.Sign(nonce) }), nil
	case CredsPassword:
		return nats.UserInfo(c.User, c.Password), nil
	}
	return nil, ErrBadCreds
}

// ClientAuth is how a client proves itself to a NATS server and checks
// the server: a credentials file and TLS files, each optional.
type ClientAuth struct {
	CredsFile string // a .creds, nkey seed or user:password file
	CAFile    string // PEM roots that verify the server (TLS)
	CertFile  string // PEM client certificate (mutual TLS), with KeyFile
	KeyFile   string
}

// Options are the nats.go options of a.
func (a ClientAuth) Options() ([]nats.Option, error) {
	var opts []nats.Option
	if a.CredsFile != "" {
		c, err := ReadCreds(a.CredsFile)
		if err != nil {
			return nil, err
		}
		o, err := c.Option()
		if err != nil {
			return nil, err
		}
		opts = append(opts, o)
	}
	if (a.CertFile == "") != (a.KeyFile == "") {
		return nil, errors.New("nats tls: a client certificate needs both --nats-tls-cert and --nats-tls-key")
	}
	if a.CAFile != "" {
		opts = append(opts, nats.RootCAs(a.CAFile))
	}
	if a.CertFile != "" {
		opts = append(opts, nats.ClientCert(a.CertFile, a.KeyFile))
	}
	return opts, nil
}

// EmbeddedCreds returns the embedded server's client seed in storeDir,
// generating and writing it (mode 0600) on the first start.
func EmbeddedCreds(storeDir string) (nkeys.KeyPair, error) {
	return seedFile(filepath.Join(storeDir, CredsFile))
}

// seedFile returns the nkey user seed in path, generating and writing it
// (mode 0600) when the file does not exist. Servers starting at once on
// one file agree on one seed: each writes a whole file aside and links it
// into place, and the losers read the winner's.
func seedFile(path string) (nkeys.KeyPair, error) {
	for range 2 {
		c, err := ReadCreds(path)
		switch {
		case err == nil && c.Kind == CredsNkey:
			return c.kp, nil
		case err == nil:
			return nil, fmt.Errorf("%s: not an nkey seed", path)
		case !errors.Is(err, os.ErrNotExist):
			return nil, err
		}
		err = writeSeed(path)
		if err != nil && !errors.Is(err, os.ErrExist) {
			return nil, fmt.Errorf("nats credentials: %w", err)
		}
	}
	return nil, fmt.Errorf("nats credentials %s: created and gone", path)
}

// writeSeed writes a new seed to path; os.ErrExist when path exists.
func writeSeed(path string) error {
	kp, err := nkeys.CreateUser()
	if err != nil {
		return err
	}
	seed, err := kp.Seed()
	if err != nil {
		return err
	}
	dir := filepath.Dir(path)
	if err := os.MkdirAll(dir, 0o700); err != nil {
		return err
	}
	f, err := os.CreateTemp(dir, "."+filepath.Base(path)+".*") // mode 0600
	if err != nil {
		return err
	}
	defer os.Remove(f.Name())
	body := fmt.Sprintf("# seckill: the client key of the NATS server(s) it was given to (pass it with --nats-creds)\n"+
		"-----BEGIN USER NKEY SEED-----\n%s\n------END USER NKEY SEED------\n", seed)
	if _, err := f.WriteString(body); err != nil {
		f.Close()
		return err
	}
	if err := errors.Join(f.Sync(), f.Close()); err != nil {
		return err
	}
	// A link, unlike a rename, fails when path exists.
	if err := os.Link(f.Name(), path); err != nil {
		return err
	}
	return syncDir(dir)
}

// syncDir makes a new directory entry durable.
func syncDir(dir string) error {
	d, err := os.Open(dir)
	if err != nil {
		return err
	}
	return errors.Join(d.Sync(), d.Close())
}

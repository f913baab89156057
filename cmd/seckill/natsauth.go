package main

import (
	"errors"
	"flag"
	"os"
	"path/filepath"

	"github.com/seckill/seckill/bus"
)

// natsAuthFlags adds the flags that say how to prove oneself to an
// external NATS server and check it; the result is read after Parse.
func natsAuthFlags(fs *flag.FlagSet) *bus.ClientAuth {
	a := &bus.ClientAuth{}
	fs.StringVar(&a.CredsFile, "nats-creds", envOr("SECKILL_NATS_CREDS", ""), "credentials for --nats: a NATS .creds file, an nkey seed file (what `seckill nats` and the embedded server write as <store>/"+bus.CredsFile+") or a user:password line (env SECKILL_NATS_CREDS)")
	fs.StringVar(&a.CAFile, "nats-tls-ca", envOr("SECKILL_NATS_TLS_CA", ""), "PEM CA certificates that verify the --nats server: connect with TLS (env SECKILL_NATS_TLS_CA)")
	fs.StringVar(&a.CertFile, "nats-tls-cert", envOr("SECKILL_NATS_TLS_CERT", ""), "PEM client certificate for mutual TLS with --nats, with --nats-tls-key (env SECKILL_NATS_TLS_CERT)")
	fs.StringVar(&a.KeyFile, "nats-tls-key", envOr("SECKILL_NATS_TLS_KEY", ""), "PEM key of --nats-tls-cert (env SECKILL_NATS_TLS_KEY)")
	return a
}

// embeddedCreds is the credentials file a node's embedded server keeps in
// dataDir, "" when there is none: what `seckill orders` presents when not
// told otherwise.
func embeddedCreds(dataDir string) (string, error) {
	path := filepath.Join(dataDir, "nats", bus.CredsFile)
	if _, err := os.Stat(path); err != nil {
		if errors.Is(err, os.ErrNotExist) {
			return "", nil
		}
		return "", err
	}
	return path, nil
}

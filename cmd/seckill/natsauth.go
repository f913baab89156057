package main

import (
	"errors"
	"flag"
	"fmt"
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

// natsReplicasFlag adds --nats-replicas: how many servers of a NATS
// cluster keep each stream.
func natsReplicasFlag(fs *flag.FlagSet) *int {
	return fs.Int("nats-replicas", envInt("SECKILL_NATS_REPLICAS", 1), fmt.Sprintf("how many servers of the --nats JetStream cluster keep each stream, 1..%d: 3 survives the loss of one server; raised on existing streams, never lowered (env SECKILL_NATS_REPLICAS)", bus.MaxReplicas))
}

// checkNATSReplicas refuses a replica count the streams cannot have, and
// replicas of the embedded server, which is not clustered.
func checkNATSReplicas(n int, natsURL string) error {
	switch {
	case n < 1 || n > bus.MaxReplicas:
		return fmt.Errorf("--nats-replicas %d, want 1..%d", n, bus.MaxReplicas)
	case n > 1 && natsURL == "":
		return fmt.Errorf("--nats-replicas %d needs --nats: the embedded NATS server is a single server", n)
	}
	return nil
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

package main

import (
	"flag"
	"fmt"

	"github.com/seckill/seckill/certs"
)

const certUsage = `usage: seckill cert <create-ca|create-node> [flags]

  seckill cert create-ca   --certs-dir DIR [--overwrite]
      a new CA for one cluster: DIR/ca.crt and DIR/ca.key
  seckill cert create-node --certs-dir DIR [--overwrite] NAME HOST...
      node NAME's key pair signed by that CA (DIR/node.NAME.crt, .key),
      naming the hosts it is reached at (its peer IP at least)

serve --cluster --node NAME --certs-dir DIR then speaks to its peers only
over TLS 1.3, both ends checked against DIR/ca.crt.
`

// runCert makes a cluster's certificates, in the manner of `cockroach cert`.
func runCert(args []string) error {
	if len(args) == 0 {
		fmt.Print(certUsage)
		return fmt.Errorf("cert: name a command")
	}
	fs := flag.NewFlagSet("cert "+args[0], flag.ContinueOnError)
	dir := fs.String("certs-dir", envOr("SECKILL_CERTS_DIR", ""), "the certificates directory (env SECKILL_CERTS_DIR)")
	overwrite := fs.Bool("overwrite", false, "replace files that exist")
	if err := fs.Parse(args[1:]); err != nil {
		return err
	}
	if *dir == "" {
		return fmt.Errorf("cert %s: --certs-dir is required", args[0])
	}
	switch args[0] {
	case "create-ca":
		if fs.NArg() != 0 {
			return fmt.Errorf("cert create-ca: unexpected arguments %q", fs.Args())
		}
		if err := certs.CreateCA(*dir, *overwrite); err != nil {
			return err
		}
		fmt.Printf("seckill: CA made in %s (%s, %s)\n", *dir, certs.CACert, certs.CAKey)
	case "create-node":
		if fs.NArg() < 2 {
			return fmt.Errorf("cert create-node: give NAME HOST... (the node's name and the IPs or names it is reached at)")
		}
		name := fs.Arg(0)
		if err := certs.CreateNode(*dir, name, fs.Args()[1:], *overwrite); err != nil {
			return err
		}
		fmt.Printf("seckill: node %s certificate made in %s (%s, %s)\n", name, *dir, certs.NodeCert(name), certs.NodeKey(name))
	default:
		fmt.Print(certUsage)
		return fmt.Errorf("cert: unknown command %q", args[0])
	}
	return nil
}

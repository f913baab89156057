// Package certs makes and loads the certificates a cluster's nodes prove
// themselves with, in the manner of `cockroach cert`: one CA per cluster,
// one key pair per node whose certificate names the node (its common name)
// and the hosts it is reached at. Every node-to-node connection is TLS 1.3
// checked both ways against the CA; a peer's name is the one its
// certificate proves (PeerName), never one a message carries.
package certs

import (
	"crypto/ecdsa"
	"crypto/elliptic"
	"crypto/rand"
	"crypto/tls"
	"crypto/x509"
	"crypto/x509/pkix"
	"encoding/pem"
	"errors"
	"fmt"
	"math/big"
	"net"
	"os"
	"path/filepath"
	"strings"
	"time"
)

const (
	// CACert and CAKey are the CA's files in a certs directory. The key
	// signs node certificates: keep it off the nodes once they have theirs.
	CACert = "ca.crt"
	CAKey  = "ca.key"
	// CALifetime and NodeLifetime are how long what Create* makes is valid,
	// as cockroach's defaults (10 and 5 years): rotation is by making new
	// ones under the same CA.
	CALifetime   = 10 * 365 * 24 * time.Hour
	NodeLifetime = 5 * 365 * 24 * time.Hour
	// MaxNameLen bounds a node name in a certificate: a node id.
	MaxNameLen = 64
	// backdate: a certificate is valid from a little before it was made, so
	// that a peer whose clock is behind still takes it.
	backdate = time.Hour
	// keyMode: private keys are readable by their owner only.
	keyMode  = 0o600
	certMode = 0o644
)

// NodeCert and NodeKey are node name's files in a certs directory.
func NodeCert(name string) string { return "node." + name + ".crt" }
func NodeKey(name string) string  { return "node." + name + ".key" }

var (
	// ErrExists: Create* would overwrite a file.
	ErrExists = errors.New("exists")
	// ErrNoCerts: the directory holds no certificate for the node.
	ErrNoCerts = errors.New("no certificates")
)

// CreateCA makes a new CA key pair in dir (created 0700 if missing). It
// refuses to replace one unless overwrite: every node certificate signed by
// the old key would stop being trusted.
func CreateCA(dir string, overwrite bool) error {
	if err := os.MkdirAll(dir, 0o700); err != nil {
		return err
	}
	if !overwrite {
		for _, f := range []string{CACert, CAKey} {
			if _, err := os.Stat(filepath.Join(dir, f)); err == nil {
				return fmt.Errorf("certs: %s: %w (give --overwrite to replace the CA, and then every node's certificate)", filepath.Join(dir, f), ErrExists)
			}
		}
	}
	key, err := ecdsa.GenerateKey(elliptic.P256(), rand.Reader)
	if err != nil {
		return err
	}
	now := time.Now()
	tpl := &x509.Certificate{
		SerialNumber:          serial(),
		Subject:               pkix.Name{Organization: []string{"seckill"}, CommonName: "seckill CA"},
		NotBefore:             now.Add(-backdate),
		NotAfter:              now.Add(CALifetime),
		KeyUsage:              x509.KeyUsageCertSign | x509.KeyUsageCRLSign | x509.KeyUsageDigitalSignature,
		BasicConstraintsValid: true,
		IsCA:                  true,
		MaxPathLenZero:        true,
	}
	der, err := x509.CreateCertificate(rand.Reader, tpl, tpl, &key.PublicKey, key)
	if err != nil {
		return err
	}
	return writePair(dir, CACert, CAKey, der, key)
}

// CreateNode makes node name's key pair in dir, signed by the CA there.
// hosts are the IPs and DNS names the node is reached at (its peer address's
// host at least); the certificate serves both ends of a connection.
func CreateNode(dir, name string, hosts []string, overwrite bool) error {
	if !ValidName(name) {
		return fmt.Errorf("certs: node name %q: 1-%d letters, digits, '-', '_' or '.'", name, MaxNameLen)
	}
	if len(hosts) == 0 {
		return fmt.Errorf("certs: node %s: name at least one host (its peer IP)", name)
	}
	if !overwrite {
		if _, err := os.Stat(filepath.Join(dir, NodeCert(name))); err == nil {
			return fmt.Errorf("certs: %s: %w (give --overwrite to replace it)", filepath.Join(dir, NodeCert(name)), ErrExists)
		}
	}
	ca, caKey, err := loadCA(dir)
	if err != nil {
		return err
	}
	key, err := ecdsa.GenerateKey(elliptic.P256(), rand.Reader)
	if err != nil {
		return err
	}
	now := time.Now()
	tpl := &x509.Certificate{
		SerialNumber: serial(),
		Subject:      pkix.Name{Organization: []string{"seckill"}, CommonName: name},
		NotBefore:    now.Add(-backdate),
		NotAfter:     now.Add(NodeLifetime),
		KeyUsage:     x509.KeyUsageDigitalSignature,
		ExtKeyUsage:  []x509.ExtKeyUsage{x509.ExtKeyUsageServerAuth, x509.ExtKeyUsageClientAuth},
	}
	for _, h := range hosts {
		if ip := net.ParseIP(h); ip != nil {
			tpl.IPAddresses = append(tpl.IPAddresses, ip)
		} else if h != "" {
			tpl.DNSNames = append(tpl.DNSNames, h)
		}
	}
	der, err := x509.CreateCertificate(rand.Reader, tpl, ca, &key.PublicKey, caKey)
	if err != nil {
		return err
	}
	return writePair(dir, NodeCert(name), NodeKey(name), der, key)
}

// ValidName reports whether name may name a node in a certificate.
func ValidName(name string) bool {
	if name == "" || len(name) > MaxNameLen {
		return false
	}
	for _, c := range name {
		if !(c >= 'a' && c <= 'z' || c >= 'A' && c <= 'Z' || c >= '0' && c <= '9' || c == '-' || c == '_' || c == '.') {
			return false
		}
	}
	return true
}

// Node is a node's loaded identity: its key pair and the cluster's CA.
type Node struct {
	Name string
	cert tls.Certificate
	pool *x509.CertPool
}

// Load reads node name's key pair and the CA from dir, and checks that the
// certificate names the node and was signed by that CA.
func Load(dir, name string) (*Node, error) {
	certFile, keyFile := filepath.Join(dir, NodeCert(name)), filepath.Join(dir, NodeKey(name))
	if _, err := os.Stat(certFile); err != nil {
		return nil, fmt.Errorf("certs: %s: %w for node %s in %s: make them with `seckill cert create-ca --certs-dir %s` (once per cluster) and `seckill cert create-node --certs-dir %s %s HOST...`",
			certFile, ErrNoCerts, name, dir, dir, dir, name)
	}
	kp, err := tls.LoadX509KeyPair(certFile, keyFile)
	if err != nil {
		return nil, fmt.Errorf("certs: node %s: %w", name, err)
	}
	caPEM, err := os.ReadFile(filepath.Join(dir, CACert))
	if err != nil {
		return nil, fmt.Errorf("certs: CA: %w", err)
	}
	pool := x509.NewCertPool()
	if !pool.AppendCertsFromPEM(caPEM) {
		return nil, fmt.Errorf("certs: %s holds no certificate", filepath.Join(dir, CACert))
	}
	leaf, err := x509.ParseCertificate(kp.Certificate[0])
	if err != nil {
		return nil, fmt.Errorf("certs: node %s: %w", name, err)
	}
	if leaf.Subject.CommonName != name {
		return nil, fmt.Errorf("certs: %s names node %q, not %q", certFile, leaf.Subject.CommonName, name)
	}
	if _, err := leaf.Verify(x509.VerifyOptions{Roots: pool, KeyUsages: []x509.ExtKeyUsage{x509.ExtKeyUsageClientAuth}}); err != nil {
		return nil, fmt.Errorf("certs: %s is not signed by %s: %w", certFile, filepath.Join(dir, CACert), err)
	}
	kp.Leaf = leaf
	return &Node{Name: name, cert: kp, pool: pool}, nil
}

// ServerTLS is the configuration a node listens with: TLS 1.3, and a
// client certificate from the CA required.
func (n *Node) ServerTLS() *tls.Config {
	return &tls.Config{
		MinVersion:   tls.VersionTLS13,
		Certificates: []tls.Certificate{n.cert},
		ClientAuth:   tls.RequireAndVerifyClientCert,
		ClientCAs:    n.pool,
	}
}

// ClientTLS is the configuration a node dials peers with: TLS 1.3, the
// peer's certificate from the CA and naming the host dialed, this node's
// certificate presented.
func (n *Node) ClientTLS() *tls.Config {
	return &tls.Config{
		MinVersion:   tls.VersionTLS13,
		Certificates: []tls.Certificate{n.cert},
		RootCAs:      n.pool,
	}
}

// Pool is the CA's pool, for clients of other services (etcd) that trust
// the same CA.
func (n *Node) Pool() *x509.CertPool { return n.pool }

// Certificate is the node's key pair, for clients of other services.
func (n *Node) Certificate() tls.Certificate { return n.cert }

// PeerName is the node name a verified connection's peer proved: the common
// name of its verified leaf certificate, "" when nothing was verified.
func PeerName(st tls.ConnectionState) string {
	if len(st.VerifiedChains) == 0 || len(st.VerifiedChains[0]) == 0 {
		return ""
	}
	name := st.VerifiedChains[0][0].Subject.CommonName
	if !ValidName(name) {
		return ""
	}
	return name
}

// IsLoopback reports whether host (an IP, or "localhost") is on loopback.
func IsLoopback(host string) bool {
	if strings.EqualFold(host, "localhost") {
		return true
	}
	ip := net.ParseIP(host)
	return ip != nil && ip.IsLoopback()
}

func loadCA(dir string) (*x509.Certificate, *ecdsa.PrivateKey, error) {
	kp, err := tls.LoadX509KeyPair(filepath.Join(dir, CACert), filepath.Join(dir, CAKey))
	if err != nil {
		return nil, nil, fmt.Errorf("certs: the CA in %s: %w (make it with `seckill cert create-ca --certs-dir %s`)", dir, err, dir)
	}
	ca, err := x509.ParseCertificate(kp.Certificate[0])
	if err != nil {
		return nil, nil, err
	}
	key, ok := kp.PrivateKey.(*ecdsa.PrivateKey)
	if !ok || !ca.IsCA {
		return nil, nil, fmt.Errorf("certs: %s is not a CA this tool made", filepath.Join(dir, CACert))
	}
	return ca, key, nil
}

func writePair(dir, certName, keyName string, der []byte, key *ecdsa.PrivateKey) error {
	kb, err := x509.MarshalECPrivateKey(key)
	if err != nil {
		return err
	}
	if err := writeFile(filepath.Join(dir, keyName), pem.EncodeToMemory(&pem.Block{Type: "EC PRIVATE KEY", Bytes: kb}), keyMode); err != nil {
		return err
	}
	return writeFile(filepath.Join(dir, certName), pem.EncodeToMemory(&pem.Block{Type: "CERTIFICATE", Bytes: der}), certMode)
}

// writeFile writes through a temporary file and a rename, so that a file
// is never seen half written.
func writeFile(path string, b []byte, mode os.FileMode) error {
	tmp := path + ".tmp"
	if err := os.WriteFile(tmp, b, mode); err != nil {
		return err
	}
	return os.Rename(tmp, path)
}

func serial() *big.Int {
	n, err := rand.Int(rand.Reader, new(big.Int).Lsh(big.NewInt(1), 127))
	if err != nil {
		panic(err) // crypto/rand never fails on Linux
	}
	return n
}

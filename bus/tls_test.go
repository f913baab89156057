package bus

import (
	"crypto/ecdsa"
	"crypto/elliptic"
	"crypto/rand"
	"crypto/tls"
	"crypto/x509"
	"crypto/x509/pkix"
	"encoding/pem"
	"math/big"
	"net"
	"os"
	"path/filepath"
	"testing"
	"time"

	"github.com/nats-io/nats-server/v2/server"
)

// writePEM writes blocks to a file in dir and returns its path.
func writePEM(t *testing.T, dir, name string, blocks ...*pem.Block) string {
	t.Helper()
	var out []byte
	for _, b := range blocks {
		out = append(out, pem.EncodeToMemory(b)...)
	}
	path := filepath.Join(dir, name)
	if err := os.WriteFile(path, out, 0o600); err != nil {
		t.Fatal(err)
	}
	return path
}

// testCA makes a CA and a certificate it signs for 127.0.0.1 (server) or
// a client, as files in dir.
func testCA(t *testing.T, dir string) (ca, srvCert, srvKey, cliCert, cliKey string, pool *x509.CertPool) {
	t.Helper()
	caKey, _ := ecdsa.GenerateKey(elliptic.P256(), rand.Reader)
	caTmpl := &x509.Certificate{SerialNumber: big.NewInt(1), Subject: pkix.Name{CommonName: "seckill test CA"},
		NotBefore: time.Now().Add(-time.Hour), NotAfter: time.Now().Add(time.Hour), IsCA: true,
		KeyUsage: x509.KeyUsageCertSign, BasicConstraintsValid: true}
	caDER, err := x509.CreateCertificate(rand.Reader, caTmpl, caTmpl, &caKey.PublicKey, caKey)
	if err != nil {
		t.Fatal(err)
	}
	caCert, _ := x509.ParseCertificate(caDER)
	pool = x509.NewCertPool()
	pool.AddCert(caCert)
	leaf := func(serial int64, usage x509.ExtKeyUsage, name string) (string, string) {
		k, _ := ecdsa.GenerateKey(elliptic.P256(), rand.Reader)
		tmpl := &x509.Certificate{SerialNumber: big.NewInt(serial), Subject: pkix.Name{CommonName: name},
			NotBefore: time.Now().Add(-time.Hour), NotAfter: time.Now().Add(time.Hour),
			KeyUsage: x509.KeyUsageDigitalSignature, ExtKeyUsage: []x509.ExtKeyUsage{usage},
			IPAddresses: []net.IP{net.ParseIP("127.0.0.1")}}
		der, err := x509.CreateCertificate(rand.Reader, tmpl, caCert, &k.PublicKey, caKey)
		if err != nil {
			t.Fatal(err)
		}
		kd, _ := x509.MarshalECPrivateKey(k)
		return writePEM(t, dir, name+".crt", &pem.Block{Type: "CERTIFICATE", Bytes: der}),
			writePEM(t, dir, name+".key", &pem.Block{Type: "EC PRIVATE KEY", Bytes: kd})
	}
	ca = writePEM(t, dir, "ca.crt", &pem.Block{Type: "CERTIFICATE", Bytes: caDER})
	srvCert, srvKey = leaf(2, x509.ExtKeyUsageServerAuth, "server")
	cliCert, cliKey = leaf(3, x509.ExtKeyUsageClientAuth, "client")
	return ca, srvCert, srvKey, cliCert, cliKey, pool
}

// TestDialExternalWithTLSAndPassword: an external server that wants
// mutual TLS and a user and password admits Dial with --nats-tls-ca,
// --nats-tls-cert/-key and a user:password --nats-creds file, and refuses
// it without the client certificate or with a wrong password.
func TestDialExternalWithTLSAndPassword(t *testing.T) {
	dir := t.TempDir()
	ca, srvCert, srvKey, cliCert, cliKey, pool := testCA(t, dir)
	cert, err := tls.LoadX509KeyPair(srvCert, srvKey)
	if err != nil {
		t.Fatal(err)
	}
	ns, err := server.NewServer(&server.Options{Host: "127.0.0.1", Port: server.RANDOM_PORT, NoSigs: true,
		Username: "seckill", Password: "s3cret",
		TLSConfig: &tls.Config{Certificates: []tls.Certificate{cert}, ClientCAs: pool, ClientAuth: tls.RequireAndVerifyClientCert, MinVersion: tls.VersionTLS12},
		TLSVerify: true, TLSTimeout: 5})
	if err != nil {
		t.Fatal(err)
	}
	go ns.Start()
	t.Cleanup(func() { ns.Shutdown(); ns.WaitForShutdown() })
	if !ns.ReadyForConnections(StartTimeout) {
		t.Fatal("server not ready")
	}
	url := "nats://" + ns.Addr().String()
	good := filepath.Join(dir, "pw")
	os.WriteFile(good, []byte("seckill:s3cret\n"), 0o600)
	bad := filepath.Join(dir, "badpw")
	os.WriteFile(bad, []byte("seckill:guess\n"), 0o600)
	for _, tc := range []struct {
		name string
		auth ClientAuth
		ok   bool
	}{
		{"tls and password", ClientAuth{CredsFile: good, CAFile: ca, CertFile: cliCert, KeyFile: cliKey}, true},
		{"no client certificate", ClientAuth{CredsFile: good, CAFile: ca}, false},
		{"wrong password", ClientAuth{CredsFile: bad, CAFile: ca, CertFile: cliCert, KeyFile: cliKey}, false},
		{"no tls", ClientAuth{CredsFile: good}, false},
	} {
		t.Run(tc.name, func(t *testing.T) {
			opts, err := tc.auth.Options()
			if err != nil {
				t.Fatal(err)
			}
			err = connectOnce(url, opts...)
			if (err == nil) != tc.ok {
				t.Fatalf("connect: %v, want ok %v", err, tc.ok)
			}
		})
	}
	// Dial, as serve, orders and reconcile use it.
	nc, err := Dial(url, t.Name(), ClientAuth{CredsFile: good, CAFile: ca, CertFile: cliCert, KeyFile: cliKey})
	if err != nil {
		t.Fatal(err)
	}
	defer nc.Close()
	if err := nc.Flush(); err != nil || !nc.TLSRequired() {
		t.Fatalf("dial: flush %v, tls %v", err, nc.TLSRequired())
	}
	if _, err := (ClientAuth{CertFile: cliCert}).Options(); err == nil {
		t.Fatal("a certificate without its key was taken")
	}
}

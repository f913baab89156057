package certs

import (
	"crypto/tls"
	"errors"
	"os"
	"path/filepath"
	"testing"
)

func mustCA(t *testing.T) string {
	t.Helper()
	dir := t.TempDir()
	if err := CreateCA(dir, false); err != nil {
		t.Fatal(err)
	}
	return dir
}

func mustNode(t *testing.T, dir, name string, hosts ...string) *Node {
	t.Helper()
	if err := CreateNode(dir, name, hosts, false); err != nil {
		t.Fatal(err)
	}
	n, err := Load(dir, name)
	if err != nil {
		t.Fatal(err)
	}
	return n
}

func TestCreateRefusesToOverwrite(t *testing.T) {
	dir := mustCA(t)
	if err := CreateCA(dir, false); !errors.Is(err, ErrExists) {
		t.Fatalf("second create-ca: %v, want ErrExists", err)
	}
	mustNode(t, dir, "n1", "127.0.0.1")
	if err := CreateNode(dir, "n1", []string{"127.0.0.1"}, false); !errors.Is(err, ErrExists) {
		t.Fatalf("second create-node: %v, want ErrExists", err)
	}
	if err := CreateNode(dir, "n1", []string{"127.0.0.1"}, true); err != nil {
		t.Fatalf("create-node --overwrite: %v", err)
	}
	st, err := os.Stat(filepath.Join(dir, NodeKey("n1")))
	if err != nil || st.Mode().Perm() != keyMode {
		t.Fatalf("node key: %v mode %v, want %v", err, st.Mode().Perm(), os.FileMode(keyMode))
	}
}

func TestLoad(t *testing.T) {
	dir := mustCA(t)
	other := mustCA(t)
	mustNode(t, dir, "n1", "127.0.0.1")
	mustNode(t, other, "n2", "127.0.0.1")
	// n2's pair beside dir's CA: signed by another CA.
	for _, f := range []string{NodeCert("n2"), NodeKey("n2")} {
		b, _ := os.ReadFile(filepath.Join(other, f))
		os.WriteFile(filepath.Join(dir, f), b, 0o600)
	}
	// n3's pair renamed to n4: names another node.
	mustNode(t, dir, "n3", "127.0.0.1")
	os.Rename(filepath.Join(dir, NodeCert("n3")), filepath.Join(dir, NodeCert("n4")))
	os.Rename(filepath.Join(dir, NodeKey("n3")), filepath.Join(dir, NodeKey("n4")))
	for _, c := range []struct {
		name string
		ok   bool
	}{{"n1", true}, {"n2", false}, {"n4", false}, {"n9", false}} {
		_, err := Load(dir, c.name)
		if (err == nil) != c.ok {
			t.Errorf("Load %s: %v, want ok=%v", c.name, err, c.ok)
		}
	}
	if _, err := Load(dir, "n9"); !errors.Is(err, ErrNoCerts) {
		t.Errorf("Load of a node with no files: %v, want ErrNoCerts", err)
	}
}

// TestHandshake: two nodes of one CA prove their names to each other over
// TLS 1.3; a node of another CA, or a client with no certificate, is
// refused.
func TestHandshake(t *testing.T) {
	dir := mustCA(t)
	srv := mustNode(t, dir, "n1", "127.0.0.1")
	cli := mustNode(t, dir, "n2", "127.0.0.1")
	stranger := mustNode(t, mustCA(t), "n2", "127.0.0.1")
	noCert := cli.ClientTLS()
	noCert.Certificates = nil
	for _, c := range []struct {
		name string
		cfg  *tls.Config
		want string // the name the server saw, "" for a refusal
	}{
		{"same CA", cli.ClientTLS(), "n2"},
		{"another CA", stranger.ClientTLS(), ""},
		{"no certificate", noCert, ""},
	} {
		t.Run(c.name, func(t *testing.T) {
			ln, err := tls.Listen("tcp", "127.0.0.1:0", srv.ServerTLS())
			if err != nil {
				t.Fatal(err)
			}
			defer ln.Close()
			seen := make(chan string, 1)
			go func() {
				conn, err := ln.Accept()
				if err != nil {
					seen <- ""
					return
				}
				defer conn.Close()
				tc := conn.(*tls.Conn)
				if tc.Handshake() != nil {
					seen <- ""
					return
				}
				if tc.ConnectionState().Version != tls.VersionTLS13 {
					seen <- "not TLS 1.3"
					return
				}
				seen <- PeerName(tc.ConnectionState())
			}()
			conn, err := tls.Dial("tcp", ln.Addr().String(), c.cfg)
			if err == nil {
				// TLS 1.3: the client learns of a refused certificate on its
				// first read.
				conn.Write([]byte{0})
				conn.Read(make([]byte, 1))
				conn.Close()
			}
			if got := <-seen; got != c.want {
				t.Fatalf("server saw %q, want %q", got, c.want)
			}
		})
	}
}

func TestIsLoopback(t *testing.T) {
	for h, want := range map[string]bool{"127.0.0.11": true, "localhost": true, "::1": true, "10.0.0.1": false, "example.com": false, "": false} {
		if IsLoopback(h) != want {
			t.Errorf("IsLoopback(%q) = %v", h, !want)
		}
	}
}

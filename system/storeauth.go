package system

import (
	"crypto/tls"
	"crypto/x509"
	"errors"
	"fmt"
	"os"
	"strings"

	clientv3 "go.etcd.io/etcd/client/v3"
)

// StoreAuth is how a clustered node proves itself to etcd and Redis, the
// cluster's authority and its snapshot store, and how it checks them: both
// hold what lets a node sell, so neither should take any client.
type StoreAuth struct {
	// EtcdCert and EtcdKey are the PEM client certificate and key the
	// node presents to an etcd run with --client-cert-auth (both or
	// neither); EtcdCA holds the PEM certificates that verify etcd's
	// (empty: the system's roots). They need https:// endpoints.
	EtcdCert, EtcdKey, EtcdCA string
	// EtcdUser and EtcdPassword are an etcd user of etcd's own auth (both
	// or neither), with or without TLS.
	EtcdUser, EtcdPassword string
	// RedisCA holds the PEM certificates that verify a rediss:// Redis
	// (empty: the system's roots). Redis's ACL user and password are in
	// ClusterConfig.Redis, the URL.
	RedisCA string
}

// etcdMinTLS: etcd 3.4 speaks TLS 1.2 and 1.3; the peer wire's 1.3 is
// our own choice there, not etcd's.
const etcdMinTLS = tls.VersionTLS12

// apply sets cfg's TLS and user for its endpoints, refusing what would
// quietly not be used: clientv3 drops TLS for http:// endpoints, and
// chooses the credentials of all endpoints by the first.
func (a StoreAuth) apply(cfg *clientv3.Config) error {
	var https, plain int
	for _, ep := range cfg.Endpoints {
		if strings.HasPrefix(ep, "https://") {
			https++
		} else {
			plain++
		}
	}
	if https > 0 && plain > 0 {
		return fmt.Errorf("etcd endpoints %s: all https:// or none", strings.Join(cfg.Endpoints, ","))
	}
	if (a.EtcdCert == "") != (a.EtcdKey == "") {
		return errors.New("etcd: a client certificate needs both its certificate and its key")
	}
	if (a.EtcdUser == "") != (a.EtcdPassword == "") {
		return errors.New("etcd: a user needs both its name and its password")
	}
	cfg.Username, cfg.Password = a.EtcdUser, a.EtcdPassword
	if https == 0 {
		if a.EtcdCert != "" || a.EtcdCA != "" {
			return fmt.Errorf("etcd endpoints %s: a client certificate or CA is for https:// endpoints", strings.Join(cfg.Endpoints, ","))
		}
		return nil
	}
	t := &tls.Config{MinVersion: etcdMinTLS}
	if a.EtcdCert != "" {
		kp, err := tls.LoadX509KeyPair(a.EtcdCert, a.EtcdKey)
		if err != nil {
			return fmt.Errorf("etcd client certificate: %w", err)
		}
		t.Certificates = []tls.Certificate{kp}
	}
	if a.EtcdCA != "" {
		pem, err := os.ReadFile(a.EtcdCA)
		if err != nil {
			return fmt.Errorf("etcd CA: %w", err)
		}
		t.RootCAs = x509.NewCertPool()
		if !t.RootCAs.AppendCertsFromPEM(pem) {
			return fmt.Errorf("etcd CA: %s holds no PEM certificate", a.EtcdCA)
		}
	}
	cfg.TLS = t
	return nil
}

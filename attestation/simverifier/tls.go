package simverifier

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
	"time"
)

// tlsMaterial is the generated CA, server certificate and admin client certificate.
type tlsMaterial struct {
	caPEM  []byte
	pool   *x509.CertPool
	server tls.Certificate
	client tls.Certificate
}

func (m *tlsMaterial) serverConfig() *tls.Config {
	return &tls.Config{
		Certificates: []tls.Certificate{m.server},
		// Agents present no certificate; an admin presents one chaining to our CA.
		ClientAuth: tls.VerifyClientCertIfGiven,
		ClientCAs:  m.pool,
		MinVersion: tls.VersionTLS12,
	}
}

// generateTLS creates a fresh ECDSA P-256 CA with a server certificate for the loopback names and an admin client
// certificate, and writes them to dir when dir is not empty.
func generateTLS(dir string) (*tlsMaterial, error) {
	caKey, err := ecdsa.GenerateKey(elliptic.P256(), rand.Reader)
	if err != nil {
		return nil, err
	}
	now := time.Now().Add(-time.Hour)
	caTmpl := &x509.Certificate{
		SerialNumber:          serial(),
		Subject:               pkix.Name{CommonName: "attestload simulated verifier CA"},
		NotBefore:             now,
		NotAfter:              now.Add(10 * 365 * 24 * time.Hour),
		KeyUsage:              x509.KeyUsageCertSign | x509.KeyUsageCRLSign | x509.KeyUsageDigitalSignature,
		BasicConstraintsValid: true,
		IsCA:                  true,
	}
	caDER, err := x509.CreateCertificate(rand.Reader, caTmpl, caTmpl, &caKey.PublicKey, caKey)
	if err != nil {
		return nil, fmt.Errorf("create CA certificate: %w", err)
	}
	ca, err := x509.ParseCertificate(caDER)
	if err != nil {
		return nil, err
	}
	srv, err := issueLeaf(ca, caKey, now, "localhost", x509.ExtKeyUsageServerAuth, true)
	if err != nil {
		return nil, err
	}
	cli, err := issueLeaf(ca, caKey, now, "admin", x509.ExtKeyUsageClientAuth, false)
	if err != nil {
		return nil, err
	}
	m := &tlsMaterial{
		caPEM:  pem.EncodeToMemory(&pem.Block{Type: "CERTIFICATE", Bytes: caDER}),
		pool:   x509.NewCertPool(),
		server: srv.cert,
		client: cli.cert,
	}
	m.pool.AddCert(ca)
	if dir == "" {
		return m, nil
	}
	err = writeTLSFiles(dir, map[string][]byte{
		"ca.crt": m.caPEM, "server.crt": srv.certPEM, "server.key": srv.keyPEM,
		"client-cert.crt": cli.certPEM, "client-private.pem": cli.keyPEM,
	})
	if err != nil {
		return nil, err
	}
	return m, nil
}

// issuedLeaf is a certificate issued by the generated CA, parsed and in PEM.
type issuedLeaf struct {
	cert            tls.Certificate
	certPEM, keyPEM []byte
}

// issueLeaf issues an ECDSA P-256 certificate for cn from ca; a server certificate names localhost, 127.0.0.1 and
// ::1.
func issueLeaf(ca *x509.Certificate, caKey *ecdsa.PrivateKey, now time.Time, cn string, usage x509.ExtKeyUsage, server bool) (issuedLeaf, error) {
	key, err := ecdsa.GenerateKey(elliptic.P256(), rand.Reader)
	if err != nil {
		return issuedLeaf{}, err
	}
	tmpl := &x509.Certificate{
		SerialNumber: serial(),
		Subject:      pkix.Name{CommonName: cn},
		NotBefore:    now,
		NotAfter:     now.Add(2 * 365 * 24 * time.Hour),
		KeyUsage:     x509.KeyUsageDigitalSignature,
		ExtKeyUsage:  []x509.ExtKeyUsage{usage},
	}
	if server {
		tmpl.DNSNames = []string{"localhost"}
		tmpl.IPAddresses = []net.IP{net.IPv4(127, 0, 0, 1), net.IPv6loopback}
	}
	der, err := x509.CreateCertificate(rand.Reader, tmpl, ca, &key.PublicKey, caKey)
	if err != nil {
		return issuedLeaf{}, fmt.Errorf("create %s certificate: %w", cn, err)
	}
	keyDER, err := x509.MarshalPKCS8PrivateKey(key)
	if err != nil {
		return issuedLeaf{}, err
	}
	l := issuedLeaf{
		certPEM: pem.EncodeToMemory(&pem.Block{Type: "CERTIFICATE", Bytes: der}),
		keyPEM:  pem.EncodeToMemory(&pem.Block{Type: "PRIVATE KEY", Bytes: keyDER}),
	}
	l.cert, err = tls.X509KeyPair(l.certPEM, l.keyPEM)
	return l, err
}

// writeTLSFiles writes the named files into dir (created 0700), each 0600.
func writeTLSFiles(dir string, files map[string][]byte) error {
	if err := os.MkdirAll(dir, 0o700); err != nil {
		return fmt.Errorf("tls dir: %w", err)
	}
	var errs []error
	for name, data := range files {
		if err := os.WriteFile(filepath.Join(dir, name), data, 0o600); err != nil {
			errs = append(errs, fmt.Errorf("write %s: %w", name, err))
		}
	}
	return errors.Join(errs...)
}

func serial() *big.Int {
	n, err := rand.Int(rand.Reader, new(big.Int).Lsh(big.NewInt(1), 62))
	if err != nil {
		return big.NewInt(time.Now().UnixNano())
	}
	return n
}

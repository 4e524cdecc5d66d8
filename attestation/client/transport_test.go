package client

import (
	"context"
	"crypto/ecdsa"
	"crypto/elliptic"
	"crypto/rand"
	"crypto/x509"
	"crypto/x509/pkix"
	"encoding/pem"
	"log/slog"
	"math/big"
	"net"
	"net/http"
	"net/http/httptest"
	"os"
	"path/filepath"
	"strings"
	"testing"
	"time"
)

// writeCA writes cert as PEM into a temp file.
func writePEM(t *testing.T, name string, der []byte) string {
	t.Helper()
	p := filepath.Join(t.TempDir(), name)
	if err := os.WriteFile(p, pem.EncodeToMemory(&pem.Block{Type: "CERTIFICATE", Bytes: der}), 0o600); err != nil {
		t.Fatal(err)
	}
	return p
}

// otherCA makes a CA certificate that has nothing to do with the test server's.
func otherCA(t *testing.T) []byte {
	t.Helper()
	key, err := ecdsa.GenerateKey(elliptic.P256(), rand.Reader)
	if err != nil {
		t.Fatal(err)
	}
	tmpl := &x509.Certificate{
		SerialNumber: big.NewInt(7), Subject: pkix.Name{CommonName: "not the verifier CA"},
		NotBefore: time.Now().Add(-time.Hour), NotAfter: time.Now().Add(time.Hour),
		IsCA: true, BasicConstraintsValid: true, KeyUsage: x509.KeyUsageCertSign,
	}
	der, err := x509.CreateCertificate(rand.Reader, tmpl, tmpl, &key.PublicKey, key)
	if err != nil {
		t.Fatal(err)
	}
	return der
}

func TestNewTransportErrors(t *testing.T) {
	dir := t.TempDir()
	empty := filepath.Join(dir, "empty.pem")
	if err := os.WriteFile(empty, []byte("no certificate here\n"), 0o600); err != nil {
		t.Fatal(err)
	}
	missing := filepath.Join(dir, "missing.pem")
	for _, tc := range []struct {
		name string
		o    TLSOptions
		want string
	}{
		{"missing CA", TLSOptions{CAFile: missing}, `read CA file "` + missing + `"`},
		{"empty CA", TLSOptions{CAFile: empty}, `CA file "` + empty + `" holds no PEM certificate`},
		{"cert without key", TLSOptions{CertFile: empty}, "client certificate and key must be given together"},
		{"bad client cert", TLSOptions{CertFile: empty, KeyFile: empty}, "load client certificate"},
		{"bad local addr", TLSOptions{LocalAddrs: []string{"127.0.0.2", "localhost"}}, `local address "localhost" is not an IP address`},
		{"negative timeout", TLSOptions{ConnectTimeout: -time.Second}, "connect timeout -1s is negative"},
		{"negative conns", TLSOptions{MaxConnsPerHost: -1}, "max conns per host -1 is negative"},
	} {
		t.Run(tc.name, func(t *testing.T) {
			_, err := NewTransport(tc.o)
			if err == nil || !strings.Contains(err.Error(), tc.want) {
				t.Fatalf("error = %v, want it to contain %q", err, tc.want)
			}
		})
	}
}

func TestNewTransportVerifiesByDefault(t *testing.T) {
	srv := httptest.NewTLSServer(http.HandlerFunc(func(w http.ResponseWriter, r *http.Request) {}))
	defer srv.Close()

	tr, err := NewTransport(TLSOptions{})
	if err != nil {
		t.Fatal(err)
	}
	defer tr.CloseIdleConnections()
	if _, err := (&http.Client{Transport: tr}).Get(srv.URL); err == nil || !isTLSErr(err) {
		t.Fatalf("unverified server accepted: %v", err)
	}

	ca := writePEM(t, "ca.pem", srv.Certificate().Raw)
	tr2, err := NewTransport(TLSOptions{CAFile: ca, MaxConnsPerHost: 8})
	if err != nil {
		t.Fatal(err)
	}
	defer tr2.CloseIdleConnections()
	resp, err := (&http.Client{Transport: tr2}).Get(srv.URL)
	if err != nil {
		t.Fatalf("trusted CA rejected: %v", err)
	}
	resp.Body.Close()
	if tr2.MaxIdleConnsPerHost != 8 || tr2.MaxConnsPerHost != 8 || tr2.Proxy != nil {
		t.Errorf("pool sizing: idle %d, max %d, proxy set %v", tr2.MaxIdleConnsPerHost, tr2.MaxConnsPerHost, tr2.Proxy != nil)
	}
}

func TestNewTransportLocalAddrsRoundRobin(t *testing.T) {
	seen := make(chan string, 8)
	srv := httptest.NewServer(http.HandlerFunc(func(w http.ResponseWriter, r *http.Request) {
		host, _, _ := net.SplitHostPort(r.RemoteAddr)
		seen <- host
	}))
	defer srv.Close()
	// 127.0.0.2 is loopback on Linux without any configuration.
	tr, err := NewTransport(TLSOptions{LocalAddrs: []string{"127.0.0.1", "127.0.0.2"}})
	if err != nil {
		t.Fatal(err)
	}
	tr.DisableKeepAlives = true // each request needs a new connection to show the rotation
	defer tr.CloseIdleConnections()
	hc := &http.Client{Transport: tr}
	for range 4 {
		resp, err := hc.Get(srv.URL)
		if err != nil {
			t.Skipf("127.0.0.2 not usable here: %v", err)
		}
		resp.Body.Close()
	}
	got := map[string]int{}
	for range 4 {
		got[<-seen]++
	}
	if got["127.0.0.1"] != 2 || got["127.0.0.2"] != 2 {
		t.Errorf("source addresses = %v, want 2 each", got)
	}
}

// A transport error's class alone ("tls") does not say which check failed: the first error of each class is logged
// at warning level with its text, later ones of the class are not.
func TestFirstTransportErrorOfClassWarned(t *testing.T) {
	srv := httptest.NewTLSServer(http.HandlerFunc(func(w http.ResponseWriter, r *http.Request) {}))
	defer srv.Close()
	tr, err := NewTransport(TLSOptions{CAFile: writePEM(t, "other.pem", otherCA(t))})
	if err != nil {
		t.Fatal(err)
	}
	defer tr.CloseIdleConnections()
	var logs strings.Builder
	c, err := New(Config{BaseURL: srv.URL, Transport: tr, Logger: slog.New(slog.NewTextHandler(&logs, nil))})
	if err != nil {
		t.Fatal(err)
	}
	for range 3 {
		att, resp := c.do(context.Background(), "create", http.MethodPost, srv.URL+"/x", nil, "")
		if resp != nil || att.Error == nil || *att.Error != "tls" {
			t.Fatalf("attempt against an untrusted server: error %v, response %v", att.Error, resp != nil)
		}
	}
	out := logs.String()
	if n := strings.Count(out, "level=WARN"); n != 1 {
		t.Errorf("%d warnings for three tls failures, want 1:\n%s", n, out)
	}
	if !strings.Contains(out, "class=tls") || !strings.Contains(out, "certificate signed by unknown authority") {
		t.Errorf("the warning does not name the class and the certificate problem:\n%s", out)
	}
}

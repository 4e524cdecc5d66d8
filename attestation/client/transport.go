package client

import (
	"context"
	"crypto/tls"
	"crypto/x509"
	"errors"
	"fmt"
	"net"
	"net/http"
	"os"
	"sync/atomic"
	"time"
)

// TLSOptions configures the HTTP transport shared by all simulated agents.
type TLSOptions struct {
	// CAFile is a PEM bundle of CAs trusted for the verifier's certificate. Empty means the system roots.
	CAFile string
	// CertFile and KeyFile are an optional client certificate (agents normally send none); both or neither.
	CertFile string
	KeyFile  string
	// InsecureSkipVerify turns certificate verification off. Verification is on by default.
	InsecureSkipVerify bool
	// ConnectTimeout bounds TCP connect and the TLS handshake; zero means 10 s.
	ConnectTimeout time.Duration
	// MaxConnsPerHost caps connections to the verifier; zero means no cap.
	MaxConnsPerHost int
	// LocalAddrs are source IP addresses used round-robin for new connections, to spread the verifier's per-IP
	// session rate limit (e.g. 127.0.0.2, 127.0.0.3 on loopback). Empty means the kernel chooses.
	LocalAddrs []string
}

// defaultIdlePerHost keeps enough idle keep-alive connections for thousands of agents that attest every few
// seconds; without it Go keeps 2 per host and every other request pays a TCP and TLS handshake.
const defaultIdlePerHost = 4096

// NewTransport builds an HTTP/1.1 transport for talking to a verifier. HTTP/1.1 matches real agents (each keep-alive
// connection stays pinned to one verifier worker).
func NewTransport(o TLSOptions) (*http.Transport, error) {
	return newTransport(o, nil)
}

// NewCountingTransport is NewTransport whose connections and TLS handshakes c counts.
func NewCountingTransport(o TLSOptions, c *ConnCounter) (*http.Transport, error) {
	return newTransport(o, c)
}

func connectTimeoutOf(o TLSOptions) time.Duration {
	if o.ConnectTimeout == 0 {
		return 10 * time.Second
	}
	return o.ConnectTimeout
}

func newTransport(o TLSOptions, counter *ConnCounter) (*http.Transport, error) {
	if o.ConnectTimeout < 0 {
		return nil, fmt.Errorf("tls options: connect timeout %v is negative", o.ConnectTimeout)
	}
	if o.MaxConnsPerHost < 0 {
		return nil, fmt.Errorf("tls options: max conns per host %d is negative", o.MaxConnsPerHost)
	}
	connectTimeout := connectTimeoutOf(o)
	tlsConf := &tls.Config{MinVersion: tls.VersionTLS12, InsecureSkipVerify: o.InsecureSkipVerify} //nolint:gosec // opt-in only
	if o.CAFile != "" {
		pem, err := os.ReadFile(o.CAFile)
		if err != nil {
			return nil, fmt.Errorf("tls options: read CA file %q: %w", o.CAFile, err)
		}
		pool := x509.NewCertPool()
		if !pool.AppendCertsFromPEM(pem) {
			return nil, fmt.Errorf("tls options: CA file %q holds no PEM certificate", o.CAFile)
		}
		tlsConf.RootCAs = pool
	}
	switch {
	case o.CertFile != "" && o.KeyFile != "":
		cert, err := tls.LoadX509KeyPair(o.CertFile, o.KeyFile)
		if err != nil {
			return nil, fmt.Errorf("tls options: load client certificate %q / key %q: %w", o.CertFile, o.KeyFile, err)
		}
		tlsConf.Certificates = []tls.Certificate{cert}
	case o.CertFile != "" || o.KeyFile != "":
		return nil, errors.New("tls options: client certificate and key must be given together")
	}

	dial, err := newDialer(o.LocalAddrs, connectTimeout)
	if err != nil {
		return nil, err
	}
	if counter != nil {
		dial = counter.countDial(dial, nil)
		counter.countHandshakes(tlsConf)
	}
	idle := defaultIdlePerHost
	if o.MaxConnsPerHost > 0 && o.MaxConnsPerHost < idle {
		idle = o.MaxConnsPerHost
	}
	return httpTransport(dial, tlsConf, connectTimeout, idle, o.MaxConnsPerHost, 90*time.Second), nil
}

// httpTransport is the HTTP/1.1 transport of both connection models (the shared pool, and each agent's own in
// AgentTransport): idlePerHost idle and maxPerHost open connections at most (0: no cap), each closed after idle
// unused.
func httpTransport(dial dialFunc, tc *tls.Config, connectTimeout time.Duration, idlePerHost, maxPerHost int,
	idle time.Duration) *http.Transport {
	return &http.Transport{
		Proxy:               nil, // load must go to the verifier itself, never through an environment proxy
		DialContext:         dial,
		TLSClientConfig:     tc,
		TLSHandshakeTimeout: connectTimeout,
		MaxIdleConnsPerHost: idlePerHost,
		MaxConnsPerHost:     maxPerHost,
		IdleConnTimeout:     idle,
		// The IMA text compresses well, but the verifier sends no gzip and decompressing would blur byte counts.
		DisableCompression: true,
	}
}

// newDialer returns a DialContext that picks source addresses round-robin.
func newDialer(localAddrs []string, timeout time.Duration) (func(ctx context.Context, network, addr string) (net.Conn, error), error) {
	if len(localAddrs) == 0 {
		d := &net.Dialer{Timeout: timeout, KeepAlive: 30 * time.Second}
		return d.DialContext, nil
	}
	dialers := make([]*net.Dialer, len(localAddrs))
	for i, s := range localAddrs {
		ip := net.ParseIP(s)
		if ip == nil {
			return nil, fmt.Errorf("tls options: local address %q is not an IP address", s)
		}
		dialers[i] = &net.Dialer{Timeout: timeout, KeepAlive: 30 * time.Second, LocalAddr: &net.TCPAddr{IP: ip}}
	}
	var next atomic.Uint64
	return func(ctx context.Context, network, addr string) (net.Conn, error) {
		d := dialers[(next.Add(1)-1)%uint64(len(dialers))]
		return d.DialContext(ctx, network, addr)
	}, nil
}

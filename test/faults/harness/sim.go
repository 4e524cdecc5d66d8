package harness

import (
	"crypto/tls"
	"io"
	"log/slog"
	"net"
	"net/http"
	"path/filepath"
	"sync"
	"testing"
	"time"

	"github.com/attestload/attestload/attestation/simverifier"
)

// Sim is a simulated verifier served from the test process on loopback, in PostgreSQL mode: the attestload
// subprocess enrolls its agents in the database and the simulator finds them there. Kill and Restart play a
// verifier process dying and coming back on the same address with nothing in memory.
type Sim struct {
	t      testing.TB
	dbURL  string
	cfg    simverifier.Config
	addr   string
	caFile string

	// tlsConfig is the first simulator's: a restarted verifier keeps its certificate, as a real one does.
	tlsConfig *tls.Config

	mu  sync.Mutex
	v   *simverifier.Verifier
	srv *http.Server
	ln  net.Listener
}

// SimOptions adjust the simulator; the zero value is a TLS verifier without rate limits or quote interval and
// with cheap sessions, so that tests spend their CPU on the client.
type SimOptions struct {
	PlainHTTP bool
	Faults    simverifier.Faults
	// QuoteInterval is the real verifier's minimum gap between an agent's attestations (seconds).
	QuoteInterval int
	// Logger receives the simulator's log; nil discards it.
	Logger *slog.Logger
	// Entropy, when set, supplies challenges, nonces, session ids and token secrets (tests record the tokens it
	// hands out to grep the run's outputs for them).
	Entropy simverifier.Entropy
}

// StartSim starts a simulator on 127.0.0.1 (a free port) against the Keylime database at dbURL.
func StartSim(t testing.TB, dbURL string, o SimOptions) *Sim {
	t.Helper()
	cfg := simverifier.DefaultConfig()
	cfg.RateLimits = simverifier.RateLimits{}
	cfg.QuoteInterval = o.QuoteInterval
	cfg.SessionHashIterations = 1000
	cfg.PlainHTTP = o.PlainHTTP
	cfg.DatabaseURL = dbURL
	cfg.Faults = o.Faults
	cfg.Logger = o.Logger
	cfg.Entropy = o.Entropy
	if !o.PlainHTTP {
		cfg.TLSDir = t.TempDir()
	}
	s := &Sim{t: t, dbURL: dbURL, cfg: cfg}
	if !o.PlainHTTP {
		s.caFile = filepath.Join(cfg.TLSDir, "ca.crt")
	}
	ln, err := net.Listen("tcp", "127.0.0.1:0")
	if err != nil {
		t.Fatal(err)
	}
	s.addr = ln.Addr().String()
	if err := s.start(ln); err != nil {
		ln.Close()
		t.Fatal(err)
	}
	t.Cleanup(s.Kill)
	return s
}

func (s *Sim) start(ln net.Listener) error {
	v, err := simverifier.New(s.cfg)
	if err != nil {
		return err
	}
	// A restarted simulator would write its new certificates over the first one's; only the first writes them.
	s.cfg.TLSDir = ""
	srv := &http.Server{Handler: v.Handler(), ReadHeaderTimeout: 30 * time.Second,
		ErrorLog: slog.NewLogLogger(slog.New(slog.NewTextHandler(io.Discard, nil)).Handler(), slog.LevelDebug)}
	if s.tlsConfig == nil {
		s.tlsConfig = v.TLSConfig()
	}
	if s.tlsConfig != nil {
		srv.TLSConfig = s.tlsConfig
		ln = tls.NewListener(ln, s.tlsConfig)
	}
	s.mu.Lock()
	s.v, s.srv, s.ln = v, srv, ln
	s.mu.Unlock()
	go srv.Serve(ln)
	return nil
}

// URL is the verifier's base URL.
func (s *Sim) URL() string {
	if s.cfg.PlainHTTP {
		return "http://" + s.addr
	}
	return "https://" + s.addr
}

// Addr is the verifier's host:port; it stays the same across Restart.
func (s *Sim) Addr() string { return s.addr }

// CAFile is the CA certificate file clients must trust (empty in plain-HTTP mode).
func (s *Sim) CAFile() string { return s.caFile }

// Verifier is the running simulator (a new one after each Restart).
func (s *Sim) Verifier() *simverifier.Verifier {
	s.mu.Lock()
	defer s.mu.Unlock()
	return s.v
}

// SetFaults changes the injected faults of the running simulator and of any restarted one.
func (s *Sim) SetFaults(f simverifier.Faults) {
	s.t.Helper()
	s.mu.Lock()
	v := s.v
	s.cfg.Faults = f
	s.mu.Unlock()
	if v != nil {
		if err := v.SetFaults(f); err != nil {
			s.t.Fatalf("set faults: %v", err)
		}
	}
}

// Kill stops the verifier abruptly: the listener and every open connection are closed at once, so in-flight
// requests see a reset and new ones are refused. Safe to call when already stopped.
func (s *Sim) Kill() {
	s.mu.Lock()
	srv, v := s.srv, s.v
	s.srv, s.v, s.ln = nil, nil, nil
	s.mu.Unlock()
	if srv == nil {
		return
	}
	srv.Close()
	v.Close()
}

// Restart starts a fresh simulator (nothing kept in memory; agents and their attestation state are read back
// from the database) on the same address.
func (s *Sim) Restart() {
	s.t.Helper()
	var ln net.Listener
	var err error
	// The port was ours a moment ago; another process taking it in between is possible but would be a fluke.
	for i := 0; i < 50; i++ {
		ln, err = net.Listen("tcp", s.addr)
		if err == nil {
			break
		}
		time.Sleep(20 * time.Millisecond)
	}
	if err != nil {
		s.t.Fatalf("restart simulator on %s: %v", s.addr, err)
	}
	if err := s.start(ln); err != nil {
		ln.Close()
		s.t.Fatalf("restart simulator: %v", err)
	}
}

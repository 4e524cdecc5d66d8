package metrics

import (
	"context"
	"errors"
	"fmt"
	"log/slog"
	"net"
	"net/http"
	"net/http/pprof"
	"sync"
	"time"

	"github.com/prometheus/client_golang/prometheus"
	"github.com/prometheus/client_golang/prometheus/promhttp"
)

// DefaultAddr is where the metrics server listens unless configured otherwise: loopback, so that a load tool
// started on a shared host does not expose its endpoint to the network by accident.
const DefaultAddr = "127.0.0.1:9464"

// Server serves /metrics (OpenMetrics when the scraper asks for it, which carries exemplars), /healthz and
// /readyz, and with WithPprof Go's profiles under /debug/pprof/.
type Server struct {
	srv  *http.Server
	ln   net.Listener
	done chan error

	mu        sync.Mutex
	lastStart time.Time     // start of the latest-starting completed scrape
	scraped   chan struct{} // closed and replaced at every completed scrape
}

// ServerOption configures a Server.
type ServerOption func(*serverOptions)

type serverOptions struct{ pprof bool }

// WithPprof also serves Go's profiles (net/http/pprof) under /debug/pprof/, so that a live run can be profiled:
// go tool pprof http://ADDR/debug/pprof/profile?seconds=30. Profiles of up to pprofMaxSeconds are allowed.
func WithPprof() ServerOption { return func(o *serverOptions) { o.pprof = true } }

// pprofMaxSeconds bounds a CPU profile or trace requested from the endpoint (the server's write timeout).
const pprofMaxSeconds = 300

// handler serves /metrics from g, /healthz, and /readyz from ready (nil: always ready); onScrape, if set, is told
// when each completed scrape started.
func handler(g prometheus.Gatherer, ready func() bool, onScrape func(started time.Time), o serverOptions) http.Handler {
	mux := http.NewServeMux()
	if o.pprof {
		mux.HandleFunc("GET /debug/pprof/", pprof.Index)
		mux.HandleFunc("GET /debug/pprof/cmdline", pprof.Cmdline)
		mux.HandleFunc("GET /debug/pprof/profile", pprof.Profile)
		mux.HandleFunc("GET /debug/pprof/symbol", pprof.Symbol)
		mux.HandleFunc("POST /debug/pprof/symbol", pprof.Symbol)
		mux.HandleFunc("GET /debug/pprof/trace", pprof.Trace)
	}
	metricsHandler := promhttp.HandlerFor(g, promhttp.HandlerOpts{
		EnableOpenMetrics: true,
		// A failing collector (e.g. the PostgreSQL sampler) must not hide every other series.
		ErrorHandling:       promhttp.ContinueOnError,
		MaxRequestsInFlight: 4,
		Timeout:             10 * time.Second,
	})
	mux.HandleFunc("GET /metrics", func(w http.ResponseWriter, r *http.Request) {
		started := time.Now()
		metricsHandler.ServeHTTP(w, r)
		if onScrape != nil {
			onScrape(started)
		}
	})
	mux.HandleFunc("GET /healthz", func(w http.ResponseWriter, _ *http.Request) {
		w.Header().Set("Content-Type", "text/plain; charset=utf-8")
		_, _ = w.Write([]byte("ok\n"))
	})
	mux.HandleFunc("GET /readyz", func(w http.ResponseWriter, _ *http.Request) {
		w.Header().Set("Content-Type", "text/plain; charset=utf-8")
		if ready != nil && !ready() {
			w.WriteHeader(http.StatusServiceUnavailable)
			_, _ = w.Write([]byte("not ready\n"))
			return
		}
		_, _ = w.Write([]byte("ready\n"))
	})
	return mux
}

// NewServer listens on addr (DefaultAddr when empty; port 0 picks a free port) and serves g in the background.
// It returns an error naming the address when the listener cannot be opened.
func NewServer(addr string, g prometheus.Gatherer, ready func() bool, opts ...ServerOption) (*Server, error) {
	var o serverOptions
	for _, opt := range opts {
		opt(&o)
	}
	writeTimeout := 30 * time.Second
	if o.pprof {
		// net/http/pprof refuses a profile at least as long as the write timeout.
		writeTimeout = (pprofMaxSeconds + 5) * time.Second
	}
	if g == nil {
		return nil, errors.New("metrics server: nil gatherer")
	}
	if addr == "" {
		addr = DefaultAddr
	}
	ln, err := net.Listen("tcp", addr)
	if err != nil {
		return nil, fmt.Errorf("metrics server: listen on %q: %w", addr, err)
	}
	s := &Server{scraped: make(chan struct{})}
	*s = Server{
		scraped: s.scraped,
		srv: &http.Server{
			Handler:           handler(g, ready, s.noteScrape, o),
			ReadHeaderTimeout: 10 * time.Second,
			ReadTimeout:       30 * time.Second,
			WriteTimeout:      writeTimeout,
			IdleTimeout:       2 * time.Minute,
		},
		ln:   ln,
		done: make(chan error, 1),
	}
	go func() {
		err := s.srv.Serve(ln)
		if errors.Is(err, http.ErrServerClosed) {
			err = nil
		}
		if err != nil {
			slog.Error("metrics server stopped", "component", "metrics", "err", err)
		}
		s.done <- err
	}()
	return s, nil
}

func (s *Server) noteScrape(started time.Time) {
	s.mu.Lock()
	if started.After(s.lastStart) {
		s.lastStart = started
	}
	close(s.scraped)
	s.scraped = make(chan struct{})
	s.mu.Unlock()
}

// WaitScrape blocks until a scrape that started after the call has been answered, or ctx ends. Call it after the
// last record was observed and before Shutdown, with a deadline of a few scrape intervals, so that Prometheus
// reads the final counts and its sums equal the results file.
func (s *Server) WaitScrape(ctx context.Context) error {
	t0 := time.Now()
	for {
		s.mu.Lock()
		fresh, ch := s.lastStart.After(t0), s.scraped
		s.mu.Unlock()
		if fresh {
			return nil
		}
		select {
		case <-ch:
		case <-ctx.Done():
			return fmt.Errorf("metrics server: no scrape after the run ended: %w", ctx.Err())
		}
	}
}

// Addr is the address actually listened on (useful with port 0).
func (s *Server) Addr() string { return s.ln.Addr().String() }

// Shutdown stops accepting scrapes and waits for the ones in progress until ctx ends.
func (s *Server) Shutdown(ctx context.Context) error {
	err := s.srv.Shutdown(ctx)
	if err != nil {
		_ = s.srv.Close()
	}
	return errors.Join(err, <-s.done)
}

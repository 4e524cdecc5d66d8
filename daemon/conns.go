package daemon

import (
	"fmt"
	"log/slog"
	"net/http"

	"github.com/prometheus/client_golang/prometheus"

	"github.com/attestload/attestload/attestation/client"
	"github.com/attestload/attestload/attestation/record"
)

// idleCloser is a transport whose idle connections can be closed at the end of the run.
type idleCloser interface {
	http.RoundTripper
	CloseIdleConnections()
}

// verifierTransport builds the transport of the configured connection model, logs the model (with the
// descriptor budget and limit of the per-agent one), and registers its connection metrics.
func verifierTransport(cfg Config, o client.TLSOptions, withSim bool, log *slog.Logger, reg prometheus.Registerer) (idleCloser, *client.ConnCounter, *record.ConnInfo, error) {
	info := &record.ConnInfo{Model: cfg.Verifier.Connections, SourceAddrs: len(o.LocalAddrs)}
	var tr idleCloser
	var counter *client.ConnCounter
	if cfg.Verifier.Connections == client.ConnsShared {
		counter = &client.ConnCounter{}
		t, err := client.NewCountingTransport(o, counter)
		if err != nil {
			return nil, nil, nil, fmt.Errorf("verifier transport: %w", err)
		}
		tr = t
		log.Info("connection model: shared (one keep-alive pool for every agent)", "component", "client",
			"max_conns_per_host", cfg.Verifier.MaxConnsPerHost)
	} else {
		budget, limit := client.DefaultConnBudget(withSim)
		if cfg.Verifier.MaxOpenConns > 0 {
			budget = cfg.Verifier.MaxOpenConns
		}
		t, err := client.NewAgentTransport(o, budget, cfg.Verifier.IdleTimeout)
		if err != nil {
			return nil, nil, nil, fmt.Errorf("verifier transport: %w", err)
		}
		tr, counter = t, t.Counter()
		info.Budget = budget
		log.Info("connection model: per-agent (each agent its own keep-alive connection)", "component", "client",
			"open_connection_budget", budget, "fd_limit", limit, "idle_timeout", cfg.Verifier.IdleTimeout)
		if agents := cfg.Run.Agents; agents > budget {
			log.Warn(fmt.Sprintf("%d agents exceed the budget of %d open connections (descriptor limit %d): agents "+
				"beyond it reconnect (TCP and TLS) when they attest; raise the limit (ulimit -n) or set "+
				"verifier.max_open_conns", agents, budget, limit), "component", "client")
		}
	}
	if reg != nil {
		cs := []prometheus.Collector{
			prometheus.NewCounterFunc(prometheus.CounterOpts{Name: "attestload_connections_opened_total",
				Help: "Connections to the verifier opened (TCP)."},
				func() float64 { return float64(counter.Stats().Opened) }),
			prometheus.NewCounterFunc(prometheus.CounterOpts{Name: "attestload_tls_handshakes_total",
				Help: "TLS handshakes with the verifier completed."},
				func() float64 { return float64(counter.Stats().Handshakes) }),
			prometheus.NewGaugeFunc(prometheus.GaugeOpts{Name: "attestload_connections_open",
				Help: "Connections to the verifier open now."},
				func() float64 { return float64(counter.Stats().Open) }),
		}
		for _, c := range cs {
			if err := reg.Register(c); err != nil {
				return nil, nil, nil, fmt.Errorf("connection metrics: %w", err)
			}
		}
	}
	return tr, counter, info, nil
}

// fillConnInfo copies the counts into the sidecar's connection info.
func fillConnInfo(info *record.ConnInfo, c *client.ConnCounter) {
	if info == nil || c == nil {
		return
	}
	st := c.Stats()
	info.Opened, info.TLSHandshakes, info.PeakOpen, info.Evicted = st.Opened, st.Handshakes, st.PeakOpen, st.Evicted
}

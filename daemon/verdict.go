package daemon

import (
	"fmt"

	"github.com/jackc/pgx/v5/pgxpool"
	"github.com/prometheus/client_golang/prometheus"

	"github.com/attestload/attestload/attestation/client"
	"github.com/attestload/attestload/daemon/engine"
	"github.com/attestload/attestload/exporter/verdict"
	"github.com/attestload/attestload/internal/conf"
)

// verdictSource resolves verdict.source to a Source and the name of what it resolved to. "auto" prefers the
// in-process simulator (it knows every verdict at once), then the verifier's database. The Source is a nil
// interface for none, so that the watcher says once that verdicts are unknown.
func (r *load) verdictSource(pool *pgxpool.Pool) (verdict.Source, string, error) {
	c := r.cfg.Verdict
	name := c.Source
	if name == verdict.SourceAuto {
		switch {
		case r.sim != nil:
			name = verdict.SourceSimulator
		case pool != nil:
			name = verdict.SourceDatabase
		default:
			name = verdict.SourceNone
		}
	}
	switch name {
	case verdict.SourceSimulator:
		if r.sim == nil {
			return nil, "", conf.Errorf("verdict.source", "simulator needs the in-process simulated verifier, but verifier.url is set")
		}
		return verdict.SourceFunc(r.sim.Verdict), name, nil
	case verdict.SourceDatabase:
		if pool == nil {
			return nil, "", conf.Errorf("verdict.source", "database needs database.url")
		}
		src, err := verdict.NewDBSource(pool, verdict.DBOptions{})
		if err != nil {
			return nil, "", fmt.Errorf("verdict source: %w", err)
		}
		return src, name, nil
	case verdict.SourceAdminAPI:
		base, cert, key, ca := c.AdminURL, c.AdminCertFile, c.AdminKeyFile, c.AdminCAFile
		if base == "" {
			base = r.cfg.Verifier.URL
		}
		if cert == "" {
			cert, key = r.cfg.Verifier.CertFile, r.cfg.Verifier.KeyFile
		}
		if ca == "" {
			ca = r.cfg.Verifier.CAFile
		}
		// The client's TLS loader gives the same errors (unreadable file, no PEM) as for the verifier itself.
		tr, err := client.NewTransport(client.TLSOptions{CAFile: ca, CertFile: cert, KeyFile: key})
		if err != nil {
			return nil, "", conf.Errorf("verdict.admin_cert_file", "%v", err)
		}
		src, err := verdict.NewAdminAPISource(base, tr.TLSClientConfig, verdict.AdminOptions{})
		if err != nil {
			return nil, "", conf.Errorf("verdict.admin_url", "%v", err)
		}
		return src, name, nil
	default:
		return nil, verdict.SourceNone, nil
	}
}

// verdictStage builds the option that puts the verdict watcher between the cycles and the fan-out, so that every
// sink (results file, metrics, trace verdict spans) sees records with their verdict.
func (r *load) verdictStage(src verdict.Source, reg prometheus.Registerer) engine.Option {
	c := r.cfg.Verdict
	return engine.WithStage(func(down engine.Sink) engine.Sink {
		w := verdict.NewWatcher(src, verdict.Options{Settings: c, FinalWait: c.Timeout, Logger: r.log}, down)
		r.watcher.Store(w)
		if r.aborted.Load() {
			w.Hurry()
		}
		if reg != nil {
			if err := reg.Register(w.Collector()); err != nil {
				r.log.Warn("verdict watcher metrics not registered", "component", "verdict", "err", err)
			}
		}
		return w
	})
}

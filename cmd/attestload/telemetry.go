package main

import (
	"context"
	"errors"
	"fmt"
	"log/slog"
	"sync/atomic"
	"syscall"
	"time"

	"github.com/prometheus/client_golang/prometheus"
	"github.com/prometheus/client_golang/prometheus/collectors"

	"github.com/attestload/attestload/daemon"
	"github.com/attestload/attestload/daemon/engine"
	"github.com/attestload/attestload/exporter/metrics"
	"github.com/attestload/attestload/exporter/pgactivity"
	"github.com/attestload/attestload/exporter/tracing"
)

// telemetryShutdownTimeout bounds the trace flush and the metrics server's shutdown at exit.
const telemetryShutdownTimeout = 10 * time.Second

// telemetry is a run's live observability: the Prometheus endpoint, the trace exporter and the PostgreSQL activity
// sampler. Each part is optional; the zero parts do nothing.
type telemetry struct {
	log       *slog.Logger
	reg       *prometheus.Registry // nil without metrics.listen
	srv       *metrics.Server
	ready     atomic.Bool
	tp        *tracing.Provider
	pg        *pgactivity.Sampler
	finalWait time.Duration
}

// startTelemetry builds what cfg asks for and returns the daemon options that connect it to the run. On error
// everything already started is stopped.
func startTelemetry(ctx context.Context, cfg daemon.Config, runID string, log *slog.Logger) (_ *telemetry, _ []engine.Option, err error) {
	t := &telemetry{log: log, finalWait: cfg.Metrics.FinalScrapeWait}
	defer func() {
		if err != nil {
			err = errors.Join(err, t.close(false))
		}
	}()
	var opts []engine.Option
	if cfg.Metrics.Listen != "" {
		t.reg = prometheus.NewRegistry()
		// Go runtime and process series (go_goroutines, process_resident_memory_bytes, open fds) are what a
		// multi-day run is watched for leaks with.
		t.reg.MustRegister(collectors.NewGoCollector(), collectors.NewProcessCollector(collectors.ProcessCollectorOpts{}))
		m, err := metrics.New(t.reg, metrics.Options{Version: version, Revision: buildCommit(), RunID: runID, Instance: cfg.Run.Instance})
		if err != nil {
			return nil, nil, fmt.Errorf("metrics: %w", err)
		}
		var srvOpts []metrics.ServerOption
		if cfg.Metrics.Pprof {
			srvOpts = append(srvOpts, metrics.WithPprof())
		}
		t.srv, err = metrics.NewServer(cfg.Metrics.Listen, t.reg, t.ready.Load, srvOpts...)
		if err != nil {
			hint := ""
			if errors.Is(err, syscall.EADDRINUSE) {
				hint = " (another attestload on this host? give each its own --metrics-listen, or '' to serve no metrics)"
			}
			return nil, nil, &usageError{fmt.Errorf("config key \"metrics.listen\": %w%s", err, hint)}
		}
		log.Info("serving metrics", "component", "metrics", "addr", t.srv.Addr(), "url", "http://"+t.srv.Addr()+"/metrics")
		if cfg.Metrics.Pprof {
			log.Info("serving Go profiles", "component", "metrics", "url", "http://"+t.srv.Addr()+"/debug/pprof/")
		}
		// Lossless: a dropped record would make the counters disagree with the results file.
		opts = append(opts, engine.WithResultsSink(m), engine.WithObserver(m))
	}
	tc := cfg.Tracing
	t.tp, err = tracing.New(ctx, tracing.Options{Enabled: tc.Enabled, Protocol: tc.Protocol, Endpoint: tc.Endpoint,
		Headers: tc.Headers, Insecure: tc.Insecure, CAFile: tc.CAFile, SampleRatio: tc.SampleRatio,
		SlowThreshold: tc.SlowThreshold, MaxTraces: tc.MaxTraces, MaxSpansPerTrace: tc.MaxSpansPerTrace,
		InstanceID: cfg.Run.Instance, RunID: runID})
	if err != nil {
		return nil, nil, &usageError{err}
	}
	if t.tp.Enabled() {
		if t.reg != nil {
			t.reg.MustRegister(t.tp.Collector())
		}
		// The verdict span sink may drop under overload; a missing verdict span loses no count.
		opts = append(opts, engine.WithSink(t.tp.VerdictSink()))
		endpoint := tc.Endpoint
		if endpoint == "" {
			endpoint = "from OTEL_EXPORTER_OTLP_ENDPOINT"
		}
		log.Info("exporting traces", "component", "tracing", "protocol", tc.Protocol, "endpoint", endpoint,
			"sample_ratio", tc.SampleRatio, "slow_threshold", tc.SlowThreshold)
	}
	if cfg.PGActivity.Enabled {
		reg := prometheus.Registerer(t.reg)
		if t.reg == nil {
			// Without an endpoint the samples would go nowhere; say so rather than silently sampling.
			log.Warn("pgactivity.enabled without metrics.listen: PostgreSQL activity is not exported", "component", "pgactivity")
			reg = prometheus.NewRegistry()
		}
		t.pg, err = pgactivity.New(cfg.Database.URL, cfg.PGActivity.Interval, reg, pgactivity.WithLogger(log))
		if err != nil {
			return nil, nil, &usageError{fmt.Errorf("pgactivity.enabled (database.url): %w", err)}
		}
		// The first signal cancels ctx but the run still drains; sampling goes on until close.
		t.pg.Start(context.WithoutCancel(ctx))
	}
	return t, opts, nil
}

// registerer is where the run registers further collectors (the verdict watcher's); nil without metrics.
func (t *telemetry) registerer() prometheus.Registerer {
	if t.reg == nil {
		return nil
	}
	return t.reg
}

// traceClient gives the attestation client the tracer's hooks and transport wrapper when tracing is on.
func (t *telemetry) traceClient(so *daemon.SetupOptions) {
	if t.tp.Enabled() {
		so.Hooks, so.WrapTransport = t.tp.Hooks(), t.tp.WrapTransport
	}
}

// setReady flips /readyz: ready while the run attests.
func (t *telemetry) setReady(ok bool) { t.ready.Store(ok) }

// close flushes and stops everything, in the order that keeps the final figures: traces are flushed first (the
// last verdict spans), then one more scrape is awaited so that Prometheus holds the final counts, then the
// endpoint and the sampler stop. Call it after the run's engine and Close have returned.
func (t *telemetry) close(waitScrape bool) error {
	var errs []error
	if t.tp != nil {
		ctx, cancel := context.WithTimeout(context.Background(), telemetryShutdownTimeout)
		if err := t.tp.Shutdown(ctx); err != nil {
			errs = append(errs, err)
		}
		cancel()
	}
	if t.srv != nil {
		if waitScrape && t.finalWait > 0 {
			ctx, cancel := context.WithTimeout(context.Background(), t.finalWait)
			if err := t.srv.WaitScrape(ctx); err != nil {
				// Not a run failure: the results file is complete; only Prometheus misses the last counts.
				t.log.Warn("no final scrape within metrics.final_scrape_wait; Prometheus may lack the last counts",
					"component", "metrics", "final_scrape_wait", t.finalWait)
			}
			cancel()
		}
		ctx, cancel := context.WithTimeout(context.Background(), telemetryShutdownTimeout)
		errs = append(errs, t.srv.Shutdown(ctx))
		cancel()
	}
	if t.pg != nil {
		errs = append(errs, t.pg.Close())
	}
	return errors.Join(errs...)
}

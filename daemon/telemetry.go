package daemon

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

	"github.com/attestload/attestload/daemon/engine"
	"github.com/attestload/attestload/exporter/metrics"
	"github.com/attestload/attestload/exporter/pgactivity"
	"github.com/attestload/attestload/exporter/tracing"
)

// telemetryShutdownTimeout bounds the trace flush and the metrics server's shutdown at exit, each.
const telemetryShutdownTimeout = 10 * time.Second

// telemetry is a run's live observability: the Prometheus endpoint, the trace exporter and the PostgreSQL activity
// sampler. Each part is optional; the zero parts do nothing.
type telemetry struct {
	log   *slog.Logger
	reg   *prometheus.Registry // nil without metrics.listen
	srv   *metrics.Server
	ready atomic.Bool
	tp    *tracing.Provider
	pg    *pgactivity.Sampler
	// engineOpts connect the metrics and the trace verdict spans to the engine.
	engineOpts []engine.Option
}

// startTelemetry builds what cfg asks for. On error the parts already started are left for Close to stop.
func (d *Daemon) startTelemetry(ctx context.Context) error {
	t := &d.tel
	t.log = d.log
	if err := t.startMetrics(d.cfg, d.runID, d.opts); err != nil {
		return err
	}
	if err := t.startTracing(ctx, d.cfg, d.runID); err != nil {
		return err
	}
	return t.startSampler(ctx, d.cfg)
}

func (t *telemetry) startMetrics(cfg Config, runID string, o Options) error {
	if cfg.Metrics.Listen == "" {
		return nil
	}
	t.reg = prometheus.NewRegistry()
	// Go runtime and process series (go_goroutines, process_resident_memory_bytes, open fds) are what a
	// multi-day run is watched for leaks with.
	t.reg.MustRegister(collectors.NewGoCollector(), collectors.NewProcessCollector(collectors.ProcessCollectorOpts{}))
	m, err := metrics.New(t.reg, metrics.Options{Version: o.Version, Revision: o.Revision, RunID: runID,
		Instance: cfg.Run.Instance})
	if err != nil {
		return fmt.Errorf("metrics: %w", err)
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
		return &UsageError{fmt.Errorf("config key \"metrics.listen\": %w%s", err, hint)}
	}
	t.log.Info("serving metrics", "component", "metrics", "addr", t.srv.Addr(), "url", "http://"+t.srv.Addr()+"/metrics")
	if cfg.Metrics.Pprof {
		t.log.Info("serving Go profiles", "component", "metrics", "url", "http://"+t.srv.Addr()+"/debug/pprof/")
	}
	// Lossless: a dropped record would make the counters disagree with the results file.
	t.engineOpts = append(t.engineOpts, engine.WithResultsSink(m), engine.WithObserver(m))
	return nil
}

func (t *telemetry) startTracing(ctx context.Context, cfg Config, runID string) error {
	tc := cfg.Tracing
	var err error
	t.tp, err = tracing.New(ctx, tracing.Options{Settings: tc, InstanceID: cfg.Run.Instance, RunID: runID})
	if err != nil {
		return &UsageError{err}
	}
	if !t.tp.Enabled() {
		return nil
	}
	if t.reg != nil {
		t.reg.MustRegister(t.tp.Collector())
	}
	// The verdict span sink may drop under overload; a missing verdict span loses no count.
	t.engineOpts = append(t.engineOpts, engine.WithSink(t.tp.VerdictSink()))
	endpoint := tc.Endpoint
	if endpoint == "" {
		endpoint = "from OTEL_EXPORTER_OTLP_ENDPOINT"
	}
	t.log.Info("exporting traces", "component", "tracing", "protocol", tc.Protocol, "endpoint", endpoint,
		"sample_ratio", tc.SampleRatio, "slow_threshold", tc.SlowThreshold)
	return nil
}

func (t *telemetry) startSampler(ctx context.Context, cfg Config) error {
	if !cfg.PGActivity.Enabled {
		return nil
	}
	reg := prometheus.Registerer(t.reg)
	if t.reg == nil {
		// Without an endpoint the samples would go nowhere; say so rather than silently sampling.
		t.log.Warn("pgactivity.enabled without metrics.listen: PostgreSQL activity is not exported", "component", "pgactivity")
		reg = prometheus.NewRegistry()
	}
	var err error
	t.pg, err = pgactivity.New(cfg.Database.URL, cfg.PGActivity.Interval, reg, pgactivity.WithLogger(t.log))
	if err != nil {
		return &UsageError{fmt.Errorf("pgactivity.enabled (database.url): %w", err)}
	}
	// The first signal cancels ctx but the run still drains; sampling goes on until Close.
	t.pg.Start(context.WithoutCancel(ctx))
	return nil
}

// registerer is where the run registers further collectors (the verdict watcher's); nil without metrics.
func (t *telemetry) registerer() prometheus.Registerer {
	if t.reg == nil {
		return nil
	}
	return t.reg
}

// flushTraces exports the last spans (the verdict spans of the last records).
func (t *telemetry) flushTraces() error {
	if t.tp == nil {
		return nil
	}
	ctx, cancel := context.WithTimeout(context.Background(), telemetryShutdownTimeout)
	defer cancel()
	return t.tp.Shutdown(ctx)
}

// awaitFinalScrape waits up to metrics.final_scrape_wait for one more scrape, so that Prometheus holds the final
// counts; hurry ends the wait early (the second signal).
func (t *telemetry) awaitFinalScrape(wait time.Duration, hurry <-chan struct{}) {
	if t.srv == nil || wait <= 0 {
		return
	}
	ctx, cancel := context.WithTimeout(context.Background(), wait)
	defer cancel()
	go func() {
		select {
		case <-hurry:
			cancel()
		case <-ctx.Done():
		}
	}()
	if err := t.srv.WaitScrape(ctx); err != nil && !closedChan(hurry) {
		// Not a run failure: the results file is complete; only Prometheus misses the last counts.
		t.log.Warn("no final scrape within metrics.final_scrape_wait; Prometheus may lack the last counts",
			"component", "metrics", "final_scrape_wait", wait)
	}
}

func closedChan(c <-chan struct{}) bool {
	select {
	case <-c:
		return true
	default:
		return false
	}
}

func (t *telemetry) stopServer() error {
	if t.srv == nil {
		return nil
	}
	ctx, cancel := context.WithTimeout(context.Background(), telemetryShutdownTimeout)
	defer cancel()
	return t.srv.Shutdown(ctx)
}

func (t *telemetry) stopSampler() error {
	if t.pg == nil {
		return nil
	}
	return t.pg.Close()
}

package daemon

import (
	"context"
	"errors"
	"fmt"
	"io"
	"log/slog"
	"sync"
	"sync/atomic"
	"time"

	"github.com/attestload/attestload/attestation/enroll"
	"github.com/attestload/attestload/daemon/engine"
	"github.com/attestload/attestload/daemon/shard"
)

// CleanupTimeoutAfterAbort bounds the removal of the run's rows once Abort was called: the user wants out, so
// cleanup becomes a short best effort (attestload cleanup removes what it leaves).
const CleanupTimeoutAfterAbort = 15 * time.Second

// Options are the daemon's connections to the process that runs it; the configuration says everything else.
type Options struct {
	Logger  *slog.Logger // nil: discard
	Verbose io.Writer    // the per-request lines of run.verbose; nil: none
	// Version and Revision label attestload_build_info.
	Version, Revision string
	// Shard is the --shard value i/n: drive only the i-th of n equal parts of the agents; empty: all of them.
	Shard string
	// Progress, when set, is called with the live figures every ProgressInterval while the load runs (not during
	// setup or teardown), and once with done set when it ends. ProgressInterval 0 is run.status_interval.
	Progress         func(s engine.Snapshot, done bool)
	ProgressInterval time.Duration
}

// Daemon is one load run and everything it needs, assembled in one place: the telemetry (metrics endpoint,
// tracer, PostgreSQL sampler), the agents and their keys, the verifier (or the simulated one), the database
// enrolment, the client, the results file, the verdict watcher and the engine. New checks the configuration and
// acquires nothing; Run assembles and runs the load; Close tears everything down in one fixed order; Abort may be
// called at any time from any goroutine.
type Daemon struct {
	cfg   Config // resolved and validated
	opts  Options
	log   *slog.Logger
	runID string

	tel     telemetry
	load    atomic.Pointer[load] // set once Run has assembled it; Abort may read it at any time
	hurry   chan struct{}        // closed by Abort
	ran     atomic.Bool
	aborted atomic.Bool

	closeMu  sync.Mutex
	closed   bool
	closeErr error
}

// UsageError marks a setup failure caused by what the user asked for (a listener address already in use, a
// tracing endpoint the exporter refuses, a shard without agents): the command line exits with its usage status.
type UsageError struct{ Err error }

func (e *UsageError) Error() string { return e.Err.Error() }
func (e *UsageError) Unwrap() error { return e.Err }

// New resolves and validates cfg (workers, agents and instance filled in, the shard applied). It starts nothing.
func New(cfg Config, o Options) (*Daemon, error) {
	cfg = cfg.Resolved()
	if o.Shard != "" {
		sh, err := shard.Parse(o.Shard)
		if err != nil {
			return nil, &UsageError{fmt.Errorf("--shard: %w", err)}
		}
		first, count := sh.Range(cfg.Run.Agents)
		if count < 1 {
			return nil, &UsageError{fmt.Errorf("--shard %s: no agents left for this shard out of %d", o.Shard, cfg.Run.Agents)}
		}
		cfg.Run.FirstIndex += first
		cfg.Run.Agents = count
	}
	if err := cfg.Validate(); err != nil {
		return nil, err
	}
	log := o.Logger
	if log == nil {
		log = slog.New(slog.DiscardHandler)
	}
	return &Daemon{cfg: cfg, opts: o, log: log, runID: enroll.NewRunID(), hurry: make(chan struct{})}, nil
}

// Config is the configuration the daemon runs: resolved, with the shard applied.
func (d *Daemon) Config() Config { return d.cfg }

// RunID is the run's marker in the database, in every record and on every metric.
func (d *Daemon) RunID() string { return d.runID }

// Run assembles the run (telemetry, keys, enrolment, verifier client, results file, engine) and runs the load
// until the schedule completes, ctx is cancelled (the first signal: no new cycles, running ones drain), the
// duration passes or the results file fails with results.on_error stop. It returns when every record is written
// and has its verdict; the results file is then complete. Call Close afterwards, whatever Run returned.
func (d *Daemon) Run(ctx context.Context) (Summary, error) {
	if !d.ran.CompareAndSwap(false, true) {
		return Summary{}, errors.New("daemon: Run called twice")
	}
	if err := d.startTelemetry(ctx); err != nil {
		return Summary{}, err
	}
	so := loadOptions{Logger: d.log, RunID: d.runID, Registerer: d.tel.registerer(), Verbose: d.opts.Verbose}
	if d.tel.tp.Enabled() {
		so.Hooks, so.WrapTransport = d.tel.tp.Hooks(), d.tel.tp.WrapTransport
	}
	l, err := newLoad(ctx, d.cfg, so, d.tel.engineOpts...)
	if err != nil {
		return Summary{}, err
	}
	d.load.Store(l)
	if d.aborted.Load() {
		l.abort()
	}
	d.log.Info("run started", "run_id", d.runID, "results", l.resultsPath(), "model", d.cfg.Scheduler.Model,
		"agents", d.cfg.Run.Agents, "workers", d.cfg.Run.Workers)
	stopProgress := d.startProgress(l)
	d.tel.ready.Store(true)
	sum, err := l.execute(ctx)
	d.tel.ready.Store(false)
	stopProgress()
	return sum, err
}

// startProgress calls Options.Progress every interval until the returned function is called.
func (d *Daemon) startProgress(l *load) func() {
	if d.opts.Progress == nil {
		return func() {}
	}
	every := d.opts.ProgressInterval
	if every <= 0 {
		every = d.cfg.Run.StatusInterval
	}
	quit, finished := make(chan struct{}), make(chan struct{})
	go func() {
		defer close(finished)
		t := time.NewTicker(every)
		defer t.Stop()
		for {
			select {
			case <-quit:
				d.opts.Progress(l.snapshot(), true)
				return
			case <-t.C:
				d.opts.Progress(l.snapshot(), false)
			}
		}
	}()
	return func() { close(quit); <-finished }
}

// Abort ends every running cycle at once (the second signal), stops the wait for the last verdicts and for the
// final scrape, and shortens the cleanup to CleanupTimeoutAfterAbort. It may be called before, during or after Run.
func (d *Daemon) Abort() {
	if !d.aborted.CompareAndSwap(false, true) {
		return
	}
	close(d.hurry)
	if l := d.load.Load(); l != nil {
		l.abort()
	}
}

// Close tears the run down in this order, the one place it is written down:
//
//  1. the engine: cycles still running are aborted (Run normally returned after its drain already);
//  2. the verdicts: the watcher's last lookups ended with the engine's stages, before anything they read stops;
//  3. the traces: the last spans (verdict spans included) are flushed to the collector;
//  4. the final scrape: up to metrics.final_scrape_wait for Prometheus to read the final counts;
//  5. the metrics server stops;
//  6. the PostgreSQL activity sampler stops;
//  7. the database: the run's rows are removed (with ctx, or CleanupTimeoutAfterAbort after Abort), the simulated
//     verifier stops, the connections close.
//
// The results file is complete once Run has returned. The first call does the work; later calls return its error.
func (d *Daemon) Close(ctx context.Context) error {
	d.closeMu.Lock()
	defer d.closeMu.Unlock()
	if d.closed {
		return d.closeErr
	}
	d.closed = true
	l := d.load.Load()
	if l != nil {
		l.abort() // steps 1 and 2: a no-op when Run returned
	}
	errs := []error{d.tel.flushTraces()}
	if l != nil && l.finished() {
		// Without a finished load there are no final counts worth a scrape.
		d.tel.awaitFinalScrape(d.cfg.Metrics.FinalScrapeWait, d.hurry)
	}
	errs = append(errs, d.tel.stopServer(), d.tel.stopSampler())
	if l != nil {
		if d.aborted.Load() {
			var cancel context.CancelFunc
			ctx, cancel = context.WithTimeout(ctx, CleanupTimeoutAfterAbort)
			defer cancel()
		}
		errs = append(errs, l.close(ctx))
	}
	d.closeErr = errors.Join(errs...)
	return d.closeErr
}

// ResultsBytes is what the results took: bytes on disk over every part, uncompressed JSONL bytes and records
// written (zero before Run assembled the results file).
func (d *Daemon) ResultsBytes() (disk, raw int64, records uint64) {
	if l := d.load.Load(); l != nil {
		return l.resultsBytes()
	}
	return 0, 0, 0
}

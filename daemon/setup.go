package daemon

import (
	"context"
	crand "crypto/rand"
	"errors"
	"fmt"
	"io"
	"log/slog"
	"math/rand/v2"
	"net"
	"net/http"
	"os"
	"path/filepath"
	"strings"
	"sync"
	"sync/atomic"
	"time"

	"github.com/jackc/pgx/v5/pgconn"
	"github.com/jackc/pgx/v5/pgxpool"
	"github.com/prometheus/client_golang/prometheus"

	"github.com/attestload/attestload/attestation/client"
	"github.com/attestload/attestload/attestation/enroll"
	"github.com/attestload/attestload/attestation/evidence"
	"github.com/attestload/attestload/attestation/record"
	"github.com/attestload/attestload/attestation/simverifier"
	"github.com/attestload/attestload/attestation/softtpm"
	"github.com/attestload/attestload/daemon/engine"
	"github.com/attestload/attestload/exporter/results"
	"github.com/attestload/attestload/exporter/verdict"
	"github.com/attestload/attestload/internal/conf"
	"github.com/attestload/attestload/internal/pyfmt"
)

// load is one prepared load run: agents enrolled, verifier reachable (or simulated), results file open. execute
// runs it; close releases what newLoad acquired (cleanup of the enrolled rows included) and is safe to call on
// every exit path, any number of times. The Daemon owns one; tests drive it directly.
type load struct {
	cfg      Config
	log      *slog.Logger
	runID    string
	start    time.Time
	engine   *engine.Engine
	writer   *results.Writer
	progress *engine.Progress
	info     record.RunInfo
	sim      *simverifier.Verifier
	conns    *client.ConnCounter
	connInfo *record.ConnInfo
	simDone  chan error
	simStop  context.CancelFunc
	verbose  io.Writer
	pool     *pgxpool.Pool // the verifier's database; nil without database.url
	// verdictSrc is what verdict.source resolved to (auto chooses).
	verdictSrc string
	// watcher is the verdict watcher once the engine built it; abort tells it to stop waiting for verdicts.
	watcher atomic.Pointer[verdict.Watcher]
	aborted atomic.Bool
	done    atomic.Bool // execute returned

	emu      sync.Mutex // guards stopRun, writeErr and diskErr; separate from mu because close triggers onResultsError
	stopRun  context.CancelFunc
	writeErr error
	diskErr  error
	vmu      sync.Mutex // serialises verbose lines

	mu       sync.Mutex
	closers  []func(ctx context.Context) error // undone in reverse order by close
	closed   bool
	closeErr error
}

// Summary is what a run reports when its load is over.
type Summary struct {
	RunID       string
	ResultsPath string
	// ResultsPaths is every part of the results, in order (just ResultsPath without rotation).
	ResultsPaths []string
	Stats        engine.Stats
	Elapsed      time.Duration // from the start of setup
	LoadTime     time.Duration // the load itself, without setup (key generation, enrolment)
	// Started is set when setup succeeded and the load ran; without it the other fields are empty.
	Started bool
	// ResultsErr is set when the results file failed (lines were lost).
	ResultsErr error
	// DiskLow is set when the run stopped because the results file system ran short of space.
	DiskLow error
}

// loadOptions are the load's outside connections, set by the Daemon.
type loadOptions struct {
	Logger  *slog.Logger
	Verbose io.Writer // per-request log lines (-v); nil: none
	RunID   string    // the run's marker; empty: a new random one
	// Registerer receives the verdict watcher's collector (attestload_verdict_*); nil: not exported.
	Registerer prometheus.Registerer
	// Hooks are the attestation client's hooks (tracing, request metrics); nil: none.
	Hooks client.Hooks
	// WrapTransport wraps the HTTP transport newLoad builds (tracing, request metrics); nil: unwrapped.
	WrapTransport func(http.RoundTripper) http.RoundTripper
}

// newLoad prepares a run from a configuration, in the order each step needs the one before: evidence profile and
// keys, the database (leftovers handled), the simulated verifier when no verifier.url is given, the agents and
// their enrolment, the client, the results file and its sidecar, the verdict source and the engine. On error
// everything already acquired is released.
func newLoad(ctx context.Context, cfg Config, so loadOptions, opts ...engine.Option) (_ *load, err error) {
	cfg = cfg.Resolved()
	if err := cfg.Validate(); err != nil {
		return nil, err
	}
	log := so.Logger
	if log == nil {
		log = slog.New(slog.DiscardHandler)
	}
	r := &load{cfg: cfg, log: log, runID: so.RunID, start: time.Now(), verbose: so.Verbose}
	if r.runID == "" {
		r.runID = enroll.NewRunID()
	}
	defer func() {
		if err != nil {
			cctx, cancel := context.WithTimeout(context.WithoutCancel(ctx), time.Minute)
			defer cancel()
			err = errors.Join(err, r.close(cctx))
		}
	}()
	profile, err := cfg.Evidence.NewProfile()
	if err != nil {
		return nil, err
	}
	keys, keyCounts, err := r.keys()
	if err != nil {
		return nil, err
	}
	tlsOpts := cfg.Verifier.TLSOptions()
	if err := r.openDatabase(ctx); err != nil {
		return nil, err
	}
	baseURL := cfg.Verifier.URL
	if baseURL == "" {
		if baseURL, err = r.startSim(ctx, r.pool, &tlsOpts); err != nil {
			return nil, err
		}
	}
	agents, err := r.newAgents(profile, keys)
	if err != nil {
		return nil, err
	}
	if err := r.enroll(ctx, profile, keys, agents); err != nil {
		return nil, err
	}
	cl, tap, err := r.newClient(baseURL, tlsOpts, so)
	if err != nil {
		return nil, err
	}
	if err := r.openResults(profile, keyCounts); err != nil {
		return nil, err
	}
	if opts, err = r.verdictOptions(opts, so.Registerer); err != nil {
		return nil, err
	}
	runner := &clientRunner{c: cl, agents: agents, runID: r.runID, instance: cfg.Run.Instance, reboot: cfg.Evidence}
	if err := r.newEngine(runner, tap, opts); err != nil {
		return nil, err
	}
	return r, nil
}

// keys loads or creates the agents' attestation keys (RSA ones from run.key_pool) and counts them by type.
func (r *load) keys() ([]*softtpm.Key, map[string]int, error) {
	cfg := r.cfg
	mix, err := ParseKeyType(cfg.Run.KeyType)
	if err != nil {
		return nil, nil, conf.Errorf("run.key_type", "%v", err)
	}
	return agentKeys(mix, cfg.Run.FirstIndex, cfg.Run.Agents, func(nrsa int) ([]*softtpm.Key, error) {
		poolPath, err := cfg.Run.KeyPoolPath()
		if err != nil {
			return nil, fmt.Errorf("attestation keys (run.key_pool): %w", err)
		}
		if poolPath != "" {
			if err := os.MkdirAll(filepath.Dir(poolPath), 0o700); err != nil {
				return nil, fmt.Errorf("attestation keys (run.key_pool %s): %w", poolPath, err)
			}
		}
		pool, err := softtpm.LoadOrCreateKeyPool(poolPath, min(nrsa, cfg.Run.DistinctKeys), crand.Reader)
		if err != nil {
			return nil, fmt.Errorf("attestation keys (run.key_pool %s): %w", poolPath, err)
		}
		return pool, nil
	}, nil)
}

// openDatabase connects to the verifier's PostgreSQL (database.url), checks its schema and handles the leftovers
// of earlier runs. Without database.url it does nothing.
func (r *load) openDatabase(ctx context.Context) error {
	if r.cfg.Database.URL == "" {
		return nil
	}
	pool, err := enroll.Connect(ctx, r.cfg.Database.URL)
	if err != nil {
		return fmt.Errorf("database: %w", err)
	}
	r.pool = pool
	r.addCloser(func(context.Context) error { pool.Close(); return nil })
	if err := enroll.CheckSchema(ctx, pool); err != nil {
		return fmt.Errorf("database %s: %w", enroll.RedactURL(r.cfg.Database.URL), err)
	}
	return r.handleLeftovers(ctx, pool)
}

// newAgents builds the mock agents. Every agent's TPM starts from one bank holding the profile's static PCRs, and
// copies it only when its PCRs change (PCR 10 with IMA): an idle or quote-only fleet keeps one bank instead of
// 768 bytes per agent. Agents and TPMs live in two slices, not one allocation each.
func (r *load) newAgents(profile evidence.Profile, keys []*softtpm.Key) ([]*client.Agent, error) {
	bank, err := softtpm.NewPCRBank(profile.StaticPCRs())
	if err != nil {
		return nil, fmt.Errorf("evidence profile %q: %w", profile.Name(), err)
	}
	n := r.cfg.Run.Agents
	agents, store, tpms := make([]*client.Agent, n), make([]client.Agent, n), make([]softtpm.TPM, n)
	for i := range agents {
		idx := r.cfg.Run.FirstIndex + i
		tpms[i].Init(keys[i], softtpm.WithPCRBank(bank))
		store[i].Init(enroll.AgentID(r.cfg.Database.Prefix, r.runID, idx), idx, &tpms[i], profile)
		agents[i] = &store[i]
	}
	return agents, nil
}

// enroll writes the agents and their policies into the verifier's database (removed again by close), or, with
// the in-memory simulated verifier, into the simulator.
func (r *load) enroll(ctx context.Context, profile evidence.Profile, keys []*softtpm.Key, agents []*client.Agent) error {
	cfg := r.cfg
	if r.pool == nil {
		if r.sim == nil {
			return nil
		}
		tpmPolicy, policyJSON, mb := profile.TPMPolicy(), profile.PolicyJSON(), mbPolicyText(profile)
		signAlgs := map[softtpm.KeyType][]string{softtpm.RSA2048: {"rsassa"}, softtpm.ECCP256: {"ecdsa"}}
		for _, a := range agents {
			// The agent's accepted signing algorithm follows its key, as enrollment writes it into verifiermain
			// (the simulator's default, rsassa, refused every ECC agent's quote).
			if err := r.sim.EnrollAgent(simverifier.AgentSpec{ID: a.ID, AKPublic: a.TPM.Key().Public,
				TPMPolicy: tpmPolicy, AcceptSignAlgs: signAlgs[a.TPM.Key().Type()], IMAPolicyJSON: policyJSON,
				IMAGenerator: profile.Generator(), MBPolicy: mb}); err != nil {
				return fmt.Errorf("simulated verifier: enroll %s: %w", a.ID, err)
			}
		}
		return nil
	}
	t0 := time.Now()
	pool := r.pool
	en, err := enroll.Enroll(ctx, pool, enroll.Plan{Prefix: cfg.Database.Prefix, RunID: r.runID, Count: cfg.Run.Agents,
		FirstIndex: cfg.Run.FirstIndex, Keys: func(i int) string { return keys[i-cfg.Run.FirstIndex].PublicBase64() },
		TPMPolicy: profile.TPMPolicy(), IMAPolicyJSON: profile.PolicyJSON(), IMAGenerator: profile.Generator(),
		MBPolicy: mbPolicy(profile)})
	if err != nil {
		return fmt.Errorf("enroll agents: %w", err)
	}
	if en.AgentIDs[0] != agents[0].ID {
		// The ids the client uses must be the ids enrolled; a mismatch would attest agents the verifier lacks.
		return fmt.Errorf("enroll agents: enrolled id %q differs from the client's %q", en.AgentIDs[0], agents[0].ID)
	}
	r.addCloser(func(ctx context.Context) error {
		removed, err := cleanupWithRetry(ctx, r.log, func(ctx context.Context) (enroll.RemovedCounts, error) {
			return en.Cleanup(ctx, pool)
		})
		if err != nil {
			return fmt.Errorf("cleanup of run %s (run `attestload cleanup` with --prefix %s): %w", r.runID, cfg.Database.Prefix, err)
		}
		r.log.Info("removed the run's rows", "component", "enroll", "run_id", r.runID, "removed", removed)
		return nil
	})
	r.log.Info("enrolled agents", "component", "enroll", "agents", cfg.Run.Agents, "run_id", r.runID,
		"database", enroll.RedactURL(cfg.Database.URL), "took", time.Since(t0).Round(time.Millisecond))
	if r.sim != nil {
		if _, err := r.sim.LoadAgents(ctx); err != nil {
			return fmt.Errorf("simulated verifier: load enrolled agents: %w", err)
		}
	}
	return nil
}

// newClient builds the verifier client over a transport that remembers the last transport error (errTap) and
// that tracing may wrap.
func (r *load) newClient(baseURL string, tlsOpts client.TLSOptions, so loadOptions) (*client.Client, *errTap, error) {
	cfg := r.cfg
	n := cfg.Run.Agents
	addrs, warning := sourceAddrs(baseURL, n, tlsOpts.LocalAddrs)
	if warning != "" {
		r.log.Warn(warning, "component", "client")
	} else if len(addrs) > len(cfg.Verifier.LocalAddrs) {
		r.log.Info("agents spread over loopback source addresses, within the verifier's 50 session creations per "+
			"minute per address", "component", "client", "addresses", len(addrs), "first", addrs[0],
			"last", addrs[len(addrs)-1], "agents_per_address", (n+len(addrs)-1)/len(addrs))
	}
	tlsOpts.LocalAddrs = addrs
	for _, w := range loadShapeOf(cfg).startWarnings(cfg) {
		r.log.Warn(w, "component", "daemon")
	}
	tr, counter, connInfo, err := verifierTransport(cfg, tlsOpts, r.sim != nil, r.log, so.Registerer)
	if err != nil {
		return nil, nil, err
	}
	r.conns, r.connInfo = counter, connInfo
	r.addCloser(func(context.Context) error { tr.CloseIdleConnections(); return nil })
	tap := &errTap{rt: tr}
	var rt http.RoundTripper = tap
	if so.WrapTransport != nil {
		rt = so.WrapTransport(rt)
	}
	ccfg := cfg.Verifier.Config(baseURL, rt)
	ccfg.Logger, ccfg.Hooks = r.log.With("component", "client"), so.Hooks
	cl, err := client.New(ccfg)
	if err != nil {
		return nil, nil, fmt.Errorf("verifier client: %w", err)
	}
	return cl, tap, nil
}

// openResults creates the results file and writes its sidecar (the run's description; execute rewrites it with
// the end time and counters).
func (r *load) openResults(profile evidence.Profile, keyCounts map[string]int) error {
	cfg := r.cfg
	var err error
	r.writer, err = results.Create(cfg.Results.Dir, r.start, results.Options{Settings: cfg.Results,
		Logger: r.log.With("component", "results"), OnError: r.onResultsError, RunID: r.runID, OnDiskLow: r.onDiskLow})
	if err != nil {
		return err
	}
	r.addCloser(func(context.Context) error { return r.writer.Close() })
	r.info = record.RunInfo{Schema: record.SchemaVersion, RunID: r.runID, Instance: cfg.Run.Instance,
		Model: cfg.Scheduler.Model, StartTime: unixSeconds(r.start), Agents: cfg.Run.Agents, Workers: cfg.Run.Workers,
		KeyTypes: keyCounts, Profile: profile.Name(), MeasuredBoot: profile.MeasuredBoot() != nil,
		Connections: r.connInfo}
	return results.WriteSidecar(r.writer.Path(), r.info)
}

// verdictOptions resolves verdict.source and adds the verdict watcher's stage to the engine's options.
func (r *load) verdictOptions(opts []engine.Option, reg prometheus.Registerer) ([]engine.Option, error) {
	src, srcName, err := r.verdictSource(r.pool)
	if err != nil {
		return nil, err
	}
	r.verdictSrc = srcName
	if srcName != verdict.SourceNone {
		r.log.Info("verdicts are learned from the "+srcName, "component", "verdict", "source", srcName,
			"timeout", r.cfg.Verdict.Timeout)
	}
	return append(opts, r.verdictStage(src, reg)), nil
}

// newEngine builds the engine for the configured model over the client's runner, with the results file as its
// lossless sink.
func (r *load) newEngine(runner *clientRunner, tap *errTap, opts []engine.Option) error {
	cfg := r.cfg
	sched, err := cfg.Scheduler.Schedule(cfg.Run.Sizing, uint64(r.start.UnixNano()))
	if err != nil {
		return fromEngine(err)
	}
	r.progress = engine.NewProgress(r.start)
	reboots := runner.reboot.RebootEvery > 0 || runner.reboot.RebootProbability > 0
	if reboots && (r.sim == nil || cfg.Simulator.RebootDefect) {
		r.log.Warn("reboot simulation is on: Keylime fails an agent's attestations after its simulated reboot with "+
			"broken_evidence_chain until its IMA log has regrown to its old length (a verifier defect, see "+
			"docs/verifier-conformance.md); expect those fails", "component", "daemon")
	}
	opts = append(opts, engine.WithResultsSink(r.writer), engine.WithLogger(r.log.With("component", "engine")),
		engine.WithQueueBounds(cfg.Results.Buffer, 4096), engine.WithRecordHook(r.onRecord),
		engine.WithTransportErrorDetail(tap.last))
	r.engine, err = engine.New(runner, sched, opts...)
	return err
}

func unixSeconds(t time.Time) float64 { return float64(t.UnixNano()) / 1e9 }

// mbPolicy is the mbpolicies.mb_policy of the profile's agents: the reference state with measured boot, nil (NULL,
// measured boot off) without.
func mbPolicy(p evidence.Profile) []byte {
	if b := p.MeasuredBoot(); b != nil {
		return b.Refstate()
	}
	return nil
}

func mbPolicyText(p evidence.Profile) *string {
	if b := mbPolicy(p); b != nil {
		s := string(b)
		return &s
	}
	return nil
}

// startSim starts the simulated verifier on loopback with TLS and points the client at its CA. With a pool, the
// simulator keeps its agents in that database (the verifier's schema), so enrollment and cleanup run for real.
func (r *load) startSim(ctx context.Context, pool *pgxpool.Pool, tlsOpts *client.TLSOptions) (string, error) {
	dir, err := os.MkdirTemp("", "attestload-sim-")
	if err != nil {
		return "", fmt.Errorf("simulated verifier: %w", err)
	}
	r.addCloser(func(context.Context) error { return os.RemoveAll(dir) })
	scfg := r.cfg.Simulator.Config(r.cfg.Verifier.ExtendTokenOnAttestation, r.cfg.Verdict.PollInterval)
	scfg.TLSDir = dir
	// The simulator logs every verdict at info; in a load run only its warnings are news.
	scfg.Logger = slog.New(minLevel{h: r.log.Handler(), min: slog.LevelWarn}).With("component", "simverifier")
	sim, err := simverifier.New(scfg)
	if err != nil {
		return "", fmt.Errorf("simulated verifier: %w", err)
	}
	r.sim = sim
	if pool != nil {
		if _, err := sim.UseDatabase(ctx, pool); err != nil {
			return "", fmt.Errorf("simulated verifier: %w", err)
		}
	}
	ln, err := net.Listen("tcp", "127.0.0.1:0")
	if err != nil {
		return "", fmt.Errorf("simulated verifier: %w", err)
	}
	sctx, stop := context.WithCancel(context.WithoutCancel(ctx))
	r.simStop = stop
	r.simDone = make(chan error, 1)
	go func() { r.simDone <- sim.Serve(sctx, ln) }()
	r.addCloser(func(context.Context) error {
		stop()
		err := <-r.simDone
		sim.Close()
		return err
	})
	tlsOpts.CAFile = filepath.Join(dir, "ca.crt")
	tlsOpts.InsecureSkipVerify = false
	url := "https://" + ln.Addr().String()
	where := "in memory"
	if pool != nil {
		where = "in the database"
	}
	r.log.Info("no verifier configured (verifier.url): running against the simulated verifier, agents enrolled "+where,
		"component", "simverifier", "url", url)
	return url, nil
}

func (r *load) handleLeftovers(ctx context.Context, pool *pgxpool.Pool) error {
	left, err := enroll.FindLeftovers(ctx, pool, r.cfg.Database.Prefix)
	if err != nil {
		return fmt.Errorf("look for leftovers of earlier runs: %w", err)
	}
	if len(left) == 0 {
		return nil
	}
	if !r.cfg.Database.CleanupLeftovers {
		for _, l := range left {
			r.log.Warn("rows of an earlier run are still in the database; remove them with `attestload cleanup` "+
				"or database.cleanup_leftovers", "component", "enroll", "run_id", l.RunID, "agents", l.Agents,
				"prefix", l.Prefix)
		}
		return nil
	}
	removed, err := enroll.CleanupPrefix(ctx, pool, r.cfg.Database.Prefix)
	if err != nil {
		return fmt.Errorf("remove leftovers of earlier runs: %w", err)
	}
	r.log.Info("removed leftovers of earlier runs", "component", "enroll", "runs", removed.Runs,
		"removed", removed.RemovedCounts)
	return nil
}

func (r *load) addCloser(f func(context.Context) error) {
	r.mu.Lock()
	r.closers = append(r.closers, f)
	r.mu.Unlock()
}

// close undoes newLoad in reverse order: the results file is closed (flushed, synced), the run's rows removed
// from the database, the simulated verifier stopped, connections closed. Give it a context with a deadline; the
// first call does the work, later calls return its error.
func (r *load) close(ctx context.Context) error {
	r.mu.Lock()
	defer r.mu.Unlock()
	r.engineAbortForClose()
	if r.closed {
		return r.closeErr
	}
	r.closed = true
	var errs []error
	for i := len(r.closers) - 1; i >= 0; i-- {
		errs = append(errs, r.closers[i](ctx))
	}
	r.closeErr = errors.Join(errs...)
	return r.closeErr
}

// resultsPath is the run's (first) results file.
func (r *load) resultsPath() string { return r.writer.Path() }

// verdictSourceName is what verdict.source resolved to: simulator, database, admin_api or none.
func (r *load) verdictSourceName() string { return r.verdictSrc }

// abort ends every running cycle at once (the second signal) and stops the wait for the last verdicts.
func (r *load) abort() {
	r.aborted.Store(true)
	if w := r.watcher.Load(); w != nil {
		w.Hurry()
	}
	r.engine.Abort()
}

func (r *load) onResultsError(err error) {
	r.emu.Lock()
	if r.writeErr == nil {
		r.writeErr = err
	}
	stop := r.stopRun
	r.emu.Unlock()
	if r.cfg.Results.OnError == "stop" && stop != nil {
		r.log.Error("results file failed; stopping the run (results.on_error: stop)", "component", "results", "err", err)
		stop()
	}
}

// onDiskLow stops the run whatever results.on_error says: the disk guard exists to end the run while there is
// still room for the records of the cycles in flight.
func (r *load) onDiskLow(err error) {
	r.emu.Lock()
	if r.diskErr == nil {
		r.diskErr = err
	}
	stop := r.stopRun
	r.emu.Unlock()
	r.log.Error("stopping the run: the results disk is almost full (results.min_free_disk); in-flight cycles "+
		"drain and their records are written", "component", "results", "err", err)
	if stop != nil {
		stop()
	}
}

// resultsBytes is what the results took: bytes on disk over every part, uncompressed JSONL bytes and records
// written. After Close the figures are final.
func (r *load) resultsBytes() (disk, raw int64, records uint64) {
	return r.writer.DiskBytes(), r.writer.RawBytes(), r.writer.Written()
}

// snapshot returns the live figures for a status line.
func (r *load) snapshot() engine.Snapshot {
	return r.progress.Snapshot(time.Now(), r.engine.InFlight())
}

// cycleCounts is the cycles finished so far: passed, and failed or aborted.
func (r *load) cycleCounts() (ok, failed uint64) {
	s := r.snapshot()
	return s.OK, s.Fail + s.Aborted
}

func (r *load) onRecord(rec *record.Record) {
	r.progress.Observe(rec)
	if r.verbose != nil {
		r.vmu.Lock()
		writeVerbose(r.verbose, rec)
		r.vmu.Unlock()
	}
}

// execute runs the load until the schedule completes, ctx is cancelled (first signal), the duration passes or the
// results file fails with results.on_error stop. The sidecar is rewritten with the end time and counters. It does
// not call close.
func (r *load) execute(ctx context.Context) (Summary, error) {
	ctx, cancel := context.WithCancel(ctx)
	defer cancel()
	r.emu.Lock()
	r.stopRun = cancel
	failed := r.writeErr != nil
	full := r.diskErr != nil
	r.emu.Unlock()
	if failed && r.cfg.Results.OnError == "stop" || full {
		cancel()
	}
	// The sidecar's start is the load's: setup (keys, enrollment) is not part of the run's duration.
	loadStart := time.Now()
	r.info.StartTime = unixSeconds(loadStart)
	early := make(chan struct{})
	go func() {
		defer close(early)
		loadShapeOf(r.cfg).watchEarly(ctx, r.cfg, loadStart, r.cycleCounts,
			func(w string) { r.log.Warn(w, "component", "daemon") })
	}()
	st, err := r.engine.Run(ctx)
	cancel()
	<-early
	end := time.Now()
	r.done.Store(true)
	r.info.EndTime = unixSeconds(end)
	fillConnInfo(r.info.Connections, r.conns)
	r.info.DroppedCycles = int64(st.Dropped)
	r.info.LateCycles = int64(st.Late)
	r.info.Outages = st.Outages
	sum := Summary{RunID: r.runID, ResultsPath: r.writer.Path(), ResultsPaths: r.writer.Paths(), Stats: st,
		Elapsed: end.Sub(r.start), LoadTime: end.Sub(loadStart), Started: true}
	if serr := results.WriteSidecar(r.writer.Path(), r.info); serr != nil {
		err = errors.Join(err, serr)
	}
	r.emu.Lock()
	sum.ResultsErr = r.writeErr
	sum.DiskLow = r.diskErr
	r.emu.Unlock()
	if err != nil {
		sum.ResultsErr = errors.Join(sum.ResultsErr, err)
	}
	return sum, err
}

// engineAbortForClose stops cycles that might still run when close is called without execute having returned
// (newLoad failed half-way, or a caller gave up); a finished engine ignores it.
func (r *load) engineAbortForClose() {
	if r.engine != nil {
		r.engine.Abort()
	}
}

// finished reports whether execute has returned: the counts are final.
func (r *load) finished() bool { return r.done.Load() }

// errTap remembers the text of the last transport error (a refused connection, an x509 complaint) so that the
// warning about an unreachable verifier can say exactly what went wrong. Records keep only the error class.
type errTap struct {
	rt  http.RoundTripper
	err atomic.Pointer[string]
}

func (t *errTap) RoundTrip(req *http.Request) (*http.Response, error) {
	resp, err := t.rt.RoundTrip(req)
	if err != nil && req.Context().Err() == nil {
		s := err.Error()
		t.err.Store(&s)
	}
	return resp, err
}

func (t *errTap) last() string {
	if s := t.err.Load(); s != nil {
		return *s
	}
	return ""
}

// clientRunner adapts the attestation client to the engine.
type clientRunner struct {
	c        *client.Client
	agents   []*client.Agent
	runID    string
	instance string
	reboot   evidence.Settings // reboot_every, reboot_probability
}

// rebootDue says whether the agent reboots before this task. The first cycle never reboots: the agent has just
// booted.
func (cr *clientRunner) rebootDue(task int) bool {
	if task == 0 {
		return false
	}
	if every := cr.reboot.RebootEvery; every > 0 && task%every == 0 {
		return true
	}
	return cr.reboot.RebootProbability > 0 && rand.Float64() < cr.reboot.RebootProbability
}

func (cr *clientRunner) Cycle(ctx context.Context, agent, task, worker int) *record.Record {
	a := cr.agents[agent]
	rebooted := cr.rebootDue(task)
	if rebooted {
		a.Reboot()
	}
	rec := cr.c.Cycle(ctx, a, task, worker)
	if rec != nil {
		rec.Rebooted = rebooted
		rec.RunID = cr.runID
		rec.Instance = cr.instance
		if rec.Schema == 0 {
			rec.Schema = record.SchemaVersion
		}
	}
	return rec
}

func (cr *clientRunner) NotBefore(agent int) time.Time { return cr.agents[agent].NotBefore }

// writeVerbose prints the old tool's request lines for one finished cycle, one per HTTP attempt:
//
//	a<agent>|t<task>|c<n> (w<worker>): [ok] create attestation <task> for <agent id> in 52ms
//	a<agent>|t<task>|u<n> (w<worker>): [retry] update attestation <task> for <agent id> performed too early, retrying in 2 seconds
//	a<agent>|t<task>|c<n> (w<worker>): [fail] create attestation <task> for <agent id> failed after 5.5s (status 500, error http_status)
//
// c and u number the create (POST) and update (PATCH) attempts from 0 as the old tool did; the PoP session
// attempts, which it never made, are numbered s0, s1, … Each line is preceded by an [info] line with the method
// and URL, as the old tool printed in verbose mode.
func writeVerbose(w io.Writer, rec *record.Record) {
	var b strings.Builder
	for _, list := range []struct {
		letter   string
		attempts []record.Attempt
	}{{"s", rec.SessionAttempts}, {"c", rec.CreateAttempts}, {"u", rec.UpdateAttempts}} {
		for i, a := range list.attempts {
			id := fmt.Sprintf("a%d|t%d|%s%d (w%d)", rec.AgentIndex, rec.TaskIndex, list.letter, i, rec.WorkerIndex)
			fmt.Fprintf(&b, "%s: [info] %s %s\n", id, a.Method, a.URL)
			op := fmt.Sprintf("%s attestation %d for %s", a.Action, rec.TaskIndex, rec.AgentID)
			switch a.Action {
			case record.ActionSessionCreate:
				op = "create session for " + rec.AgentID
			case record.ActionSessionPoP:
				op = "prove possession (PoP) for " + rec.AgentID
			}
			dur := "--"
			if a.Duration != nil {
				dur = pyfmt.Duration(*a.Duration)
			}
			switch {
			case a.OK != nil && *a.OK:
				fmt.Fprintf(&b, "%s: [ok] %s in %s\n", id, op, dur)
			case a.RetryAfter != nil && *a.RetryAfter > 0:
				issue := "performed too early"
				if a.Conflicts != nil && *a.Conflicts {
					issue = "already in progress"
				} else if a.Status != nil && *a.Status != 429 {
					issue = fmt.Sprintf("answered %d", *a.Status)
				}
				unit := "seconds"
				if *a.RetryAfter == 1 {
					unit = "second"
				}
				fmt.Fprintf(&b, "%s: [retry] %s %s, retrying in %d %s\n", id, op, issue, *a.RetryAfter, unit)
			default:
				var why []string
				if a.Status != nil {
					why = append(why, fmt.Sprintf("status %d", *a.Status))
				}
				if a.Error != nil {
					why = append(why, "error "+a.Error.String())
				}
				if a.Code != "" {
					why = append(why, "code "+a.Code)
				}
				fmt.Fprintf(&b, "%s: [fail] %s failed after %s (%s)\n", id, op, dur, strings.Join(why, ", "))
			}
		}
	}
	io.WriteString(w, b.String())
}

// minLevel drops records below min.
type minLevel struct {
	h   slog.Handler
	min slog.Level
}

func (m minLevel) Enabled(ctx context.Context, l slog.Level) bool {
	return l >= m.min && m.h.Enabled(ctx, l)
}
func (m minLevel) Handle(ctx context.Context, r slog.Record) error { return m.h.Handle(ctx, r) }
func (m minLevel) WithAttrs(as []slog.Attr) slog.Handler {
	return minLevel{h: m.h.WithAttrs(as), min: m.min}
}
func (m minLevel) WithGroup(name string) slog.Handler {
	return minLevel{h: m.h.WithGroup(name), min: m.min}
}

// cleanupAttempts bounds cleanup retries. The verifier may still be verifying the run's last evidence and writing
// its attestation rows while cleanup deletes them; PostgreSQL then aborts one side with a deadlock or
// serialization failure, and the deletion succeeds a moment later.
const cleanupAttempts = 5

func cleanupWithRetry(ctx context.Context, log *slog.Logger, f func(context.Context) (enroll.RemovedCounts, error)) (enroll.RemovedCounts, error) {
	var lastErr error
	for attempt := 1; attempt <= cleanupAttempts; attempt++ {
		removed, err := f(ctx)
		if err == nil {
			return removed, nil
		}
		lastErr = err
		var pgErr *pgconn.PgError
		if !errors.As(err, &pgErr) || (pgErr.Code != "40P01" && pgErr.Code != "40001") || attempt == cleanupAttempts {
			break
		}
		log.Warn("cleanup collided with the verifier's writes; retrying", "component", "enroll", "attempt", attempt,
			"sqlstate", pgErr.Code)
		t := time.NewTimer(time.Duration(attempt) * 500 * time.Millisecond)
		select {
		case <-ctx.Done():
			t.Stop()
			return enroll.RemovedCounts{}, errors.Join(lastErr, ctx.Err())
		case <-t.C:
		}
	}
	return enroll.RemovedCounts{}, lastErr
}

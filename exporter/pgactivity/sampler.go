package pgactivity

import (
	"context"
	"errors"
	"fmt"
	"log/slog"
	"sort"
	"strconv"
	"strings"
	"sync"
	"time"

	"github.com/jackc/pgx/v5"
	"github.com/prometheus/client_golang/prometheus"

	"github.com/attestload/attestload/exporter/metrics"
)

// TopN is the fixed number of normalised query texts exported per sample.
const TopN = 10

// Metric names, all under attestload_pg_ so they never collide with postgres_exporter's pg_*. They are defined in
// exporter/metrics/names.go, the one list of attestload's names.
const (
	NameBackends          = metrics.NamePGBackends
	NameBackendsWaiting   = metrics.NamePGBackendsWaiting
	NameWaitEvents        = metrics.NamePGWaitEvents
	NameOldestXactAge     = metrics.NamePGOldestXactAge
	NameOldestQueryAge    = metrics.NamePGOldestQueryAge
	NameTopQueries        = metrics.NamePGTopQueries
	NameCommits           = metrics.NamePGCommits
	NameRollbacks         = metrics.NamePGRollbacks
	NameDeadlocks         = metrics.NamePGDeadlocks
	NameTuples            = metrics.NamePGTuples
	NameBlocks            = metrics.NamePGBlocks
	NameTempBytes         = metrics.NamePGTempBytes
	NameLocks             = metrics.NamePGLocks
	NameUp                = metrics.NamePGUp
	NameScrapeErrors      = metrics.NamePGScrapeErrors
	NameSampleDuration    = metrics.NamePGSampleDuration
	NameLastSampleSeconds = metrics.NamePGLastSample
)

// Names lists every metric this package exports.
func Names() []string {
	return []string{NameBackends, NameBackendsWaiting, NameWaitEvents, NameOldestXactAge, NameOldestQueryAge,
		NameTopQueries, NameCommits, NameRollbacks, NameDeadlocks, NameTuples, NameBlocks, NameTempBytes, NameLocks,
		NameUp, NameScrapeErrors, NameSampleDuration, NameLastSampleSeconds}
}

// Closed label sets: anything else the server reports is counted under "other".
var (
	states = []string{"active", "idle", "idle_in_transaction", "idle_in_transaction_aborted", "fastpath",
		"disabled"}
	waitTypes = []string{"Activity", "BufferPin", "Client", "Extension", "IO", "IPC", "Lock", "LWLock",
		"Timeout"}
	lockModes = []string{"AccessShareLock", "RowShareLock", "RowExclusiveLock", "ShareUpdateExclusiveLock",
		"ShareLock", "ShareRowExclusiveLock", "ExclusiveLock", "AccessExclusiveLock"}
)

func stateLabel(s string) string {
	switch s {
	case "active", "idle", "disabled":
		return s
	case "idle in transaction":
		return "idle_in_transaction"
	case "idle in transaction (aborted)":
		return "idle_in_transaction_aborted"
	case "fastpath function call":
		return "fastpath"
	}
	return "other"
}

func oneOf(v string, set []string) string {
	for _, s := range set {
		if s == v {
			return v
		}
	}
	return "other"
}

// Sample is one reading of the verifier's database.
type Sample struct {
	Backends       map[string]float64 // by state label
	Waiting        map[string]float64 // by wait event type label
	WaitEvents     []Count            // top TopN (type and event joined by "/")
	OldestXactAge  float64
	OldestQueryAge float64
	TopQueries     []Count // current statement of active backends, last statement of the others
	Commits        float64
	Rollbacks      float64
	Deadlocks      float64
	Tuples         map[string]float64 // returned, fetched, inserted, updated, deleted
	BlocksRead     float64
	BlocksHit      float64
	TempBytes      float64
	Locks          map[[2]string]float64 // mode, granted
}

// Count is a label value with a number of backends.
type Count struct {
	Key string
	N   float64
}

// Sampler samples pg_stat_activity, pg_stat_database and pg_locks of one database over one dedicated connection
// and exposes the last sample as metrics. A failing sample never stops the run: it is counted, logged once per
// failing streak, and retried with backoff.
type Sampler struct {
	cfg      *pgx.ConnConfig
	interval time.Duration
	timeout  time.Duration
	log      *slog.Logger

	mu   sync.Mutex
	last *Sample
	up   bool
	took float64
	when float64

	scrapeErrors prometheus.Counter
	descs        map[string]*prometheus.Desc

	conn   *pgx.Conn
	cancel context.CancelFunc
	done   chan struct{}
}

// Option configures a Sampler.
type Option func(*Sampler)

// WithLogger sets the logger (default: discard).
func WithLogger(l *slog.Logger) Option { return func(s *Sampler) { s.log = l } }

// New parses dbURL (never echoing its password), registers the attestload_pg_* metrics on reg, and returns a
// Sampler. Start begins sampling; nothing connects before that.
func New(dbURL string, interval time.Duration, reg prometheus.Registerer, opts ...Option) (*Sampler, error) {
	if interval <= 0 {
		return nil, fmt.Errorf("pgactivity: interval %v must be positive", interval)
	}
	if reg == nil {
		return nil, errors.New("pgactivity: nil registerer")
	}
	cfg, err := pgx.ParseConfig(dbURL)
	if err != nil {
		// pgx's parse errors can quote the connection string; say only what is wrong with it.
		return nil, errors.New("pgactivity: database URL is not a valid PostgreSQL connection string")
	}
	cfg.RuntimeParams["application_name"] = "attestload-pgactivity"
	s := &Sampler{cfg: cfg, interval: interval, timeout: min(max(interval, time.Second), 10*time.Second),
		log: slog.New(slog.DiscardHandler), done: make(chan struct{})}
	for _, o := range opts {
		o(s)
	}
	s.log = s.log.With("component", "pgactivity")
	s.scrapeErrors = prometheus.NewCounter(prometheus.CounterOpts{Name: NameScrapeErrors,
		Help: "Samples of the verifier's database that failed."})
	d := func(name, help string, labels ...string) {
		s.descs[name] = prometheus.NewDesc(name, help, labels, nil)
	}
	s.descs = map[string]*prometheus.Desc{}
	d(NameBackends, "Backends connected to the verifier's database, by state.", "state")
	d(NameBackendsWaiting, "Backends of the verifier's database waiting, by wait event type.", "wait_event_type")
	d(NameWaitEvents, "Backends waiting on the most frequent wait events (top "+strconv.Itoa(TopN)+").", "wait_event_type", "wait_event")
	d(NameOldestXactAge, "Age of the oldest open transaction in the verifier's database.")
	d(NameOldestQueryAge, "Age of the oldest running query in the verifier's database.")
	d(NameTopQueries, "Backends whose current statement (when active) or last statement (otherwise), normalised, is one of the "+
		"most frequent (top "+strconv.Itoa(TopN)+").", "rank", "query")
	d(NameCommits, "Transactions committed in the verifier's database (pg_stat_database.xact_commit).")
	d(NameRollbacks, "Transactions rolled back in the verifier's database (pg_stat_database.xact_rollback).")
	d(NameDeadlocks, "Deadlocks detected in the verifier's database.")
	d(NameTuples, "Tuples processed in the verifier's database, by operation.", "operation")
	d(NameBlocks, "Blocks read from disk or found in shared buffers, by source.", "source")
	d(NameTempBytes, "Bytes written to temporary files by the verifier's database.")
	d(NameLocks, "Locks held or awaited by backends of the verifier's database, by mode.", "mode", "granted")
	d(NameUp, "1 when the last sample of the verifier's database succeeded.")
	d(NameSampleDuration, "How long the last sample took.")
	d(NameLastSampleSeconds, "Unix time of the last successful sample.")
	if err := reg.Register(s.scrapeErrors); err != nil {
		return nil, fmt.Errorf("pgactivity: register: %w", err)
	}
	if err := reg.Register(collector{s}); err != nil {
		return nil, fmt.Errorf("pgactivity: register: %w", err)
	}
	return s, nil
}

// Start samples in the background until ctx ends or Close is called. Call it once.
func (s *Sampler) Start(ctx context.Context) {
	ctx, s.cancel = context.WithCancel(ctx)
	go s.loop(ctx)
}

// Close stops sampling and closes the connection.
func (s *Sampler) Close() error {
	if s.cancel == nil {
		return nil
	}
	s.cancel()
	<-s.done
	return nil
}

func (s *Sampler) loop(ctx context.Context) {
	defer close(s.done)
	defer s.disconnect()
	failures := 0
	wait := time.Duration(0)
	for {
		select {
		case <-ctx.Done():
			return
		case <-time.After(wait):
		}
		err := s.SampleOnce(ctx)
		switch {
		case err == nil:
			if failures > 0 {
				s.log.Info("database sampling recovered", "failed_samples", failures)
			}
			failures, wait = 0, s.interval
		case ctx.Err() != nil:
			return
		default:
			if failures == 0 {
				s.log.Warn("database sampling failing; retrying with backoff", "err", err)
			}
			failures++
			// Back off so a struggling server gets fewer connection attempts, never more than a minute apart.
			wait = min(s.interval<<min(failures, 6), max(time.Minute, s.interval))
		}
	}
}

func (s *Sampler) disconnect() {
	if s.conn != nil {
		ctx, cancel := context.WithTimeout(context.Background(), time.Second)
		_ = s.conn.Close(ctx)
		cancel()
		s.conn = nil
	}
}

// SampleOnce takes one sample now (connecting if needed). Start calls it on its schedule; it is exported for
// tests and for a final sample. It must not be called concurrently with a running Start loop.
func (s *Sampler) SampleOnce(ctx context.Context) error {
	start := time.Now()
	ctx, cancel := context.WithTimeout(ctx, s.timeout)
	defer cancel()
	smp, err := s.sample(ctx)
	took := time.Since(start).Seconds()
	s.mu.Lock()
	defer s.mu.Unlock()
	s.took = took
	if err != nil {
		s.up = false
		s.scrapeErrors.Inc()
		return err
	}
	s.up = true
	s.last = smp
	s.when = float64(time.Now().UnixNano()) / 1e9
	return nil
}

func (s *Sampler) sample(ctx context.Context) (*Sample, error) {
	if s.conn == nil || s.conn.IsClosed() {
		c, err := pgx.ConnectConfig(ctx, s.cfg)
		if err != nil {
			return nil, fmt.Errorf("pgactivity: connect: %w", err)
		}
		s.conn = c
	}
	smp, err := query(ctx, s.conn)
	if err != nil {
		// A broken connection is replaced at the next attempt; a query error on a healthy one costs nothing.
		s.disconnect()
		return nil, err
	}
	return smp, nil
}

const activitySQL = `SELECT coalesce(state, ''), coalesce(wait_event_type, ''), coalesce(wait_event, ''),
  coalesce(extract(epoch FROM now() - xact_start), 0)::float8,
  CASE WHEN state = 'active' THEN coalesce(extract(epoch FROM now() - query_start), 0) ELSE 0 END::float8,
  coalesce(query, '')
FROM pg_stat_activity
WHERE datname = current_database() AND pid <> pg_backend_pid() AND backend_type = 'client backend'`

const databaseSQL = `SELECT xact_commit, xact_rollback, deadlocks, tup_returned, tup_fetched, tup_inserted,
  tup_updated, tup_deleted, blks_read, blks_hit, temp_bytes
FROM pg_stat_database WHERE datname = current_database()`

const locksSQL = `SELECT l.mode, l.granted, count(*)::float8
FROM pg_locks l JOIN pg_stat_activity a ON a.pid = l.pid
WHERE a.datname = current_database() AND l.pid <> pg_backend_pid()
GROUP BY l.mode, l.granted`

func query(ctx context.Context, conn *pgx.Conn) (*Sample, error) {
	smp := &Sample{Backends: map[string]float64{}, Waiting: map[string]float64{}, Tuples: map[string]float64{},
		Locks: map[[2]string]float64{}}
	// Every state, wait type and lock mode is exported, 0 when absent, so that "none right now" reads as 0 on a
	// graph rather than as no data (locks, in particular, exist only while a transaction is open).
	for _, st := range states {
		smp.Backends[st] = 0
	}
	for _, wt := range waitTypes {
		smp.Waiting[wt] = 0
	}
	for _, m := range lockModes {
		smp.Locks[[2]string{m, "true"}] = 0
		smp.Locks[[2]string{m, "false"}] = 0
	}
	waits := map[string]float64{}
	queries := map[string]float64{}
	var state, wtype, wevent, q string
	var xage, qage float64
	rows, err := conn.Query(ctx, activitySQL)
	if err != nil {
		return nil, fmt.Errorf("pgactivity: pg_stat_activity: %w", err)
	}
	_, err = pgx.ForEachRow(rows, []any{&state, &wtype, &wevent, &xage, &qage, &q}, func() error {
		smp.Backends[stateLabel(state)]++
		if wtype != "" {
			smp.Waiting[oneOf(wtype, waitTypes)]++
			waits[oneOf(wtype, waitTypes)+"/"+wevent]++
		}
		smp.OldestXactAge = max(smp.OldestXactAge, xage)
		smp.OldestQueryAge = max(smp.OldestQueryAge, qage)
		if q != "" {
			queries[Normalize(q)]++
		}
		return nil
	})
	if err != nil {
		return nil, fmt.Errorf("pgactivity: pg_stat_activity: %w", err)
	}
	smp.WaitEvents = top(waits, TopN)
	smp.TopQueries = top(queries, TopN)

	var blksRead, blksHit, tRet, tFet, tIns, tUpd, tDel int64
	var commits, rollbacks, deadlocks, temp int64
	err = conn.QueryRow(ctx, databaseSQL).Scan(&commits, &rollbacks, &deadlocks, &tRet, &tFet, &tIns, &tUpd, &tDel,
		&blksRead, &blksHit, &temp)
	if err != nil {
		return nil, fmt.Errorf("pgactivity: pg_stat_database: %w", err)
	}
	smp.Commits, smp.Rollbacks, smp.Deadlocks, smp.TempBytes = float64(commits), float64(rollbacks), float64(deadlocks), float64(temp)
	smp.Tuples = map[string]float64{"returned": float64(tRet), "fetched": float64(tFet), "inserted": float64(tIns),
		"updated": float64(tUpd), "deleted": float64(tDel)}
	smp.BlocksRead, smp.BlocksHit = float64(blksRead), float64(blksHit)

	var mode string
	var granted bool
	var n float64
	rows, err = conn.Query(ctx, locksSQL)
	if err != nil {
		return nil, fmt.Errorf("pgactivity: pg_locks: %w", err)
	}
	_, err = pgx.ForEachRow(rows, []any{&mode, &granted, &n}, func() error {
		smp.Locks[[2]string{oneOf(mode, lockModes), strconv.FormatBool(granted)}] += n
		return nil
	})
	if err != nil {
		return nil, fmt.Errorf("pgactivity: pg_locks: %w", err)
	}
	return smp, nil
}

// top returns the n largest counts, ties broken by key so the exported set is stable between samples.
func top(m map[string]float64, n int) []Count {
	out := make([]Count, 0, len(m))
	for k, v := range m {
		out = append(out, Count{k, v})
	}
	sort.Slice(out, func(i, j int) bool {
		if out[i].N != out[j].N {
			return out[i].N > out[j].N
		}
		return out[i].Key < out[j].Key
	})
	if len(out) > n {
		out = out[:n]
	}
	return out
}

// Last returns the last successful sample, nil before the first.
func (s *Sampler) Last() *Sample {
	s.mu.Lock()
	defer s.mu.Unlock()
	return s.last
}

// collector exposes the last sample. Values are replaced as a whole per sample, so a scrape never sees half of
// one sample and never carries label values from a sample that is gone.
type collector struct{ s *Sampler }

func (c collector) Describe(ch chan<- *prometheus.Desc) {
	for _, d := range c.s.descs {
		ch <- d
	}
}

func (c collector) Collect(ch chan<- prometheus.Metric) {
	s := c.s
	s.mu.Lock()
	last, up, took, when := s.last, s.up, s.took, s.when
	s.mu.Unlock()
	emit := func(t prometheus.ValueType, name string, v float64, labels ...string) {
		// NewConstMetric, not Must: a label value the client library refuses is skipped, never a panic in a scrape.
		if m, err := prometheus.NewConstMetric(s.descs[name], t, v, labels...); err == nil {
			ch <- m
		}
	}
	g := func(name string, v float64, labels ...string) { emit(prometheus.GaugeValue, name, v, labels...) }
	k := func(name string, v float64, labels ...string) { emit(prometheus.CounterValue, name, v, labels...) }
	g(NameUp, map[bool]float64{true: 1, false: 0}[up])
	g(NameSampleDuration, took)
	if last == nil {
		return
	}
	g(NameLastSampleSeconds, when)
	for st, v := range last.Backends {
		g(NameBackends, v, st)
	}
	for wt, v := range last.Waiting {
		g(NameBackendsWaiting, v, wt)
	}
	for _, w := range last.WaitEvents {
		typ, ev, _ := strings.Cut(w.Key, "/")
		g(NameWaitEvents, w.N, typ, ev)
	}
	g(NameOldestXactAge, last.OldestXactAge)
	g(NameOldestQueryAge, last.OldestQueryAge)
	for i, q := range last.TopQueries {
		g(NameTopQueries, q.N, strconv.Itoa(i+1), q.Key)
	}
	k(NameCommits, last.Commits)
	k(NameRollbacks, last.Rollbacks)
	k(NameDeadlocks, last.Deadlocks)
	for op, v := range last.Tuples {
		k(NameTuples, v, op)
	}
	k(NameBlocks, last.BlocksRead, "read")
	k(NameBlocks, last.BlocksHit, "hit")
	k(NameTempBytes, last.TempBytes)
	for mg, v := range last.Locks {
		g(NameLocks, v, mg[0], mg[1])
	}
}

package pgactivity

import (
	"context"
	"log/slog"
	"net"
	"slices"
	"strings"
	"sync"
	"testing"
	"time"

	"github.com/jackc/pgx/v5"
	"github.com/prometheus/client_golang/prometheus"
	"github.com/prometheus/client_golang/prometheus/testutil"
	dto "github.com/prometheus/client_model/go"

	"github.com/attestload/attestload/internal/pgtest"
)

func TestNormalize(t *testing.T) {
	for _, c := range []struct{ in, want string }{
		{"SELECT * FROM attestations WHERE agent_id = 'lt-agent-1' AND index = 42",
			"SELECT * FROM attestations WHERE agent_id = ? AND index = ?"},
		{"select  a\n\tfrom t where x in (1, 2, 3,4) -- trailing\n", "select a from t where x in (?)"},
		{"UPDATE t SET v = 'it''s' , w=1.5e-3 WHERE id = $1", "UPDATE t SET v = ? , w=? WHERE id = ?"},
		{"INSERT INTO t VALUES (E'\\x00', $$body$$, $tag$x$tag$, X'ff')", "INSERT INTO t VALUES (?)"},
		{"SELECT col1, t2.c3 FROM t2 /* hint */ WHERE \"Quoted 1\" = 7", "SELECT col1, t2.c3 FROM t2 WHERE \"Quoted 1\" = ?"},
		{"SELECT 'unterminated", "SELECT ?"},
	} {
		if got := Normalize(c.in); got != c.want {
			t.Errorf("Normalize(%q)\n got %q\nwant %q", c.in, got, c.want)
		}
	}
	long := "SELECT " + strings.Repeat("column_name_é, ", 40) + "x FROM t"
	if got := Normalize(long); len(got) > MaxQueryLen || !strings.HasPrefix(got, "SELECT column_name_é") {
		t.Errorf("long query: %d bytes %q", len(got), got)
	}
}

func gauge(t *testing.T, reg *prometheus.Registry, name string, labels map[string]string) (float64, bool) {
	t.Helper()
	mfs, err := reg.Gather()
	if err != nil {
		t.Fatal(err)
	}
	for _, mf := range mfs {
		if mf.GetName() != name {
			continue
		}
	next:
		for _, m := range mf.GetMetric() {
			for k, v := range labels {
				found := false
				for _, lp := range m.GetLabel() {
					if lp.GetName() == k && lp.GetValue() == v {
						found = true
					}
				}
				if !found {
					continue next
				}
			}
			return value(m), true
		}
	}
	return 0, false
}

func value(m *dto.Metric) float64 {
	switch {
	case m.Gauge != nil:
		return m.GetGauge().GetValue()
	case m.Counter != nil:
		return m.GetCounter().GetValue()
	}
	return 0
}

// TestSampleAgainstPostgres makes activity the sampler must see: one session idle in a transaction holding an
// exclusive lock, one running a slow query, then checks the exported values.
func TestSampleAgainstPostgres(t *testing.T) {
	dbURL := pgtest.NewDatabase(t)
	ctx, cancel := context.WithTimeout(context.Background(), 30*time.Second)
	defer cancel()

	holder, err := pgx.Connect(ctx, dbURL)
	if err != nil {
		t.Fatal(err)
	}
	defer holder.Close(context.Background())
	for _, q := range []string{"CREATE TABLE lt_t (id int)", "INSERT INTO lt_t VALUES (1), (2)", "BEGIN",
		"LOCK TABLE lt_t IN ACCESS EXCLUSIVE MODE"} {
		if _, err := holder.Exec(ctx, q); err != nil {
			t.Fatalf("%s: %v", q, err)
		}
	}
	sleeper, err := pgx.Connect(ctx, dbURL)
	if err != nil {
		t.Fatal(err)
	}
	defer sleeper.Close(context.Background())
	var wg sync.WaitGroup
	wg.Add(1)
	sleepCtx, stopSleep := context.WithCancel(ctx)
	go func() {
		defer wg.Done()
		_, _ = sleeper.Exec(sleepCtx, "SELECT pg_sleep(10), 'lt-secret-literal'")
	}()
	defer wg.Wait()
	defer stopSleep() // cancels the sleeping query once the checks are done

	reg := prometheus.NewRegistry()
	s, err := New(dbURL, time.Second, reg)
	if err != nil {
		t.Fatal(err)
	}
	defer s.Close()
	// The sleeping query may take a moment to show as active.
	deadline := time.Now().Add(5 * time.Second)
	for {
		if err := s.SampleOnce(ctx); err != nil {
			t.Fatal(err)
		}
		if v, _ := gauge(t, reg, NameBackends, map[string]string{"state": "active"}); v >= 1 || time.Now().After(deadline) {
			break
		}
		time.Sleep(50 * time.Millisecond)
	}
	defer s.disconnect()

	checks := []struct {
		name   string
		labels map[string]string
		min    float64
	}{
		{NameUp, nil, 1},
		{NameBackends, map[string]string{"state": "active"}, 1},
		{NameBackends, map[string]string{"state": "idle_in_transaction"}, 1},
		{NameLocks, map[string]string{"mode": "AccessExclusiveLock", "granted": "true"}, 1},
		{NameBackendsWaiting, map[string]string{"wait_event_type": "Timeout"}, 1},
		// Absent modes and wait types are exported as 0, not left out (min 0: present is enough).
		{NameLocks, map[string]string{"mode": "ShareRowExclusiveLock", "granted": "false"}, 0},
		{NameBackendsWaiting, map[string]string{"wait_event_type": "BufferPin"}, 0},
		{NameWaitEvents, map[string]string{"wait_event_type": "Timeout", "wait_event": "PgSleep"}, 1},
		{NameCommits, nil, 1},
		{NameTuples, map[string]string{"operation": "inserted"}, 0}, // stats are flushed lazily; present is enough
		{NameBlocks, map[string]string{"source": "hit"}, 1},
		{NameLastSampleSeconds, nil, 1},
	}
	for _, c := range checks {
		v, ok := gauge(t, reg, c.name, c.labels)
		if !ok || v < c.min {
			t.Errorf("%s%v = %v (present %v), want at least %v", c.name, c.labels, v, ok, c.min)
		}
	}
	// Top queries: the active backend's current statement and the idle-in-transaction backend's last one, each
	// once, literals stripped, at whatever rank the tie-break gives them.
	ranked := map[string]float64{}
	mfs, err := reg.Gather()
	if err != nil {
		t.Fatal(err)
	}
	for _, mf := range mfs {
		if mf.GetName() != NameTopQueries {
			continue
		}
		for _, m := range mf.GetMetric() {
			for _, l := range m.GetLabel() {
				if l.GetName() == "query" {
					ranked[l.GetValue()] += m.GetGauge().GetValue()
				}
			}
		}
	}
	for _, q := range []string{"SELECT pg_sleep(?), ?", "LOCK TABLE lt_t IN ACCESS EXCLUSIVE MODE"} {
		if ranked[q] != 1 {
			t.Errorf("top queries %v: want %q once", ranked, q)
		}
	}
	if v, _ := gauge(t, reg, NameOldestXactAge, nil); v <= 0 {
		t.Errorf("oldest transaction age %v, want > 0 with a transaction open", v)
	}
	if v, _ := gauge(t, reg, NameScrapeErrors, nil); v != 0 {
		t.Errorf("scrape errors %v", v)
	}
	for _, mf := range mfs {
		for _, m := range mf.GetMetric() {
			for _, lp := range m.GetLabel() {
				if strings.Contains(lp.GetValue(), "lt-secret-literal") {
					t.Errorf("a literal leaked into %s{%s=%q}", mf.GetName(), lp.GetName(), lp.GetValue())
				}
			}
		}
	}
	var families []string
	for _, mf := range mfs {
		families = append(families, mf.GetName())
	}
	want := Names()
	slices.Sort(want)
	if !slices.Equal(families, want) { // Gather sorts by name
		t.Errorf("exported families %v\nwant Names() %v", families, want)
	}
	problems, err := testutil.GatherAndLint(reg)
	if err != nil {
		t.Fatal(err)
	}
	for _, p := range problems {
		t.Errorf("promlint: %s: %s", p.Metric, p.Text)
	}
}

type countingHandler struct {
	mu    sync.Mutex
	warns int
	text  []string
}

func (h *countingHandler) Enabled(context.Context, slog.Level) bool { return true }
func (h *countingHandler) Handle(_ context.Context, r slog.Record) error {
	h.mu.Lock()
	defer h.mu.Unlock()
	if r.Level == slog.LevelWarn {
		h.warns++
	}
	r.Attrs(func(a slog.Attr) bool { h.text = append(h.text, a.Value.String()); return true })
	return nil
}
func (h *countingHandler) WithAttrs([]slog.Attr) slog.Handler { return h }
func (h *countingHandler) WithGroup(string) slog.Handler      { return h }

// TestFailingSamplesCountedLoggedOnce points the sampler at a port nobody listens on.
func TestFailingSamplesCountedLoggedOnce(t *testing.T) {
	ln, err := net.Listen("tcp", "127.0.0.1:0")
	if err != nil {
		t.Fatal(err)
	}
	addr := ln.Addr().String()
	ln.Close()
	h := &countingHandler{}
	reg := prometheus.NewRegistry()
	s, err := New("postgres://u:hunter2pw@"+addr+"/verifier?connect_timeout=1", 5*time.Millisecond, reg,
		WithLogger(slog.New(h)))
	if err != nil {
		t.Fatal(err)
	}
	s.Start(context.Background())
	deadline := time.Now().Add(10 * time.Second)
	for {
		if v, _ := gauge(t, reg, NameScrapeErrors, nil); v >= 3 {
			break
		}
		if time.Now().After(deadline) {
			t.Fatal("fewer than 3 failed samples in 10 s")
		}
		time.Sleep(10 * time.Millisecond)
	}
	if err := s.Close(); err != nil {
		t.Fatal(err)
	}
	if v, _ := gauge(t, reg, NameUp, nil); v != 0 {
		t.Errorf("up = %v while failing", v)
	}
	h.mu.Lock()
	defer h.mu.Unlock()
	if h.warns != 1 {
		t.Errorf("%d warnings for one failing streak, want 1", h.warns)
	}
	for _, s := range h.text {
		if strings.Contains(s, "hunter2pw") {
			t.Errorf("password in a log line: %q", s)
		}
	}
}

func TestNewErrors(t *testing.T) {
	reg := prometheus.NewRegistry()
	if _, err := New("postgres://u:pw@127.0.0.1/db", 0, reg); err == nil || !strings.Contains(err.Error(), "interval") {
		t.Errorf("zero interval: %v", err)
	}
	_, err := New("postgres://u:s3cretpw@127.0.0.1:notaport/db", time.Second, reg)
	if err == nil || strings.Contains(err.Error(), "s3cretpw") {
		t.Errorf("bad URL: err = %v (must fail without echoing the password)", err)
	}
	if _, err := New("postgres://127.0.0.1/db", time.Second, nil); err == nil {
		t.Error("nil registerer accepted")
	}
	if _, err := New("postgres://127.0.0.1/db", time.Second, reg); err != nil {
		t.Fatal(err)
	}
	if _, err := New("postgres://127.0.0.1/db", time.Second, reg); err == nil || !strings.Contains(err.Error(), "register") {
		t.Errorf("second sampler on one registry: %v", err)
	}
}

package faults

import (
	"context"
	"os"
	"sync"
	"testing"
	"time"

	"github.com/prometheus/client_golang/prometheus"
	"go.uber.org/goleak"

	"github.com/attestload/attestload/attestation/enroll"
	"github.com/attestload/attestload/attestation/record"
	"github.com/attestload/attestload/attestation/softtpm"
	"github.com/attestload/attestload/exporter/pgactivity"
	"github.com/attestload/attestload/exporter/verdict"
	"github.com/attestload/attestload/internal/pgtest"
	"github.com/attestload/attestload/test/faults/harness"
)

// collectSink keeps what the verdict watcher forwards.
type collectSink struct {
	mu   sync.Mutex
	recs []*record.Record
}

func (c *collectSink) Observe(r *record.Record) {
	c.mu.Lock()
	c.recs = append(c.recs, r)
	c.mu.Unlock()
}
func (c *collectSink) Close() error { return nil }
func (c *collectSink) snapshot() []*record.Record {
	c.mu.Lock()
	defer c.mu.Unlock()
	return append([]*record.Record(nil), c.recs...)
}

// metricValue reads a gauge or counter without a testing.T, for pollers on other goroutines.
func metricValue(g prometheus.Gatherer, name string) (float64, bool) {
	fams, err := g.Gather()
	if err != nil {
		return 0, false
	}
	for _, f := range fams {
		if f.GetName() != name || len(f.GetMetric()) == 0 {
			continue
		}
		m := f.GetMetric()[0]
		if m.GetCounter() != nil {
			return m.GetCounter().GetValue(), true
		}
		return m.GetGauge().GetValue(), true
	}
	return 0, false
}

func gaugeValue(t *testing.T, g prometheus.Gatherer, name string) (float64, bool) {
	t.Helper()
	fams, err := g.Gather()
	if err != nil {
		t.Fatal(err)
	}
	for _, f := range fams {
		if f.GetName() == name && len(f.GetMetric()) > 0 {
			return f.GetMetric()[0].GetGauge().GetValue(), true
		}
	}
	return 0, false
}

// The verdict watcher (polling attestations) and the PostgreSQL activity sampler run in-process while the cluster
// restarts: both recover on their own (the watcher still delivers every verdict, the sampler reports the database
// up again), and after Close no goroutine is left behind. TestPostgresRestartMidRun covers them inside the binary;
// this test drives them directly so that goleak can see their goroutines.
func TestPostgresRestartUnderVerdictWatcherAndSampler(t *testing.T) {
	harness.RequireFaults(t)
	if os.Getenv(EnvPGRestart) != "1" {
		t.Skipf("restarts the shared PostgreSQL cluster; set %s=1 (make faults does)", EnvPGRestart)
	}
	dbURL := pgtest.NewKeylimeDatabase(t)
	leaks := goleak.IgnoreCurrent()
	defer goleak.VerifyNone(t, leaks)

	ctx, cancel := context.WithTimeout(context.Background(), 2*time.Minute)
	defer cancel()
	pool, err := enroll.Connect(ctx, dbURL)
	if err != nil {
		t.Fatal(err)
	}
	defer pool.Close()
	keys, err := softtpm.LoadOrCreateKeyPool(harness.KeyPool(t, 1), 1, nil)
	if err != nil {
		t.Fatal(err)
	}
	en, err := enroll.Enroll(ctx, pool, enroll.Plan{Prefix: "fa-", Count: 1, IMAPolicyJSON: []byte(`{}`), IMAGenerator: 1,
		Keys: func(int) string { return keys[0].PublicBase64() }})
	if err != nil {
		t.Fatal(err)
	}
	agent := en.AgentIDs[0]
	const ts = "2026-11-30T19:50:34.078706+00:00"
	for i := range 3 {
		if _, err := pool.Exec(ctx, `INSERT INTO attestations (agent_id, index, stage, evaluation, system_info__boot_time,
			capabilities_received_at) VALUES ($1, $2, 'evaluating_evidence', 'pending', $3, $3)`, agent, i, ts); err != nil {
			t.Fatal(err)
		}
	}

	reg := prometheus.NewRegistry()
	sampler, err := pgactivity.New(dbURL, 200*time.Millisecond, reg)
	if err != nil {
		t.Fatal(err)
	}
	sampler.Start(ctx)
	defer sampler.Close()
	src, err := verdict.NewDBSource(pool, verdict.DBOptions{})
	if err != nil {
		t.Fatal(err)
	}
	sink := &collectSink{}
	w := verdict.NewWatcher(src, verdict.Options{Settings: verdict.Settings{Timeout: time.Minute,
		PollInterval: 100 * time.Millisecond}}, sink)
	defer w.Close()
	observe := func(i int) {
		idx := i
		w.Observe(&record.Record{AgentID: agent, UpdateSuccessful: true, AttestationIndex: &idx, Outcome: record.OutcomeSuccess})
	}
	observe(0)
	observe(1)

	// Sample pg_up every 20 ms through the restart: the sampler must see the outage (it sets pg_up to 0 until its
	// next good sample, 200 ms later), or this test would pass as well with no restart.
	stopWatch := make(chan struct{})
	lowUp := make(chan float64, 1)
	go func() {
		low := 1.0
		for {
			if v, ok := metricValue(reg, pgactivity.NameUp); ok {
				low = min(low, v)
			}
			select {
			case <-stopWatch:
				lowUp <- low
				return
			case <-time.After(20 * time.Millisecond):
			}
		}
	}()
	restartPostgres(t)
	time.Sleep(time.Second)
	close(stopWatch)
	if low := <-lowUp; low != 0 {
		t.Errorf("%s stayed %v through the restart: the sampler did not see the outage", pgactivity.NameUp, low)
	}
	if n, _ := metricValue(reg, pgactivity.NameScrapeErrors); n == 0 {
		t.Errorf("%s is 0 after the restart: no sample failed", pgactivity.NameScrapeErrors)
	}
	if st := w.Stats(); st.PollErrors == 0 {
		t.Errorf("no verdict lookup failed during the restart (watcher stats %+v): the outage was not seen", st)
	}
	observe(2)
	if _, err := pool.Exec(ctx, `UPDATE attestations SET evaluation = CASE WHEN index = 2 THEN 'fail' ELSE 'pass' END,
		failure_reason = CASE WHEN index = 2 THEN 'policy_violation' END WHERE agent_id = $1`, agent); err != nil {
		t.Fatalf("the pool did not reconnect after the restart: %v", err)
	}

	deadline := time.Now().Add(30 * time.Second)
	for len(sink.snapshot()) < 3 && time.Now().Before(deadline) {
		time.Sleep(50 * time.Millisecond)
	}
	got := map[int]string{}
	for _, r := range sink.snapshot() {
		got[*r.AttestationIndex] = r.Verdict.Evaluation
	}
	want := map[int]string{0: record.EvaluationPass, 1: record.EvaluationPass, 2: record.EvaluationFail}
	for i, e := range want {
		if got[i] != e {
			t.Errorf("attestation %d: verdict %q after the restart, want %q (watcher stats %+v)", i, got[i], e, w.Stats())
		}
	}
	for time.Now().Before(deadline) {
		if up, ok := gaugeValue(t, reg, pgactivity.NameUp); ok && up == 1 && sampler.Last() != nil {
			break
		}
		time.Sleep(100 * time.Millisecond)
	}
	if up, _ := gaugeValue(t, reg, pgactivity.NameUp); up != 1 {
		t.Errorf("%s = %v after the restart, want 1", pgactivity.NameUp, up)
	}
	if err := w.Close(); err != nil {
		t.Errorf("watcher close: %v", err)
	}
	if err := sampler.Close(); err != nil {
		t.Errorf("sampler close: %v", err)
	}
	if _, err := en.Cleanup(ctx, pool); err != nil {
		t.Errorf("cleanup after the restart: %v", err)
	}
	pool.Close()
}

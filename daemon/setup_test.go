package daemon

import (
	"bufio"
	"bytes"
	"context"
	"encoding/json"
	"errors"
	"fmt"
	"log/slog"
	"math"
	"os"
	"path/filepath"
	"strings"
	"testing"
	"time"

	"github.com/jackc/pgx/v5/pgconn"

	"github.com/attestload/attestload/attestation/enroll"
	"github.com/attestload/attestload/attestation/record"
	"github.com/attestload/attestload/daemon/engine"
	"github.com/attestload/attestload/exporter/results"
	"github.com/attestload/attestload/internal/resultsread"
)

// testConfig is a small run against the in-process simulated verifier.
func testConfig(t *testing.T, dir string) Config {
	t.Helper()
	cfg := DefaultConfig()
	cfg.Run.Workers = 3
	cfg.Run.Agents = 4
	cfg.Run.Tasks = 2
	cfg.Run.DistinctKeys = 2
	cfg.Run.KeyPool = filepath.Join(dir, "keys.pem")
	cfg.Run.Instance = "test"
	cfg.Results.Dir = filepath.Join(dir, "results")
	cfg.Evidence.IMAInitial = 20
	cfg.Evidence.IMAUniverse = 50
	// Keylime's session cost (600k PBKDF2 rounds) takes seconds per session under -race.
	cfg.Simulator.SessionHashIterations = 1000
	cfg.Simulator.QuoteInterval = 0
	// The calibrated simulator costs what the stock verifier does (about 0.2 CPU-s per attestation): too slow here.
	cfg.Simulator.Calibrated = false
	return cfg
}

// executeAndClose runs r to its end and closes it, as cmd/attestload does, failing the test on either error.
// runTestLoad assembles a load from cfg, runs it and closes it.
func runTestLoad(t *testing.T, cfg Config) Summary {
	t.Helper()
	ctx := t.Context()
	r, err := newLoad(ctx, cfg, loadOptions{})
	if err != nil {
		t.Fatal(err)
	}
	return executeAndClose(t, ctx, r)
}

func executeAndClose(t *testing.T, ctx context.Context, r *load) Summary {
	t.Helper()
	sum, err := r.execute(ctx)
	if err != nil {
		t.Fatal(err)
	}
	cctx, cancel := context.WithTimeout(context.Background(), 30*time.Second)
	defer cancel()
	if err := r.close(cctx); err != nil {
		t.Fatal(err)
	}
	return sum
}

func readRecords(t *testing.T, path string) []record.Record {
	t.Helper()
	b, cut, err := resultsread.Bytes(path)
	if err != nil || cut {
		t.Fatalf("read %s: %v (cut %v)", path, err, cut)
	}
	var out []record.Record
	sc := bufio.NewScanner(bytes.NewReader(b))
	sc.Buffer(nil, 1<<24)
	for sc.Scan() {
		var r record.Record
		if err := json.Unmarshal(sc.Bytes(), &r); err != nil {
			t.Fatalf("line %d: %v", len(out)+1, err)
		}
		out = append(out, r)
	}
	return out
}

func TestSetupRunsAgainstTheSimulatedVerifier(t *testing.T) {
	dir := t.TempDir()
	cfg := testConfig(t, dir)
	var logs, verbose bytes.Buffer
	log := slog.New(slog.NewTextHandler(&logs, nil))
	ctx := t.Context()
	r, err := newLoad(ctx, cfg, loadOptions{Logger: log, Verbose: &verbose})
	if err != nil {
		t.Fatal(err)
	}
	sum := executeAndClose(t, ctx, r)
	if n := strings.Count(logs.String(), "simulated verifier"); n != 1 {
		t.Fatalf("%d log lines mention the simulated verifier, want exactly 1:\n%s", n, logs.String())
	}
	recs := readRecords(t, sum.ResultsPath)
	if len(recs) != 8 || sum.Stats.Finished != 8 {
		t.Fatalf("%d records (stats %+v), want 8", len(recs), sum.Stats)
	}
	for _, rec := range recs {
		if rec.Outcome != record.OutcomeSuccess || rec.RunID != sum.RunID || rec.Instance != "test" ||
			rec.Schema != record.SchemaVersion || !rec.CreateSuccessful || !rec.UpdateSuccessful {
			t.Fatalf("record %+v", rec)
		}
	}
	if !strings.Contains(verbose.String(), "|t1|c0 (w") || !strings.Contains(verbose.String(), "|t1|u0 (w") ||
		!strings.Contains(verbose.String(), "[ok] update attestation 1 for ") ||
		!strings.Contains(verbose.String(), "[info] POST http") {
		t.Fatalf("verbose output:\n%s", verbose.String())
	}
	var info map[string]any
	b, err := os.ReadFile(results.SidecarPath(sum.ResultsPath))
	if err != nil || json.Unmarshal(b, &info) != nil {
		t.Fatalf("sidecar: %v %s", err, b)
	}
	if info["run_id"] != sum.RunID || info["end_time"].(float64) <= info["start_time"].(float64) || info["agents"] != 4.0 {
		t.Fatalf("sidecar %s", b)
	}
}

func TestSetupErrorsNameTheKey(t *testing.T) {
	dir := t.TempDir()
	cfg := testConfig(t, dir)
	cfg.Verifier.URL = "https://127.0.0.1:1"
	_, err := newLoad(t.Context(), cfg, loadOptions{})
	if err == nil || !strings.Contains(err.Error(), `config key "database.url"`) {
		t.Fatalf("error %v; want one naming database.url", err)
	}
	cfg = testConfig(t, dir)
	cfg.Evidence.Profile = "captured"
	cfg.Evidence.CapturedLog = filepath.Join(dir, "missing.txt")
	_, err = newLoad(t.Context(), cfg, loadOptions{})
	if err == nil || !strings.Contains(err.Error(), `config key "evidence.captured_log"`) {
		t.Fatalf("error %v; want one naming evidence.captured_log", err)
	}
}

func TestCleanupRetriesDeadlocks(t *testing.T) {
	log := slog.New(slog.DiscardHandler)
	calls := 0
	removed, err := cleanupWithRetry(t.Context(), log, func(context.Context) (enroll.RemovedCounts, error) {
		calls++
		if calls < 3 {
			return enroll.RemovedCounts{}, fmt.Errorf("delete attestations: %w", &pgconn.PgError{Code: "40P01"})
		}
		return enroll.RemovedCounts{Agents: 7}, nil
	})
	if err != nil || calls != 3 || removed.Agents != 7 {
		t.Fatalf("calls %d, removed %+v, err %v; want success on the third try", calls, removed, err)
	}
	calls = 0
	_, err = cleanupWithRetry(t.Context(), log, func(context.Context) (enroll.RemovedCounts, error) {
		calls++
		return enroll.RemovedCounts{}, errors.New("permission denied")
	})
	if err == nil || calls != 1 {
		t.Fatalf("calls %d, err %v; other errors must not be retried", calls, err)
	}
}

// The AK pool goes to the user's cache directory by default, never into the directory the run was started from
// (even when the run fails later, after the keys were made); "none" keeps it in memory and an explicit path wins.
func TestKeyPoolDefaultsToTheUserCacheDirectory(t *testing.T) {
	cache, cwd := t.TempDir(), t.TempDir()
	t.Setenv("XDG_CACHE_HOME", cache)
	t.Chdir(cwd)
	cfg := testConfig(t, t.TempDir())
	cfg.Run.KeyPool = ""
	cfg.Database.URL = "postgres://attestload@127.0.0.1:1/none?sslmode=disable&connect_timeout=1" // fails after the keys
	if _, err := newLoad(t.Context(), cfg, loadOptions{}); err == nil {
		t.Fatal("Setup with an unreachable database succeeded")
	}
	want := filepath.Join(cache, "attestload", "ak-pool.bin")
	if st, err := os.Stat(want); err != nil || st.Mode().Perm() != 0o600 {
		t.Fatalf("key pool %s: %v (mode %v), want a 0600 file", want, err, st)
	}
	if ents, _ := os.ReadDir(cwd); len(ents) != 0 {
		t.Fatalf("the run wrote %d entries into its working directory (first %s)", len(ents), ents[0].Name())
	}

	for _, c := range []struct{ set, want string }{{"", want}, {KeyPoolNone, ""}, {"/x/pool.bin", "/x/pool.bin"}} {
		got, err := RunConfig{KeyPool: c.set}.KeyPoolPath()
		if err != nil || got != c.want {
			t.Errorf("key_pool %q resolves to %q, %v; want %q", c.set, got, err, c.want)
		}
	}
	t.Setenv("XDG_CACHE_HOME", "")
	t.Setenv("HOME", "")
	if _, err := (RunConfig{}).KeyPoolPath(); err == nil || !strings.Contains(err.Error(), "run.key_pool") {
		t.Errorf("without a home directory: %v, want an error naming run.key_pool", err)
	}
}

// sidecar reads a run's .run.json.
func sidecar(t *testing.T, resultsPath string) record.RunInfo {
	t.Helper()
	b, err := os.ReadFile(results.SidecarPath(resultsPath))
	if err != nil {
		t.Fatal(err)
	}
	var info record.RunInfo
	if err := json.Unmarshal(b, &info); err != nil {
		t.Fatalf("sidecar: %v\n%s", err, b)
	}
	return info
}

// TestSetupRateModelFollowsTheConfiguredStages runs the rate model as configured (start rate, then a hold and a
// ramp) with fewer workers than agents, cycles slowed by the simulator and agents held back by its quote interval,
// so ticks are dropped both for want of a worker and for want of an agent. Every tick the configured schedule has
// must show up as a started cycle (a record) or a dropped one (the sidecar), so the counts add up to the area
// under the configured rate line whatever the machine's speed.
func TestSetupRateModelFollowsTheConfiguredStages(t *testing.T) {
	dir := t.TempDir()
	cfg := testConfig(t, dir)
	cfg.Scheduler.Model = engine.ModelRate
	cfg.Run.Tasks = 0
	cfg.Run.Workers = 2
	cfg.Run.Agents = 4
	cfg.Simulator.QuoteInterval = 1
	cfg.Simulator.Latency = 50 * time.Millisecond
	// 20/s held for 1 s, then 20 → 60/s over 1 s: 20 + 40 = 60 ticks.
	cfg.Scheduler.Rate = engine.Rate{Start: 20, Stages: []engine.Stage{{Duration: time.Second, Target: 20},
		{Duration: time.Second, Target: 60}}}
	sum := runTestLoad(t, cfg)
	recs := readRecords(t, sum.ResultsPath)
	info := sidecar(t, sum.ResultsPath)
	st := sum.Stats
	if st.Started+st.Dropped != 60 {
		t.Fatalf("started %d + dropped %d = %d, want the schedule's 60 ticks", st.Started, st.Dropped,
			st.Started+st.Dropped)
	}
	if uint64(len(recs)) != st.Started || info.DroppedCycles != int64(st.Dropped) || info.Model != engine.ModelRate {
		t.Fatalf("%d records, sidecar %+v; want %d records and dropped_cycles %d", len(recs), info, st.Started,
			st.Dropped)
	}
	// 4 agents, each held back for 1 s after its cycle, cannot start more than about 4 cycles a second.
	if st.Dropped < 30 {
		t.Fatalf("only %d of 60 ticks dropped with 4 agents held back 1 s each", st.Dropped)
	}
	first := math.Inf(1)
	for _, rec := range recs {
		if rec.ScheduledTime == nil || rec.Outcome != record.OutcomeSuccess {
			t.Fatalf("rate record without scheduled_time, or failed: %+v", rec)
		}
		first = min(first, *rec.ScheduledTime)
	}
	for _, rec := range recs {
		// The first tick is due at the engine's start; the schedule lasts 2 s.
		if at := *rec.ScheduledTime - first; at >= 2 {
			t.Fatalf("cycle scheduled %.3f s after the first, beyond the 2 s schedule: %+v", at, rec)
		}
	}
}

// TestSetupSidecarCountsLateCycles runs the fleet model with one worker for more agents than it can serve in an
// interval, so cycles start later and later; the sidecar's late_cycles must count them.
func TestSetupSidecarCountsLateCycles(t *testing.T) {
	dir := t.TempDir()
	cfg := testConfig(t, dir)
	cfg.Scheduler.Model = engine.ModelFleet
	cfg.Scheduler.Fleet = engine.Fleet{Interval: 400 * time.Millisecond}
	cfg.Run.Tasks = 3
	cfg.Run.Workers = 1
	cfg.Run.Agents = 6
	// At least 2 requests (create, update) of 100 ms per cycle: 6 agents need 1.2 s of the one worker per 0.4 s
	// interval, so each round starts about 0.8 s later than the one before.
	cfg.Simulator.Latency = 100 * time.Millisecond
	sum := runTestLoad(t, cfg)
	recs := readRecords(t, sum.ResultsPath)
	info := sidecar(t, sum.ResultsPath)
	if len(recs) != 18 {
		t.Fatalf("%d records, want 18", len(recs))
	}
	var veryLate, anyLate int64
	for _, rec := range recs {
		if rec.LateSeconds == nil {
			t.Fatalf("fleet record without late_seconds: %+v", rec)
		}
		if *rec.LateSeconds > 0.5 {
			veryLate++
		}
		if *rec.LateSeconds > 0 {
			anyLate++
		}
	}
	// Whatever the tolerance, a cycle half a second late is late and one that started on time is not.
	if veryLate == 0 || info.LateCycles < veryLate || info.LateCycles > anyLate || info.LateCycles != int64(sum.Stats.Late) {
		t.Fatalf("sidecar late_cycles %d (stats %d); records: %d over 0.5 s late, %d late at all", info.LateCycles,
			sum.Stats.Late, veryLate, anyLate)
	}
	if info.DroppedCycles != 0 {
		t.Fatalf("fleet run dropped %d cycles; the fleet model never drops", info.DroppedCycles)
	}
}

// ECC agents and a mix pass against the in-memory simulated verifier: it is told each agent's signing algorithm
// (it assumed rsassa, so every ECC agent's attestation was refused with 422 for want of a usable key).
func TestInMemorySimulatorAcceptsECCAgents(t *testing.T) {
	for _, kt := range []string{"ecc-p256", "rsa2048=50%,ecc-p256=50%"} {
		t.Run(kt, func(t *testing.T) {
			cfg := testConfig(t, t.TempDir())
			cfg.Run.KeyType = kt
			cfg.Evidence.Profile = "quote-only"
			sum := runTestLoad(t, cfg)
			recs := readRecords(t, sum.ResultsPath)
			if len(recs) != 8 {
				t.Fatalf("%d records, want 8", len(recs))
			}
			for _, rec := range recs {
				if rec.Outcome != record.OutcomeSuccess {
					t.Fatalf("agent %d: outcome %s, want success: %+v", rec.AgentIndex, rec.Outcome, rec)
				}
			}
		})
	}
}

package faults

import (
	"context"
	"crypto/rand"
	"strings"
	"syscall"
	"testing"
	"time"

	"github.com/attestload/attestload/attestation/enroll"
	"github.com/attestload/attestload/attestation/record"
	"github.com/attestload/attestload/attestation/simverifier"
	"github.com/attestload/attestload/attestation/softtpm"
	"github.com/attestload/attestload/internal/pgtest"
	"github.com/attestload/attestload/test/faults/harness"
)

// slow makes every request take d, so that a signal lands while cycles are in flight.
func slow(d time.Duration) simverifier.Faults {
	return simverifier.Faults{Rules: map[simverifier.Endpoint]simverifier.FaultRule{
		simverifier.EndpointAll: {Latency: simverifier.Latency{Fixed: d}}}}
}

// One SIGINT or SIGTERM: no new cycles, the running ones finish, exit 0, every cycle recorded, database clean.
func TestSingleSignalDrains(t *testing.T) {
	for _, sig := range []syscall.Signal{syscall.SIGINT, syscall.SIGTERM} {
		t.Run(sig.String(), func(t *testing.T) {
			w := newWorld(t, harness.SimOptions{Faults: slow(300 * time.Millisecond)})
			d := w.start(w.baseEnv(), w.runArgs(6, time.Second, "--drain-timeout", "30s")...)
			d.waitCycles(t, record.OutcomeSuccess, 6, time.Minute)
			m := harness.Scrape(t, d.addr)
			d.Signal(t, sig)
			code := d.Wait(t, time.Minute)
			harness.NoCrash(t, "stderr", d.Stderr.String())
			if code != 0 {
				t.Errorf("exit code %d after %v, want 0", code, sig)
			}
			recs, partial := harness.ReadRecords(t, d.results)
			harness.CheckRecords(t, recs)
			if partial {
				t.Error("partial last line after a drain")
			}
			if started := int(m.Sum("attestload_cycles_started_total")); len(recs) < started {
				t.Errorf("%d records, but %d cycles had started before the signal", len(recs), started)
			}
			if out := harness.Outcomes(recs); out[record.OutcomeSuccess] != len(recs) {
				t.Errorf("a drain with a 30 s budget should let every cycle finish: %v", out)
			}
			w.checkClean()
		})
	}
}

// A second signal aborts the running cycles at once: they are recorded as aborted (error canceled), the
// process exits quickly and still removes its rows.
func TestDoubleSignalAborts(t *testing.T) {
	w := newWorld(t, harness.SimOptions{})
	d := w.start(w.baseEnv("ATTESTLOAD_VERIFIER_REQUEST_TIMEOUT=30s"), w.runArgs(6, time.Second, "--drain-timeout", "60s")...)
	d.waitCycles(t, record.OutcomeSuccess, 6, time.Minute)
	w.sim.SetFaults(slow(20 * time.Second))
	time.Sleep(1500 * time.Millisecond) // every agent is now waiting on a slow request
	d.Signal(t, syscall.SIGINT)
	d.WaitLog(t, "draining", 10*time.Second)
	t0 := time.Now()
	d.Signal(t, syscall.SIGINT)
	code := d.Wait(t, 30*time.Second)
	if took := time.Since(t0); took > 15*time.Second {
		t.Errorf("exit took %s after the second signal", took)
	}
	harness.NoCrash(t, "stderr", d.Stderr.String())
	if code != 0 {
		t.Errorf("exit code %d after two signals, want 0", code)
	}
	recs, partial := harness.ReadRecords(t, d.results)
	harness.CheckRecords(t, recs)
	if partial {
		t.Error("partial last line after an abort")
	}
	aborted := 0
	for _, r := range recs {
		if r.Outcome == record.OutcomeAborted {
			aborted++
			if r.Error == nil || *r.Error != record.ClassCanceled {
				t.Errorf("aborted cycle with error %v, want %s", deref(r.Error), record.ClassCanceled)
			}
		}
	}
	if aborted == 0 {
		t.Errorf("no aborted cycle after the second signal: %v", harness.Outcomes(recs))
	}
	w.checkClean()
}

func deref[T ~string](s *T) T {
	if s == nil {
		return "<nil>"
	}
	return *s
}

// lookalikes plants rows that share the run prefix but are not attestload's: an agent without the run marker, one
// whose marker was edited, one with a hostile id, their policies and a session. It returns a function counting
// them, which must keep returning the planted number whatever attestload cleans up.
func lookalikes(t *testing.T, dbURL, prefix string) (want int, count func() int) {
	t.Helper()
	ctx, cancel := context.WithTimeout(context.Background(), 30*time.Second)
	defer cancel()
	pool := pgtest.Pool(t, dbURL) // kept open for count, closed when the test ends
	key, err := softtpm.GenerateKey(rand.Reader)
	if err != nil {
		t.Fatal(err)
	}
	en, err := enroll.Enroll(ctx, pool, enroll.Plan{Prefix: prefix, RunID: "look", Count: 3,
		Keys: func(int) string { return key.PublicBase64() }, IMAPolicyJSON: []byte(`{}`), IMAGenerator: 1})
	if err != nil {
		t.Fatal(err)
	}
	hostile := prefix + "x'; DROP TABLE verifiermain; --"
	ids := []string{en.AgentIDs[0], en.AgentIDs[1], hostile}
	for _, q := range []struct {
		sql  string
		args []any
	}{
		{`UPDATE verifiermain SET meta_data = NULL WHERE agent_id = $1`, []any{en.AgentIDs[0]}},
		{`UPDATE verifiermain SET meta_data = $2 WHERE agent_id = $1`, []any{en.AgentIDs[1], `{"attestload_run":"look","owner":"ops"}`}},
		{`UPDATE verifiermain SET agent_id = $2, meta_data = '{}' WHERE agent_id = $1`, []any{en.AgentIDs[2], hostile}},
		{`INSERT INTO sessions (session_id, token_hash, token_salt, agent_id, active) VALUES ($1, 'h', 's', $2, true)`,
			[]any{"00000000-0000-4000-8000-000000000001", en.AgentIDs[0]}},
		{`INSERT INTO sessions (session_id, token_hash, token_salt, agent_id, active) VALUES ($1, 'h', 's', $2, true)`,
			[]any{"00000000-0000-4000-8000-000000000002", hostile}},
	} {
		if _, err := pool.Exec(ctx, q.sql, q.args...); err != nil {
			t.Fatalf("plant look-alike rows: %v", err)
		}
	}
	count = func() int {
		ctx, cancel := context.WithTimeout(context.Background(), 30*time.Second)
		defer cancel()
		var n, s, p int
		if err := pool.QueryRow(ctx, `SELECT count(*) FROM verifiermain WHERE agent_id = ANY($1)`, ids).Scan(&n); err != nil {
			t.Fatal(err)
		}
		if err := pool.QueryRow(ctx, `SELECT count(*) FROM sessions WHERE agent_id = ANY($1)`, ids).Scan(&s); err != nil {
			t.Fatal(err)
		}
		if err := pool.QueryRow(ctx, `SELECT (SELECT count(*) FROM allowlists WHERE name = $1) + (SELECT count(*) FROM mbpolicies WHERE name = $2)`,
			en.IMAPolicyName, en.MBPolicyName).Scan(&p); err != nil {
			t.Fatal(err)
		}
		return n + s + p
	}
	return count(), count
}

// ourRows counts the rows of attestload runs under the prefix, the look-alikes excluded.
func ourRows(t *testing.T, w *world, lookalikeRows int) int {
	t.Helper()
	return harness.CountRows(t, w.dbURL, w.prefix).Total() - lookalikeRows
}

// kill -9 leaves whole JSONL lines (at most a cut last one) and rows behind; the next run with
// database.cleanup_leftovers finds and removes them, `attestload cleanup` does the same for a second crash, and
// neither touches rows that merely look like attestload's.
func TestKill9ThenRestartCleansStaleRows(t *testing.T) {
	w := newWorld(t, harness.SimOptions{})
	want, count := lookalikes(t, w.dbURL, w.prefix)
	planted := harness.CountRows(t, w.dbURL, w.prefix).Total()

	d := w.start(w.baseEnv(), w.runArgs(6, time.Second)...)
	d.waitCycles(t, record.OutcomeSuccess, 12, time.Minute)
	d.Signal(t, syscall.SIGKILL)
	if code := d.Wait(t, 10*time.Second); code != -1 {
		t.Errorf("exit code %d after kill -9, want -1 (killed)", code)
	}
	recs, _ := harness.ReadRecords(t, d.results)
	harness.CheckRecords(t, recs)
	if ourRows(t, w, planted) == 0 {
		t.Fatal("kill -9 left no rows behind; the restart scenario tests nothing")
	}

	// Restart with cleanup of leftovers: the stale run is found and removed before the new one starts.
	d2 := w.start(w.baseEnv(), w.runArgs(4, time.Second, "--cleanup-leftovers", "--results-dir", t.TempDir())...)
	d2.WaitLog(t, "removed leftovers of earlier runs", 10*time.Second)
	d2.waitCycles(t, record.OutcomeSuccess, 4, time.Minute)
	d2.Signal(t, syscall.SIGINT)
	if code := d2.Wait(t, time.Minute); code != 0 {
		t.Errorf("restarted run exit code %d, want 0", code)
	}
	harness.NoCrash(t, "stderr", d2.Stderr.String())
	if n := ourRows(t, w, planted); n != 0 {
		t.Errorf("%d rows of attestload runs left after the restart's cleanup", n)
	}

	// Crash again and clean up with the command instead.
	d3 := w.start(w.baseEnv(), w.runArgs(4, time.Second, "--results-dir", t.TempDir())...)
	d3.waitCycles(t, record.OutcomeSuccess, 4, time.Minute)
	d3.Signal(t, syscall.SIGKILL)
	d3.Wait(t, 10*time.Second)
	p, code := harness.Run(t, w.dir, nil, time.Minute, "cleanup", w.dbURL, "--prefix", w.prefix)
	harness.NoCrash(t, "cleanup output", p.Stdout.String()+p.Stderr.String())
	if code != 0 {
		t.Errorf("attestload cleanup exit code %d:\n%s%s", code, p.Stdout.String(), p.Stderr.String())
	}
	if !strings.Contains(p.Stdout.String(), "found run") {
		t.Errorf("attestload cleanup did not report the crashed run:\n%s", p.Stdout.String())
	}
	if n := ourRows(t, w, planted); n != 0 {
		t.Errorf("%d rows of attestload runs left after attestload cleanup", n)
	}
	if got := count(); got != want {
		t.Errorf("look-alike rows: %d before, %d after the cleanups", want, got)
	}
}

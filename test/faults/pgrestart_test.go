package faults

import (
	"fmt"
	"os"
	"os/exec"
	"strings"
	"syscall"
	"testing"
	"time"

	"github.com/attestload/attestload/attestation/record"
	"github.com/attestload/attestload/test/faults/harness"
)

// EnvPGRestart enables the tests that restart the shared PostgreSQL cluster (every other database test running at
// that moment sees its connections dropped, so they only run when asked: make faults and .ci/run set it).
const EnvPGRestart = "ATTESTLOAD_FAULTS_PG_RESTART"

// restartPostgres restarts the local cluster (the first that pg_lsclusters lists, as scripts/pg-start.sh uses).
func restartPostgres(t *testing.T) time.Duration {
	t.Helper()
	out, err := exec.Command("pg_lsclusters", "-h").Output()
	if err != nil {
		t.Fatalf("pg_lsclusters: %v", err)
	}
	f := strings.Fields(strings.SplitN(string(out), "\n", 2)[0])
	if len(f) < 2 {
		t.Fatalf("pg_lsclusters printed no cluster: %q", out)
	}
	t0 := time.Now()
	if out, err := exec.Command("pg_ctlcluster", f[0], f[1], "restart").CombinedOutput(); err != nil {
		t.Fatalf("pg_ctlcluster %s %s restart: %v %s", f[0], f[1], err, out)
	}
	return time.Since(t0)
}

// PostgreSQL restarts while the run's agents are enrolled and in use (the simulated verifier reads and writes
// their rows). The run goes on, the outage costs at most the cycles whose rows could not be read, and the cleanup
// at exit reconnects and removes every row.
func TestPostgresRestartMidRun(t *testing.T) {
	if os.Getenv(EnvPGRestart) != "1" {
		t.Skipf("restarts the shared PostgreSQL cluster; set %s=1 (make faults does)", EnvPGRestart)
	}
	w := newWorld(t, harness.SimOptions{})
	// The verdict watcher reads the verifier's attestations table (verdict.source auto → database) and the
	// activity sampler polls pg_stat_*: both must ride out the restart.
	// The database URL goes in the environment: given positionally it is applied after the configuration is
	// validated, and pgactivity.enabled is refused as lacking database.url (a defect reported to cmd/attestload).
	env := w.baseEnv("ATTESTLOAD_PGACTIVITY_ENABLED=true", "ATTESTLOAD_PGACTIVITY_INTERVAL=500ms",
		"ATTESTLOAD_VERDICT_POLL_INTERVAL=200ms", "ATTESTLOAD_DATABASE_URL="+w.dbURL)
	args := w.runArgs(8, time.Second)
	args = append(args[:2], args[3:]...) // drop the positional DB_URL
	d := w.start(env, args...)
	d.waitCycles(t, record.OutcomeSuccess, 16, time.Minute)
	// Watch the daemon's metrics through the restart: the outage must be seen (pg_up going to 0, failed activity
	// samples and verdict lookups), or the test would pass just as well with no restart at all.
	m0 := harness.Scrape(t, d.addr)
	seen := watchOutage(d.addr)
	began := float64(time.Now().UnixNano()) / 1e9
	took := restartPostgres(t)
	restarted := float64(time.Now().UnixNano()) / 1e9
	t.Logf("PostgreSQL restart took %s", took)
	minUp := seen(3 * time.Second)
	m1 := harness.Scrape(t, d.addr)
	if minUp != 0 {
		t.Errorf("attestload_pg_up never went to 0 during the restart (lowest %v): the outage was not seen", minUp)
	}
	for _, name := range []string{"attestload_pg_scrape_errors_total", "attestload_verdict_lookup_errors_total"} {
		if m1.Sum(name) <= m0.Sum(name) {
			t.Errorf("%s stayed at %v through the restart: the outage was not seen", name, m1.Sum(name))
		}
	}
	m := harness.Scrape(t, d.addr)
	d.waitCycles(t, record.OutcomeSuccess, int(m.Sum("attestload_cycles_total", "outcome=success"))+16, time.Minute)
	deadline := time.Now().Add(30 * time.Second)
	for harness.Scrape(t, d.addr).Sum("attestload_pg_up") != 1 && time.Now().Before(deadline) {
		time.Sleep(200 * time.Millisecond)
	}
	if up := harness.Scrape(t, d.addr).Sum("attestload_pg_up"); up != 1 {
		t.Errorf("attestload_pg_up = %v after the restart, want 1 (the activity sampler did not reconnect)", up)
	}
	until := float64(time.Now().UnixNano()) / 1e9
	_, recs := w.quiesce(d)
	// Judged on the cycles that ended before quiesce stalled the verifier: those failing in the stall are not the
	// restart's doing, and there are more of them the longer a quiet instant takes to find.
	var before []record.Record
	for _, r := range recs {
		if r.EndTime < until {
			before = append(before, r)
		}
	}
	// The outage may fail the cycles that were running or started while the database was down (and those that
	// started in the few seconds the simulator's pool needs to reconnect), no others.
	var outside []string
	for _, r := range before {
		if r.Outcome == record.OutcomeFail && (r.EndTime < began || r.StartTime > restarted+10) {
			outside = append(outside, fmt.Sprintf("agent %d task %d at %+.1fs (%s)", r.AgentIndex, r.TaskIndex,
				r.StartTime-began, deref(r.Error)))
		}
	}
	if len(outside) > 0 {
		t.Errorf("%d cycles failed away from the restart (it began at 0 s and took %s): %v; outcomes %v, errors %s",
			len(outside), took, outside, harness.Outcomes(before), describe(harness.AttemptErrors(before)))
	}
	passed := 0
	for _, r := range recs {
		if r.Outcome == record.OutcomeSuccess && r.StartTime > restarted+1 && r.Verdict.Evaluation == record.EvaluationPass {
			passed++
		}
	}
	if passed == 0 {
		t.Errorf("no cycle after the restart got its verdict from the database (verdicts: %v)", verdicts(recs))
	}
	d.Signal(t, syscall.SIGINT)
	if code := d.Wait(t, time.Minute); code != 0 {
		t.Errorf("exit code %d after a database restart mid-run, want 0", code)
	}
	harness.NoCrash(t, "stderr", d.Stderr.String())
	w.checkClean()
}

// watchOutage scrapes the daemon every 100 ms from now on; the function it returns keeps watching for linger
// more, then stops and gives the lowest attestload_pg_up seen (-1 when no scrape answered).
func watchOutage(addr string) func(linger time.Duration) float64 {
	stop := make(chan struct{})
	result := make(chan float64, 1)
	go func() {
		low := -1.0
		tick := time.NewTicker(100 * time.Millisecond)
		defer tick.Stop()
		for {
			if m, err := harness.TryScrape(addr); err == nil {
				if up := m.Sum("attestload_pg_up"); low < 0 || up < low {
					low = up
				}
			}
			select {
			case <-stop:
				result <- low
				return
			case <-tick.C:
			}
		}
	}()
	return func(linger time.Duration) float64 {
		time.Sleep(linger)
		close(stop)
		return <-result
	}
}

func verdicts(recs []record.Record) map[string]int {
	out := map[string]int{}
	for _, r := range recs {
		out[r.Verdict.Evaluation]++
	}
	return out
}

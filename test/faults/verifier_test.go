package faults

import (
	"testing"
	"time"

	"github.com/attestload/attestload/attestation/record"
	"github.com/attestload/attestload/test/faults/harness"
)

// The verifier dies mid-run (open connections reset, new ones refused) and comes back on the same address with
// nothing in memory. The run keeps going, records the outage as failed cycles, and recovers without leaking
// descriptors.
func TestVerifierKilledAndRestarted(t *testing.T) {
	w := newWorld(t, harness.SimOptions{})
	const agents = 10
	d := w.start(w.baseEnv(), w.runArgs(agents, time.Second)...)
	m0 := d.waitCycles(t, record.OutcomeSuccess, 20, time.Minute)
	before := fdFloor(t, d.Proc)
	g0, haveGoroutines := m0["go_goroutines"]

	killed := float64(time.Now().UnixNano()) / 1e9
	w.sim.Kill()
	m := d.waitCycles(t, record.OutcomeFail, 3*agents, 30*time.Second)
	okAtKill := m.Sum("attestload_cycles_total", "outcome=success")
	w.sim.Restart()
	d.waitCycles(t, record.OutcomeSuccess, int(okAtKill)+20, time.Minute)
	after := fdFloor(t, d.Proc)
	// Connections to the verifier come and go with the concurrency. After an outage the agents' backoffs end
	// within a few seconds of each other, so up to one connection per agent is in use while as many wait idle in
	// the pool for reuse: at most two per agent (measured: 11-15 more descriptors for 10 agents). The outage failed
	// at least three requests per agent, so a descriptor leaked per failed request would still exceed this bound.
	if after > before+2*agents {
		t.Errorf("file descriptors grew from %d before the outage to %d after recovery", before, after)
	}
	// Each verifier connection has a read and a write goroutine (measured: 21-34 more for 10 agents); anything
	// beyond two connections per agent is a leak, and one per failed request would exceed it.
	if g1 := harness.Scrape(t, d.addr)["go_goroutines"]; haveGoroutines && g1 > g0+4*agents {
		t.Errorf("goroutines grew from %v before the outage to %v after recovery", g0, g1)
	} else if !haveGoroutines {
		t.Log("/metrics has no go_goroutines; goroutine growth not checked")
	}

	qm, recs := w.quiesce(d)
	errs := errorsIn(recs, killed)
	if errs[record.ClassConnRefused]+errs[record.ClassConnReset] == 0 {
		t.Errorf("no conn_refused or conn_reset attempts after the kill; errors: %s", describe(errs))
	}
	for class := range errs {
		switch class {
		case record.ClassConnRefused, record.ClassConnReset, record.ClassAuth, record.ClassNetwork, record.ClassTimeout:
		default:
			t.Errorf("unexpected error class %q after a verifier restart (%s)", class, describe(errs))
		}
	}
	final := w.stop(d, 0)
	// Every cycle started by quiesce's scrape is recorded by the exit: those stalled at the signal end within the
	// drain timeout (their requests time out). recs is no base for this: it also holds cycles that were in flight
	// at the scrape and ended before the file was read, which the in-flight gauge counted as well.
	if started := int(qm.Sum("attestload_cycles_started_total")); len(final) < started {
		t.Errorf("results file has %d records at exit, want at least the %d cycles started at quiesce",
			len(final), started)
	}
}

package verdict

import (
	"context"
	"testing"
	"time"

	"github.com/attestload/attestload/attestation/record"
	"github.com/attestload/attestload/internal/pgtest"
)

// TestDBSourceAgainstPostgres plays the verifier's writes on a real database, including the rolling deletion of
// spec §5.3, and checks every pending attestation resolves to what the verifier decided.
func TestDBSourceAgainstPostgres(t *testing.T) {
	pool := pgtest.Pool(t, pgtest.NewKeylimeDatabase(t))
	ctx, cancel := context.WithTimeout(context.Background(), 30*time.Second)
	defer cancel()
	exec := func(sql string, args ...any) {
		t.Helper()
		if _, err := pool.Exec(ctx, sql, args...); err != nil {
			t.Fatalf("%s: %v", sql, err)
		}
	}
	for _, a := range []string{"lt-a", "lt-b", "lt-c"} {
		exec(`INSERT INTO verifiermain (agent_id) VALUES ($1)`, a)
	}
	att := func(agent string, index int, evaluation string, reason any) {
		exec(`INSERT INTO attestations (agent_id, index, evaluation, failure_reason, system_info__boot_time,
			capabilities_received_at) VALUES ($1, $2, $3, $4, '2026-01-01T00:00:00+00:00', '2026-11-30T19:50:34.078706+00:00')`,
			agent, index, evaluation, reason)
	}
	// lt-a: 0 failed, 1 passed, 2 passed (so the verifier deleted 1), 3 pending.
	att("lt-a", 0, "fail", "policy_violation")
	att("lt-a", 2, "pass", nil)
	att("lt-a", 3, "pending", nil)
	// lt-b: 4 gone and only a failure after it: cleanup, not §5.3; unknown.
	att("lt-b", 5, "fail", "broken_evidence_chain")
	// lt-c: nothing at all (agent removed).

	src, err := NewDBSource(pool, DBOptions{BatchSize: 2}) // 2 forces two batches for three agents
	if err != nil {
		t.Fatal(err)
	}
	keys := []Key{{"lt-a", 0}, {"lt-a", 1}, {"lt-a", 2}, {"lt-a", 3}, {"lt-b", 4}, {"lt-b", 5}, {"lt-c", 9}}
	got, err := src.Resolve(ctx, keys)
	if err != nil {
		t.Fatal(err)
	}
	want := map[Key]string{
		{"lt-a", 0}: "fail", {"lt-a", 1}: "pass", {"lt-a", 2}: "pass",
		{"lt-b", 4}: "unknown", {"lt-b", 5}: "fail", {"lt-c", 9}: "unknown",
	}
	if len(got) != len(want) {
		t.Fatalf("resolved %d keys, want %d: %+v", len(got), len(want), got)
	}
	for k, ev := range want {
		if got[k].Evaluation != ev {
			t.Errorf("%v: %q, want %q", k, got[k].Evaluation, ev)
		}
	}
	if r := got[Key{"lt-b", 5}].FailureReason; r == nil || *r != "broken_evidence_chain" {
		t.Errorf("failure reason %v", r)
	}
	if r := got[Key{"lt-a", 1}].FailureReason; r != nil {
		t.Errorf("vanished pass got a failure reason %q", *r)
	}

	// The same through a Watcher: lt-a/3 passes, then lt-a/4 passes, and the verifier deletes 3 before the
	// watcher's next poll; the record of 3 must still come out as pass.
	// Real time here: the pool's I/O lives outside any synctest bubble.
	next := &collect{}
	w := NewWatcher(src, Options{Settings: Settings{Timeout: time.Minute, PollInterval: 20 * time.Millisecond}}, next)
	r3 := accepted("lt-a", 3, float64(time.Now().UnixNano())/1e9)
	exec(`UPDATE attestations SET evaluation = 'pass' WHERE agent_id = 'lt-a' AND index = 3`)
	att("lt-a", 4, "pass", nil)
	exec(`DELETE FROM attestations WHERE agent_id = 'lt-a' AND index = 3`)
	w.Observe(r3)
	deadline := time.Now().Add(20 * time.Second)
	for len(next.snapshot()) == 0 && time.Now().Before(deadline) {
		time.Sleep(10 * time.Millisecond)
	}
	if r3.Verdict.Evaluation != record.EvaluationPass || r3.Verdict.Seconds == nil {
		t.Fatalf("vanished-after-pass attestation resolved as %+v", r3.Verdict)
	}
	if err := w.Close(); err != nil {
		t.Fatal(err)
	}
}

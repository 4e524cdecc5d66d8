package enroll_test

import (
	"errors"
	"testing"
	"time"

	"github.com/jackc/pgx/v5/pgconn"

	"github.com/attestload/attestload/attestation/enroll"
	"github.com/attestload/attestload/internal/pgtest"
)

// A verifier still finishing the run's last verification locks an attestation and then its agent, while cleanup
// locks the agent and then deletes the attestation: PostgreSQL breaks the deadlock by rolling one back. Cleanup,
// which waits first and so is the one rolled back, must repeat its transaction instead of failing the run.
func TestCleanupRetriesAfterDeadlock(t *testing.T) {
	// PostgreSQL aborts the backend whose deadlock_timeout (1 s) runs out first with the cycle closed: normally
	// cleanup, which started waiting first. On a loaded machine the verifier side may close the cycle only after
	// cleanup's own check has passed, and then the verifier side is aborted and cleanup never sees the deadlock;
	// such an attempt proves nothing, so it is repeated (deadlock_timeout is superuser-only, so it cannot be
	// lowered for one session).
	for attempt := 1; ; attempt++ {
		if deadlockAttempt(t) {
			return
		}
		if attempt == 5 {
			t.Fatal("in 5 attempts PostgreSQL never chose cleanup as the deadlock victim")
		}
		t.Logf("attempt %d: the verifier side was chosen as the deadlock victim; trying again", attempt)
	}
}

// deadlockAttempt runs the scenario once; it reports false when the verifier side was the deadlock victim.
func deadlockAttempt(t *testing.T) bool {
	t.Helper()
	pool := pgtest.Pool(t, pgtest.NewKeylimeDatabase(t))
	ctx := testCtx(t)
	e, err := enroll.Enroll(ctx, pool, enroll.Plan{Count: 1, Keys: fakeAK, IMAPolicyJSON: []byte(testIMAPolicy),
		IMAGenerator: 1})
	if err != nil {
		t.Fatal(err)
	}
	id := e.AgentIDs[0]
	addVerifierRows(t, pool, id, 1, 1)

	verifier, err := pool.Begin(ctx)
	if err != nil {
		t.Fatal(err)
	}
	defer verifier.Rollback(ctx)
	if _, err := verifier.Exec(ctx, `UPDATE attestations SET evaluation = 'pass' WHERE agent_id = $1`, id); err != nil {
		t.Fatal(err)
	}
	done := make(chan error, 1)
	go func() { _, err := e.Cleanup(ctx, pool); done <- err }()

	// Wait until cleanup holds the agent and waits for the attestation the "verifier" holds.
	deadline := time.Now().Add(20 * time.Second)
	for {
		var waiting int
		if err := pool.QueryRow(ctx, `SELECT count(*) FROM pg_stat_activity WHERE datname = current_database()
			AND wait_event_type = 'Lock' AND query LIKE 'DELETE FROM attestations%'`).Scan(&waiting); err != nil {
			t.Fatal(err)
		}
		if waiting > 0 {
			break
		}
		if time.Now().After(deadline) {
			t.Fatal("cleanup never waited on the attestation lock")
		}
		time.Sleep(20 * time.Millisecond)
	}
	// Closing the cycle: this waits for cleanup's lock on the agent until PostgreSQL detects the deadlock.
	if _, err := verifier.Exec(ctx, `UPDATE verifiermain SET meta_data = meta_data WHERE agent_id = $1`, id); err != nil {
		var pgErr *pgconn.PgError
		if !errors.As(err, &pgErr) || pgErr.Code != "40P01" {
			t.Fatalf("verifier side: %v", err)
		}
		_ = verifier.Rollback(ctx)
		if err := <-done; err != nil {
			t.Fatalf("cleanup after the verifier side was rolled back: %v", err)
		}
		return false
	}
	if err := verifier.Commit(ctx); err != nil {
		t.Fatal(err)
	}
	if err := <-done; err != nil {
		t.Fatalf("cleanup after a deadlock: %v", err)
	}
	var left int
	if err := pool.QueryRow(ctx, `SELECT count(*) FROM verifiermain WHERE agent_id = $1`, id).Scan(&left); err != nil {
		t.Fatal(err)
	}
	if left != 0 {
		t.Fatal("the agent is still enrolled after cleanup")
	}
	return true
}

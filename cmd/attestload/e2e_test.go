package main

import (
	"context"
	"os"
	"path/filepath"
	"strings"
	"testing"
	"time"

	"github.com/jackc/pgx/v5/pgxpool"

	"github.com/attestload/attestload/attestation/enroll"
	"github.com/attestload/attestload/attestation/record"
	"github.com/attestload/attestload/attestation/softtpm"
	"github.com/attestload/attestload/internal/pgtest"
)

// enrollBystander writes one agent that is not attestload's run (another prefix): cleanup must never touch it.
func enrollBystander(t *testing.T, pool *pgxpool.Pool) string {
	t.Helper()
	keys, err := softtpm.LoadOrCreateKeyPool(keyPoolArg(), 1, nil)
	if err != nil {
		t.Fatal(err)
	}
	en, err := enroll.Enroll(t.Context(), pool, enroll.Plan{Prefix: "bystander-", Count: 1,
		Keys: func(int) string { return keys[0].PublicBase64() }, IMAPolicyJSON: []byte(`{}`), IMAGenerator: 0})
	if err != nil {
		t.Fatal(err)
	}
	return en.AgentIDs[0]
}

func countRows(t *testing.T, pool *pgxpool.Pool, query string, args ...any) int {
	t.Helper()
	var n int
	if err := pool.QueryRow(context.Background(), query, args...).Scan(&n); err != nil {
		t.Fatal(err)
	}
	return n
}

func TestEndToEndPostgreSQL(t *testing.T) {
	dbURL := pgtest.NewKeylimeDatabase(t)
	pool := pgtest.Pool(t, dbURL)
	bystander := enrollBystander(t, pool)
	fastSim(t)
	t.Setenv("ATTESTLOAD_DATABASE_URL", dbURL)
	t.Setenv("ATTESTLOAD_RUN_DISTINCT_KEYS", "4")
	dir := t.TempDir()
	code, out, stderr := runMain(t, "run", "-w", "16", "-a", "200", "-t", "3", "--profile", "quote-only",
		"--results-dir", dir, "--key-pool", keyPoolArg())
	if code != 0 {
		t.Fatalf("exit %d:\n%s", code, stderr)
	}
	if strings.Contains(stderr, "attestload:attestload@") || strings.Contains(stderr, ":attestload@") {
		t.Fatalf("the database password appears in the logs:\n%s", stderr)
	}
	recs, partial := readJSONL(t, onlyResults(t, dir))
	if len(recs) != 600 || partial {
		t.Fatalf("%d records (partial %v), want exactly 600", len(recs), partial)
	}
	seen := map[[2]int]bool{}
	for _, r := range recs {
		// The old layout's rules: v0 keys present and meaningful, create/update attempts only.
		if !r.CreateSuccessful || !r.UpdateSuccessful || len(r.CreateAttempts) == 0 || len(r.UpdateAttempts) == 0 ||
			r.CreateAttempts[0].Action != record.ActionCreate || r.UpdateAttempts[0].Action != record.ActionUpdate ||
			r.CreateAttempts[0].StartTime < 1e9 || r.Outcome != record.OutcomeSuccess {
			t.Fatalf("record does not read as a successful v0 task: %+v", r)
		}
		seen[[2]int{r.AgentIndex, r.TaskIndex}] = true
	}
	if len(seen) != 600 {
		t.Fatalf("%d distinct (agent, task) pairs, want 600", len(seen))
	}
	if !strings.Contains(out, "Performed 600 attestations") {
		t.Fatalf("summary:\n%s", out)
	}
	if n := countRows(t, pool, `SELECT count(*) FROM verifiermain WHERE agent_id LIKE 'attestload-%'`); n != 0 {
		t.Fatalf("%d agents of the run remain after exit", n)
	}
	if n := countRows(t, pool, `SELECT count(*) FROM attestations WHERE agent_id LIKE 'attestload-%'`); n != 0 {
		t.Fatalf("%d attestations of the run remain after exit", n)
	}
	if n := countRows(t, pool, `SELECT count(*) FROM verifiermain WHERE agent_id = $1`, bystander); n != 1 {
		t.Fatalf("the unrelated agent %s was removed", bystander)
	}
}

func TestKill9ThenCleanupCommand(t *testing.T) {
	dbURL := pgtest.NewKeylimeDatabase(t)
	pool := pgtest.Pool(t, dbURL)
	bystander := enrollBystander(t, pool)
	dir := t.TempDir()
	p := start(t, append(simEnv, "ATTESTLOAD_DATABASE_URL="+dbURL), "run", "-w", "4", "-a", "20",
		"--profile", "quote-only", "--results-dir", dir, "--key-pool", keyPoolArg())
	p.waitFor(t, "run started", time.Minute)
	deadline := time.Now().Add(30 * time.Second)
	for {
		m, _ := filepath.Glob(filepath.Join(dir, "*.jsonl*"))
		if len(m) == 1 {
			if fi, err := os.Stat(m[0]); err == nil && fi.Size() > 5000 {
				break
			}
		}
		if time.Now().After(deadline) {
			t.Fatalf("results never grew:\n%s", p.stderr.String())
		}
		time.Sleep(50 * time.Millisecond)
	}
	p.cmd.Process.Kill()
	p.wait(t, 10*time.Second)
	readJSONL(t, onlyResults(t, dir))
	if n := countRows(t, pool, `SELECT count(*) FROM verifiermain WHERE agent_id LIKE 'attestload-%'`); n != 20 {
		t.Fatalf("%d agents after kill -9, want the run's 20 left behind", n)
	}
	code, out, stderr := runMain(t, "cleanup", dbURL)
	if code != 0 || !strings.Contains(out, "20 agents") {
		t.Fatalf("cleanup: exit %d\n%s\n%s", code, out, stderr)
	}
	for _, q := range []string{
		`SELECT count(*) FROM verifiermain WHERE agent_id LIKE 'attestload-%'`,
		`SELECT count(*) FROM attestations WHERE agent_id LIKE 'attestload-%'`,
	} {
		if n := countRows(t, pool, q); n != 0 {
			t.Fatalf("%s = %d after cleanup", q, n)
		}
	}
	if n := countRows(t, pool, `SELECT count(*) FROM verifiermain WHERE agent_id = $1`, bystander); n != 1 {
		t.Fatal("cleanup removed the unrelated agent")
	}
}

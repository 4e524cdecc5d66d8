package simverifier

import (
	"context"
	"encoding/hex"
	"log/slog"
	"net/http"
	"net/http/httptest"
	"testing"

	"github.com/jackc/pgx/v5/pgxpool"

	"github.com/attestload/attestload/attestation/evidence"
	"github.com/attestload/attestload/internal/pgtest"
)

// enrollSQL enrolls an agent by direct SQL as spec §5.2 describes (and as attestload's enroll package does).
func enrollSQL(t *testing.T, pool *pgxpool.Pool, id, akB64, tpmPolicy string, imaPolicyID int) {
	t.Helper()
	_, err := pool.Exec(context.Background(), `INSERT INTO verifiermain (agent_id, ak_tpm, tpm_policy,
		accept_tpm_hash_algs, accept_tpm_encryption_algs, accept_tpm_signing_algs, ima_policy_id, mb_policy_id,
		attestation_count, accept_attestations) VALUES ($1,$2,$3,'["sha256"]','["rsa"]','["rsassa"]',$4,90001,0,true)`,
		id, akB64, tpmPolicy, imaPolicyID)
	if err != nil {
		t.Fatal(err)
	}
}

func TestDatabaseMode(t *testing.T) {
	dbURL := pgtest.NewKeylimeDatabase(t)
	pool := pgtest.Pool(t, dbURL)
	ctx := context.Background()
	profile, err := evidence.NewSynthetic(4, 1, 10)
	if err != nil {
		t.Fatal(err)
	}
	for _, q := range []struct {
		sql  string
		args []any
	}{
		{`INSERT INTO allowlists (id, name, ima_policy, generator) VALUES (90001, 'sim-ima', $1, 2)`, []any{string(profile.PolicyJSON())}},
		{`INSERT INTO allowlists (id, name, ima_policy, generator) VALUES (90010, 'sim-empty', '{}', 1)`, nil},
		{`INSERT INTO mbpolicies (id, name, mb_policy) VALUES (90001, 'sim-mb-none', NULL)`, nil},
	} {
		if _, err := pool.Exec(ctx, q.sql, q.args...); err != nil {
			t.Fatal(err)
		}
	}
	k1, k2 := vectorKey(t, "vec-agent-1"), vectorKey(t, "vec-agent-2")
	enrollSQL(t, pool, "db-ima", k1.PublicBase64(), "{}", 90001)

	clock := newFakeClock()
	newSim := func() (*Verifier, *httptest.Server) {
		cfg := testConfig(clock, nil)
		cfg.DatabaseURL = dbURL
		cfg.Logger = slog.New(slog.NewTextHandler(testWriter{t}, &slog.HandlerOptions{Level: slog.LevelWarn}))
		v, err := New(cfg)
		if err != nil {
			t.Fatal(err)
		}
		t.Cleanup(v.Close)
		srv := httptest.NewServer(v.Handler())
		t.Cleanup(srv.Close)
		return v, srv
	}
	v, srv := newSim()
	if n := v.AgentCount(); n != 1 {
		t.Fatalf("%d agents loaded, want 1", n)
	}
	a, log := sessionIMAAgent(t, srv.URL, "db-ima", k1, profile)
	var active bool
	var hashLen int
	if err := pool.QueryRow(ctx, `SELECT active, length(token_hash) FROM sessions WHERE agent_id = 'db-ima'`).Scan(&active, &hashLen); err != nil {
		t.Fatal(err)
	}
	if !active || hashLen != 64 {
		t.Errorf("sessions row: active=%v token_hash length %d", active, hashLen)
	}

	for n := range 3 {
		if n > 0 {
			log.Grow()
		}
		i, _ := imaCycle(t, a, log, clock, nil)
		if ev, _ := waitVerdict(t, v, "db-ima", i); ev != evalPass {
			t.Fatalf("cycle %d: %s", n, ev)
		}
	}
	// Rolling deletion: attestation 1 went when 2 passed; each row has its evidence items.
	rows, err := pool.Query(ctx, `SELECT index FROM attestations WHERE agent_id = 'db-ima' ORDER BY index`)
	if err != nil {
		t.Fatal(err)
	}
	var indexes []int
	for rows.Next() {
		var i int
		_ = rows.Scan(&i)
		indexes = append(indexes, i)
	}
	if len(indexes) != 2 || indexes[0] != 0 || indexes[1] != 2 {
		t.Errorf("attestation rows %v, want [0 2]", indexes)
	}
	var offset, certified int
	var meta string
	if err := pool.QueryRow(ctx, `SELECT chosen_parameters__starting_offset, results__certified_entry_count
		FROM evidence_items WHERE agent_id = 'db-ima' AND attestation_index = 2 AND evidence_type = 'ima_log'`).Scan(&offset, &certified); err != nil {
		t.Fatal(err)
	}
	if offset != 5 || certified != 1 {
		t.Errorf("ima item: offset %d certified %d, want 5 and 1", offset, certified)
	}
	if err := pool.QueryRow(ctx, `SELECT data__meta FROM evidence_items WHERE agent_id = 'db-ima'
		AND attestation_index = 2 AND evidence_type = 'tpm_quote'`).Scan(&meta); err != nil || meta == "" {
		t.Errorf("quote data__meta %q: %v", meta, err)
	}
	var count, state int
	var lastOK *int
	if err := pool.QueryRow(ctx, `SELECT attestation_count, operational_state, last_successful_attestation
		FROM verifiermain WHERE agent_id = 'db-ima'`).Scan(&count, &state, &lastOK); err != nil {
		t.Fatal(err)
	}
	if count != 3 || state != 3 || lastOK == nil {
		t.Errorf("verifiermain: count %d state %d last ok %v", count, state, lastOK)
	}

	// A failure is stored with its reason and counted.
	i, _ := imaCycle(t, a, log, clock, func(q *quote) { q.extraData = []byte("0123456789abcdef") })
	waitVerdict(t, v, "db-ima", i)
	var eval, reason string
	var failures int
	if err := pool.QueryRow(ctx, `SELECT t.evaluation, t.failure_reason, v.consecutive_attestation_failures
		FROM attestations t JOIN verifiermain v USING (agent_id) WHERE t.agent_id = 'db-ima' AND t.index = $1`, i).
		Scan(&eval, &reason, &failures); err != nil {
		t.Fatal(err)
	}
	if eval != evalFail || reason != FailureBrokenEvidenceChain || failures != 1 {
		t.Errorf("failed row: %s/%s failures %d", eval, reason, failures)
	}

	// A second simulator on the same database resumes: next index, IMA offset and PCR 10, clock baseline.
	v2, srv2 := newSim()
	a.base = srv2.URL
	wantStatus(t, "PoP on the new simulator", a.startSession(), http.StatusOK, "")
	log.Grow()
	j, off := imaCycle(t, a, log, clock, nil)
	if j != i+1 || off != 6 {
		t.Errorf("resumed at index %d offset %d, want %d and 6", j, off, i+1)
	}
	if ev, fr := waitVerdict(t, v2, "db-ima", j); ev != evalPass {
		t.Errorf("resumed verdict %s/%s", ev, fr)
	}

	// An agent enrolled while the simulator runs is found on its first request.
	enrollSQL(t, pool, "db-late", k2.PublicBase64(), `{"0":["`+hexOf(pcr0)+`"],"7":["`+hexOf(pcr7)+`"]}`, 90010)
	late := newSimAgent(t, srv2.URL, "db-late", k2)
	wantStatus(t, "late PoP", late.startSession(), http.StatusOK, "")
	li := cycle(t, late, clock)
	if ev, _ := waitVerdict(t, v2, "db-late", li); ev != evalPass {
		t.Errorf("late agent verdict %s", ev)
	}
	// Re-enrolled with another key behind the simulator's back: the PoP with the new key still passes.
	if _, err := pool.Exec(ctx, `UPDATE verifiermain SET ak_tpm = $1 WHERE agent_id = 'db-late'`, k1.PublicBase64()); err != nil {
		t.Fatal(err)
	}
	rekeyed := newSimAgent(t, srv2.URL, "db-late", k1)
	if r := rekeyed.startSession(); str(t, r.doc, "data", "attributes", "evaluation") != evalPass {
		t.Errorf("PoP with the re-enrolled key: %d %s", r.status, r.body)
	}
}

func hexOf(b []byte) string { return hex.EncodeToString(b) }

// testWriter sends log output to the test log, so database write failures show up.
type testWriter struct{ t *testing.T }

func (w testWriter) Write(p []byte) (int, error) {
	w.t.Helper()
	w.t.Log(string(p))
	return len(p), nil
}

package enroll_test

import (
	"context"
	"crypto/sha256"
	"encoding/hex"
	"encoding/json"
	"errors"
	"fmt"
	"maps"
	"math"
	"slices"
	"strings"
	"testing"

	"github.com/jackc/pgx/v5"
	"github.com/jackc/pgx/v5/pgxpool"

	"github.com/attestload/attestload/attestation/enroll"
	"github.com/attestload/attestload/internal/pgtest"
)

var verifierTables = []string{"allowlists", "mbpolicies", "verifiermain", "attestations", "evidence_items", "sessions"}

// snapshot returns every row of the verifier tables as JSON text, so that "untouched" can be checked exactly.
func snapshot(t *testing.T, pool *pgxpool.Pool) map[string][]string {
	t.Helper()
	out := map[string][]string{}
	for _, table := range verifierTables {
		rows, err := pool.Query(testCtx(t), fmt.Sprintf("SELECT row_to_json(t)::text FROM %s t", table))
		if err != nil {
			t.Fatal(err)
		}
		lines, err := pgx.CollectRows(rows, pgx.RowTo[string])
		if err != nil {
			t.Fatal(err)
		}
		slices.Sort(lines)
		out[table] = lines
	}
	return out
}

func exec(t *testing.T, pool *pgxpool.Pool, sql string, args ...any) {
	t.Helper()
	if _, err := pool.Exec(testCtx(t), sql, args...); err != nil {
		t.Fatalf("%s: %v", sql, err)
	}
}

// addVerifierRows writes what the verifier writes for an agent that attested: attestations with evidence items
// (evidencePer per attestation) and an active PoP session.
func addVerifierRows(t *testing.T, pool *pgxpool.Pool, agentID string, attestations, evidencePer int) {
	t.Helper()
	const ts = "2026-11-30T19:50:34.078706+00:00"
	for idx := range attestations {
		exec(t, pool, `INSERT INTO attestations (agent_id, index, stage, evaluation, system_info__boot_time,
			capabilities_received_at) VALUES ($1, $2, 'verification_complete', 'pass', $3, $3)`, agentID, idx, ts)
		for range evidencePer {
			exec(t, pool, `INSERT INTO evidence_items (agent_id, attestation_index, evidence_class, evidence_type,
				data__entries) VALUES ($1, $2, 'log', 'ima_log', 'x')`, agentID, idx)
		}
	}
	exec(t, pool, `INSERT INTO sessions (session_id, token_hash, token_salt, agent_id, active)
		VALUES (gen_random_uuid()::text, $1, $2, $3, true)`, strings.Repeat("a", 64), strings.Repeat("b", 32), agentID)
}

// addForeignAgents enrolls agents attestload must never touch: a real agent, and look-alikes whose ids start
// with the prefix but that carry no attestload marker (one with meta_data that is not even JSON).
func addForeignAgents(t *testing.T, pool *pgxpool.Pool, prefix string) (lookalikes int) {
	t.Helper()
	exec(t, pool, `INSERT INTO allowlists (name, ima_policy, generator) VALUES ('real-ima', '{}', 1)`)
	exec(t, pool, `INSERT INTO mbpolicies (name) VALUES ('real-mb')`)
	// A real measured-boot reference state, named like a run's, that no cleanup may take.
	exec(t, pool, `INSERT INTO mbpolicies (name, mb_policy) VALUES ($1, $2)`, enroll.MBPolicyName(prefix, "abc"),
		testMBPolicy)
	agents := map[string]any{
		"real-agent-1":                nil,
		prefix + "lookalike-1":        `{"owner":"someone else"}`,
		prefix + "zzzz-7":             nil,
		prefix + "broken-meta":        `not json at all {`,
		prefix + "near-marker-1":      `{"attestload_run":"ABC"}`,
		strings.ToUpper(prefix) + "x": `{"attestload_run":"abc"}`,
	}
	for _, id := range slices.Sorted(maps.Keys(agents)) {
		exec(t, pool, `INSERT INTO verifiermain (agent_id, ak_tpm, tpm_policy, accept_tpm_hash_algs,
			accept_tpm_signing_algs, accept_tpm_encryption_algs, ima_policy_id, mb_policy_id, attestation_count,
			accept_attestations, meta_data)
			SELECT $1, $2, '{}', '["sha256"]', '["rsassa"]', '["rsa"]', a.id, m.id, 3, true, $3
			FROM allowlists a, mbpolicies m WHERE a.name = 'real-ima' AND m.name = 'real-mb'`,
			id, fakeAK(999999), agents[id])
		addVerifierRows(t, pool, id, 2, 2)
		if strings.HasPrefix(id, prefix) {
			lookalikes++
		}
	}
	return lookalikes
}

func TestEnrollThousandAgentsAndCleanup(t *testing.T) {
	pool := pgtest.Pool(t, pgtest.NewKeylimeDatabase(t))
	ctx := testCtx(t)
	addForeignAgents(t, pool, enroll.DefaultPrefix)
	before := snapshot(t, pool)

	pcr0 := strings.Repeat("ab", 32)
	plan := enroll.Plan{
		Count:         1000,
		FirstIndex:    5000,
		Keys:          fakeAK,
		TPMPolicy:     map[string][]string{"0": {pcr0}},
		IMAPolicyJSON: []byte(testIMAPolicy),
		IMAGenerator:  2,
	}
	e, err := enroll.Enroll(ctx, pool, plan)
	if err != nil {
		t.Fatalf("Enroll: %v", err)
	}
	if e.Prefix != enroll.DefaultPrefix || len(e.RunID) != 8 {
		t.Fatalf("defaults not applied: prefix %q, run id %q", e.Prefix, e.RunID)
	}
	if len(e.AgentIDs) != 1000 || e.AgentIDs[0] != "attestload-"+e.RunID+"-5000" ||
		e.AgentIDs[999] != "attestload-"+e.RunID+"-5999" {
		t.Fatalf("agent ids: %d, first %q, last %q", len(e.AgentIDs), e.AgentIDs[0], e.AgentIDs[len(e.AgentIDs)-1])
	}

	// The policy rows.
	var name, policy, checksum string
	var generator int
	err = pool.QueryRow(ctx, `SELECT name, ima_policy, checksum, generator FROM allowlists WHERE id = $1`,
		e.IMAPolicyID).Scan(&name, &policy, &checksum, &generator)
	if err != nil {
		t.Fatal(err)
	}
	sum := sha256.Sum256([]byte(testIMAPolicy))
	if name != "attestload-"+e.RunID+"-ima" || name != e.IMAPolicyName || policy != testIMAPolicy ||
		checksum != hex.EncodeToString(sum[:]) || generator != 2 {
		t.Fatalf("allowlists row: name %q policy %q checksum %q generator %d", name, policy, checksum, generator)
	}
	var mbPolicy *string
	if err := pool.QueryRow(ctx, `SELECT name, mb_policy FROM mbpolicies WHERE id = $1`, e.MBPolicyID).
		Scan(&name, &mbPolicy); err != nil {
		t.Fatal(err)
	}
	if name != "attestload-"+e.RunID+"-mb" || mbPolicy != nil {
		t.Fatalf("mbpolicies row: name %q mb_policy %v (must be NULL: measured boot off)", name, mbPolicy)
	}

	// Every agent row, column by column (spec section 5.1).
	type agentRow struct {
		AgentID, AKTPM, TPMPolicy, HashAlgs, SignAlgs, EncAlgs string
		IMAPolicyID, MBPolicyID, AttestationCount              *int32
		AcceptAttestations                                     bool
		OperationalState, Port, Failures                       *int32
		IP, MetaData, TPMClockInfo, VerifierID                 *string
		PCR10                                                  []byte
	}
	rows, err := pool.Query(ctx, `SELECT agent_id, ak_tpm, tpm_policy, accept_tpm_hash_algs, accept_tpm_signing_algs,
		accept_tpm_encryption_algs, ima_policy_id, mb_policy_id, attestation_count, accept_attestations,
		operational_state, port, consecutive_attestation_failures, ip, meta_data, tpm_clockinfo, verifier_id, pcr10
		FROM verifiermain WHERE agent_id = ANY($1) ORDER BY agent_id`, e.AgentIDs)
	if err != nil {
		t.Fatal(err)
	}
	got, err := pgx.CollectRows(rows, pgx.RowToStructByPos[agentRow])
	if err != nil {
		t.Fatal(err)
	}
	if len(got) != 1000 {
		t.Fatalf("%d agent rows, want 1000", len(got))
	}
	wantMarker := `{"attestload_run":"` + e.RunID + `"}`
	for _, r := range got {
		var idx int
		if _, err := fmt.Sscanf(strings.TrimPrefix(r.AgentID, "attestload-"+e.RunID+"-"), "%d", &idx); err != nil {
			t.Fatalf("agent id %q: %v", r.AgentID, err)
		}
		var tpmPolicy map[string][]string
		if err := json.Unmarshal([]byte(r.TPMPolicy), &tpmPolicy); err != nil || len(tpmPolicy["0"]) != 1 ||
			tpmPolicy["0"][0] != pcr0 {
			t.Fatalf("%s: tpm_policy %q", r.AgentID, r.TPMPolicy)
		}
		switch {
		case r.AKTPM != fakeAK(idx):
			t.Fatalf("%s: ak_tpm is not index %d's key", r.AgentID, idx)
		case r.HashAlgs != `["sha256"]` || r.SignAlgs != `["rsassa"]` || r.EncAlgs != `["rsa"]`:
			t.Fatalf("%s: algorithms %s %s %s", r.AgentID, r.HashAlgs, r.SignAlgs, r.EncAlgs)
		case r.IMAPolicyID == nil || *r.IMAPolicyID != e.IMAPolicyID:
			t.Fatalf("%s: ima_policy_id %v, want %d", r.AgentID, r.IMAPolicyID, e.IMAPolicyID)
		case r.MBPolicyID == nil || *r.MBPolicyID != e.MBPolicyID:
			t.Fatalf("%s: mb_policy_id %v, want %d", r.AgentID, r.MBPolicyID, e.MBPolicyID)
		case r.AttestationCount == nil || *r.AttestationCount != 0:
			t.Fatalf("%s: attestation_count %v, want 0", r.AgentID, r.AttestationCount)
		case !r.AcceptAttestations:
			t.Fatalf("%s: accept_attestations false", r.AgentID)
		case r.OperationalState != nil || r.IP != nil || r.Port != nil:
			t.Fatalf("%s: operational_state/ip/port must stay NULL for a push agent", r.AgentID)
		case r.Failures != nil || r.TPMClockInfo != nil || r.PCR10 != nil || r.VerifierID != nil:
			t.Fatalf("%s: verifier-owned columns must stay NULL", r.AgentID)
		case r.MetaData == nil || *r.MetaData != wantMarker:
			t.Fatalf("%s: meta_data %v, want %s", r.AgentID, r.MetaData, wantMarker)
		}
	}

	// What the verifier writes once our agents attest.
	addVerifierRows(t, pool, e.AgentIDs[0], 3, 2)
	addVerifierRows(t, pool, e.AgentIDs[1], 1, 1)
	addVerifierRows(t, pool, e.AgentIDs[999], 2, 3)

	leftovers, err := enroll.FindLeftovers(ctx, pool, enroll.DefaultPrefix)
	if err != nil {
		t.Fatal(err)
	}
	want := []enroll.Leftover{{RunID: e.RunID, Prefix: "attestload-", Agents: 1000, Attestations: 6,
		FirstAgentID: "attestload-" + e.RunID + "-5000"}}
	if !slices.Equal(leftovers, want) {
		t.Fatalf("FindLeftovers = %+v, want %+v", leftovers, want)
	}
	if l, err := enroll.FindLeftovers(ctx, pool, enroll.DefaultPrefix, e.RunID); err != nil || len(l) != 0 {
		t.Fatalf("FindLeftovers excluding the current run = %+v, %v; want none", l, err)
	}

	removed, err := e.Cleanup(ctx, pool)
	if err != nil {
		t.Fatalf("Cleanup: %v", err)
	}
	wantRemoved := enroll.RemovedCounts{EvidenceItems: 13, Attestations: 6, Sessions: 3, Agents: 1000,
		IMAPolicies: 1, MBPolicies: 1}
	if removed != wantRemoved {
		t.Fatalf("Cleanup removed %v, want %v", removed, wantRemoved)
	}
	after := snapshot(t, pool)
	for _, table := range verifierTables {
		if !slices.Equal(before[table], after[table]) {
			t.Errorf("%s differs from before the run:\nbefore %v\nafter  %v", table, before[table], after[table])
		}
	}

	// Cleanup's temporary evidence_items index must not outlive it.
	var indexes []string
	irows, err := pool.Query(ctx, `SELECT indexname FROM pg_indexes WHERE tablename = 'evidence_items'`)
	if err != nil {
		t.Fatal(err)
	}
	if indexes, err = pgx.CollectRows(irows, pgx.RowTo[string]); err != nil {
		t.Fatal(err)
	}
	if !slices.Equal(indexes, []string{"evidence_items_pkey"}) {
		t.Fatalf("evidence_items indexes after cleanup: %v", indexes)
	}

	// A second cleanup finds nothing and fails on nothing.
	if removed, err := e.Cleanup(ctx, pool); err != nil || removed.Total() != 0 {
		t.Fatalf("second Cleanup = %v, %v; want nothing removed", removed, err)
	}
}

func TestCleanupKeepsPolicyStillInUse(t *testing.T) {
	pool := pgtest.Pool(t, pgtest.NewKeylimeDatabase(t))
	ctx := testCtx(t)
	addForeignAgents(t, pool, "x-")
	e, err := enroll.Enroll(ctx, pool, enroll.Plan{Count: 3, Keys: fakeAK, IMAPolicyJSON: []byte(testIMAPolicy),
		IMAGenerator: 1})
	if err != nil {
		t.Fatal(err)
	}
	// Someone pointed a real agent at our IMA policy; deleting it would break that agent.
	exec(t, pool, `UPDATE verifiermain SET ima_policy_id = $1 WHERE agent_id = 'real-agent-1'`, e.IMAPolicyID)
	removed, err := e.Cleanup(ctx, pool)
	if err != nil {
		t.Fatal(err)
	}
	if removed.Agents != 3 || removed.IMAPolicies != 0 || removed.MBPolicies != 1 {
		t.Fatalf("removed %v, want 3 agents, the unused MB policy and not the IMA policy", removed)
	}
}

func TestEnrollIsAllOrNothing(t *testing.T) {
	pool := pgtest.Pool(t, pgtest.NewKeylimeDatabase(t))
	ctx := testCtx(t)
	addForeignAgents(t, pool, enroll.DefaultPrefix)
	before := snapshot(t, pool)

	keys := func(i int) string {
		if i == 500 {
			return "ARgAAQAL" // truncated: valid base64, wrong TPM2B size
		}
		return fakeAK(i)
	}
	_, err := enroll.Enroll(ctx, pool, enroll.Plan{Count: 1000, Keys: keys, IMAPolicyJSON: []byte(testIMAPolicy)})
	if err == nil || !strings.Contains(err.Error(), "agent 500") || !strings.Contains(err.Error(), "TPM2B_PUBLIC") {
		t.Fatalf("got %v, want an error naming agent 500's AK", err)
	}
	after := snapshot(t, pool)
	for _, table := range verifierTables {
		if !slices.Equal(before[table], after[table]) {
			t.Errorf("%s changed by a failed Enroll", table)
		}
	}
}

func TestEnrollRejectsReusedRunID(t *testing.T) {
	pool := pgtest.Pool(t, pgtest.NewKeylimeDatabase(t))
	ctx := testCtx(t)
	plan := enroll.Plan{RunID: "r1", Count: 2, Keys: fakeAK, IMAPolicyJSON: []byte(testIMAPolicy)}
	if _, err := enroll.Enroll(ctx, pool, plan); err != nil {
		t.Fatal(err)
	}
	_, err := enroll.Enroll(ctx, pool, plan)
	if err == nil || !strings.Contains(err.Error(), "run id is already in use") {
		t.Fatalf("got %v, want a run-id-in-use error", err)
	}
	// The same ids under another run id collide on agent_id: agents of another shard plan with overlapping
	// indexes.
	exec(t, pool, `INSERT INTO verifiermain (agent_id) VALUES ('attestload-r2-1')`)
	plan.RunID = "r2"
	_, err = enroll.Enroll(ctx, pool, plan)
	if err == nil || !strings.Contains(err.Error(), "already enrolled") {
		t.Fatalf("got %v, want an agent-already-enrolled error", err)
	}
}

func TestPlanValidation(t *testing.T) {
	good := func() enroll.Plan {
		return enroll.Plan{Count: 1, Keys: fakeAK, IMAPolicyJSON: []byte(testIMAPolicy)}
	}
	tests := []struct {
		name   string
		change func(p *enroll.Plan)
		want   string
	}{
		{"zero count", func(p *enroll.Plan) { p.Count = 0 }, "agent count 0"},
		{"negative first index", func(p *enroll.Plan) { p.FirstIndex = -1 }, "first agent index -1"},
		{"bad prefix", func(p *enroll.Plan) { p.Prefix = "load test/" }, `prefix "load test/"`},
		{"long prefix", func(p *enroll.Plan) { p.Prefix = strings.Repeat("p", 41) }, "longer than 40"},
		{"bad run id", func(p *enroll.Plan) { p.RunID = "Run-1" }, `run id "Run-1"`},
		{"no keys", func(p *enroll.Plan) { p.Keys = nil }, "no Keys function"},
		{"no policy", func(p *enroll.Plan) { p.IMAPolicyJSON = nil }, "IMA policy JSON is empty"},
		{"policy not object", func(p *enroll.Plan) { p.IMAPolicyJSON = []byte(`[1]`) }, "not a JSON object"},
		{"negative generator", func(p *enroll.Plan) { p.IMAGenerator = -1 }, "generator -1"},
		{"MB policy not object", func(p *enroll.Plan) { p.MBPolicy = []byte(`not json`) }, "measured-boot policy is not a JSON object"},
		{"bad PCR", func(p *enroll.Plan) { p.TPMPolicy = map[string][]string{"24": {"00"}} }, `TPM policy key "24"`},
		{"PCR not hex", func(p *enroll.Plan) { p.TPMPolicy = map[string][]string{"7": {"xyz"}} }, `digest "xyz"`},
		{"PCR no digests", func(p *enroll.Plan) { p.TPMPolicy = map[string][]string{"7": nil} }, "no acceptable digests"},
		{"index overflow", func(p *enroll.Plan) { p.FirstIndex = math.MaxInt; p.Count = 2 }, "overflows"},
		{"AK hex not base64", func(p *enroll.Plan) { p.Keys = func(int) string { return "0118000100" } }, "agent 0: AK is not standard base64"},
		{"AK of a keyedhash object", func(p *enroll.Plan) { p.Keys = func(int) string { return "AAQACAAL" } }, "agent 0: AK type 0x0008 is neither RSA"},
	}
	for _, tc := range tests {
		t.Run(tc.name, func(t *testing.T) {
			p := good()
			tc.change(&p)
			var pool *pgxpool.Pool // validation must fail before the database is touched
			if strings.HasPrefix(tc.name, "AK") {
				pool = pgtest.Pool(t, pgtest.NewKeylimeDatabase(t))
			}
			_, err := enroll.Enroll(testCtx(t), pool, p)
			if err == nil || !strings.Contains(err.Error(), tc.want) {
				t.Fatalf("got %v, want an error containing %q", err, tc.want)
			}
		})
	}
}

func TestCleanupPrefix(t *testing.T) {
	pool := pgtest.Pool(t, pgtest.NewKeylimeDatabase(t))
	ctx := testCtx(t)
	lookalikes := addForeignAgents(t, pool, "attestload-")
	before := snapshot(t, pool)

	var runs []string
	for i, prefix := range []string{"attestload-", "attestload-shard2-", "attestload-"} {
		plan := enroll.Plan{Prefix: prefix, Count: 10, Keys: fakeAK, IMAPolicyJSON: []byte(testIMAPolicy), IMAGenerator: 2}
		if i == 1 {
			plan.MBPolicy = []byte(testMBPolicy) // a measured-boot run: its mbpolicies row holds the reference state
		}
		e, err := enroll.Enroll(ctx, pool, plan)
		if err != nil {
			t.Fatal(err)
		}
		var mb *string
		if err := pool.QueryRow(ctx, `SELECT mb_policy FROM mbpolicies WHERE id = $1 AND name = $2`, e.MBPolicyID,
			e.MBPolicyName).Scan(&mb); err != nil {
			t.Fatal(err)
		}
		if (mb != nil) != (i == 1) || (mb != nil && *mb != testMBPolicy) {
			t.Fatalf("run %d: mbpolicies.mb_policy %v, want the reference state only for the measured-boot run", i, mb)
		}
		addVerifierRows(t, pool, e.AgentIDs[3], 2, 1)
		runs = append(runs, e.RunID)
	}
	// Another tool's run under a different prefix is not ours to remove.
	other, err := enroll.Enroll(ctx, pool, enroll.Plan{Prefix: "other-", Count: 4, Keys: fakeAK,
		IMAPolicyJSON: []byte(testIMAPolicy)})
	if err != nil {
		t.Fatal(err)
	}

	leftovers, err := enroll.FindLeftovers(ctx, pool, "attestload-")
	if err != nil {
		t.Fatal(err)
	}
	if len(leftovers) != 3 {
		t.Fatalf("FindLeftovers found %+v, want the 3 runs %v", leftovers, runs)
	}
	for _, l := range leftovers {
		wantPrefix := "attestload-"
		if l.RunID == runs[1] {
			wantPrefix = "attestload-shard2-"
		}
		if l.Prefix != wantPrefix || l.Agents != 10 || l.Attestations != 2 {
			t.Errorf("leftover %+v: want prefix %s, 10 agents, 2 attestations", l, wantPrefix)
		}
	}

	removed, err := enroll.CleanupPrefix(ctx, pool, "attestload-")
	if err != nil {
		t.Fatalf("CleanupPrefix: %v", err)
	}
	slices.Sort(runs)
	if !slices.Equal(removed.Runs, runs) {
		t.Errorf("removed runs %v, want %v", removed.Runs, runs)
	}
	wantCounts := enroll.RemovedCounts{EvidenceItems: 6, Attestations: 6, Sessions: 3, Agents: 30, IMAPolicies: 3,
		MBPolicies: 3}
	if removed.RemovedCounts != wantCounts {
		t.Errorf("removed %v, want %v", removed.RemovedCounts, wantCounts)
	}
	if removed.SkippedUnmarked != int64(lookalikes) {
		t.Errorf("skipped %d unmarked agents, want %d", removed.SkippedUnmarked, lookalikes)
	}

	// Only the other tool's run is left besides the foreign rows.
	if _, err := other.Cleanup(ctx, pool); err != nil {
		t.Fatal(err)
	}
	after := snapshot(t, pool)
	for _, table := range verifierTables {
		if !slices.Equal(before[table], after[table]) {
			t.Errorf("%s differs from before the runs:\nbefore %v\nafter  %v", table, before[table], after[table])
		}
	}
}

func TestCleanupPrefixRejectsEmptyPrefix(t *testing.T) {
	var pool *pgxpool.Pool
	if _, err := enroll.CleanupPrefix(testCtx(t), pool, ""); err == nil || !strings.Contains(err.Error(), "prefix is empty") {
		t.Fatalf("got %v, want a prefix-is-empty error", err)
	}
	if _, err := enroll.FindLeftovers(testCtx(t), pool, "a%"); err == nil || !strings.Contains(err.Error(), `prefix "a%"`) {
		t.Fatalf("got %v, want a bad-prefix error", err)
	}
}

func TestErrorsAreDistinct(t *testing.T) {
	all := []error{enroll.ErrSQLiteUnsupported, enroll.ErrUnreachable, enroll.ErrAuthFailed, enroll.ErrDatabaseMissing,
		enroll.ErrBadURL, enroll.ErrSchemaMissing, enroll.ErrSchemaOutdated, enroll.ErrSchemaUnrecognized}
	for i, a := range all {
		for j, b := range all {
			if i != j && errors.Is(a, b) {
				t.Errorf("%v is %v", a, b)
			}
		}
	}
}

// TestCleanupSparesARealAgentReusingARunAgentID: an agent id of the run that now belongs to a real agent (its row
// no longer carries the run's marker) keeps its row, attestations, evidence and session; the run's other agents
// and their rows go.
func TestCleanupSparesARealAgentReusingARunAgentID(t *testing.T) {
	pool := pgtest.Pool(t, pgtest.NewKeylimeDatabase(t))
	ctx := testCtx(t)
	e, err := enroll.Enroll(ctx, pool, enroll.Plan{Count: 3, Keys: fakeAK, IMAPolicyJSON: []byte(testIMAPolicy),
		IMAGenerator: 1})
	if err != nil {
		t.Fatal(err)
	}
	for _, id := range e.AgentIDs {
		addVerifierRows(t, pool, id, 2, 3)
	}
	reused := e.AgentIDs[1]
	exec(t, pool, `UPDATE verifiermain SET meta_data = '{"owner":"a real agent"}' WHERE agent_id = $1`, reused)
	rowsOf := func() map[string]int {
		out := map[string]int{}
		for _, table := range []string{"verifiermain", "attestations", "evidence_items", "sessions"} {
			var n int
			if err := pool.QueryRow(ctx, "SELECT count(*) FROM "+table+" WHERE agent_id = $1", reused).
				Scan(&n); err != nil {
				t.Fatal(err)
			}
			out[table] = n
		}
		return out
	}
	before := rowsOf()
	if want := map[string]int{"verifiermain": 1, "attestations": 2, "evidence_items": 6, "sessions": 1}; !maps.Equal(before, want) {
		t.Fatalf("the reused agent's rows before cleanup: %v, want %v", before, want)
	}
	removed, err := e.Cleanup(ctx, pool)
	if err != nil {
		t.Fatal(err)
	}
	// Two agents' rows; the policies stay because the real agent still points at them.
	want := enroll.RemovedCounts{EvidenceItems: 12, Attestations: 4, Sessions: 2, Agents: 2}
	if removed != want {
		t.Fatalf("removed %v, want %v", removed, want)
	}
	if after := rowsOf(); !maps.Equal(after, before) {
		t.Fatalf("the real agent reusing %s lost rows: before %v, after %v", reused, before, after)
	}
}

// TestCleanupBuildsItsTemporaryIndex looks inside the cleanup transaction: with evidence in the table and no index
// led by agent_id, cleanup builds its temporary (agent_id, attestation_index) index before deleting; with an empty
// evidence table, or when such an index already exists, it builds none. Either way none is left afterwards.
func TestCleanupBuildsItsTemporaryIndex(t *testing.T) {
	pool := pgtest.Pool(t, pgtest.NewKeylimeDatabase(t))
	ctx := testCtx(t)
	var seen []string
	enroll.InsideCleanup(t, func(ctx context.Context, tx pgx.Tx, name string) error {
		rows, err := tx.Query(ctx, `SELECT indexname || ' ' || indexdef FROM pg_indexes
			WHERE tablename = 'evidence_items' AND indexname <> 'evidence_items_pkey' ORDER BY indexname`)
		if err != nil {
			return err
		}
		defs, err := pgx.CollectRows(rows, pgx.RowTo[string])
		seen = append(seen, fmt.Sprintf("%q %v", name, defs))
		return err
	})
	run := func(evidence bool) enroll.RemovedCounts {
		t.Helper()
		e, err := enroll.Enroll(ctx, pool, enroll.Plan{Count: 2, Keys: fakeAK, IMAPolicyJSON: []byte(testIMAPolicy),
			IMAGenerator: 1})
		if err != nil {
			t.Fatal(err)
		}
		if evidence {
			addVerifierRows(t, pool, e.AgentIDs[0], 2, 2)
		}
		removed, err := e.Cleanup(ctx, pool)
		if err != nil {
			t.Fatal(err)
		}
		return removed
	}

	if removed := run(true); removed.EvidenceItems != 4 {
		t.Fatalf("removed %v, want 4 evidence items", removed)
	}
	const built = `"attestload_cleanup_evidence_items_agent_id" [attestload_cleanup_evidence_items_agent_id ` +
		`CREATE INDEX attestload_cleanup_evidence_items_agent_id ON public.evidence_items USING btree (agent_id, attestation_index)]`
	if len(seen) != 1 || seen[0] != built {
		t.Fatalf("inside the cleanup with evidence and no agent_id index: %v; want the temporary index built:\n%s", seen, built)
	}

	seen = nil
	run(false)
	if len(seen) != 1 || seen[0] != `"" []` {
		t.Fatalf("inside the cleanup with no evidence: %v; want no index (nothing to speed up)", seen)
	}

	seen = nil
	exec(t, pool, `CREATE INDEX someone_elses ON evidence_items (agent_id)`)
	run(true)
	if len(seen) != 1 || !strings.HasPrefix(seen[0], `"" [someone_elses `) || strings.Contains(seen[0], "attestload") {
		t.Fatalf("inside the cleanup with an agent_id index present: %v; want only that index", seen)
	}

	var left []string
	rows, err := pool.Query(ctx, `SELECT indexname FROM pg_indexes WHERE tablename = 'evidence_items' ORDER BY 1`)
	if err != nil {
		t.Fatal(err)
	}
	if left, err = pgx.CollectRows(rows, pgx.RowTo[string]); err != nil {
		t.Fatal(err)
	}
	if !slices.Equal(left, []string{"evidence_items_pkey", "someone_elses"}) {
		t.Fatalf("evidence_items indexes after the cleanups: %v", left)
	}
}

// TestCleanupGoesOnWithoutItsIndex: when the temporary index cannot be built (here because a table already has its
// name; for a user who does not own evidence_items it is a permission error, the same path) the cleanup still
// removes exactly the run's rows, only without the speed-up, and leaves the other relation alone.
func TestCleanupGoesOnWithoutItsIndex(t *testing.T) {
	pool := pgtest.Pool(t, pgtest.NewKeylimeDatabase(t))
	ctx := testCtx(t)
	exec(t, pool, `CREATE TABLE attestload_cleanup_evidence_items_agent_id (squatter int)`)
	var seen []string
	enroll.InsideCleanup(t, func(ctx context.Context, tx pgx.Tx, name string) error {
		seen = append(seen, name)
		return nil
	})
	e, err := enroll.Enroll(ctx, pool, enroll.Plan{Count: 2, Keys: fakeAK, IMAPolicyJSON: []byte(testIMAPolicy),
		IMAGenerator: 1})
	if err != nil {
		t.Fatal(err)
	}
	addVerifierRows(t, pool, e.AgentIDs[0], 2, 3)
	removed, err := e.Cleanup(ctx, pool)
	if err != nil {
		t.Fatalf("cleanup with its index name taken: %v", err)
	}
	if removed.EvidenceItems != 6 || removed.Attestations != 2 || removed.Agents != 2 {
		t.Fatalf("removed %v, want 6 evidence items, 2 attestations, 2 agents", removed)
	}
	if len(seen) != 1 || seen[0] != "" {
		t.Fatalf("temporary index built: %q; want none (its name is taken)", seen)
	}
	var left int
	if err := pool.QueryRow(ctx, `SELECT count(*) FROM pg_class WHERE relname = 'attestload_cleanup_evidence_items_agent_id' AND relkind = 'r'`).Scan(&left); err != nil || left != 1 {
		t.Fatalf("the table holding the index's name: %d left (%v), want it kept", left, err)
	}
}

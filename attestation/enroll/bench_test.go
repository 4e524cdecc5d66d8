package enroll_test

import (
	"context"
	"testing"
	"time"

	"github.com/attestload/attestload/attestation/enroll"
	"github.com/attestload/attestload/internal/pgtest"
)

// BenchmarkEnrollCleanup100k measures a full-size fleet: enrolling 100,000 agents through COPY and cleaning them
// up again, with a verifier's worth of rows for 10 % of them (2 attestations with 2 evidence items each, and a
// session): 20,000 attestations and 40,000 evidence items.
// It reports enroll-s and cleanup-s per run of the fleet. Run with:
//
//	go test -run '^$' -bench EnrollCleanup100k -benchtime 1x ./attestation/enroll/
func BenchmarkEnrollCleanup100k(b *testing.B) { benchEnrollCleanup(b, 100_000) }

// BenchmarkEnrollCleanup1M is the same for a fleet of a million agents (issue 12's target: each under a minute).
func BenchmarkEnrollCleanup1M(b *testing.B) { benchEnrollCleanup(b, 1_000_000) }

func benchEnrollCleanup(b *testing.B, agents int) {
	pool := pgtest.Pool(b, pgtest.NewKeylimeDatabase(b))
	// Longer than testCtx: a million agents and their planted rows take minutes on a loaded machine.
	ctx, cancel := context.WithTimeout(context.Background(), 20*time.Minute)
	defer cancel()
	var enrollTime, cleanupTime time.Duration
	for b.Loop() {
		start := time.Now()
		e, err := enroll.Enroll(ctx, pool, enroll.Plan{Count: agents, Keys: fakeAK,
			IMAPolicyJSON: []byte(testIMAPolicy), IMAGenerator: 2})
		if err != nil {
			b.Fatal(err)
		}
		enrollTime += time.Since(start)
		b.Logf("enrolled %d agents in %s", agents, time.Since(start).Round(time.Millisecond))

		b.StopTimer()
		if _, err := pool.Exec(ctx, `
			INSERT INTO attestations (agent_id, index, system_info__boot_time, capabilities_received_at)
			SELECT a, i, 'x', 'x' FROM unnest($1::text[]) a, generate_series(0, 1) i;
			`, e.AgentIDs[:agents/10]); err != nil {
			b.Fatal(err)
		}
		if _, err := pool.Exec(ctx, `
			INSERT INTO evidence_items (agent_id, attestation_index, evidence_class, evidence_type)
			SELECT agent_id, index, 'log', 'ima_log' FROM attestations, generate_series(1, 2)`); err != nil {
			b.Fatal(err)
		}
		if _, err := pool.Exec(ctx, `
			INSERT INTO sessions (session_id, token_hash, token_salt, agent_id)
			SELECT gen_random_uuid()::text, 'h', 's', a FROM unnest($1::text[]) a`, e.AgentIDs[:agents/10]); err != nil {
			b.Fatal(err)
		}
		b.StartTimer()

		start = time.Now()
		removed, err := e.Cleanup(ctx, pool)
		if err != nil {
			b.Fatal(err)
		}
		cleanupTime += time.Since(start)
		b.Logf("cleaned %d agents and their rows up in %s", agents, time.Since(start).Round(time.Millisecond))
		if removed.Agents != int64(agents) || removed.EvidenceItems != int64(4*agents/10) {
			b.Fatalf("cleanup removed %v", removed)
		}
	}
	b.ReportMetric(enrollTime.Seconds()/float64(b.N), "enroll-s")
	b.ReportMetric(cleanupTime.Seconds()/float64(b.N), "cleanup-s")
}

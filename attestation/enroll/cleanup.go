package enroll

import (
	"context"
	"errors"
	"fmt"
	"strings"
	"time"

	"github.com/jackc/pgx/v5"
	"github.com/jackc/pgx/v5/pgconn"
	"github.com/jackc/pgx/v5/pgxpool"
)

// cleanupChunk bounds the id arrays sent per statement: large enough that 100,000 agents take a handful of
// round trips, small enough that one statement's hashed ANY() and its lock set stay modest.
const cleanupChunk = 10000

// RemovedCounts says how many rows a cleanup deleted, per table.
type RemovedCounts struct {
	EvidenceItems int64 `json:"evidence_items"`
	Attestations  int64 `json:"attestations"`
	Sessions      int64 `json:"sessions"`
	Agents        int64 `json:"verifiermain"`
	IMAPolicies   int64 `json:"allowlists"`
	MBPolicies    int64 `json:"mbpolicies"`
}

// Total is the number of rows deleted over all tables.
func (c RemovedCounts) Total() int64 {
	return c.EvidenceItems + c.Attestations + c.Sessions + c.Agents + c.IMAPolicies + c.MBPolicies
}

// String lists the counts by table name, for a command's output.
func (c RemovedCounts) String() string {
	return fmt.Sprintf("verifiermain=%d attestations=%d evidence_items=%d sessions=%d allowlists=%d mbpolicies=%d",
		c.Agents, c.Attestations, c.EvidenceItems, c.Sessions, c.IMAPolicies, c.MBPolicies)
}

func (c *RemovedCounts) add(o RemovedCounts) {
	c.EvidenceItems += o.EvidenceItems
	c.Attestations += o.Attestations
	c.Sessions += o.Sessions
	c.Agents += o.Agents
	c.IMAPolicies += o.IMAPolicies
	c.MBPolicies += o.MBPolicies
}

// Cleanup deletes exactly the rows this enrollment created and those the verifier wrote for its agents:
// evidence_items, attestations and sessions of its agents, the agents themselves (only those still carrying the
// run's marker), then the run's two policy rows if no agent references them any more. It runs as one transaction,
// so an interrupted cleanup can simply be repeated. Keylime does not index evidence_items by agent; cleanup adds
// a temporary index for its own transaction when it can (see addEvidenceIndex).
func (e *Enrollment) Cleanup(ctx context.Context, pool *pgxpool.Pool) (RemovedCounts, error) {
	r := runRows{
		runID:       e.RunID,
		agentIDs:    e.AgentIDs,
		imaName:     e.IMAPolicyName,
		mbName:      e.MBPolicyName,
		imaPolicyID: []int32{e.IMAPolicyID},
		mbPolicyID:  []int32{e.MBPolicyID},
	}
	counts, err := r.delete(ctx, pool)
	if err != nil {
		return counts, fmt.Errorf("clean up run %s: %w", e.RunID, err)
	}
	return counts, nil
}

// runRows identifies one run's rows for deletion.
type runRows struct {
	runID       string
	agentIDs    []string
	imaName     string
	mbName      string
	imaPolicyID []int32
	mbPolicyID  []int32
}

// cleanupAttempts bounds how often a cleanup transaction is repeated after PostgreSQL aborted it to break a
// deadlock or a serialization conflict.
const cleanupAttempts = 5

// delete runs the cleanup transaction, repeating it when PostgreSQL aborts it as a deadlock victim: a verifier
// still finishing the run's last verifications locks attestations and then verifiermain, the cleanup locks them in
// the other order, and one of the two is rolled back. The transaction is all-or-nothing, so repeating it is safe.
func (r runRows) delete(ctx context.Context, pool *pgxpool.Pool) (RemovedCounts, error) {
	var err error
	for attempt := range cleanupAttempts {
		var counts RemovedCounts
		counts, err = r.deleteOnce(ctx, pool)
		if err == nil || !isTransient(err) || attempt == cleanupAttempts-1 {
			return counts, err
		}
		t := time.NewTimer(time.Duration(100<<attempt) * time.Millisecond)
		select {
		case <-ctx.Done():
			t.Stop()
			return RemovedCounts{}, errors.Join(err, ctx.Err())
		case <-t.C:
		}
	}
	return RemovedCounts{}, err
}

// isTransient reports a deadlock (40P01) or serialization failure (40001): the transaction was rolled back and
// may simply be run again.
func isTransient(err error) bool {
	var pe *pgconn.PgError
	return errors.As(err, &pe) && (pe.Code == "40P01" || pe.Code == "40001")
}

func (r runRows) deleteOnce(ctx context.Context, pool *pgxpool.Pool) (RemovedCounts, error) {
	var total RemovedCounts
	err := pgx.BeginFunc(ctx, pool, func(tx pgx.Tx) error {
		var counts RemovedCounts
		tmpIndex, err := addEvidenceIndex(ctx, tx)
		if err != nil {
			return err
		}
		if afterEvidenceIndex != nil {
			if err := afterEvidenceIndex(ctx, tx, tmpIndex); err != nil {
				return err
			}
		}
		for start := 0; start < len(r.agentIDs); start += cleanupChunk {
			chunk := r.agentIDs[start:min(start+cleanupChunk, len(r.agentIDs))]
			if err := r.deleteAgents(ctx, tx, chunk, &counts); err != nil {
				return err
			}
		}
		if tmpIndex != "" {
			if _, err := tx.Exec(ctx, "DROP INDEX "+pgx.Identifier{tmpIndex}.Sanitize()); err != nil {
				return fmt.Errorf("drop temporary index: %w", err)
			}
		}
		if err := r.deletePolicies(ctx, tx, &counts); err != nil {
			return err
		}
		total = counts
		return nil
	})
	if err != nil {
		return RemovedCounts{}, err
	}
	return total, nil
}

// deleteAgents deletes the agents of chunk that still carry the run's marker, with their evidence items,
// attestations and sessions, adding what it removed to counts.
func (r runRows) deleteAgents(ctx context.Context, tx pgx.Tx, chunk []string, counts *RemovedCounts) error {
	marker := runMarker(r.runID)
	// Only ids whose row still carries our marker: an id that someone re-used for a real agent keeps its
	// attestations and sessions. FOR UPDATE keeps the verifier from attesting them meanwhile.
	rows, err := tx.Query(ctx,
		`SELECT agent_id FROM verifiermain WHERE agent_id = ANY($1) AND meta_data = $2 FOR UPDATE`,
		chunk, marker)
	if err != nil {
		return fmt.Errorf("select agents: %w", err)
	}
	ours, err := pgx.CollectRows(rows, pgx.RowTo[string])
	if err != nil {
		return fmt.Errorf("select agents: %w", err)
	}
	if len(ours) == 0 {
		return nil
	}
	steps := []struct {
		what string
		sql  string
		n    *int64
	}{
		{"evidence items", `DELETE FROM evidence_items WHERE agent_id = ANY($1)`, &counts.EvidenceItems},
		{"attestations", `DELETE FROM attestations WHERE agent_id = ANY($1)`, &counts.Attestations},
		{"sessions", `DELETE FROM sessions WHERE agent_id = ANY($1)`, &counts.Sessions},
	}
	for _, s := range steps {
		tag, err := tx.Exec(ctx, s.sql, ours)
		if err != nil {
			return fmt.Errorf("delete %s: %w", s.what, explainWriteError(err))
		}
		*s.n += tag.RowsAffected()
	}
	tag, err := tx.Exec(ctx, `DELETE FROM verifiermain WHERE agent_id = ANY($1) AND meta_data = $2`,
		ours, marker)
	if err != nil {
		return fmt.Errorf("delete agents: %w", explainWriteError(err))
	}
	counts.Agents += tag.RowsAffected()
	return nil
}

// deletePolicies deletes the run's IMA and measured-boot policies, adding what it removed to counts.
func (r runRows) deletePolicies(ctx context.Context, tx pgx.Tx, counts *RemovedCounts) error {
	// Policies go by id and exact name, and only once nothing references them: another run's or a real
	// agent's rows may point at them.
	tag, err := tx.Exec(ctx, `DELETE FROM allowlists a WHERE a.id = ANY($1) AND a.name = $2
		AND NOT EXISTS (SELECT 1 FROM verifiermain v WHERE v.ima_policy_id = a.id)`, r.imaPolicyID, r.imaName)
	if err != nil {
		return fmt.Errorf("delete IMA policy %q: %w", r.imaName, explainWriteError(err))
	}
	counts.IMAPolicies = tag.RowsAffected()
	tag, err = tx.Exec(ctx, `DELETE FROM mbpolicies m WHERE m.id = ANY($1) AND m.name = $2
		AND NOT EXISTS (SELECT 1 FROM verifiermain v WHERE v.mb_policy_id = m.id)`, r.mbPolicyID, r.mbName)
	if err != nil {
		return fmt.Errorf("delete measured-boot policy %q: %w", r.mbName, explainWriteError(err))
	}
	counts.MBPolicies = tag.RowsAffected()
	return nil
}

// afterEvidenceIndex is nil except in this package's tests, which use it to look inside the cleanup transaction
// once the temporary index is (or is not) built: the index never outlives the transaction, so nothing outside it
// can tell whether it was there.
var afterEvidenceIndex func(ctx context.Context, tx pgx.Tx, name string) error

// tmpEvidenceIndex is created inside a cleanup transaction and dropped before it commits, so it never outlives
// the cleanup, even when the cleanup fails (DDL is transactional in PostgreSQL).
const tmpEvidenceIndex = "attestload_cleanup_evidence_items_agent_id"

// addEvidenceIndex works around a cost of Keylime's schema: evidence_items has no index on its foreign key to
// attestations, so deleting each attestation makes PostgreSQL scan all of evidence_items to check that nothing
// references it any more. For a fleet of 100,000 agents with a few attestations each that is hours; with a
// temporary index on (agent_id, attestation_index) it is seconds. The index is only built when evidence_items
// has rows and no index led by agent_id, and only if the user may create it (the table's owner); otherwise
// cleanup goes on without it, just slower. While it exists the verifier cannot write evidence, which is fine
// for a cleanup after a run. It returns the index's name when it built one.
func addEvidenceIndex(ctx context.Context, tx pgx.Tx) (string, error) {
	var needed bool
	err := tx.QueryRow(ctx, `SELECT EXISTS (SELECT 1 FROM evidence_items)
		AND NOT EXISTS (
			SELECT 1 FROM pg_index i
			JOIN pg_attribute a ON a.attrelid = i.indrelid AND a.attnum = i.indkey[0]
			WHERE i.indrelid = 'evidence_items'::regclass AND a.attname = 'agent_id')`).Scan(&needed)
	if err != nil {
		return "", fmt.Errorf("inspect evidence_items indexes: %w", err)
	}
	if !needed {
		return "", nil
	}
	// A savepoint, so that a permission error does not abort the cleanup's transaction.
	sp, err := tx.Begin(ctx)
	if err != nil {
		return "", err
	}
	_, err = sp.Exec(ctx, "CREATE INDEX "+pgx.Identifier{tmpEvidenceIndex}.Sanitize()+
		" ON evidence_items (agent_id, attestation_index)")
	if err != nil {
		if rbErr := sp.Rollback(ctx); rbErr != nil {
			return "", fmt.Errorf("roll back temporary index: %w", rbErr)
		}
		return "", nil
	}
	if err := sp.Commit(ctx); err != nil {
		return "", err
	}
	return tmpEvidenceIndex, nil
}

// Leftover is an earlier run's enrollment still in the database.
type Leftover struct {
	RunID        string // the run marker
	Prefix       string // the prefix its agent ids were built with (at least the prefix searched for)
	Agents       int    // verifiermain rows carrying the run's marker
	Attestations int    // attestations rows of those agents
	FirstAgentID string // the lowest agent id, for messages
}

// FindLeftovers lists runs whose marked agents are still enrolled under prefix, excluding the run ids given
// (normally the current run). Agents with the prefix but without an attestload marker are not reported.
func FindLeftovers(ctx context.Context, pool *pgxpool.Pool, prefix string, exclude ...string) ([]Leftover, error) {
	if err := validatePrefix(prefix); err != nil {
		return nil, fmt.Errorf("find leftovers: %w", err)
	}
	rows, err := pool.Query(ctx, `
		WITH ours AS (
			SELECT agent_id, substring(meta_data FROM $2) AS run
			FROM verifiermain
			WHERE starts_with(agent_id, $1) AND meta_data LIKE '{"attestload_run":%'
		)
		SELECT o.run, count(*), min(o.agent_id),
			coalesce(sum((SELECT count(*) FROM attestations a WHERE a.agent_id = o.agent_id)), 0)
		FROM ours o
		WHERE o.run IS NOT NULL AND NOT (o.run = ANY($3))
		GROUP BY o.run
		ORDER BY o.run`, prefix, markerRunPattern, append([]string{}, exclude...))
	if err != nil {
		return nil, fmt.Errorf("find leftovers under prefix %q: %w", prefix, err)
	}
	out, err := pgx.CollectRows(rows, func(row pgx.CollectableRow) (Leftover, error) {
		var l Leftover
		var agents, attestations int64
		err := row.Scan(&l.RunID, &agents, &l.FirstAgentID, &attestations)
		l.Agents, l.Attestations = int(agents), int(attestations)
		l.Prefix = enrollPrefix(l.FirstAgentID, l.RunID, prefix)
		return l, err
	})
	if err != nil {
		return nil, fmt.Errorf("find leftovers under prefix %q: %w", prefix, err)
	}
	return out, nil
}

// enrollPrefix recovers the prefix a run was enrolled with from one of its ids (<prefix><run>-<index>); the
// prefix searched for may be shorter (e.g. "attestload-" for a run enrolled as "attestload-shard2-").
func enrollPrefix(agentID, runID, fallback string) string {
	if i := strings.LastIndex(agentID, runID+"-"); i >= len(fallback) {
		return agentID[:i]
	}
	return fallback
}

// Removed is what CleanupPrefix did.
type Removed struct {
	RemovedCounts
	// Runs are the run ids whose rows were removed.
	Runs []string
	// SkippedUnmarked counts agents whose id has the prefix but that carry no attestload marker: they are
	// someone else's and were left alone.
	SkippedUnmarked int64
}

// CleanupPrefix removes every attestload run enrolled under prefix, for `attestload cleanup DB_URL --prefix P`.
// Only agents that match the prefix and carry an attestload run marker are touched, with their evidence,
// attestations and sessions, and then their runs' policy rows; a look-alike agent with the prefix but no marker is
// counted in SkippedUnmarked and left as it is. Each run is deleted in its own transaction.
func CleanupPrefix(ctx context.Context, pool *pgxpool.Pool, prefix string) (Removed, error) {
	var out Removed
	if err := validatePrefix(prefix); err != nil {
		return out, fmt.Errorf("cleanup: %w", err)
	}
	leftovers, err := FindLeftovers(ctx, pool, prefix)
	if err != nil {
		return out, fmt.Errorf("cleanup: %w", err)
	}
	for _, l := range leftovers {
		r, err := leftoverRows(ctx, pool, prefix, l)
		if err != nil {
			return out, fmt.Errorf("cleanup run %s: %w", l.RunID, err)
		}
		counts, err := r.delete(ctx, pool)
		if err != nil {
			return out, fmt.Errorf("cleanup run %s: %w", l.RunID, err)
		}
		out.add(counts)
		out.Runs = append(out.Runs, l.RunID)
	}
	err = pool.QueryRow(ctx, `SELECT count(*) FROM verifiermain WHERE starts_with(agent_id, $1)
		AND (meta_data IS NULL OR substring(meta_data FROM $2) IS NULL)`, prefix, markerRunPattern).
		Scan(&out.SkippedUnmarked)
	if err != nil {
		return out, fmt.Errorf("cleanup: count unmarked agents: %w", err)
	}
	return out, nil
}

// leftoverRows collects a leftover run's exact agent ids and the policy rows they point at.
func leftoverRows(ctx context.Context, pool *pgxpool.Pool, prefix string, l Leftover) (runRows, error) {
	r := runRows{
		runID:   l.RunID,
		imaName: IMAPolicyName(l.Prefix, l.RunID),
		mbName:  MBPolicyName(l.Prefix, l.RunID),
	}
	rows, err := pool.Query(ctx, `SELECT agent_id, ima_policy_id, mb_policy_id FROM verifiermain
		WHERE starts_with(agent_id, $1) AND meta_data = $2`, prefix, runMarker(l.RunID))
	if err != nil {
		return r, fmt.Errorf("list agents: %w", err)
	}
	seenIMA, seenMB := map[int32]bool{}, map[int32]bool{}
	var id string
	var ima, mb *int32
	_, err = pgx.ForEachRow(rows, []any{&id, &ima, &mb}, func() error {
		r.agentIDs = append(r.agentIDs, id)
		if ima != nil && !seenIMA[*ima] {
			seenIMA[*ima] = true
			r.imaPolicyID = append(r.imaPolicyID, *ima)
		}
		if mb != nil && !seenMB[*mb] {
			seenMB[*mb] = true
			r.mbPolicyID = append(r.mbPolicyID, *mb)
		}
		return nil
	})
	if err != nil {
		return r, fmt.Errorf("list agents: %w", err)
	}
	return r, nil
}

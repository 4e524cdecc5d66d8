package enroll

import (
	"context"
	_ "embed"
	"errors"
	"fmt"
	"maps"
	"slices"
	"strings"

	"github.com/jackc/pgx/v5"
	"github.com/jackc/pgx/v5/pgxpool"
)

// AlembicHead is the Keylime migration revision whose schema attestload was written against
// (keylime/keylime 9b1f6e6). InitSchema records it in alembic_version_cloud_verifier.
const AlembicHead = "a59cc9366774"

// newerCompatible lists later Keylime revisions known to keep everything enrollment relies on.
// 76254307fdfd adds verifiermain.enrollment_generation NOT NULL DEFAULT 0, which the default fills in.
var newerCompatible = []string{"76254307fdfd"}

// olderKnown lists revisions before AlembicHead that a verifier database may still be at.
var olderKnown = map[string]string{
	"5a8b2c3d4e6f": "hashed session tokens, but evidence_items.agent_id still VARCHAR(20)",
	"870c218abd9a": "push attestation tables, but no hashed session tokens",
}

// Schema errors, for errors.Is.
var (
	// ErrSchemaMissing means the database has no Keylime verifier tables at all.
	ErrSchemaMissing = errors.New("keylime verifier schema missing")
	// ErrSchemaOutdated means the tables exist but predate what push enrollment needs.
	ErrSchemaOutdated = errors.New("keylime verifier schema older than expected")
	// ErrSchemaUnrecognized means the structure looks right but the migration revision is not one attestload
	// knows.
	ErrSchemaUnrecognized = errors.New("keylime verifier schema revision not recognized")
)

//go:embed schema.sql
var schemaDDL string

// schemaLockKey serialises concurrent InitSchema calls on one server: CREATE TABLE IF NOT EXISTS is not safe
// against a concurrent creator of the same table.
const schemaLockKey int64 = 0x6174746573746c64 // "attestld"

// InitSchema creates the verifier's tables, as Keylime's migrations leave them at AlembicHead, in a database
// that has none yet, and then checks the result with CheckSchema. A database that already has a verifiermain
// table is left exactly as it is, so running InitSchema against an up-to-date verifier database is harmless and
// against an outdated one reports ErrSchemaOutdated.
func InitSchema(ctx context.Context, pool *pgxpool.Pool) error {
	err := pgx.BeginFunc(ctx, pool, func(tx pgx.Tx) error {
		if _, err := tx.Exec(ctx, "SELECT pg_advisory_xact_lock($1)", schemaLockKey); err != nil {
			return err
		}
		// A database that already has verifier tables belongs to a verifier's migrations: adding the tables a
		// newer Keylime would have created behind alembic's back would only hide that it is outdated.
		var exists bool
		if err := tx.QueryRow(ctx, "SELECT to_regclass('verifiermain') IS NOT NULL").Scan(&exists); err != nil {
			return err
		}
		if exists {
			return nil
		}
		// No arguments: pgx sends it as one simple-protocol query, which may hold many statements.
		_, err := tx.Exec(ctx, schemaDDL)
		return err
	})
	if err != nil {
		return fmt.Errorf("init keylime schema: %w", err)
	}
	return CheckSchema(ctx, pool)
}

// requiredColumns are the columns enrollment, cleanup and the verdict watcher use, with the minimum character
// length where the verifier's own width matters.
var requiredColumns = map[string]map[string]int{
	"verifiermain": {
		"agent_id": 80, "ak_tpm": 376, "tpm_policy": 0, "meta_data": 0, "accept_tpm_hash_algs": 0,
		"accept_tpm_signing_algs": 0, "accept_tpm_encryption_algs": 0, "ima_policy_id": 0, "mb_policy_id": 0,
		"attestation_count": 0, "accept_attestations": 0, "operational_state": 0,
		"consecutive_attestation_failures": 0, "tpm_clockinfo": 0,
	},
	"allowlists":     {"id": 0, "name": 0, "ima_policy": 0, "checksum": 0, "generator": 0},
	"mbpolicies":     {"id": 0, "name": 0, "mb_policy": 0},
	"attestations":   {"agent_id": 80, "index": 0, "stage": 0, "evaluation": 0, "failure_reason": 0},
	"evidence_items": {"id": 0, "agent_id": 80, "attestation_index": 0},
	"sessions":       {"session_id": 0, "agent_id": 80, "token_hash": 0, "token_salt": 0},
}

// CheckSchema verifies that the database holds the Keylime verifier tables with the columns enrollment needs,
// and that the recorded migration revision is AlembicHead or a later one known to be compatible. A database
// without the tables gives ErrSchemaMissing; one from an older Keylime (agent_id VARCHAR(20), no sessions
// table, no push attestations, ...) gives ErrSchemaOutdated listing every difference.
func CheckSchema(ctx context.Context, pool *pgxpool.Pool) error {
	found, err := schemaColumns(ctx, pool)
	if err != nil {
		return err
	}
	if found["verifiermain"] == nil {
		return fmt.Errorf("%w: no verifiermain table in the current schema (start the Keylime verifier once "+
			"against this database so that it runs its migrations, or create the tables with `attestload "+
			"verifier-sim --database URL --init-schema`)", ErrSchemaMissing)
	}

	if problems := missingColumns(found); len(problems) > 0 {
		return fmt.Errorf("%w (attestload needs Keylime migration %s): %s; upgrade the verifier and let it migrate "+
			"its database", ErrSchemaOutdated, AlembicHead, strings.Join(problems, ", "))
	}

	if found["alembic_version_cloud_verifier"] == nil {
		return fmt.Errorf("%w: no alembic_version_cloud_verifier table, so the tables were not created by a Keylime "+
			"verifier (expected revision %s)", ErrSchemaUnrecognized, AlembicHead)
	}
	return checkRevision(ctx, pool)
}

// schemaColumns reads the columns of the tables attestload uses: table, column, maximum length (0 when
// unbounded).
func schemaColumns(ctx context.Context, pool *pgxpool.Pool) (map[string]map[string]int, error) {
	rows, err := pool.Query(ctx, `
		SELECT table_name, column_name, coalesce(character_maximum_length, 0)
		FROM information_schema.columns
		WHERE table_schema = current_schema() AND table_name = ANY($1)`,
		[]string{"verifiermain", "allowlists", "mbpolicies", "attestations", "evidence_items", "sessions",
			"alembic_version_cloud_verifier"})
	if err != nil {
		return nil, fmt.Errorf("check keylime schema: %w", err)
	}
	found := map[string]map[string]int{}
	var table, column string
	var length int
	_, err = pgx.ForEachRow(rows, []any{&table, &column, &length}, func() error {
		if found[table] == nil {
			found[table] = map[string]int{}
		}
		found[table][column] = length
		return nil
	})
	if err != nil {
		return nil, fmt.Errorf("check keylime schema: %w", err)
	}
	return found, nil
}

// missingColumns lists what requiredColumns asks for and found lacks: tables, columns, too short VARCHARs.
func missingColumns(found map[string]map[string]int) []string {
	var problems []string
	for _, t := range slices.Sorted(maps.Keys(requiredColumns)) {
		have, ok := found[t]
		if !ok {
			problems = append(problems, "no "+t+" table")
			continue
		}
		for _, c := range slices.Sorted(maps.Keys(requiredColumns[t])) {
			want := requiredColumns[t][c]
			got, ok := have[c]
			switch {
			case !ok:
				problems = append(problems, fmt.Sprintf("no %s.%s column", t, c))
			case want > 0 && got > 0 && got < want:
				problems = append(problems, fmt.Sprintf("%s.%s is VARCHAR(%d), expected at least VARCHAR(%d)", t, c, got, want))
			}
		}
	}
	return problems
}

// checkRevision checks the one row of alembic_version_cloud_verifier against the revisions attestload knows.
func checkRevision(ctx context.Context, pool *pgxpool.Pool) error {
	var versions []string
	vrows, err := pool.Query(ctx, "SELECT version_num FROM alembic_version_cloud_verifier ORDER BY version_num")
	if err != nil {
		return fmt.Errorf("check keylime schema revision: %w", err)
	}
	versions, err = pgx.CollectRows(vrows, pgx.RowTo[string])
	if err != nil {
		return fmt.Errorf("check keylime schema revision: %w", err)
	}
	if len(versions) != 1 {
		return fmt.Errorf("%w: alembic_version_cloud_verifier holds %d rows %v, expected exactly one (%s)",
			ErrSchemaUnrecognized, len(versions), versions, AlembicHead)
	}
	v := versions[0]
	switch {
	case v == AlembicHead || slices.Contains(newerCompatible, v):
		return nil
	case olderKnown[v] != "":
		return fmt.Errorf("%w: migration revision %s (%s), expected %s; upgrade the verifier and let it migrate "+
			"its database", ErrSchemaOutdated, v, olderKnown[v], AlembicHead)
	default:
		return fmt.Errorf("%w: migration revision %q, attestload knows %s and %s", ErrSchemaUnrecognized, v,
			AlembicHead, strings.Join(newerCompatible, ", "))
	}
}

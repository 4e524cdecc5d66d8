package enroll_test

import (
	"context"
	"errors"
	"os"
	"slices"
	"strings"
	"testing"

	"github.com/jackc/pgx/v5"
	"github.com/jackc/pgx/v5/pgxpool"

	"github.com/attestload/attestload/attestation/enroll"
	"github.com/attestload/attestload/internal/pgtest"
	"github.com/attestload/attestload/internal/sharedtest"
)

// loadReferenceSchema creates a database holding the pg_dump of the schema a real verifier created.
func loadReferenceSchema(t *testing.T) *pgxpool.Pool {
	t.Helper()
	raw, err := os.ReadFile(sharedtest.Testdata(t, "keylime-schema", "verifierdb-schema.sql"))
	if err != nil {
		t.Fatalf("read reference schema: %v", err)
	}
	// psql meta-commands (\restrict, \unrestrict) are not SQL.
	var sql strings.Builder
	for line := range strings.Lines(string(raw)) {
		if !strings.HasPrefix(line, `\`) {
			sql.WriteString(line)
		}
	}
	pool := pgtest.Pool(t, pgtest.NewDatabase(t))
	// The dump empties search_path for its session; run it on one connection that is then discarded.
	pooled, err := pool.Acquire(testCtx(t))
	if err != nil {
		t.Fatal(err)
	}
	conn := pooled.Hijack()
	defer conn.Close(context.Background())
	if _, err := conn.Exec(testCtx(t), sql.String()); err != nil {
		t.Fatalf("load reference schema: %v", err)
	}
	return pool
}

// catalog describes a database's public schema as sorted lines, one per column, constraint, index and
// sequence, in a form that does not depend on object ids.
func catalog(t *testing.T, pool *pgxpool.Pool) map[string][]string {
	t.Helper()
	queries := map[string]string{
		"tables": `SELECT table_name || ' ' || table_type FROM information_schema.tables WHERE table_schema = 'public'`,
		"columns": `SELECT table_name || '.' || column_name || ' #' || ordinal_position || ' ' || data_type ||
				coalesce('(' || character_maximum_length || ')', '') || ' nullable=' || is_nullable ||
				' default=' || coalesce(column_default, '-')
			FROM information_schema.columns WHERE table_schema = 'public'`,
		"constraints": `SELECT conrelid::regclass::text || ' ' || conname || ' ' || contype::text || ' ' ||
				pg_get_constraintdef(oid)
			FROM pg_constraint WHERE connamespace = 'public'::regnamespace`,
		"indexes": `SELECT tablename || ' ' || indexname || ' ' || indexdef FROM pg_indexes WHERE schemaname = 'public'`,
		"sequences": `SELECT sequence_name || ' ' || data_type || ' start=' || start_value || ' min=' || minimum_value ||
				' max=' || maximum_value || ' inc=' || increment || ' cycle=' || cycle_option
			FROM information_schema.sequences WHERE sequence_schema = 'public'`,
		"sequence owners": `SELECT s.relname || ' owned by ' || t.relname || '.' || a.attname
			FROM pg_depend d
			JOIN pg_class s ON s.oid = d.objid AND s.relkind = 'S'
			JOIN pg_class t ON t.oid = d.refobjid
			JOIN pg_attribute a ON a.attrelid = t.oid AND a.attnum = d.refobjsubid
			WHERE d.deptype = 'a' AND s.relnamespace = 'public'::regnamespace`,
	}
	out := map[string][]string{}
	for kind, q := range queries {
		rows, err := pool.Query(testCtx(t), q)
		if err != nil {
			t.Fatalf("catalog %s: %v", kind, err)
		}
		lines, err := pgx.CollectRows(rows, pgx.RowTo[string])
		if err != nil {
			t.Fatalf("catalog %s: %v", kind, err)
		}
		slices.Sort(lines)
		out[kind] = lines
	}
	return out
}

func TestInitSchemaMatchesReferenceVerifier(t *testing.T) {
	ref := catalog(t, loadReferenceSchema(t))
	pool := pgtest.Pool(t, pgtest.NewDatabase(t))
	if err := enroll.InitSchema(testCtx(t), pool); err != nil {
		t.Fatalf("InitSchema: %v", err)
	}
	got := catalog(t, pool)

	if len(ref["columns"]) < 100 || len(ref["constraints"]) < 10 {
		t.Fatalf("reference catalog looks empty (%d columns, %d constraints): was the dump loaded?",
			len(ref["columns"]), len(ref["constraints"]))
	}
	for _, kind := range slices.Sorted(func(yield func(string) bool) {
		for k := range ref {
			if !yield(k) {
				return
			}
		}
	}) {
		missing, extra := diff(ref[kind], got[kind])
		for _, l := range missing {
			t.Errorf("%s: reference has, InitSchema lacks: %s", kind, l)
		}
		for _, l := range extra {
			t.Errorf("%s: InitSchema has, reference lacks: %s", kind, l)
		}
	}
}

func diff(want, got []string) (missing, extra []string) {
	for _, w := range want {
		if !slices.Contains(got, w) {
			missing = append(missing, w)
		}
	}
	for _, g := range got {
		if !slices.Contains(want, g) {
			extra = append(extra, g)
		}
	}
	return missing, extra
}

func TestInitSchemaIsIdempotentAndRecordsHead(t *testing.T) {
	pool := pgtest.Pool(t, pgtest.NewDatabase(t))
	ctx := testCtx(t)
	for i := range 3 {
		if err := enroll.InitSchema(ctx, pool); err != nil {
			t.Fatalf("InitSchema run %d: %v", i+1, err)
		}
	}
	var versions []string
	rows, err := pool.Query(ctx, "SELECT version_num FROM alembic_version_cloud_verifier")
	if err != nil {
		t.Fatal(err)
	}
	if versions, err = pgx.CollectRows(rows, pgx.RowTo[string]); err != nil {
		t.Fatal(err)
	}
	if !slices.Equal(versions, []string{enroll.AlembicHead}) {
		t.Fatalf("alembic versions %v, want [%s]", versions, enroll.AlembicHead)
	}
}

func TestInitSchemaConcurrent(t *testing.T) {
	pool := pgtest.Pool(t, pgtest.NewDatabase(t))
	errs := make(chan error, 4)
	for range 4 {
		go func() { errs <- enroll.InitSchema(testCtx(t), pool) }()
	}
	for range 4 {
		if err := <-errs; err != nil {
			t.Fatalf("concurrent InitSchema: %v", err)
		}
	}
	// Four racing runs leave what one run leaves: a recognised schema, one version row, the same catalog.
	ctx := testCtx(t)
	if err := enroll.CheckSchema(ctx, pool); err != nil {
		t.Fatalf("CheckSchema after concurrent InitSchema: %v", err)
	}
	rows, err := pool.Query(ctx, "SELECT version_num FROM alembic_version_cloud_verifier")
	if err != nil {
		t.Fatal(err)
	}
	versions, err := pgx.CollectRows(rows, pgx.RowTo[string])
	if err != nil {
		t.Fatal(err)
	}
	if !slices.Equal(versions, []string{enroll.AlembicHead}) {
		t.Fatalf("alembic versions %v, want [%s]", versions, enroll.AlembicHead)
	}
	single := pgtest.Pool(t, pgtest.NewDatabase(t))
	if err := enroll.InitSchema(ctx, single); err != nil {
		t.Fatal(err)
	}
	want, got := catalog(t, single), catalog(t, pool)
	for kind := range want {
		missing, extra := diff(want[kind], got[kind])
		if len(missing)+len(extra) > 0 {
			t.Errorf("%s after concurrent InitSchema: missing %v, extra %v", kind, missing, extra)
		}
	}
}

func TestCheckSchemaReference(t *testing.T) {
	pool := loadReferenceSchema(t)
	ctx := testCtx(t)
	// The dump is schema-only, so the version row is missing until the verifier's alembic writes it.
	if err := enroll.CheckSchema(ctx, pool); !errors.Is(err, enroll.ErrSchemaUnrecognized) {
		t.Fatalf("reference without a version row: got %v, want ErrSchemaUnrecognized", err)
	}
	for _, tc := range []struct {
		version string
		want    error
	}{
		{enroll.AlembicHead, nil},
		{"76254307fdfd", nil},
		{"5a8b2c3d4e6f", enroll.ErrSchemaOutdated},
		{"deadbeef0000", enroll.ErrSchemaUnrecognized},
	} {
		if _, err := pool.Exec(ctx, "DELETE FROM alembic_version_cloud_verifier"); err != nil {
			t.Fatal(err)
		}
		if _, err := pool.Exec(ctx, "INSERT INTO alembic_version_cloud_verifier VALUES ($1)", tc.version); err != nil {
			t.Fatal(err)
		}
		err := enroll.CheckSchema(ctx, pool)
		if !errors.Is(err, tc.want) || (tc.want == nil && err != nil) {
			t.Errorf("revision %s: got %v, want %v", tc.version, err, tc.want)
		}
		if err != nil && !strings.Contains(err.Error(), tc.version) {
			t.Errorf("revision %s: error does not name it: %v", tc.version, err)
		}
	}
}

func TestCheckSchemaMissing(t *testing.T) {
	pool := pgtest.Pool(t, pgtest.NewDatabase(t))
	err := enroll.CheckSchema(testCtx(t), pool)
	if !errors.Is(err, enroll.ErrSchemaMissing) {
		t.Fatalf("got %v, want ErrSchemaMissing", err)
	}
	if errors.Is(err, enroll.ErrSchemaOutdated) {
		t.Fatalf("missing and outdated must be distinct: %v", err)
	}
	t.Logf("error: %v", err)

	// Enroll says the same rather than failing on a missing table.
	_, err = enroll.Enroll(testCtx(t), pool, enroll.Plan{Count: 1, Keys: fakeAK, IMAPolicyJSON: []byte(testIMAPolicy)})
	if !errors.Is(err, enroll.ErrSchemaMissing) {
		t.Fatalf("Enroll on an empty database: got %v, want ErrSchemaMissing", err)
	}
}

// TestCheckSchemaOutdated builds the tables an older Keylime left (agent ids of 20 characters, no sessions
// table) and expects every difference to be named.
func TestCheckSchemaOutdated(t *testing.T) {
	pool := pgtest.Pool(t, pgtest.NewDatabase(t))
	ctx := testCtx(t)
	if err := enroll.InitSchema(ctx, pool); err != nil {
		t.Fatal(err)
	}
	for _, stmt := range []string{
		"DROP TABLE sessions",
		"ALTER TABLE evidence_items ALTER COLUMN agent_id TYPE varchar(20)",
		"UPDATE alembic_version_cloud_verifier SET version_num = '870c218abd9a'",
	} {
		if _, err := pool.Exec(ctx, stmt); err != nil {
			t.Fatalf("%s: %v", stmt, err)
		}
	}
	err := enroll.CheckSchema(ctx, pool)
	if !errors.Is(err, enroll.ErrSchemaOutdated) || errors.Is(err, enroll.ErrSchemaMissing) {
		t.Fatalf("got %v, want only ErrSchemaOutdated", err)
	}
	for _, want := range []string{"no sessions table", "evidence_items.agent_id is VARCHAR(20)", enroll.AlembicHead} {
		if !strings.Contains(err.Error(), want) {
			t.Errorf("error does not say %q: %v", want, err)
		}
	}
	t.Logf("error: %v", err)

	// InitSchema must not "repair" someone's verifier database behind its migrations' back.
	if err := enroll.InitSchema(ctx, pool); !errors.Is(err, enroll.ErrSchemaOutdated) {
		t.Fatalf("InitSchema on an outdated schema: got %v, want ErrSchemaOutdated", err)
	}
	var n int
	if err := pool.QueryRow(ctx, "SELECT count(*) FROM information_schema.tables WHERE table_name = 'sessions'").
		Scan(&n); err != nil {
		t.Fatal(err)
	}
	if n != 0 {
		t.Fatal("InitSchema created the sessions table in an outdated schema")
	}
}

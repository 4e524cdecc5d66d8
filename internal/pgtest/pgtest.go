package pgtest

import (
	"context"
	"crypto/rand"
	"encoding/hex"
	"errors"
	"fmt"
	"net/url"
	"os"
	"strings"
	"testing"
	"time"

	"github.com/jackc/pgx/v5"
	"github.com/jackc/pgx/v5/pgconn"
	"github.com/jackc/pgx/v5/pgxpool"

	"github.com/attestload/attestload/attestation/enroll"
)

// EnvURL names the environment variable holding the admin URL of the test server.
const EnvURL = "ATTESTLOAD_TEST_DATABASE_URL"

// namePrefix starts every throwaway database's name, so a crashed test's leftovers are recognisable.
const namePrefix = "attestload_t_"

// adminTimeout bounds creating and dropping a database; a test should fail, not hang, on a stuck server.
const adminTimeout = 30 * time.Second

// AdminURL returns the test server's admin URL, skipping the test when it is not configured (failing under CI).
func AdminURL(t testing.TB) string {
	t.Helper()
	if raw := os.Getenv(EnvURL); raw != "" {
		// Checked here, once, so no caller prints the raw value (it holds a password) in a parse error.
		u, err := url.Parse(raw)
		if err != nil || (u.Scheme != "postgres" && u.Scheme != "postgresql") || u.Host == "" {
			t.Fatalf("%s must be one postgres:// URL on one line, got %q", EnvURL, enroll.RedactURL(raw))
		}
		return raw
	}
	if os.Getenv("CI") != "" {
		t.Fatalf("%s is not set, and CI is set: database tests must not be skipped in CI "+
			"(run scripts/pg-start.sh and export its output as %s)", EnvURL, EnvURL)
	}
	t.Skipf("%s is not set: skipping a test that needs PostgreSQL "+
		"(export %s=\"$(scripts/pg-start.sh)\", or run make test)", EnvURL, EnvURL)
	return ""
}

// NewDatabase creates an empty database with a unique name on the test server and returns its URL. The database
// is dropped when the test and its subtests finish, after terminating any connection the test left open.
func NewDatabase(t testing.TB) string {
	t.Helper()
	admin := AdminURL(t)
	u, err := url.Parse(admin)
	if err != nil {
		t.Fatalf("pgtest: %s: %v", EnvURL, err)
	}
	name := uniqueName(t.Name())

	ctx, cancel := context.WithTimeout(context.Background(), adminTimeout)
	defer cancel()
	conn, err := pgx.Connect(ctx, admin)
	if err != nil {
		t.Fatalf("pgtest: connect to %s: %v", enroll.RedactURL(admin), err)
	}
	defer conn.Close(ctx)
	if _, err := conn.Exec(ctx, "CREATE DATABASE "+pgx.Identifier{name}.Sanitize()); err != nil {
		t.Fatalf("pgtest: create database %s on %s: %v", name, enroll.RedactURL(admin), err)
	}
	t.Cleanup(func() { dropDatabase(t, admin, name) })

	u.Path = "/" + name
	return u.String()
}

// NewKeylimeDatabase is NewDatabase with the Keylime verifier's tables created by enroll.InitSchema.
func NewKeylimeDatabase(t testing.TB) string {
	t.Helper()
	dbURL := NewDatabase(t)
	ctx, cancel := context.WithTimeout(context.Background(), adminTimeout)
	defer cancel()
	pool, err := enroll.Connect(ctx, dbURL)
	if err != nil {
		t.Fatalf("pgtest: %v", err)
	}
	defer pool.Close()
	if err := enroll.InitSchema(ctx, pool); err != nil {
		t.Fatalf("pgtest: %v", err)
	}
	return dbURL
}

// Pool connects to dbURL with enroll.Connect and closes the pool when the test ends.
func Pool(t testing.TB, dbURL string) *pgxpool.Pool {
	t.Helper()
	ctx, cancel := context.WithTimeout(context.Background(), adminTimeout)
	defer cancel()
	pool, err := enroll.Connect(ctx, dbURL)
	if err != nil {
		t.Fatalf("pgtest: %v", err)
	}
	t.Cleanup(pool.Close)
	return pool
}

// uniqueName builds a database name from a random suffix and a readable part of the test's name, within
// PostgreSQL's 63-byte identifier limit.
func uniqueName(testName string) string {
	var b [6]byte
	_, _ = rand.Read(b[:])
	var readable strings.Builder
	for _, r := range strings.ToLower(testName) {
		if readable.Len() >= 30 {
			break
		}
		switch {
		case r >= 'a' && r <= 'z', r >= '0' && r <= '9':
			readable.WriteRune(r)
		default:
			readable.WriteByte('_')
		}
	}
	return namePrefix + hex.EncodeToString(b[:]) + "_" + readable.String()
}

// dropDatabase runs at cleanup time, when the test's own context is already cancelled, so it uses its own.
func dropDatabase(t testing.TB, admin, name string) {
	ctx, cancel := context.WithTimeout(context.Background(), adminTimeout)
	defer cancel()
	if err := drop(ctx, admin, name); err != nil {
		t.Errorf("pgtest: drop database %s: %v", name, err)
	}
}

// drop removes the database, first ending the sessions the test left open. Only the sessions of the role we
// connect as are terminated by hand: pg_terminate_backend on any other process, including an autovacuum worker
// (which has no role and counts as a superuser's), fails the whole statement with "must be a superuser to
// terminate superuser process" for a role that is not one, which made the drop fail now and then. DROP DATABASE
// ... WITH (FORCE) then ends what the role may end and cancels autovacuum in the database itself. A session the
// role may not end (insufficient privilege) or one that will not go yet (object in use) is waited for, briefly;
// if it stays, the error names who is still connected.
func drop(ctx context.Context, admin, name string) error {
	conn, err := pgx.Connect(ctx, admin)
	if err != nil {
		return fmt.Errorf("connect to %s: %v", enroll.RedactURL(admin), err)
	}
	defer conn.Close(context.Background())
	for attempt := 0; ; attempt++ {
		_, err := conn.Exec(ctx, `SELECT pg_terminate_backend(pid) FROM pg_stat_activity
			WHERE datname = $1 AND pid <> pg_backend_pid() AND usename = current_user`, name)
		if err == nil {
			_, err = conn.Exec(ctx, "DROP DATABASE IF EXISTS "+pgx.Identifier{name}.Sanitize()+" WITH (FORCE)")
		}
		if err == nil {
			return nil
		}
		var pgErr *pgconn.PgError
		if !errors.As(err, &pgErr) || (pgErr.Code != "42501" && pgErr.Code != "55006") {
			return err
		}
		t := time.NewTimer(min(50*time.Millisecond<<attempt, time.Second))
		select {
		case <-ctx.Done():
			t.Stop()
			return fmt.Errorf("%v; still connected: %s", err, sessionsIn(conn, name))
		case <-t.C:
		}
	}
}

// sessionsIn describes who is connected to the database, for an error message.
func sessionsIn(conn *pgx.Conn, name string) string {
	ctx, cancel := context.WithTimeout(context.Background(), 5*time.Second)
	defer cancel()
	rows, err := conn.Query(ctx, `SELECT coalesce(usename, '(no role)') || ' ' || coalesce(backend_type, '?') ||
		' pid ' || pid FROM pg_stat_activity WHERE datname = $1 AND pid <> pg_backend_pid()`, name)
	if err != nil {
		return err.Error()
	}
	list, err := pgx.CollectRows(rows, pgx.RowTo[string])
	if err != nil {
		return err.Error()
	}
	return strings.Join(list, ", ")
}

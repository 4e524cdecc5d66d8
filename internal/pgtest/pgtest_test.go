package pgtest

import (
	"context"
	"fmt"
	"runtime"
	"strings"
	"sync"
	"testing"

	"github.com/jackc/pgx/v5"
)

// fakeTB records how AdminURL ended the test; Fatalf and Skipf stop the goroutine like the real ones do.
type fakeTB struct {
	testing.TB
	mu      sync.Mutex
	fatal   string
	skipped string
}

func (f *fakeTB) Helper() {}
func (f *fakeTB) Fatalf(format string, args ...any) {
	f.mu.Lock()
	f.fatal = fmt.Sprintf(format, args...)
	f.mu.Unlock()
	runtime.Goexit()
}
func (f *fakeTB) Skipf(format string, args ...any) {
	f.mu.Lock()
	f.skipped = fmt.Sprintf(format, args...)
	f.mu.Unlock()
	runtime.Goexit()
}

func runAdminURL(f *fakeTB) string {
	var got string
	done := make(chan struct{})
	go func() {
		defer close(done)
		got = AdminURL(f)
	}()
	<-done
	return got
}

func TestAdminURLUnsetSkipsOutsideCI(t *testing.T) {
	t.Setenv(EnvURL, "")
	t.Setenv("CI", "")
	f := &fakeTB{TB: t}
	runAdminURL(f)
	if f.fatal != "" || !strings.Contains(f.skipped, EnvURL) {
		t.Fatalf("want a skip naming %s, got skip %q, fatal %q", EnvURL, f.skipped, f.fatal)
	}
}

func TestAdminURLUnsetFailsInCI(t *testing.T) {
	t.Setenv(EnvURL, "")
	t.Setenv("CI", "true")
	f := &fakeTB{TB: t}
	runAdminURL(f)
	if f.skipped != "" || !strings.Contains(f.fatal, "must not be skipped in CI") {
		t.Fatalf("want a failure under CI, got skip %q, fatal %q", f.skipped, f.fatal)
	}
}

func TestAdminURLSet(t *testing.T) {
	t.Setenv(EnvURL, "postgres://u:p@127.0.0.1:1/postgres")
	f := &fakeTB{TB: t}
	if got := runAdminURL(f); got != "postgres://u:p@127.0.0.1:1/postgres" || f.fatal != "" || f.skipped != "" {
		t.Fatalf("got %q, skip %q, fatal %q", got, f.skipped, f.fatal)
	}
}

// A stray line before the URL (pg_ctlcluster's "Removed stale pid file." once reached it through the script's stdout)
// must fail with a message that names the variable and hides the password.
func TestAdminURLMalformed(t *testing.T) {
	for _, raw := range []string{
		"Removed stale pid file.\npostgres://u:s3cret@127.0.0.1:1/postgres",
		"mysql://u:s3cret@127.0.0.1:1/db",
		"postgres:///only-a-path?password=s3cret",
	} {
		t.Setenv(EnvURL, raw)
		f := &fakeTB{TB: t}
		runAdminURL(f)
		if !strings.Contains(f.fatal, EnvURL) || strings.Contains(f.fatal, "s3cret") {
			t.Errorf("%q: want a failure naming %s without the password, got fatal %q", raw, EnvURL, f.fatal)
		}
	}
}

func TestUniqueName(t *testing.T) {
	a := uniqueName("TestSomething/with spaces and a very long name that goes on and on and on")
	b := uniqueName("TestSomething/with spaces and a very long name that goes on and on and on")
	if a == b {
		t.Fatalf("two names are equal: %s", a)
	}
	if len(a) > 63 {
		t.Fatalf("name %q is %d bytes, PostgreSQL truncates at 63", a, len(a))
	}
	if strings.Trim(a, "abcdefghijklmnopqrstuvwxyz0123456789_") != "" {
		t.Fatalf("name %q has characters that need quoting", a)
	}
}

// TestNewDatabaseLifecycle checks that the database exists and is usable during the test, and is gone after it,
// even when the test leaves a connection open.
func TestNewDatabaseLifecycle(t *testing.T) {
	admin := AdminURL(t)
	ctx := context.Background()
	var name string
	t.Run("inner", func(t *testing.T) {
		dbURL := NewDatabase(t)
		conn, err := pgx.Connect(ctx, dbURL)
		if err != nil {
			t.Fatal(err)
		}
		// Deliberately not closed: cleanup must cope.
		if err := conn.QueryRow(ctx, "SELECT current_database()").Scan(&name); err != nil {
			t.Fatal(err)
		}
		if !strings.HasPrefix(name, namePrefix) {
			t.Fatalf("database %q lacks prefix %q", name, namePrefix)
		}
		if _, err := conn.Exec(ctx, "CREATE TABLE t (x int); INSERT INTO t VALUES (1)"); err != nil {
			t.Fatal(err)
		}
	})
	if name == "" {
		t.Fatal("inner test did not run")
	}
	conn, err := pgx.Connect(ctx, admin)
	if err != nil {
		t.Fatal(err)
	}
	defer conn.Close(ctx)
	var exists bool
	if err := conn.QueryRow(ctx, "SELECT EXISTS (SELECT 1 FROM pg_database WHERE datname = $1)", name).Scan(&exists); err != nil {
		t.Fatal(err)
	}
	if exists {
		t.Fatalf("database %s still exists after the test ended", name)
	}
}

func TestNewKeylimeDatabaseHasSchema(t *testing.T) {
	dbURL := NewKeylimeDatabase(t)
	pool := Pool(t, dbURL)
	var n int
	err := pool.QueryRow(context.Background(),
		"SELECT count(*) FROM information_schema.tables WHERE table_schema = 'public' AND table_name = ANY($1)",
		[]string{"verifiermain", "allowlists", "mbpolicies", "attestations", "evidence_items", "sessions",
			"alembic_version_cloud_verifier"}).Scan(&n)
	if err != nil {
		t.Fatal(err)
	}
	if n != 7 {
		t.Fatalf("found %d of the 7 verifier tables", n)
	}
}

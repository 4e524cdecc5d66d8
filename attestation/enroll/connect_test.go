package enroll_test

import (
	"context"
	"errors"
	"net"
	"net/url"
	"strings"
	"testing"

	"github.com/attestload/attestload/attestation/enroll"
	"github.com/attestload/attestload/internal/pgtest"
)

func TestRedactURL(t *testing.T) {
	tests := []struct{ in, want string }{
		{"postgres://alice:s3cret@db:5432/verifierdb", "postgres://alice:xxxxx@db:5432/verifierdb"},
		{"postgresql://alice:s3cret@db/verifierdb?sslmode=disable", "postgresql://alice:xxxxx@db/verifierdb?sslmode=disable"},
		{"postgres://alice@db/verifierdb", "postgres://alice@db/verifierdb"},
		{"postgres://db/verifierdb", "postgres://db/verifierdb"},
		{"postgres://alice:@db/x", "postgres://alice:xxxxx@db/x"},
		{"postgres://alice:p%40ss%2Fw@db/x", "postgres://alice:xxxxx@db/x"},
		// Pasted without escaping: the password holds '@', '/', ':' and '?'.
		{"postgres://alice:p@ss/w:rd?x@db:5432/x", "postgres://alice:xxxxx@db:5432/x"},
		{"postgres://alice@db/x?sslmode=require&password=s3cret", "postgres://alice@db/x?sslmode=require&password=xxxxx"},
		{"postgres://alice@db/x?PASSWORD=s3cret&a=b", "postgres://alice@db/x?PASSWORD=xxxxx&a=b"},
		{"postgresql+psycopg2://keylime:kl@127.0.0.1/verifierdb", "postgresql+psycopg2://keylime:xxxxx@127.0.0.1/verifierdb"},
		{"host=db user=alice password=s3cret dbname=x", "host=db user=alice password=xxxxx dbname=x"},
		{"host=db password = 's3 cret' dbname=x", "host=db password = xxxxx dbname=x"},
		{"host=db user=alice dbname=x", "host=db user=alice dbname=x"},
		{"", ""},
		{"sqlite:////var/lib/keylime/cv_data.sqlite", "sqlite:////var/lib/keylime/cv_data.sqlite"},
	}
	for _, tc := range tests {
		if got := enroll.RedactURL(tc.in); got != tc.want {
			t.Errorf("RedactURL(%q) = %q, want %q", tc.in, got, tc.want)
		}
	}
}

func TestConnectRefusesSQLite(t *testing.T) {
	for _, u := range []string{
		"sqlite", "sqlite:///cv_data.sqlite", "sqlite:////var/lib/keylime/cv_data.sqlite", "SQLite3:///x.db",
		"sqlite+pysqlite:///x", "/var/lib/keylime/cv_data.sqlite", "verifier.db", "./x.sqlite3",
	} {
		pool, err := enroll.Connect(context.Background(), u)
		if !errors.Is(err, enroll.ErrSQLiteUnsupported) {
			t.Errorf("Connect(%q) = %v, want ErrSQLiteUnsupported", u, err)
		}
		if pool != nil {
			t.Errorf("Connect(%q) returned a pool", u)
		}
		if err != nil && !strings.Contains(err.Error(), "easily overwhelmed") {
			t.Errorf("Connect(%q): %v does not say why", u, err)
		}
	}
}

func TestConnectBadURL(t *testing.T) {
	_, err := enroll.Connect(context.Background(), "postgres://alice:topsecret@db:notaport/x")
	if !errors.Is(err, enroll.ErrBadURL) {
		t.Fatalf("got %v, want ErrBadURL", err)
	}
	t.Logf("error: %v", err)
	if strings.Contains(err.Error(), "topsecret") {
		t.Fatalf("error leaks the password: %v", err)
	}
}

// freePort returns a loopback port on which nothing listens (it was just released).
func freePort(t *testing.T) string {
	t.Helper()
	l, err := net.Listen("tcp", "127.0.0.1:0")
	if err != nil {
		t.Fatal(err)
	}
	addr := l.Addr().String()
	l.Close()
	_, port, _ := net.SplitHostPort(addr)
	return port
}

func TestConnectUnreachable(t *testing.T) {
	port := freePort(t)
	_, err := enroll.Connect(testCtx(t), "postgres://alice:topsecret@127.0.0.1:"+port+"/verifierdb?sslmode=disable")
	if !errors.Is(err, enroll.ErrUnreachable) {
		t.Fatalf("got %v, want ErrUnreachable", err)
	}
	t.Logf("error: %v", err)
	msg := err.Error()
	if !strings.Contains(msg, "127.0.0.1:"+port) {
		t.Errorf("error does not name host:port: %v", msg)
	}
	if strings.Contains(msg, "topsecret") {
		t.Errorf("error leaks the password: %v", msg)
	}
	if !strings.Contains(msg, "alice:xxxxx@") {
		t.Errorf("error does not show the redacted URL: %v", msg)
	}
}

// withURL returns the test server's admin URL with one part changed.
func withURL(t *testing.T, change func(u *url.URL)) string {
	t.Helper()
	u, err := url.Parse(pgtest.AdminURL(t))
	if err != nil {
		t.Fatal(err)
	}
	change(u)
	return u.String()
}

func TestConnectWrongPassword(t *testing.T) {
	bad := withURL(t, func(u *url.URL) { u.User = url.UserPassword(u.User.Username(), "wrong-Pa55word") })
	_, err := enroll.Connect(testCtx(t), bad)
	if !errors.Is(err, enroll.ErrAuthFailed) {
		t.Fatalf("got %v, want ErrAuthFailed", err)
	}
	t.Logf("error: %v", err)
	if strings.Contains(err.Error(), "wrong-Pa55word") {
		t.Fatalf("error leaks the password: %v", err)
	}
	if errors.Is(err, enroll.ErrUnreachable) || errors.Is(err, enroll.ErrDatabaseMissing) {
		t.Fatalf("error is classified twice: %v", err)
	}
}

func TestConnectDatabaseMissing(t *testing.T) {
	missing := withURL(t, func(u *url.URL) { u.Path = "/attestload_no_such_database" })
	_, err := enroll.Connect(testCtx(t), missing)
	if !errors.Is(err, enroll.ErrDatabaseMissing) {
		t.Fatalf("got %v, want ErrDatabaseMissing", err)
	}
	t.Logf("error: %v", err)
	if !strings.Contains(err.Error(), "attestload_no_such_database") {
		t.Fatalf("error does not name the database: %v", err)
	}
	if pw, ok := mustParse(t, missing).User.Password(); ok && strings.Contains(err.Error(), ":"+pw+"@") {
		t.Fatalf("error leaks the password: %v", err)
	}
}

func TestConnectSQLAlchemyURL(t *testing.T) {
	admin := mustParse(t, pgtest.AdminURL(t))
	for _, scheme := range []string{"postgresql+psycopg2", "postgresql+asyncpg", "POSTGRES+pg8000", "PostgreSQL"} {
		u := withURL(t, func(u *url.URL) { u.Scheme = scheme })
		pool, err := enroll.Connect(testCtx(t), u)
		if err != nil {
			t.Fatalf("a verifier-style database_url (%s) should work: %v", scheme, err)
		}
		// The driver suffix is dropped and nothing else: the same user, database and options.
		var db, user string
		err = pool.QueryRow(testCtx(t), "SELECT current_database(), current_user").Scan(&db, &user)
		pool.Close()
		if err != nil {
			t.Fatal(err)
		}
		if db != strings.TrimPrefix(admin.Path, "/") || user != admin.User.Username() {
			t.Fatalf("%s: connected to database %q as %q, want %q as %q", scheme, db, user, admin.Path, admin.User.Username())
		}
	}
	// Only PostgreSQL's own schemes lose their driver suffix.
	u := withURL(t, func(u *url.URL) { u.Scheme = "mysql+pymysql" })
	if pool, err := enroll.Connect(testCtx(t), u); err == nil {
		pool.Close()
		t.Fatalf("Connect accepted a MySQL URL")
	}
}

func mustParse(t *testing.T, s string) *url.URL {
	t.Helper()
	u, err := url.Parse(s)
	if err != nil {
		t.Fatal(err)
	}
	return u
}

// A password pasted without percent-encoding: PostgreSQL (libpq, and pgx like it) ends the user info at the first
// '@', so the rest of the password would become the host name and be printed in a "no such host" error. Such a
// URL is refused as malformed, naming the fix, and no piece of the password appears in the message.
func TestConnectUnencodedPassword(t *testing.T) {
	port := freePort(t)
	for _, tc := range []struct{ url, secret string }{
		{"postgres://attestload:Tr0ub4dor@horse@127.0.0.1:" + port + "/postgres?sslmode=disable", "horse"},
		{"postgresql://attestload:Tr0ub4dor@horse@127.0.0.1:" + port + "/postgres", "Tr0ub4dor"},
		{"postgresql+psycopg2://keylime:a@b@c@127.0.0.1:" + port + "/verifierdb", "b@c"},
		// A '/' in the password: libpq would take "keylime" as the host and "pa" as the port.
		{"postgres://keylime:pa/ss@127.0.0.1:" + port + "/verifierdb", "ss@"},
	} {
		_, err := enroll.Connect(testCtx(t), tc.url)
		if !errors.Is(err, enroll.ErrBadURL) {
			t.Errorf("Connect(%s) = %v, want ErrBadURL", enroll.RedactURL(tc.url), err)
			continue
		}
		msg := err.Error()
		t.Logf("error: %s", msg)
		for _, leak := range []string{tc.secret, "Tr0ub4dor", "horse", "pa/ss"} {
			if strings.Contains(msg, leak) {
				t.Errorf("error leaks %q: %s", leak, msg)
			}
		}
		if !strings.Contains(msg, "percent-encode") {
			t.Errorf("error does not suggest percent-encoding: %s", msg)
		}
	}
	// Encoded, the same password is fine (refused here only because nothing listens on the port).
	_, err := enroll.Connect(testCtx(t), "postgres://attestload:Tr0ub4dor%40horse@127.0.0.1:"+port+"/postgres")
	if !errors.Is(err, enroll.ErrUnreachable) || strings.Contains(err.Error(), "horse") {
		t.Errorf("encoded password: got %v, want ErrUnreachable without the password", err)
	}
}

func TestCheckURL(t *testing.T) {
	for _, ok := range []string{
		"postgres://alice:s3cret@db:5432/verifierdb", "postgres://alice:p%40ss%2Fw@db/x", "postgres://db/x",
		"postgres://alice@db/x?password=a@b", "host=db user=alice password=a@b@c dbname=x", "postgres:///x?host=/run/postgresql",
		"postgres://alice:pa:ss@db/x", "postgres://alice:pa?ss#@db/x",
	} {
		if err := enroll.CheckURL(ok); err != nil {
			t.Errorf("CheckURL(%q) = %v, want nil", ok, err)
		}
	}
	for _, bad := range []string{"postgres://a:b@c@db/x", "postgres://a:b/c@db/x", "postgres://a:b@c/d@db/x"} {
		if err := enroll.CheckURL(bad); !errors.Is(err, enroll.ErrBadURL) {
			t.Errorf("CheckURL(%q) = %v, want ErrBadURL", bad, err)
		}
	}
}

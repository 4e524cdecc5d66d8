package enroll

import (
	"context"
	"errors"
	"fmt"
	"net"
	"net/url"
	"regexp"
	"strings"
	"time"

	"github.com/jackc/pgx/v5/pgconn"
	"github.com/jackc/pgx/v5/pgxpool"
)

// Connection errors, for errors.Is. The returned errors carry the redacted URL and the server's detail.
var (
	// ErrSQLiteUnsupported is returned for SQLite URLs and database file paths.
	// The first sentence is the old tool's (keylime-perf-tests) own explanation; attestload speaks PostgreSQL only.
	ErrSQLiteUnsupported = errors.New("performance tests can only be run using a full database engine such as " +
		"PostgreSQL, not SQLite (a file-backed database is easily overwhelmed under load): point the verifier and " +
		"attestload at a PostgreSQL database (postgresql://user:password@host:5432/verifierdb)")
	// ErrUnreachable means no database server answered at the URL's host and port.
	ErrUnreachable = errors.New("database server unreachable")
	// ErrAuthFailed means the server rejected the user name or password.
	ErrAuthFailed = errors.New("database authentication failed (wrong user name or password)")
	// ErrDatabaseMissing means the server is up but the database named in the URL does not exist.
	ErrDatabaseMissing = errors.New("database does not exist")
	// ErrBadURL means the URL could not be parsed as a PostgreSQL connection string.
	ErrBadURL = errors.New("invalid database URL")
)

// defaultConnectTimeout bounds each connection attempt when the URL does not set connect_timeout, so that a
// firewalled host fails in seconds instead of hanging the start of a run.
const defaultConnectTimeout = 10 * time.Second

// redactedPassword replaces passwords wherever a URL is shown.
const redactedPassword = "xxxxx"

// Connect opens a connection pool to the PostgreSQL database at rawURL and checks that it answers.
//
// rawURL is a postgres:// or postgresql:// URL (a SQLAlchemy-style "postgresql+psycopg2://" URL, as found in a
// verifier's config, is accepted too) or a libpq key=value string. SQLite URLs are refused with
// ErrSQLiteUnsupported. Failures wrap ErrUnreachable (naming host:port), ErrAuthFailed, ErrDatabaseMissing or
// ErrBadURL; no error ever contains the password.
func Connect(ctx context.Context, rawURL string) (*pgxpool.Pool, error) {
	shown := RedactURL(rawURL)
	if IsSQLite(rawURL) {
		return nil, fmt.Errorf("connect to %s: %w", shown, ErrSQLiteUnsupported)
	}
	if err := CheckURL(rawURL); err != nil {
		return nil, fmt.Errorf("connect to %s: %w", shown, err)
	}
	connString := stripDriver(rawURL)
	cfg, err := pgxpool.ParseConfig(connString)
	if err != nil {
		return nil, fmt.Errorf("connect to %s: %w: %s", shown, ErrBadURL, scrub(err.Error(), rawURL))
	}
	if cfg.ConnConfig.ConnectTimeout == 0 {
		cfg.ConnConfig.ConnectTimeout = defaultConnectTimeout
	}
	pool, err := pgxpool.NewWithConfig(ctx, cfg)
	if err != nil {
		return nil, fmt.Errorf("connect to %s: %s", shown, scrub(err.Error(), rawURL))
	}
	if err := pool.Ping(ctx); err != nil {
		pool.Close()
		return nil, classifyConnectError(shown, rawURL, cfg, err)
	}
	return pool, nil
}

// classifyConnectError turns a failed first connection into one of the sentinel errors. Only the server's error
// text and code are kept: pgx's own message repeats the user name and database, and must not get a chance to
// repeat anything else.
func classifyConnectError(shown, rawURL string, cfg *pgxpool.Config, err error) error {
	hostPort := net.JoinHostPort(cfg.ConnConfig.Host, fmt.Sprint(cfg.ConnConfig.Port))
	var pgErr *pgconn.PgError
	if errors.As(err, &pgErr) {
		detail := scrub(pgErr.Message, rawURL)
		switch pgErr.Code {
		case "28P01", "28000": // invalid_password, invalid_authorization_specification (pg_hba reject)
			return fmt.Errorf("connect to %s: %w: user %q at %s: %s (SQLSTATE %s)",
				shown, ErrAuthFailed, cfg.ConnConfig.User, hostPort, detail, pgErr.Code)
		case "3D000": // invalid_catalog_name
			return fmt.Errorf("connect to %s: %w: %q on %s (create it, or fix the database name in the URL)",
				shown, ErrDatabaseMissing, cfg.ConnConfig.Database, hostPort)
		default:
			return fmt.Errorf("connect to %s: server at %s refused the connection: %s (SQLSTATE %s)",
				shown, hostPort, detail, pgErr.Code)
		}
	}
	if errors.Is(err, context.Canceled) {
		return fmt.Errorf("connect to %s: %w", shown, context.Canceled)
	}
	// Anything else is a transport failure: refused, timed out, no route, name resolution. The innermost
	// network error says which.
	cause := err
	var opErr *net.OpError
	var dnsErr *net.DNSError
	switch {
	case errors.As(err, &dnsErr):
		cause = dnsErr
	case errors.As(err, &opErr):
		cause = opErr
	case errors.Is(err, context.DeadlineExceeded):
		cause = context.DeadlineExceeded
	}
	return fmt.Errorf("connect to %s: %w at %s (is PostgreSQL running and listening there?): %s",
		shown, ErrUnreachable, hostPort, scrub(cause.Error(), rawURL))
}

// CheckURL refuses a postgres:// URL that PostgreSQL would read differently from the way it was meant. libpq (and
// pgx, which follows it) ends the user name and password at the first '@' before the first '/', so a password
// pasted with an unescaped '@' or '/' turns its tail into the host name, port or database name, which then
// appears in "no such host" errors and leads the user to look for a network problem. The error wraps ErrBadURL,
// says what to encode and never quotes any part of the URL. Key=value strings and URLs without such characters
// pass.
func CheckURL(rawURL string) error {
	_, rest, ok := strings.Cut(stripDriver(rawURL), "://")
	if !ok {
		return nil
	}
	const fix = "percent-encode '@' as %40 and '/' as %2F (':' in the user name as %3A) in the user name and password"
	authority, path, hasPath := strings.Cut(rest, "/")
	if strings.Count(authority, "@") > 1 {
		return fmt.Errorf("%w: more than one '@' before the host (PostgreSQL ends the password at the first one): %s",
			ErrBadURL, fix)
	}
	if !hasPath {
		return nil
	}
	dbname, query, _ := strings.Cut(path, "?")
	if strings.Contains(dbname, "@") {
		return fmt.Errorf("%w: an '@' after the first '/' (PostgreSQL ends the host at the first '/', so a '/' in the "+
			"password makes the rest of it the database name): %s; a database name with '@' needs %%40 too",
			ErrBadURL, fix)
	}
	for param := range strings.SplitSeq(query, "&") {
		if at, eq := strings.Index(param, "@"), strings.Index(param, "="); at >= 0 && (eq < 0 || at < eq) {
			return fmt.Errorf("%w: an '@' in the query part outside a parameter's value (a password with '/' and "+
				"'?' in it?): %s", ErrBadURL, fix)
		}
	}
	return nil
}

// IsSQLite recognises the ways a SQLite database is usually named: Keylime's own "sqlite" default, SQLAlchemy
// URLs such as sqlite:////var/lib/keylime/cv_data.sqlite, and bare file paths.
func IsSQLite(raw string) bool {
	s := strings.ToLower(strings.TrimSpace(raw))
	if s == "sqlite" || s == "sqlite3" {
		return true
	}
	for _, p := range []string{"sqlite:", "sqlite3:", "sqlite+", "file:"} {
		if strings.HasPrefix(s, p) {
			return true
		}
	}
	if strings.Contains(s, "://") || strings.Contains(s, "=") {
		return false
	}
	for _, ext := range []string{".db", ".sqlite", ".sqlite3", ".db3"} {
		if strings.HasSuffix(s, ext) {
			return true
		}
	}
	return false
}

// stripDriver turns SQLAlchemy's "postgresql+psycopg2://" into "postgresql://", so the verifier's database_url
// can be pasted as is. The scheme is lower-cased too (schemes are case-insensitive): pgx does not recognise
// "POSTGRES://" as a URL and would read the string as key=value settings, connecting somewhere else entirely.
func stripDriver(raw string) string {
	scheme, rest, ok := strings.Cut(raw, "://")
	if !ok {
		return raw
	}
	base, _, _ := strings.Cut(scheme, "+")
	if strings.EqualFold(base, "postgresql") || strings.EqualFold(base, "postgres") {
		return strings.ToLower(base) + "://" + rest
	}
	return raw
}

var (
	queryPassword = regexp.MustCompile(`(?i)([?&]password=)[^&#]*`)
	dsnPassword   = regexp.MustCompile(`(?i)(\bpassword\s*=\s*)('(?:[^'\\]|\\.)*'|[^\s]*)`)
)

// RedactURL returns rawURL with any password replaced by "xxxxx", for errors and logs. It handles URLs (the
// user-info password and a password= query parameter, including passwords with unescaped '@' or '/') and libpq
// key=value strings. It never fails: an unparsable string is redacted by pattern.
func RedactURL(rawURL string) string {
	if scheme, rest, ok := strings.Cut(rawURL, "://"); ok {
		// The user info ends at the last '@' before the path, query or fragment; passwords pasted without
		// escaping may themselves contain '@', '/', '?' or '#', so look for the last '@' overall first.
		if at := strings.LastIndex(rest, "@"); at >= 0 {
			if colon := strings.Index(rest[:at], ":"); colon >= 0 {
				rest = rest[:colon+1] + redactedPassword + rest[at:]
			}
		}
		return queryPassword.ReplaceAllString(scheme+"://"+rest, "${1}"+redactedPassword)
	}
	return dsnPassword.ReplaceAllString(rawURL, "${1}"+redactedPassword)
}

// passwordsIn returns the password as written in rawURL and as decoded, so that scrub can remove either form
// from messages produced by libraries.
func passwordsIn(rawURL string) []string {
	var out []string
	add := func(s string) {
		if s != "" {
			out = append(out, s)
			if d, err := url.PathUnescape(s); err == nil && d != s {
				out = append(out, d)
			}
			if d, err := url.QueryUnescape(s); err == nil && d != s {
				out = append(out, d)
			}
		}
	}
	if _, rest, ok := strings.Cut(rawURL, "://"); ok {
		// The password as a reader sees it (up to the last '@') and as PostgreSQL parses it (up to the first
		// '@' before any '/').
		if at := strings.LastIndex(rest, "@"); at >= 0 {
			if _, pw, ok := strings.Cut(rest[:at], ":"); ok {
				add(pw)
			}
		}
		if i := strings.IndexAny(rest, "@/"); i >= 0 && rest[i] == '@' {
			if _, pw, ok := strings.Cut(rest[:i], ":"); ok {
				add(pw)
			}
		}
		for _, m := range queryPassword.FindAllString(rawURL, -1) {
			_, v, _ := strings.Cut(m, "=")
			add(v)
		}
		return out
	}
	for _, m := range dsnPassword.FindAllStringSubmatch(rawURL, -1) {
		add(strings.Trim(m[2], "'"))
	}
	return out
}

// scrub removes the URL's password from a message that a library produced.
func scrub(msg, rawURL string) string {
	for _, pw := range passwordsIn(rawURL) {
		msg = strings.ReplaceAll(msg, pw, redactedPassword)
	}
	return msg
}

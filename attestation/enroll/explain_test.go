package enroll

import (
	"errors"
	"fmt"
	"strings"
	"testing"

	"github.com/jackc/pgx/v5/pgconn"
)

// TestExplainWriteError: each constraint violation a user can act on gets its cause named, and only that one; any
// other error, PostgreSQL's or not, comes back unchanged.
func TestExplainWriteError(t *testing.T) {
	for _, c := range []struct {
		code, constraint string
		want             string // "" = returned unchanged
		schemaMissing    bool
	}{
		{"23505", "verifiermain_pkey", "an agent with this id is already enrolled", false},
		{"23505", "uniq_allowlists0name", "the run id is already in use", false},
		{"23505", "uniq_mbpolicies_name", "the run id is already in use", false},
		{"23505", "some_other_unique", "", false}, // a unique violation on another constraint: no guess
		{"23503", "verifiermain_pkey", "", false}, // another code on a named constraint: no guess
		{"42P01", "", "", true},
		{"42501", "", "lacks INSERT/DELETE rights", false},
		{"57014", "", "", false},
	} {
		pgErr := &pgconn.PgError{Code: c.code, ConstraintName: c.constraint, Message: "server says no"}
		in := fmt.Errorf("insert agents: %w", pgErr)
		got := explainWriteError(in)
		if !errors.Is(got, in) && got != in {
			t.Errorf("%s/%s: %v no longer wraps the original error", c.code, c.constraint, got)
		}
		if errors.Is(got, ErrSchemaMissing) != c.schemaMissing {
			t.Errorf("%s/%s: %v: errors.Is(ErrSchemaMissing) = %v, want %v", c.code, c.constraint, got,
				!c.schemaMissing, c.schemaMissing)
		}
		switch {
		case c.want == "" && !c.schemaMissing:
			if got != in {
				t.Errorf("%s/%s: %v, want the error unchanged", c.code, c.constraint, got)
			}
		case c.want != "":
			if !strings.Contains(got.Error(), c.want) {
				t.Errorf("%s/%s: %v, want it to say %q", c.code, c.constraint, got, c.want)
			}
		}
		for _, other := range []string{"already enrolled", "already in use", "lacks INSERT/DELETE"} {
			if !strings.Contains(c.want, other) &&
				strings.Contains(got.Error(), other) {
				t.Errorf("%s/%s: %v names a cause (%q) that does not apply", c.code, c.constraint, got, other)
			}
		}
	}
	plain := errors.New("connection reset")
	if got := explainWriteError(plain); got != plain {
		t.Errorf("a non-PostgreSQL error came back as %v", got)
	}
}

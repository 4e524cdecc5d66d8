package enroll

import (
	"context"
	"testing"

	"github.com/jackc/pgx/v5"
)

// InsideCleanup makes every cleanup transaction call f right after it decided about the temporary evidence_items
// index (name is "" when none was built), until the test ends. Tests that use it must not run in parallel.
func InsideCleanup(t *testing.T, f func(ctx context.Context, tx pgx.Tx, name string) error) {
	t.Helper()
	afterEvidenceIndex = f
	t.Cleanup(func() { afterEvidenceIndex = nil })
}

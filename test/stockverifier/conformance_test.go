package stockverifier

import (
	"crypto/rand"
	"testing"

	"github.com/attestload/attestload/attestation/softtpm"
	"github.com/attestload/attestload/internal/pgtest"
	"github.com/attestload/attestload/test/conformance"
	"github.com/attestload/attestload/test/faults/harness"
)

// The stock verifier gives the answers the conformance table records (test/conformance runs the same table
// against the simulator).
func TestStockVerifierConforms(t *testing.T) {
	k := harness.KeylimeFor(t)
	pool := pgtest.Pool(t, k.DBURL)
	keys, err := softtpm.LoadOrCreateKeyPool(harness.KeyPool(t, keysInPool), 2, rand.Reader)
	if err != nil {
		t.Fatal(err)
	}
	t.Cleanup(func() {
		if t.Failed() {
			t.Logf("verifier log (end):\n%s", k.LogTail(8000))
		}
	})
	conformance.RunAll(t, func(src string) conformance.Target {
		return conformance.Target{URL: k.URL, CAFile: k.CAFile, Pool: pool, Source: src, Keys: keys, QuoteInterval: 2}
	})
}

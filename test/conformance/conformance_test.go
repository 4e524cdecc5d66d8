package conformance_test

import (
	"crypto/rand"
	"os"
	"testing"

	"github.com/attestload/attestload/attestation/softtpm"
	"github.com/attestload/attestload/internal/pgtest"
	"github.com/attestload/attestload/test/conformance"
	"github.com/attestload/attestload/test/faults/harness"
)

func TestMain(m *testing.M) { os.Exit(harness.Main(m)) }

// The simulator answers every exchange of the table as the stock verifier does (test/stockverifier runs the same
// table against the stock verifier).
func TestSimulatorConforms(t *testing.T) {
	dbURL := pgtest.NewKeylimeDatabase(t)
	sim := harness.StartSim(t, dbURL, harness.SimOptions{QuoteInterval: 2})
	pool := pgtest.Pool(t, dbURL)
	keys, err := softtpm.LoadOrCreateKeyPool(harness.KeyPool(t, 2), 2, rand.Reader)
	if err != nil {
		t.Fatal(err)
	}
	conformance.RunAll(t, func(src string) conformance.Target {
		return conformance.Target{URL: sim.URL(), CAFile: sim.CAFile(), Pool: pool, Source: src, Keys: keys, QuoteInterval: 2}
	})
}

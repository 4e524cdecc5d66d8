package conformance_test

import (
	"flag"
	"os"
	"path/filepath"
	"testing"

	"github.com/attestload/attestload/internal/sharedtest"
	"github.com/attestload/attestload/test/conformance"
)

var update = flag.Bool("update", false, "rewrite docs/verifier-conformance.md from the table")

// docs/verifier-conformance.md is the table rendered; it must not go stale.
func TestConformanceDoc(t *testing.T) {
	path := filepath.Join(sharedtest.RepoRoot(t), "docs", "verifier-conformance.md")
	want := conformance.Markdown()
	if *update {
		if err := os.WriteFile(path, []byte(want), 0o644); err != nil {
			t.Fatal(err)
		}
	}
	got, err := os.ReadFile(path)
	if err != nil {
		t.Fatalf("%v (generate it: go test ./test/conformance -run TestConformanceDoc -update)", err)
	}
	if string(got) != want {
		t.Errorf("%s is stale: regenerate it with go test ./test/conformance -run TestConformanceDoc -update", path)
	}
}

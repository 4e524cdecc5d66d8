package sharedtest

import (
	"encoding/json"
	"os"
	"path/filepath"
	"testing"
)

// RepoRoot returns the repository root: the nearest directory at or above the working directory that holds
// go.mod.
func RepoRoot(t testing.TB) string {
	t.Helper()
	dir, err := os.Getwd()
	if err != nil {
		t.Fatalf("sharedtest: working directory: %v", err)
	}
	for {
		if _, err := os.Stat(filepath.Join(dir, "go.mod")); err == nil {
			return dir
		}
		parent := filepath.Dir(dir)
		if parent == dir {
			t.Fatal("sharedtest: go.mod not found above the test's directory")
		}
		dir = parent
	}
}

// Testdata returns the path of elem inside the repository's reference material (testdata/ at the repository
// root); with no elem it is that directory itself. The path need not exist.
func Testdata(t testing.TB, elem ...string) string {
	t.Helper()
	return filepath.Join(append([]string{RepoRoot(t), "testdata"}, elem...)...)
}

// ReadTestdata returns the contents of a file inside testdata/, failing the test when it cannot be read.
func ReadTestdata(t testing.TB, elem ...string) []byte {
	t.Helper()
	path := Testdata(t, elem...)
	b, err := os.ReadFile(path)
	if err != nil {
		t.Fatalf("sharedtest: read test data: %v", err)
	}
	return b
}

// Vector returns the raw bytes of the Keylime vector file name (for example "02-agent1-cycle1.json") from
// testdata/keylime-vectors.
func Vector(t testing.TB, name string) []byte {
	t.Helper()
	return ReadTestdata(t, "keylime-vectors", name)
}

// DecodeVector decodes the Keylime vector file name into v, failing the test naming the file when it is not
// valid JSON for v.
func DecodeVector(t testing.TB, name string, v any) {
	t.Helper()
	if err := json.Unmarshal(Vector(t, name), v); err != nil {
		t.Fatalf("sharedtest: decode vector %s: %v", name, err)
	}
}

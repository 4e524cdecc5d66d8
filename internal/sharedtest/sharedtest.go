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

// SharedPath returns the path of elem inside the reference material next to the repository root (../shared);
// with no elem it is that directory itself. The path need not exist.
func SharedPath(t testing.TB, elem ...string) string {
	t.Helper()
	return filepath.Join(append([]string{RepoRoot(t), "..", "shared"}, elem...)...)
}

// ReadShared returns the contents of a file inside ../shared, failing the test when it cannot be read.
func ReadShared(t testing.TB, elem ...string) []byte {
	t.Helper()
	path := SharedPath(t, elem...)
	b, err := os.ReadFile(path)
	if err != nil {
		t.Fatalf("sharedtest: read shared file: %v", err)
	}
	return b
}

// Vector returns the raw bytes of the Keylime vector file name (for example "02-agent1-cycle1.json") from
// ../shared/testdata/keylime-vectors.
func Vector(t testing.TB, name string) []byte {
	t.Helper()
	return ReadShared(t, "testdata", "keylime-vectors", name)
}

// DecodeVector decodes the Keylime vector file name into v, failing the test naming the file when it is not
// valid JSON for v.
func DecodeVector(t testing.TB, name string, v any) {
	t.Helper()
	if err := json.Unmarshal(Vector(t, name), v); err != nil {
		t.Fatalf("sharedtest: decode vector %s: %v", name, err)
	}
}

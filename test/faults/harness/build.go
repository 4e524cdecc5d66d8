package harness

import (
	"crypto/rand"
	"fmt"
	"os"
	"os/exec"
	"path/filepath"
	"runtime"
	"sync"
	"testing"

	"github.com/attestload/attestload/attestation/softtpm"
)

var (
	workOnce sync.Once
	workDir  string
	workErr  error

	buildOnce sync.Once
	binPath   string
	buildErr  error

	keyMu sync.Mutex
)

// Main runs the package's tests and removes the binary and key pool afterwards. Call it from TestMain:
// os.Exit(harness.Main(m)).
func Main(m *testing.M) int {
	code := m.Run()
	if workDir != "" {
		os.RemoveAll(workDir)
	}
	return code
}

// scratch is the per-process directory holding the binary and the shared key pool.
func scratch() (string, error) {
	workOnce.Do(func() { workDir, workErr = os.MkdirTemp("", "attestload-faults-") })
	return workDir, workErr
}

// EnvFaults must be 1 for the fault scenarios to run: they take minutes, so `go test ./...` (make test) skips
// them and `make faults` runs them.
const EnvFaults = "ATTESTLOAD_FAULTS"

// RequireFaults skips the test unless EnvFaults=1.
func RequireFaults(t testing.TB) {
	t.Helper()
	if os.Getenv(EnvFaults) != "1" {
		t.Skipf("fault scenario: set %s=1 or run make faults", EnvFaults)
	}
}

// SkipOutsideCI skips the test with the given reason, except under CI (CI set, as .ci/run does), where the
// reason is a failure: CI provides what these tests need (root for tmpfs mounts, free well-known ports), so a skip
// there would hide a check that silently stopped running.
func SkipOutsideCI(t testing.TB, format string, args ...any) {
	t.Helper()
	if os.Getenv("CI") != "" {
		t.Fatalf("must not be skipped in CI: "+format, args...)
	}
	t.Skipf(format, args...)
}

// Root finds the repository root by walking up from the working directory to go.mod.
func Root(t testing.TB) string {
	t.Helper()
	dir, err := os.Getwd()
	if err != nil {
		t.Fatal(err)
	}
	for {
		if _, err := os.Stat(filepath.Join(dir, "go.mod")); err == nil {
			return dir
		}
		parent := filepath.Dir(dir)
		if parent == dir {
			t.Fatal("go.mod not found above the working directory")
		}
		dir = parent
	}
}

// Binary builds ./cmd/attestload once per test process (with -race when the tests run with it) and returns its
// path.
func Binary(t testing.TB) string {
	t.Helper()
	buildOnce.Do(func() {
		dir, err := scratch()
		if err != nil {
			buildErr = err
			return
		}
		binPath = filepath.Join(dir, "attestload")
		args := []string{"build", "-o", binPath}
		if raceEnabled {
			args = append(args, "-race")
		}
		cmd := exec.Command(filepath.Join(runtime.GOROOT(), "bin", "go"), append(args, "./cmd/attestload")...)
		cmd.Dir = Root(t)
		if out, err := cmd.CombinedOutput(); err != nil {
			buildErr = fmt.Errorf("go build ./cmd/attestload: %v\n%s", err, out)
		}
	})
	if buildErr != nil {
		t.Fatal(buildErr)
	}
	return binPath
}

// KeyPool returns a key pool file holding at least n attestation keys, generated once per test process (RSA key
// generation is the slow part of a run's start; runs pass --key-pool and run.distinct_keys <= n).
func KeyPool(t testing.TB, n int) string {
	t.Helper()
	dir, err := scratch()
	if err != nil {
		t.Fatal(err)
	}
	keyMu.Lock()
	defer keyMu.Unlock()
	path := filepath.Join(dir, "ak-pool.bin")
	if _, err := softtpm.LoadOrCreateKeyPool(path, n, rand.Reader); err != nil {
		t.Fatalf("key pool: %v", err)
	}
	return path
}

package main

import (
	"bufio"
	"bytes"
	"encoding/json"
	"net"
	"os"
	"path/filepath"
	"runtime"
	"strings"
	"testing"

	"github.com/attestload/attestload/attestation/record"
	"github.com/attestload/attestload/internal/resultsread"
)

// fastSim makes the in-process simulated verifier cheap enough for tests: no quote interval, cheap sessions.
func fastSim(t *testing.T) {
	t.Setenv("ATTESTLOAD_SIMULATOR_QUOTE_INTERVAL", "0")
	t.Setenv("ATTESTLOAD_SIMULATOR_SESSION_HASH_ITERATIONS", "1000")
	t.Setenv("ATTESTLOAD_SIMULATOR_RATE_LIMITS", "false")
	// The calibrated simulator costs what the stock verifier does (about 0.2 CPU-s per attestation): too slow here.
	t.Setenv("ATTESTLOAD_SIMULATOR_CALIBRATED", "false")
}

// keyPool is shared by the tests of this package so RSA keys are generated once per test binary.
var keyPoolDir string

func TestMain(m *testing.M) {
	// Runs serve metrics on 127.0.0.1:9464 by default; the tests run many at once, each on a port of its own.
	if os.Getenv("ATTESTLOAD_METRICS_LISTEN") == "" {
		os.Setenv("ATTESTLOAD_METRICS_LISTEN", "127.0.0.1:0")
	}
	d, err := os.MkdirTemp("", "attestload-keys-")
	if err != nil {
		panic(err)
	}
	keyPoolDir = d
	code := m.Run()
	os.RemoveAll(d)
	os.Exit(code)
}

func keyPoolArg() string { return filepath.Join(keyPoolDir, "pool.pem") }

func runMain(t *testing.T, args ...string) (int, string, string) {
	t.Helper()
	var out, errb bytes.Buffer
	code := Main(args, &out, &errb)
	return code, out.String(), errb.String()
}

// readJSONL decodes every whole line of a results file (plain or compressed) and reports whether it ended with a
// partial line or a cut compressed frame.
func readJSONL(t *testing.T, path string) (recs []record.Record, partial bool) {
	t.Helper()
	b, cut, err := resultsread.Bytes(path)
	if err != nil {
		t.Fatal(err)
	}
	defer func() { partial = partial || cut }()
	lines := bytes.Split(b, []byte("\n"))
	last := lines[len(lines)-1]
	lines = lines[:len(lines)-1]
	for i, l := range lines {
		var r record.Record
		if err := json.Unmarshal(l, &r); err != nil {
			t.Fatalf("%s line %d is not a record: %v", path, i+1, err)
		}
		recs = append(recs, r)
	}
	return recs, len(last) > 0
}

func onlyResults(t *testing.T, dir string) string {
	t.Helper()
	m, _ := filepath.Glob(filepath.Join(dir, "*.jsonl*"))
	if len(m) != 1 {
		t.Fatalf("results files in %s: %v, want exactly one", dir, m)
	}
	return m[0]
}

func TestVersion(t *testing.T) {
	code, out, _ := runMain(t, "version")
	if code != 0 || !strings.Contains(out, "attestload dev") || !strings.Contains(out, runtime.Version()) ||
		!strings.Contains(out, "commit ") {
		t.Fatalf("version: %d %q", code, out)
	}
}

func TestUsageAndConfigErrorsExit2(t *testing.T) {
	bad := filepath.Join(t.TempDir(), "bad.yaml")
	os.WriteFile(bad, []byte("run:\n  workers: -2\n"), 0o644)
	for _, c := range []struct {
		args []string
		env  [2]string
		want string
	}{
		{args: []string{"run", "a", "b", "c"}, want: "attestload: run takes at most two arguments"},
		{args: []string{"run", "--workers", "x"}, want: `attestload: invalid argument "x" for "-w, --workers"`},
		{args: []string{"run", "--config", bad}, want: `attestload: config key "run.workers": must be >= 0, got -2`},
		{args: []string{"run", "--model", "open"}, want: `attestload: flag --model: config key "scheduler.model": must be closed, fleet or rate`},
		{args: []string{"run", "https://v:8881", "sqlite:////var/lib/keylime/cv_data.sqlite"},
			want: `attestload: config key "database.url": performance tests can only be run using a full database engine such as PostgreSQL, not SQLite`},
		{args: []string{"run", "https://v:8881"}, want: `attestload: config key "database.url": must be set with verifier.url`},
		{args: []string{"run"}, env: [2]string{"ATTESTLOAD_RUN_WORKRS", "3"}, want: `attestload: environment variable ATTESTLOAD_RUN_WORKRS: unknown config key; did you mean "ATTESTLOAD_RUN_WORKERS"? (config.example.yaml lists the keys)`},
		{args: []string{"run", "--shard", "3/2"}, want: "attestload: --shard: "},
		{args: []string{"cleanup"}, want: "attestload: cleanup takes exactly one argument"},
		{args: []string{"frobnicate"}, want: `attestload: unknown command "frobnicate"`},
	} {
		t.Run(strings.Join(c.args, " "), func(t *testing.T) {
			if c.env[0] != "" {
				t.Setenv(c.env[0], c.env[1])
			}
			code, _, stderr := runMain(t, c.args...)
			if code != 2 || !strings.HasPrefix(stderr, c.want) || strings.Count(stderr, "\n") != 1 {
				t.Fatalf("exit %d, stderr %q; want 2 and one line starting %q", code, stderr, c.want)
			}
		})
	}
}

// A metrics address already taken (a second attestload on the host, say) stops the run before it starts, with an
// error that names the key and the way out.
func TestMetricsAddressInUse(t *testing.T) {
	fastSim(t)
	l, err := net.Listen("tcp", "127.0.0.1:0")
	if err != nil {
		t.Fatal(err)
	}
	defer l.Close()
	code, _, stderr := runMain(t, "run", "-a", "1", "-t", "1", "--results-dir", t.TempDir(), "--key-pool", keyPoolArg(),
		"--metrics-listen", l.Addr().String())
	if code != 2 || !strings.Contains(stderr, `attestload: config key "metrics.listen": `) ||
		!strings.Contains(stderr, "address already in use") || !strings.Contains(stderr, "--metrics-listen") {
		t.Fatalf("exit %d, stderr %q; want 2 and an error naming metrics.listen", code, stderr)
	}
}

func TestRunAgainstSimulatedVerifier(t *testing.T) {
	fastSim(t)
	dir := t.TempDir()
	code, out, stderr := runMain(t, "run", "-w", "2", "-a", "3", "-t", "2", "-v", "--profile", "quote-only",
		"--results-dir", dir, "--key-pool", keyPoolArg(), "--threshold", "cycles.fail_rate<0.01")
	if code != 0 {
		t.Fatalf("exit %d\n%s", code, stderr)
	}
	recs, partial := readJSONL(t, onlyResults(t, dir))
	if len(recs) != 6 || partial {
		t.Fatalf("%d records (partial %v), want 6", len(recs), partial)
	}
	if !strings.Contains(out, "TEST RESULT SUMMARY") || !strings.Contains(out, "Performed 6 attestations") {
		t.Fatalf("summary missing:\n%s", out)
	}
	if n := strings.Count(stderr, "simulated verifier"); n != 1 {
		t.Fatalf("%d lines about the simulated verifier, want 1:\n%s", n, stderr)
	}
	sc := bufio.NewScanner(strings.NewReader(stderr))
	verbose := 0
	for sc.Scan() {
		if strings.HasPrefix(sc.Text(), "a") && strings.Contains(sc.Text(), "|t") {
			verbose++
		}
	}
	if verbose < 12 {
		t.Fatalf("%d -v request lines, want at least 12 (create and update of 6 cycles)", verbose)
	}

	// The same run with a threshold it cannot meet exits 99.
	dir2 := t.TempDir()
	code, _, stderr = runMain(t, "run", "-w", "1", "-a", "1", "-t", "1", "--profile", "quote-only",
		"--results-dir", dir2, "--key-pool", keyPoolArg(), "--threshold", "cycle.max<1us")
	if code != 99 {
		t.Fatalf("crossed threshold: exit %d, want 99\n%s", code, stderr)
	}
}

// The positional VERIFIER_URL and DB_URL count as configured before validation: a check that needs
// database.url (pgactivity.enabled) is satisfied by the positional DB_URL. The run then fails only on the
// unreachable database, as a runtime error (exit 1), naming it without its password.
func TestPositionalURLsSatisfyValidation(t *testing.T) {
	t.Setenv("ATTESTLOAD_PGACTIVITY_ENABLED", "true")
	code, _, stderr := runMain(t, "run", "https://127.0.0.1:1", "postgresql://u:secret-pw@127.0.0.1:1/verifierdb",
		"--key-pool", keyPoolArg(), "--results-dir", t.TempDir())
	if strings.Contains(stderr, "needs database.url") || code == 2 {
		t.Fatalf("exit %d: the positional DB_URL was not seen by validation:\n%s", code, stderr)
	}
	if code != 1 || !strings.Contains(stderr, "127.0.0.1:1") || strings.Contains(stderr, "secret-pw") {
		t.Fatalf("exit %d, want 1 with the unreachable database named and no password:\n%s", code, stderr)
	}
}

// A run stopped before any cycle started has nothing to summarise; that is said, and is not a failure.
func TestRunWithNoCycleExitsZero(t *testing.T) {
	fastSim(t)
	code, out, stderr := runMain(t, "run", "--duration", "1ns", "--key-pool", keyPoolArg(), "--results-dir", t.TempDir())
	if code != 0 || !strings.Contains(out, "No attestation cycle was started") {
		t.Fatalf("exit %d\nstdout:\n%s\nstderr:\n%s", code, out, stderr)
	}
}

package harness

import (
	"bufio"
	"crypto/rand"
	"encoding/hex"
	"fmt"
	"os"
	"os/exec"
	"path/filepath"
	"strings"
	"testing"
)

// The stock Keylime verifier, run by scripts/keylime-verifier.sh for the stock-verifier suites (test/stockverifier).

// EnvKeylimeSuite must be 1 for the suites against the stock verifier to run (make verifier-test sets it): they
// start a real verifier, which costs minutes of CPU, so `go test ./...` skips them.
const EnvKeylimeSuite = "ATTESTLOAD_KEYLIME_SUITE"

// EnvKeylimeSrc names a Keylime checkout to run instead of ../shared/keylime (the script reads it too).
const EnvKeylimeSrc = "ATTESTLOAD_KEYLIME_SRC"

// KeylimeHowTo says how to get the suite to run.
const KeylimeHowTo = "run `make verifier-test` with a Keylime tree at ../shared/keylime beside the repository, or " +
	EnvKeylimeSrc + "=<a checkout of https://github.com/keylime/keylime> (the verifier runs from source with " +
	"Debian's Python packages, see scripts/keylime-verifier.sh)"

// Keylime is a running stock verifier: what a client needs to reach it, and the database it judges in.
type Keylime struct {
	URL       string // https://127.0.0.1:PORT
	CAFile    string // the CA that signed its server certificate
	AdminCert string // its admin client certificate and key (for GET .../attestations)
	AdminKey  string
	DBURL     string // its database (agents are enrolled here)
	Log       string // its log file
	state     string
	env       []string
}

// KeylimeSrc is the Keylime tree the suite runs: $ATTESTLOAD_KEYLIME_SRC, else ../shared/keylime beside the
// repository. ok is false when that directory holds no verifier.
func KeylimeSrc(root string) (dir string, ok bool) {
	dir = os.Getenv(EnvKeylimeSrc)
	if dir == "" {
		dir = filepath.Join(root, "..", "shared", "keylime")
	}
	_, err := os.Stat(filepath.Join(dir, "keylime", "cmd", "verifier.py"))
	return dir, err == nil
}

// KeylimeGate decides whether the stock-verifier suite runs. It returns "" to run, or why it does not; fail says
// the reason is a failure rather than a skip (the suite was asked for, under CI, but there is no verifier).
func KeylimeGate(root string) (reason string, fail bool) {
	if os.Getenv(EnvKeylimeSuite) != "1" {
		return "stock-verifier suite: set " + EnvKeylimeSuite + "=1, i.e. " + KeylimeHowTo, false
	}
	if dir, ok := KeylimeSrc(root); !ok {
		return fmt.Sprintf("stock-verifier suite: no Keylime verifier source at %s: %s", dir, KeylimeHowTo),
			os.Getenv("CI") != ""
	}
	if os.Getenv("ATTESTLOAD_TEST_DATABASE_URL") == "" {
		// The tests read and plant rows through it; make verifier-test sets it (scripts/pg-start.sh).
		return "stock-verifier suite: ATTESTLOAD_TEST_DATABASE_URL is not set (make verifier-test sets it)",
			os.Getenv("CI") != ""
	}
	return "", false
}

// StartKeylime runs scripts/keylime-verifier.sh start with a state directory and database of its own (so that
// several suites, or several engineers, may run verifiers at once) and returns the verifier. Stop it with Stop.
func StartKeylime(root, adminURL string) (*Keylime, error) {
	state, err := os.MkdirTemp("", "attestload-keylime-")
	if err != nil {
		return nil, err
	}
	var b [4]byte
	_, _ = rand.Read(b[:])
	k := &Keylime{state: state}
	k.env = append(os.Environ(), "ATTESTLOAD_KEYLIME_STATE="+state,
		"ATTESTLOAD_KEYLIME_DB=attestload_kl_"+hex.EncodeToString(b[:]), "ATTESTLOAD_TEST_DATABASE_URL="+adminURL)
	if out, err := k.script("start"); err != nil {
		os.RemoveAll(state)
		return nil, fmt.Errorf("scripts/keylime-verifier.sh start: %v\n%s", err, out)
	}
	out, err := k.script("env")
	if err != nil {
		k.Stop()
		return nil, fmt.Errorf("scripts/keylime-verifier.sh env: %v\n%s", err, out)
	}
	sc := bufio.NewScanner(strings.NewReader(out))
	for sc.Scan() {
		name, val, ok := strings.Cut(strings.TrimPrefix(sc.Text(), "export "), "=")
		if !ok {
			continue
		}
		switch name {
		case "ATTESTLOAD_VERIFIER_URL":
			k.URL = val
		case "ATTESTLOAD_VERIFIER_CA_FILE":
			k.CAFile = val
		case "ATTESTLOAD_DATABASE_URL":
			k.DBURL = val
		case "ATTESTLOAD_VERDICT_ADMIN_CERT_FILE":
			k.AdminCert = val
		case "ATTESTLOAD_VERDICT_ADMIN_KEY_FILE":
			k.AdminKey = val
		case "ATTESTLOAD_KEYLIME_LOG":
			k.Log = val
		}
	}
	if k.URL == "" || k.CAFile == "" || k.DBURL == "" || k.AdminCert == "" || k.AdminKey == "" {
		k.Stop()
		return nil, fmt.Errorf("scripts/keylime-verifier.sh env printed too little:\n%s", out)
	}
	return k, nil
}

// script runs the script with the verifier's environment. Paths in the state directory hold no characters the
// script would quote (it prints them with printf %q), so its output is read as is.
func (k *Keylime) script(cmd string) (string, error) {
	c := exec.Command("scripts/keylime-verifier.sh", cmd)
	if root, err := findRoot(); err == nil {
		c.Dir = root
	}
	c.Env = k.env
	var out Buffer
	c.Stdout = &out
	var errOut Buffer
	c.Stderr = &errOut
	err := c.Run()
	if err != nil {
		return out.String() + errOut.String(), err
	}
	return out.String(), nil
}

// Stop stops the verifier and drops its database; errors are printed, not returned (it runs at exit).
func (k *Keylime) Stop() {
	if out, err := k.script("stop"); err != nil {
		fmt.Fprintf(os.Stderr, "scripts/keylime-verifier.sh stop: %v\n%s", err, out)
	}
	os.RemoveAll(k.state)
}

// LogTail is the end of the verifier's log, for failure messages.
func (k *Keylime) LogTail(n int) string {
	b, err := os.ReadFile(k.Log)
	if err != nil {
		return err.Error()
	}
	return tail(string(b), n)
}

func findRoot() (string, error) {
	dir, err := os.Getwd()
	if err != nil {
		return "", err
	}
	for {
		if _, err := os.Stat(filepath.Join(dir, "go.mod")); err == nil {
			return dir, nil
		}
		parent := filepath.Dir(dir)
		if parent == dir {
			return "", fmt.Errorf("go.mod not found above %s", dir)
		}
		dir = parent
	}
}

// FindRoot is Root without a testing.TB, for TestMain.
func FindRoot() (string, error) { return findRoot() }

var (
	keylime     *Keylime
	keylimeGate = "stock-verifier suite: the package's TestMain is not harness.KeylimeMain"
	keylimeFail bool
)

// KeylimeMain is TestMain for a suite against the stock verifier: when the gate is open it starts one verifier
// for the whole package (stopped after the tests), runs the tests, and removes the harness's scratch files:
// os.Exit(harness.KeylimeMain(m)). Tests get the verifier from KeylimeFor.
func KeylimeMain(m *testing.M) int {
	root, err := findRoot()
	if err != nil {
		fmt.Fprintln(os.Stderr, err)
		return 1
	}
	keylimeGate, keylimeFail = KeylimeGate(root)
	if keylimeGate == "" {
		kl, err := StartKeylime(root, os.Getenv("ATTESTLOAD_TEST_DATABASE_URL"))
		if err != nil {
			fmt.Fprintln(os.Stderr, err)
			return 1
		}
		keylime = kl
		defer kl.Stop()
	}
	return Main(m)
}

// KeylimeFor returns the package's stock verifier, or skips the test saying how to run it (fails it when the
// suite was asked for under CI and there is no verifier).
func KeylimeFor(t testing.TB) *Keylime {
	t.Helper()
	if keylime == nil {
		if keylimeFail {
			t.Fatal(keylimeGate)
		}
		t.Skip(keylimeGate)
	}
	return keylime
}

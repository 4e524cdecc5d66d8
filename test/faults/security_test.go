package faults

import (
	"bytes"
	"compress/gzip"
	"crypto/rand"
	"encoding/base64"
	"encoding/hex"
	"fmt"
	"io"
	"net"
	"net/http"
	"net/http/httptest"
	"net/url"
	"os"
	"path/filepath"
	"strconv"
	"strings"
	"sync"
	"syscall"
	"testing"
	"time"

	"github.com/attestload/attestload/attestation/record"
	"github.com/attestload/attestload/attestation/simverifier"
	"github.com/attestload/attestload/internal/resultsread"
	"github.com/attestload/attestload/test/faults/harness"
)

// TLS verification is on by default: a verifier whose certificate does not chain to the configured CA (or to
// the system roots when none is configured) fails every cycle with error class tls, and the run says why.
func TestWrongCAFailsClearly(t *testing.T) {
	w := newWorld(t, harness.SimOptions{})
	other, err := simverifier.New(simverifier.Config{TLSDir: t.TempDir(), SessionHashIterations: 1})
	if err != nil {
		t.Fatal(err)
	}
	otherCA := filepath.Join(t.TempDir(), "other-ca.crt")
	if err := os.WriteFile(otherCA, other.CACertPEM(), 0o600); err != nil {
		t.Fatal(err)
	}
	for _, c := range []struct {
		name string
		ca   []string
	}{
		{"another CA", []string{"--verifier-ca", otherCA}},
		{"system roots", nil},
	} {
		t.Run(c.name, func(t *testing.T) {
			args := append([]string{"run", w.sim.URL(), w.dbURL, "--key-pool", w.keys, "-a", "2", "-w", "2", "-t", "1",
				"--results-dir", t.TempDir(), "--prefix", w.prefix, "-v"}, c.ca...)
			p, _ := harness.Run(t, w.dir, w.baseEnv(), time.Minute, args...)
			harness.NoCrash(t, "stderr", p.Stderr.String())
			path := p.ResultsPath(t, time.Second)
			recs, _ := harness.ReadRecords(t, path)
			if len(recs) != 2 {
				t.Fatalf("%d records, want 2", len(recs))
			}
			for _, r := range recs {
				if r.Outcome != record.OutcomeFail || r.Error == nil || *r.Error != record.ClassTLS {
					t.Errorf("cycle outcome %s error %s, want fail/tls", r.Outcome, deref(r.Error))
				}
			}
			if !strings.Contains(p.Stderr.String(), "error tls") {
				t.Errorf("stderr (-v) does not show the tls failures:\n%s", p.Stderr.String())
			}
			w.checkClean()
		})
	}
}

// recordingEntropy hands out random values like the real verifier and remembers every bearer-token secret and
// session id, so that a test can grep the run's outputs for them.
type recordingEntropy struct {
	mu      sync.Mutex
	secrets []string
}

func (e *recordingEntropy) random(n int) []byte {
	b := make([]byte, n)
	if _, err := rand.Read(b); err != nil {
		panic(err) // crypto/rand does not fail on Linux
	}
	return b
}
func (e *recordingEntropy) Challenge() ([]byte, error)    { return e.random(16), nil }
func (e *recordingEntropy) SessionNonce() ([]byte, error) { return e.random(16), nil }
func (e *recordingEntropy) SessionID() (string, error) {
	b := e.random(16)
	b[6] = b[6]&0x0f | 0x40
	b[8] = b[8]&0x3f | 0x80
	h := hex.EncodeToString(b)
	return h[0:8] + "-" + h[8:12] + "-" + h[12:16] + "-" + h[16:20] + "-" + h[20:], nil
}
func (e *recordingEntropy) TokenSecret() (string, error) {
	s := base64.RawURLEncoding.EncodeToString(e.random(32))
	e.mu.Lock()
	e.secrets = append(e.secrets, s)
	e.mu.Unlock()
	return s, nil
}

func (e *recordingEntropy) tokens() []string {
	e.mu.Lock()
	defer e.mu.Unlock()
	return append([]string(nil), e.secrets...)
}

// otlpCapture is an OTLP/HTTP trace receiver that keeps the raw (decompressed) request bodies, so that the
// spans a run exports can be searched for secrets byte for byte (protobuf keeps strings verbatim).
type otlpCapture struct {
	mu     sync.Mutex
	bodies [][]byte
}

func (c *otlpCapture) ServeHTTP(w http.ResponseWriter, r *http.Request) {
	var body io.Reader = r.Body
	if r.Header.Get("Content-Encoding") == "gzip" {
		zr, err := gzip.NewReader(r.Body)
		if err != nil {
			http.Error(w, err.Error(), http.StatusBadRequest)
			return
		}
		body = zr
	}
	b, err := io.ReadAll(body)
	if err != nil {
		http.Error(w, err.Error(), http.StatusBadRequest)
		return
	}
	c.mu.Lock()
	c.bodies = append(c.bodies, b)
	c.mu.Unlock()
	w.Header().Set("Content-Type", "application/x-protobuf")
	w.WriteHeader(http.StatusOK)
}

func (c *otlpCapture) all() []byte {
	c.mu.Lock()
	defer c.mu.Unlock()
	return bytes.Join(c.bodies, nil)
}

// No bearer token reaches stdout, stderr (with -v), the JSONL, the run sidecar, /metrics or the exported spans;
// and a database password never reaches the output of a failed connection.
func TestSecretsStayOutOfOutputs(t *testing.T) {
	ent := &recordingEntropy{}
	w := newWorld(t, harness.SimOptions{Entropy: ent})
	spans := &otlpCapture{}
	collector := httptest.NewServer(spans)
	defer collector.Close()
	// Every cycle traced (ratio 1), exported over OTLP/HTTP to the capture.
	env := w.baseEnv("ATTESTLOAD_TRACING_ENABLED=true", "ATTESTLOAD_TRACING_PROTOCOL=http",
		"ATTESTLOAD_TRACING_ENDPOINT="+collector.URL, "ATTESTLOAD_TRACING_INSECURE=true",
		"ATTESTLOAD_TRACING_SAMPLE_RATIO=1")
	d := w.start(env, w.runArgs(4, 500*time.Millisecond, "-v")...)
	d.waitCycles(t, record.OutcomeSuccess, 8, time.Minute)
	resp, err := http.Get("http://" + d.addr + "/metrics")
	if err != nil {
		t.Fatal(err)
	}
	exposition, _ := io.ReadAll(resp.Body)
	resp.Body.Close()
	d.Signal(t, syscall.SIGINT)
	if code := d.Wait(t, time.Minute); code != 0 {
		t.Errorf("exit code %d", code)
	}
	tokens := ent.tokens()
	if len(tokens) < 4 {
		t.Fatalf("the simulator issued %d tokens; the run did not authenticate", len(tokens))
	}
	exported := spans.all()
	if !bytes.Contains(exported, []byte("attestation.cycle")) || !bytes.Contains(exported, []byte("attestation.negotiate")) {
		t.Fatalf("no spans reached the OTLP capture (%d bytes); the span check would be vacuous", len(exported))
	}
	outputs := map[string][]byte{"stdout": []byte(d.Stdout.String()), "stderr": []byte(d.Stderr.String()),
		"/metrics": exposition, "spans (OTLP)": exported}
	files, _ := filepath.Glob(filepath.Join(w.dir, "*"))
	for _, f := range files {
		// Results files are read as JSONL: a token inside a compressed part would not show in its bytes.
		if b, _, err := resultsread.Bytes(f); err == nil {
			outputs[filepath.Base(f)] = b
		}
	}
	if len(outputs) < 6 {
		t.Fatalf("expected stdout, stderr, /metrics, the spans, the JSONL and its sidecar; got %d outputs", len(outputs))
	}
	for name, b := range outputs {
		for _, tok := range tokens {
			if bytes.Contains(b, []byte(tok)) {
				t.Errorf("a bearer token appears in %s", name)
				break
			}
		}
	}

	const password = "Leaky-Passw0rd-4711"
	// The test database's URL with a wrong password, whatever its credentials (the run must fail to connect
	// and say so without printing the password).
	u, err := url.Parse(w.dbURL)
	if err != nil || u.User == nil {
		t.Fatalf("the test database URL is not a URL with a user: %v", err)
	}
	u.User = url.UserPassword(u.User.Username(), password)
	badURL := u.String()
	for _, args := range [][]string{
		{"run", w.sim.URL(), badURL, "--key-pool", w.keys, "-a", "1", "-t", "1", "--results-dir", t.TempDir(), "-v"},
		{"cleanup", badURL},
	} {
		p, code := harness.Run(t, w.dir, w.baseEnv(), time.Minute, args...)
		out := p.Stdout.String() + p.Stderr.String()
		harness.NoCrash(t, "output", out)
		if code == 0 {
			t.Errorf("%s with a wrong password exited 0", args[0])
		}
		if strings.Contains(out, password) {
			t.Errorf("%s printed the database password:\n%s", args[0], out)
		}
		if !strings.Contains(out, "xxxxx") && !strings.Contains(strings.ToLower(out), "password") {
			t.Errorf("%s does not explain the authentication failure:\n%s", args[0], out)
		}
	}
}

// listeners returns the local addresses of the TCP sockets the process listens on (from /proc/<pid>/net/tcp{,6},
// keeping only sockets whose inode is one of the process's descriptors).
func listeners(t *testing.T, pid int) []string {
	t.Helper()
	fds, err := os.ReadDir(fmt.Sprintf("/proc/%d/fd", pid))
	if err != nil {
		t.Fatal(err)
	}
	inodes := map[string]bool{}
	for _, fd := range fds {
		link, err := os.Readlink(fmt.Sprintf("/proc/%d/fd/%s", pid, fd.Name()))
		if err == nil && strings.HasPrefix(link, "socket:[") {
			inodes[strings.TrimSuffix(strings.TrimPrefix(link, "socket:["), "]")] = true
		}
	}
	var out []string
	for _, file := range []string{"tcp", "tcp6"} {
		b, err := os.ReadFile(fmt.Sprintf("/proc/%d/net/%s", pid, file))
		if err != nil {
			continue
		}
		for _, line := range strings.Split(string(b), "\n")[1:] {
			f := strings.Fields(line)
			if len(f) < 10 || f[3] != "0A" || !inodes[f[9]] { // 0A: LISTEN
				continue
			}
			out = append(out, decodeAddr(f[1]))
		}
	}
	return out
}

// decodeAddr turns /proc/net/tcp's hex "0100007F:1F90" into "127.0.0.1:8080" (IPv6 stays hex, with a marker for
// the loopback and unspecified addresses).
func decodeAddr(s string) string {
	host, port, _ := strings.Cut(s, ":")
	p, _ := strconv.ParseUint(port, 16, 16)
	if len(host) == 8 {
		b, _ := hex.DecodeString(host)
		return fmt.Sprintf("%d.%d.%d.%d:%d", b[3], b[2], b[1], b[0], p)
	}
	switch host {
	case "00000000000000000000000001000000":
		return fmt.Sprintf("[::1]:%d", p)
	case "00000000000000000000000000000000":
		return fmt.Sprintf("[::]:%d", p)
	}
	return host + ":" + strconv.FormatUint(p, 10)
}

// The only listeners a run opens are loopback ones unless an address is configured: the metrics endpoint when
// asked for, and in demo mode the in-process simulated verifier.
func TestListenersBindLoopback(t *testing.T) {
	w := newWorld(t, harness.SimOptions{})
	for _, c := range []struct {
		name string
		args []string
		want int // listening sockets
		env  []string
	}{
		// The default: one endpoint, on 127.0.0.1:9464 (an empty variable is no setting, so the default applies).
		{"default metrics endpoint", []string{"run", w.sim.URL(), w.dbURL, "--verifier-ca", w.sim.CAFile()}, 1,
			[]string{"ATTESTLOAD_METRICS_LISTEN="}},
		{"no metrics endpoint", []string{"run", w.sim.URL(), w.dbURL, "--verifier-ca", w.sim.CAFile(),
			"--metrics-listen", ""}, 0, nil},
		{"metrics on loopback", []string{"run", w.sim.URL(), w.dbURL, "--verifier-ca", w.sim.CAFile(),
			"--metrics-listen", "127.0.0.1:0"}, 1, nil},
		{"demo mode", []string{"run", "--metrics-listen", "127.0.0.1:0"}, 2, nil},
	} {
		t.Run(c.name, func(t *testing.T) {
			if c.env != nil {
				l, err := net.Listen("tcp", "127.0.0.1:9464")
				if err != nil {
					harness.SkipOutsideCI(t, "127.0.0.1:9464 is taken on this machine: %v", err)
				}
				l.Close()
			}
			args := append(c.args, "--key-pool", w.keys, "-a", "2", "--model", "fleet", "--interval", "1s",
				"--results-dir", t.TempDir(), "--prefix", w.prefix)
			p := harness.Start(t, w.dir, w.baseEnv(append(c.env, "ATTESTLOAD_SIMULATOR_SESSION_HASH_ITERATIONS=1000")...), args...)
			p.WaitLog(t, `msg="run started"`, time.Minute)
			ls := listeners(t, p.Pid())
			if len(ls) != c.want {
				t.Errorf("listening on %v, want %d sockets", ls, c.want)
			}
			if c.env != nil && (len(ls) != 1 || ls[0] != "127.0.0.1:9464") {
				t.Errorf("listening on %v, want the default 127.0.0.1:9464", ls)
			}
			for _, a := range ls {
				if !strings.HasPrefix(a, "127.") && !strings.HasPrefix(a, "[::1]") {
					t.Errorf("listening on %s, not loopback", a)
				}
			}
			p.Signal(t, syscall.SIGINT)
			if code := p.Wait(t, time.Minute); code != 0 {
				t.Errorf("exit code %d", code)
			}
			w.checkClean()
		})
	}
}

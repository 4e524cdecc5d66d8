package main

import (
	"bytes"
	"context"
	"os"
	"os/exec"
	"path/filepath"
	"runtime"
	"strings"
	"sync"
	"syscall"
	"testing"
	"time"

	"github.com/attestload/attestload/attestation/record"
)

var (
	buildOnce sync.Once
	binPath   string
	buildErr  error
)

// binary builds attestload once per test run; the signal tests need a real process.
func binary(t *testing.T) string {
	t.Helper()
	if testing.Short() {
		t.Skip("builds the binary; skipped with -short")
	}
	buildOnce.Do(func() {
		binPath = filepath.Join(keyPoolDir, "attestload")
		out, err := exec.Command(filepath.Join(runtime.GOROOT(), "bin", "go"), "build", "-o", binPath, ".").CombinedOutput()
		if err != nil {
			buildErr = err
			binPath = string(out)
		}
	})
	if buildErr != nil {
		t.Fatalf("go build: %v\n%s", buildErr, binPath)
	}
	return binPath
}

// syncBuffer is a bytes.Buffer safe to read while the process writes it.
type syncBuffer struct {
	mu sync.Mutex
	b  bytes.Buffer
}

func (s *syncBuffer) Write(p []byte) (int, error) {
	s.mu.Lock()
	defer s.mu.Unlock()
	return s.b.Write(p)
}
func (s *syncBuffer) String() string { s.mu.Lock(); defer s.mu.Unlock(); return s.b.String() }

type proc struct {
	cmd    *exec.Cmd
	stdout *syncBuffer
	stderr *syncBuffer
	done   chan struct{}
	err    error
}

func start(t *testing.T, env []string, args ...string) *proc {
	t.Helper()
	ctx, cancel := context.WithTimeout(context.Background(), 2*time.Minute)
	t.Cleanup(cancel)
	p := &proc{cmd: exec.CommandContext(ctx, binary(t), args...), stdout: &syncBuffer{}, stderr: &syncBuffer{},
		done: make(chan struct{})}
	p.cmd.Env = append(os.Environ(), env...)
	p.cmd.Stdout, p.cmd.Stderr = p.stdout, p.stderr
	if err := p.cmd.Start(); err != nil {
		t.Fatal(err)
	}
	go func() { p.err = p.cmd.Wait(); close(p.done) }()
	return p
}

func (p *proc) waitFor(t *testing.T, what string, timeout time.Duration) {
	t.Helper()
	deadline := time.Now().Add(timeout)
	for !strings.Contains(p.stderr.String(), what) {
		if time.Now().After(deadline) {
			t.Fatalf("no %q in stderr after %s:\n%s", what, timeout, p.stderr.String())
		}
		select {
		case <-p.done:
			t.Fatalf("process exited (%v) before %q:\n%s", p.err, what, p.stderr.String())
		case <-time.After(20 * time.Millisecond):
		}
	}
}

func (p *proc) wait(t *testing.T, timeout time.Duration) (int, time.Duration) {
	t.Helper()
	t0 := time.Now()
	select {
	case <-p.done:
	case <-time.After(timeout):
		p.cmd.Process.Kill()
		t.Fatalf("process did not exit within %s:\n%s", timeout, p.stderr.String())
	}
	return p.cmd.ProcessState.ExitCode(), time.Since(t0)
}

var simEnv = []string{"ATTESTLOAD_SIMULATOR_QUOTE_INTERVAL=0", "ATTESTLOAD_SIMULATOR_SESSION_HASH_ITERATIONS=1000",
	"ATTESTLOAD_SIMULATOR_RATE_LIMITS=false", "ATTESTLOAD_SIMULATOR_CALIBRATED=false"}

func TestSIGINTDrainsInFlightCycles(t *testing.T) {
	dir := t.TempDir()
	// Every request takes 400 ms, so a cycle (session, PoP, create, update) takes well over a second.
	p := start(t, append(simEnv, "ATTESTLOAD_SIMULATOR_LATENCY=400ms"), "run", "-w", "3", "-a", "3",
		"--profile", "quote-only", "--results-dir", dir, "--key-pool", keyPoolArg(), "--drain-timeout", "30s")
	p.waitFor(t, "run started", time.Minute)
	time.Sleep(600 * time.Millisecond) // the first cycles are in flight
	p.cmd.Process.Signal(os.Interrupt)
	code, _ := p.wait(t, 30*time.Second)
	if code != 0 {
		t.Fatalf("exit %d after one SIGINT:\n%s", code, p.stderr.String())
	}
	recs, partial := readJSONL(t, onlyResults(t, dir))
	if len(recs) < 3 || partial {
		t.Fatalf("%d records (partial %v); want the 3 in-flight cycles drained and recorded", len(recs), partial)
	}
	for _, r := range recs {
		if r.Outcome != record.OutcomeSuccess {
			t.Fatalf("drained cycle ended %s (%v); want success", r.Outcome, r.Error)
		}
	}
	if !strings.Contains(p.stderr.String(), "draining") || !strings.Contains(p.stdout.String(), "TEST RESULT SUMMARY") {
		t.Fatalf("no drain log or summary:\n%s\n%s", p.stderr.String(), p.stdout.String())
	}
}

func TestSecondSIGINTExitsAtOnce(t *testing.T) {
	dir := t.TempDir()
	// Requests take a minute and the drain would wait ten: only the second signal can end this quickly.
	p := start(t, append(simEnv, "ATTESTLOAD_SIMULATOR_LATENCY=60s"), "run", "-w", "3", "-a", "3",
		"--profile", "quote-only", "--results-dir", dir, "--key-pool", keyPoolArg(), "--drain-timeout", "10m")
	p.waitFor(t, "run started", time.Minute)
	time.Sleep(300 * time.Millisecond)
	p.cmd.Process.Signal(os.Interrupt)
	p.waitFor(t, "draining in-flight cycles", 10*time.Second)
	p.cmd.Process.Signal(syscall.SIGTERM)
	code, took := p.wait(t, 30*time.Second)
	if code != 0 {
		t.Fatalf("exit %d:\n%s", code, p.stderr.String())
	}
	if took > 20*time.Second {
		t.Fatalf("took %s to exit after the second signal", took)
	}
	recs, partial := readJSONL(t, onlyResults(t, dir))
	if len(recs) != 3 || partial {
		t.Fatalf("%d records (partial %v), want the 3 aborted cycles", len(recs), partial)
	}
	for _, r := range recs {
		if r.Outcome != record.OutcomeAborted {
			t.Fatalf("cycle ended %s; want aborted", r.Outcome)
		}
	}
	// The run still finished properly: sidecar, summary and cleanup happen after "run finished".
	if !strings.Contains(p.stderr.String(), "second signal") || !strings.Contains(p.stderr.String(), "run finished") {
		t.Fatalf("stderr:\n%s", p.stderr.String())
	}
}

// kill -9 in the middle of a run leaves a results file whose whole lines are all valid records: the plain file may
// end in a partial line, a zstd part (the default) in a cut frame, and everything flushed before reads back.
func TestKill9LeavesValidJSONL(t *testing.T) {
	for _, tc := range []struct {
		compression string
		grown       int64 // bytes on disk that mean several flushes happened
	}{{"zstd", 2000}, {"none", 10000}} {
		t.Run(tc.compression, func(t *testing.T) {
			dir := t.TempDir()
			p := start(t, append(simEnv, "ATTESTLOAD_RESULTS_COMPRESSION="+tc.compression), "run", "-w", "4", "-a", "8",
				"--profile", "quote-only", "--results-dir", dir, "--key-pool", keyPoolArg())
			p.waitFor(t, "run started", time.Minute)
			path := ""
			deadline := time.Now().Add(60 * time.Second)
			for {
				if m, _ := filepath.Glob(filepath.Join(dir, "*.jsonl*")); len(m) == 1 {
					if fi, err := os.Stat(m[0]); err == nil && fi.Size() > tc.grown {
						path = m[0]
						break
					}
				}
				if time.Now().After(deadline) {
					t.Fatalf("results file never grew:\n%s", p.stderr.String())
				}
				time.Sleep(50 * time.Millisecond)
			}
			if want := map[string]string{"zstd": ".jsonl.zst", "none": ".jsonl"}[tc.compression]; !strings.HasSuffix(path, want) {
				t.Fatalf("results file %s, want a %s file", path, want)
			}
			p.cmd.Process.Kill()
			p.wait(t, 10*time.Second)
			recs, _ := readJSONL(t, path) // fails the test on any bad whole line; a partial last line or frame is allowed
			if len(recs) == 0 {
				t.Fatal("no whole records after kill -9")
			}
		})
	}
}

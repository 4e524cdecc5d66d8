package harness

import (
	"bytes"
	"context"
	"fmt"
	"os"
	"os/exec"
	"path/filepath"
	"regexp"
	"strconv"
	"strings"
	"sync"
	"syscall"
	"testing"
	"time"
)

// Buffer is a bytes.Buffer that may be read while the subprocess writes to it.
type Buffer struct {
	mu sync.Mutex
	b  bytes.Buffer
}

// Write appends p.
func (s *Buffer) Write(p []byte) (int, error) {
	s.mu.Lock()
	defer s.mu.Unlock()
	return s.b.Write(p)
}

// String returns everything written so far.
func (s *Buffer) String() string {
	s.mu.Lock()
	defer s.mu.Unlock()
	return s.b.String()
}

// Proc is a running attestload subprocess.
type Proc struct {
	Cmd    *exec.Cmd
	Stdout *Buffer
	Stderr *Buffer
	done   chan struct{}
	err    error
}

// Start runs the binary with args in dir; env is added to a minimal environment (PATH, HOME, TMPDIR), so that no
// ATTESTLOAD_* variable of the caller leaks in. The process is killed when the test ends.
func Start(t testing.TB, dir string, env []string, args ...string) *Proc {
	t.Helper()
	ctx, cancel := context.WithCancel(context.Background())
	p := &Proc{Cmd: exec.CommandContext(ctx, Binary(t), args...), Stdout: &Buffer{}, Stderr: &Buffer{},
		done: make(chan struct{})}
	p.Cmd.Dir = dir
	// Metrics go to a port of each run's own (the default, 127.0.0.1:9464, would collide between runs); env and
	// flags given by the test outrank this.
	p.Cmd.Env = append([]string{"PATH=" + os.Getenv("PATH"), "HOME=" + dir, "TMPDIR=" + os.TempDir(),
		"ATTESTLOAD_METRICS_LISTEN=127.0.0.1:0"}, env...)
	p.Cmd.Stdout, p.Cmd.Stderr = p.Stdout, p.Stderr
	if err := p.Cmd.Start(); err != nil {
		cancel()
		t.Fatalf("start attestload: %v", err)
	}
	go func() { p.err = p.Cmd.Wait(); close(p.done) }()
	t.Cleanup(func() {
		cancel()
		<-p.done
		if t.Failed() {
			t.Logf("attestload %s stderr:\n%s", strings.Join(args, " "), tail(p.Stderr.String(), 8000))
		}
	})
	return p
}

func tail(s string, n int) string {
	if len(s) <= n {
		return s
	}
	return "…" + s[len(s)-n:]
}

// Run starts the binary and waits for it to exit (within timeout), returning the exit code.
func Run(t testing.TB, dir string, env []string, timeout time.Duration, args ...string) (*Proc, int) {
	t.Helper()
	p := Start(t, dir, env, args...)
	return p, p.Wait(t, timeout)
}

// Done is closed when the process has exited.
func (p *Proc) Done() <-chan struct{} { return p.done }

// Pid is the process id.
func (p *Proc) Pid() int { return p.Cmd.Process.Pid }

// WaitLog waits until stderr contains what and returns the first line containing it.
func (p *Proc) WaitLog(t testing.TB, what string, timeout time.Duration) string {
	t.Helper()
	deadline := time.Now().Add(timeout)
	for {
		s := p.Stderr.String()
		if i := strings.Index(s, what); i >= 0 {
			start := strings.LastIndexByte(s[:i], '\n') + 1
			end := strings.IndexByte(s[i:], '\n')
			if end < 0 {
				end = len(s) - i
			}
			return s[start : i+end]
		}
		if time.Now().After(deadline) {
			t.Fatalf("no %q in stderr after %s:\n%s", what, timeout, tail(s, 8000))
		}
		select {
		case <-p.done:
			t.Fatalf("attestload exited (%v) before logging %q:\n%s", p.err, what, tail(p.Stderr.String(), 8000))
		case <-time.After(20 * time.Millisecond):
		}
	}
}

// Signal sends sig to the process.
func (p *Proc) Signal(t testing.TB, sig syscall.Signal) {
	t.Helper()
	if err := p.Cmd.Process.Signal(sig); err != nil {
		t.Fatalf("signal %v: %v", sig, err)
	}
}

// Wait waits for the exit and returns the exit code; -1 means killed by a signal.
func (p *Proc) Wait(t testing.TB, timeout time.Duration) int {
	t.Helper()
	select {
	case <-p.done:
	case <-time.After(timeout):
		p.Cmd.Process.Kill()
		<-p.done
		t.Fatalf("attestload did not exit within %s:\n%s", timeout, tail(p.Stderr.String(), 8000))
	}
	return p.Cmd.ProcessState.ExitCode()
}

var (
	metricsAddrRE = regexp.MustCompile(`msg="serving metrics".* addr=(\S+)`)
	resultsRE     = regexp.MustCompile(`msg="run started" .*results=(\S+)`)
)

// MetricsAddr waits for the "serving metrics" line and returns its address.
func (p *Proc) MetricsAddr(t testing.TB, timeout time.Duration) string {
	t.Helper()
	line := p.WaitLog(t, `msg="serving metrics"`, timeout)
	m := metricsAddrRE.FindStringSubmatch(line)
	if m == nil {
		t.Fatalf("cannot parse the metrics address from %q", line)
	}
	return m[1]
}

// ResultsPath waits for the "run started" line and returns the results file it names (relative to the process's
// directory when the line gives a relative path).
func (p *Proc) ResultsPath(t testing.TB, timeout time.Duration) string {
	t.Helper()
	line := p.WaitLog(t, `msg="run started"`, timeout)
	m := resultsRE.FindStringSubmatch(line)
	if m == nil {
		t.Fatalf("cannot parse the results path from %q", line)
	}
	path := m[1]
	if !filepath.IsAbs(path) {
		path = filepath.Join(p.Cmd.Dir, path)
	}
	return path
}

// FDs counts the process's open file descriptors (/proc/<pid>/fd).
func (p *Proc) FDs() (int, error) {
	ents, err := os.ReadDir(fmt.Sprintf("/proc/%d/fd", p.Pid()))
	if err != nil {
		return 0, err
	}
	return len(ents), nil
}

// Status is a sample of /proc/<pid>/status.
type Status struct {
	RSSKiB  int64 // VmRSS
	HWMKiB  int64 // VmHWM, the peak
	Threads int64
}

// ProcStatus reads the process's resident memory and thread count.
func (p *Proc) ProcStatus() (Status, error) {
	return ReadStatus(p.Pid())
}

// ReadStatus reads /proc/<pid>/status.
func ReadStatus(pid int) (Status, error) {
	b, err := os.ReadFile(fmt.Sprintf("/proc/%d/status", pid))
	if err != nil {
		return Status{}, err
	}
	var s Status
	for _, line := range strings.Split(string(b), "\n") {
		k, v, ok := strings.Cut(line, ":")
		if !ok {
			continue
		}
		f := strings.Fields(v)
		if len(f) == 0 {
			continue
		}
		n, err := strconv.ParseInt(f[0], 10, 64)
		if err != nil {
			continue
		}
		switch k {
		case "VmRSS":
			s.RSSKiB = n
		case "VmHWM":
			s.HWMKiB = n
		case "Threads":
			s.Threads = n
		}
	}
	if s.RSSKiB == 0 {
		return s, fmt.Errorf("/proc/%d/status has no VmRSS", pid)
	}
	return s, nil
}

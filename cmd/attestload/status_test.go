package main

import (
	"context"
	"fmt"
	"os"
	"os/exec"
	"strings"
	"syscall"
	"testing"
	"time"

	"golang.org/x/sys/unix"
)

// openPTY opens a pseudo-terminal pair: the run writes to the terminal side (so it draws its status line) and the
// test reads what a terminal would show from the other.
func openPTY(t *testing.T) (master, term *os.File) {
	t.Helper()
	m, err := os.OpenFile("/dev/ptmx", os.O_RDWR|syscall.O_NOCTTY, 0)
	if err != nil {
		t.Skipf("no pseudo-terminals here: %v", err)
	}
	if err := unix.IoctlSetPointerInt(int(m.Fd()), unix.TIOCSPTLCK, 0); err != nil {
		t.Fatal(err)
	}
	n, err := unix.IoctlGetInt(int(m.Fd()), unix.TIOCGPTN)
	if err != nil {
		t.Fatal(err)
	}
	s, err := os.OpenFile(fmt.Sprintf("/dev/pts/%d", n), os.O_RDWR|syscall.O_NOCTTY, 0)
	if err != nil {
		t.Fatal(err)
	}
	return m, s
}

// On a terminal the status line is cleared before a log line is printed: the signal's log line once followed the
// status text on the same line ("…p99 208ms^Ctime=…msg=\"signal received…").
func TestStatusLineClearedBeforeLogLines(t *testing.T) {
	master, term := openPTY(t)
	defer master.Close()
	dir := t.TempDir()
	ctx, cancel := context.WithTimeout(context.Background(), 2*time.Minute)
	defer cancel()
	cmd := exec.CommandContext(ctx, binary(t), "run", "-a", "2", "-w", "2", "--profile", "quote-only",
		"--results-dir", dir, "--key-pool", keyPoolArg())
	cmd.Env = append(os.Environ(), simEnv...)
	cmd.Stderr = term
	if err := cmd.Start(); err != nil {
		t.Fatal(err)
	}
	term.Close()
	out := &syncBuffer{}
	copied := make(chan struct{})
	go func() {
		defer close(copied)
		buf := make([]byte, 4096)
		for {
			n, err := master.Read(buf)
			out.Write(buf[:n])
			if err != nil {
				return
			}
		}
	}()
	deadline := time.Now().Add(time.Minute)
	for strings.Count(out.String(), "cycles/s") < 2 {
		if time.Now().After(deadline) {
			cmd.Process.Kill()
			t.Fatalf("no status line on the terminal:\n%q", out.String())
		}
		time.Sleep(50 * time.Millisecond)
	}
	if err := cmd.Process.Signal(os.Interrupt); err != nil {
		t.Fatal(err)
	}
	if err := cmd.Wait(); err != nil {
		t.Fatalf("run: %v\n%q", err, out.String())
	}
	select {
	case <-copied:
	case <-time.After(5 * time.Second):
	}
	text := out.String()
	if !strings.Contains(text, "signal received") {
		t.Fatalf("no signal log line:\n%q", text)
	}
	for i := 0; ; {
		j := strings.Index(text[i:], "time=")
		if j < 0 {
			break
		}
		at := i + j
		before := text[:at]
		if at > 0 && !strings.HasSuffix(before, "\n") && !strings.HasSuffix(before, "\x1b[K") {
			t.Errorf("a log line starts after other text on its line: %q", text[max(0, at-80):min(len(text), at+60)])
		}
		i = at + 5
	}
}

package main

import (
	"context"
	"os"
	"os/exec"
	"path/filepath"
	"strings"
	"syscall"
	"testing"
	"time"
)

// `make run` stopped with Ctrl+C: the terminal sends SIGINT to make and to the run; the run drains and exits 0,
// and make prints no error (with `go run`, which exits 1 on SIGINT, it always printed
// "make: *** [Makefile:22: run] Error 1"). Before building it says so, since the first build is slow and silent.
func TestMakeRunCtrlC(t *testing.T) {
	if testing.Short() {
		t.Skip("builds the binary with make; skipped with -short")
	}
	if _, err := exec.LookPath("make"); err != nil {
		t.Skip("make is not installed")
	}
	root, err := filepath.Abs("../..")
	if err != nil {
		t.Fatal(err)
	}
	dir := t.TempDir()
	ctx, cancel := context.WithTimeout(context.Background(), 3*time.Minute)
	defer cancel()
	cmd := exec.CommandContext(ctx, "make", "--no-print-directory", "-C", root, "run",
		"BIN="+filepath.Join(dir, "attestload"),
		"ARGS=--results-dir "+dir+" --key-pool "+keyPoolArg()+" --metrics-listen 127.0.0.1:0 -a 2 -w 2")
	cmd.Env = append(os.Environ(), simEnv...)
	out := &syncBuffer{}
	cmd.Stdout, cmd.Stderr = out, out
	// Its own process group, signalled as a whole, as a terminal's Ctrl+C is.
	cmd.SysProcAttr = &syscall.SysProcAttr{Setpgid: true}
	if err := cmd.Start(); err != nil {
		t.Fatal(err)
	}
	done := make(chan error, 1)
	go func() { done <- cmd.Wait() }()
	deadline := time.Now().Add(2 * time.Minute)
	for !strings.Contains(out.String(), "run started") {
		select {
		case err := <-done:
			t.Fatalf("make run exited (%v) before the run started:\n%s", err, out.String())
		case <-time.After(50 * time.Millisecond):
		}
		if time.Now().After(deadline) {
			syscall.Kill(-cmd.Process.Pid, syscall.SIGKILL)
			t.Fatalf("the run did not start:\n%s", out.String())
		}
	}
	time.Sleep(500 * time.Millisecond)
	if err := syscall.Kill(-cmd.Process.Pid, syscall.SIGINT); err != nil {
		t.Fatal(err)
	}
	select {
	case <-done:
	case <-time.After(time.Minute):
		syscall.Kill(-cmd.Process.Pid, syscall.SIGKILL)
		t.Fatalf("make run did not stop after SIGINT:\n%s", out.String())
	}
	text := out.String()
	t.Logf("make run:\n%s", text)
	if strings.Contains(text, "make: ***") {
		t.Errorf("make reported an error after Ctrl+C:\n%s", text)
	}
	if i, j := strings.Index(text, "building attestload"), strings.Index(text, "run started"); i < 0 || i > j {
		t.Errorf("no 'building attestload' line before the run:\n%s", text)
	}
	if !strings.Contains(text, "TEST RESULT SUMMARY") {
		t.Errorf("the drained run printed no summary:\n%s", text)
	}
}

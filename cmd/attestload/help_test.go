package main

import (
	"strings"
	"testing"
)

// The commands the usage lists exist: `attestload help run` and `attestload completion bash` once said
// `unknown command "help"`.
func TestHelpAndCompletionCommands(t *testing.T) {
	code, out, stderr := runMain(t, "help", "run")
	if code != 0 || !strings.Contains(out, "attestload run [VERIFIER_URL [DB_URL]]") {
		t.Errorf("help run: exit %d\nstdout:\n%s\nstderr:\n%s", code, out, stderr)
	}
	code, out, stderr = runMain(t, "--help")
	if code != 0 {
		t.Fatalf("--help: exit %d: %s", code, stderr)
	}
	for _, listed := range []string{"help", "completion"} {
		if strings.Contains(out, "\n  "+listed+" ") {
			if c, o, e := runMain(t, listed, "--help"); c != 0 || o == "" {
				t.Errorf("%s is listed in the usage but `%s --help` exits %d: %s", listed, listed, c, e)
			}
		}
	}
	for _, shell := range []string{"bash", "zsh", "fish", "powershell"} {
		code, out, stderr = runMain(t, "completion", shell)
		if code != 0 || !strings.Contains(out, "attestload") {
			t.Errorf("completion %s: exit %d, %d bytes\n%s", shell, code, len(out), stderr)
		}
	}
	if code, _, stderr = runMain(t, "halp"); code != 2 || !strings.Contains(stderr, `unknown command "halp"`) {
		t.Errorf("halp: exit %d, %s", code, stderr)
	}
}

// A mistyped flag gets the nearest real one.
func TestUnknownFlagSuggestion(t *testing.T) {
	code, _, stderr := runMain(t, "run", "--duraton", "5s")
	if code != 2 || !strings.Contains(stderr, "unknown flag: --duraton; did you mean --duration?") {
		t.Errorf("exit %d: %s", code, stderr)
	}
}

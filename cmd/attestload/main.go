// Command attestload load-tests a Keylime verifier by impersonating push-mode agents with software TPMs.
//
// The command line is thin: it parses flags and configuration, builds a daemon.Daemon, turns signals into its
// context and Abort, runs it, prints the summary and maps errors to exit codes (0 ok, 1 runtime failure, 2 usage or configuration error, 99 threshold crossed).
package main

import (
	"errors"
	"fmt"
	"io"
	"os"
	"strings"

	"github.com/attestload/attestload/daemon"
	"github.com/attestload/attestload/internal/conf"
)

// Exit statuses.
const (
	exitOK        = 0
	exitFailure   = 1
	exitUsage     = 2
	exitThreshold = 99
)

func main() {
	os.Exit(Main(os.Args[1:], os.Stdout, os.Stderr))
}

// Main runs the command line with args and returns the exit status; tests call it directly.
func Main(args []string, stdout, stderr io.Writer) int {
	root := newRootCmd(stdout, stderr)
	root.SetArgs(args)
	if _, _, err := root.Find(args); err != nil {
		// An unknown command is a usage mistake (cobra reports it as a plain error).
		return exitStatus(&usageError{err}, stderr)
	}
	err := root.Execute()
	return exitStatus(err, stderr)
}

// usageError marks a mistake in the command line (exit status 2).
type usageError struct{ err error }

func (e *usageError) Error() string { return e.err.Error() }
func (e *usageError) Unwrap() error { return e.err }

func exitStatus(err error, stderr io.Writer) int {
	if err == nil {
		return exitOK
	}
	var coded interface{ ExitCode() int }
	if errors.As(err, &coded) {
		return coded.ExitCode()
	}
	// One line, no stack trace.
	fmt.Fprintf(stderr, "attestload: %s\n", strings.ReplaceAll(err.Error(), "\n", "; "))
	var ue *usageError
	var ce *conf.Error
	var de *daemon.UsageError
	if errors.As(err, &ue) || errors.As(err, &ce) || errors.As(err, &de) {
		return exitUsage
	}
	return exitFailure
}

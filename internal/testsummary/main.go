// Command testsummary reads `go test -json` on stdin and prints what `go test` prints without -json (the ok and
// FAIL lines, a failing test's output, build errors), plus one line for every package in which every test was
// skipped, which go test reports as a plain "ok":
//
//	skip	github.com/attestload/attestload/test/faults	all 9 tests skipped: set ATTESTLOAD_FAULTS=1 ...
//
// It never changes the exit status: `make test` pipes go test into it under pipefail, and exits with go test's.
package main

import (
	"bufio"
	"encoding/json"
	"fmt"
	"io"
	"os"
	"strings"
)

// event is one line of `go test -json` (cmd/test2json).
type event struct {
	Action     string
	Package    string
	ImportPath string // build-output events
	Test       string
	Output     string
}

type pkgState struct {
	results   map[string]string // test (or subtest) name → pass, fail or skip
	parents   map[string]bool   // tests that have subtests: their own result says nothing of what ran
	firstSkip string            // the first skipped test's message
	buffered  []chunk           // running tests' output in arrival order, printed if their top-level test fails
}

type chunk struct{ test, output string }

// take removes and returns the output of test and its subtests, in order.
func (s *pkgState) take(test string) string {
	var b strings.Builder
	kept := s.buffered[:0]
	for _, c := range s.buffered {
		if c.test == test || strings.HasPrefix(c.test, test+"/") {
			b.WriteString(c.output)
			continue
		}
		kept = append(kept, c)
	}
	s.buffered = kept
	return b.String()
}

// leaves counts the tests without subtests by result: a test whose subtests all skipped still passes itself.
func (s *pkgState) leaves() (passed, failed, skipped int) {
	for name, r := range s.results {
		if s.parents[name] {
			continue
		}
		switch r {
		case "pass":
			passed++
		case "fail":
			failed++
		case "skip":
			skipped++
		}
	}
	return passed, failed, skipped
}

func main() {
	if err := run(os.Stdin, os.Stdout); err != nil {
		fmt.Fprintln(os.Stderr, "testsummary:", err)
		os.Exit(1)
	}
}

func run(in io.Reader, w io.Writer) error {
	pkgs := map[string]*pkgState{}
	state := func(p string) *pkgState {
		s := pkgs[p]
		if s == nil {
			s = &pkgState{results: map[string]string{}, parents: map[string]bool{}}
			pkgs[p] = s
		}
		return s
	}
	sc := bufio.NewScanner(in)
	sc.Buffer(make([]byte, 64*1024), 16*1024*1024)
	for sc.Scan() {
		line := sc.Bytes()
		var e event
		if len(line) == 0 || line[0] != '{' || json.Unmarshal(line, &e) != nil {
			// Not an event (go's own messages): as is.
			fmt.Fprintf(w, "%s\n", line)
			continue
		}
		switch {
		case e.Action == "build-output":
			io.WriteString(w, e.Output)
		case e.Test == "" && e.Action == "output":
			if e.Output == "PASS\n" { // -json implies -v; plain go test does not print it for a passing package
				continue
			}
			io.WriteString(w, e.Output)
		case e.Test == "" && e.Action == "pass":
			s := state(e.Package)
			if passed, failed, skipped := s.leaves(); skipped > 0 && passed == 0 && failed == 0 {
				reason := ""
				if s.firstSkip != "" {
					reason = ": " + s.firstSkip
				}
				fmt.Fprintf(w, "skip\t%s\tall %d tests skipped%s\n", e.Package, skipped, reason)
			}
			delete(pkgs, e.Package)
		case e.Test == "" && e.Action == "fail":
			// Output of tests that never reported an end (a panic, a timeout) belongs to the failure.
			if s := pkgs[e.Package]; s != nil {
				for _, c := range s.buffered {
					io.WriteString(w, c.output)
				}
			}
			delete(pkgs, e.Package)
		case e.Test != "":
			s := state(e.Package)
			if i := strings.LastIndex(e.Test, "/"); i > 0 {
				s.parents[e.Test[:i]] = true
			}
			top := !strings.Contains(e.Test, "/")
			switch e.Action {
			case "output":
				s.buffered = append(s.buffered, chunk{e.Test, e.Output})
			case "pass", "skip", "fail":
				s.results[e.Test] = e.Action
				if e.Action == "skip" && s.firstSkip == "" {
					for _, c := range s.buffered {
						if c.test == e.Test {
							if m := skipMessage(c.output); m != "" {
								s.firstSkip = m
								break
							}
						}
					}
				}
				if top {
					out := s.take(e.Test)
					if e.Action == "fail" {
						// Plain go test prints a failing test's output, its subtests' within it.
						io.WriteString(w, withoutRunLines(out))
					}
				}
			}
		}
	}
	return sc.Err()
}

// skipMessage is the first logged line of a skipped test's output ("    x_test.go:12: reason" → "reason").
func skipMessage(output string) string {
	for l := range strings.SplitSeq(output, "\n") {
		t := strings.TrimSpace(l)
		if t == "" || strings.HasPrefix(t, "=== ") || strings.HasPrefix(t, "--- ") {
			continue
		}
		if _, msg, ok := strings.Cut(t, ": "); ok && strings.Contains(t[:strings.Index(t, ": ")], ".go:") {
			return msg
		}
		return t
	}
	return ""
}

// withoutRunLines drops the "=== RUN/PAUSE/CONT" lines that -v adds and plain go test does not print.
func withoutRunLines(s string) string {
	var b strings.Builder
	for l := range strings.SplitSeq(s, "\n") {
		t := strings.TrimSpace(l)
		if strings.HasPrefix(t, "=== RUN") || strings.HasPrefix(t, "=== PAUSE") || strings.HasPrefix(t, "=== CONT") ||
			strings.HasPrefix(t, "=== NAME") {
			continue
		}
		if l != "" {
			b.WriteString(l + "\n")
		}
	}
	return b.String()
}

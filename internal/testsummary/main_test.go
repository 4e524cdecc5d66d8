package main

import (
	"bytes"
	"os"
	"os/exec"
	"path/filepath"
	"strings"
	"testing"
)

// The summary of a real `go test -json` run over a throwaway module: the ok and FAIL lines exactly as plain go test
// prints them, a failing test's output, and a skip line only for the package whose every test skipped (also when
// the skips are subtests of a passing parent).
func TestSummaryOfARealRun(t *testing.T) {
	dir := t.TempDir()
	write := func(name, content string) {
		p := filepath.Join(dir, name)
		if err := os.MkdirAll(filepath.Dir(p), 0o755); err != nil {
			t.Fatal(err)
		}
		if err := os.WriteFile(p, []byte(content), 0o644); err != nil {
			t.Fatal(err)
		}
	}
	write("go.mod", "module example.com/m\n\ngo 1.22\n")
	write("skips/s_test.go", `package skips
import "testing"
func TestA(t *testing.T) { t.Skip("needs the lab") }
func TestB(t *testing.T) { t.Run("sub", func(t *testing.T) { t.Skip("also") }) }
`)
	write("mixed/m_test.go", `package mixed
import "testing"
func TestA(t *testing.T) { t.Skip("later") }
func TestB(t *testing.T) {}
`)
	write("panics/p_test.go", `package panics
import "testing"
func TestPanic(t *testing.T) { panic("kaboom") }
`)
	write("fails/f_test.go", `package fails
import "testing"
func TestOK(t *testing.T) { t.Log("quiet") }
func TestBad(t *testing.T) { t.Run("inner", func(t *testing.T) { t.Error("boom") }) }
`)
	cmd := exec.Command("go", "test", "-json", "./...")
	cmd.Dir = dir
	cmd.Env = append(os.Environ(), "GOFLAGS=", "GOWORK=off")
	js, err := cmd.Output()
	if err == nil {
		t.Fatal("go test passed; the fails package should fail")
	}
	var out bytes.Buffer
	if err := run(bytes.NewReader(js), &out); err != nil {
		t.Fatal(err)
	}
	got := out.String()
	t.Logf("summary:\n%s", got)
	for _, want := range []string{
		"skip\texample.com/m/skips\tall 2 tests skipped: needs the lab\n",
		"ok  \texample.com/m/skips\t",
		"ok  \texample.com/m/mixed\t",
		"--- FAIL: TestBad/inner",
		"boom",
		"FAIL\texample.com/m/fails\t",
		"panic: kaboom",
		"FAIL\texample.com/m/panics\t",
	} {
		if !strings.Contains(got, want) {
			t.Errorf("summary lacks %q", want)
		}
	}
	for _, unwanted := range []string{"example.com/m/mixed\tall", "quiet", "=== RUN", "PASS\n"} {
		if strings.Contains(got, unwanted) {
			t.Errorf("summary has %q", unwanted)
		}
	}
}

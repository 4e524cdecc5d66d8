package main

import (
	"bytes"
	"os"
	"path/filepath"
	"strings"
	"testing"

	"github.com/attestload/attestload/dashboards"
)

func TestDashboardsCmdWritesBuild(t *testing.T) {
	dir := filepath.Join(t.TempDir(), "new", "dir")
	cmd := newDashboardsCmd()
	var stdout bytes.Buffer
	cmd.SetOut(&stdout)
	cmd.SetArgs([]string{"--out", dir})
	if err := cmd.Execute(); err != nil {
		t.Fatal(err)
	}
	want, err := dashboards.Build()
	if err != nil {
		t.Fatal(err)
	}
	for name, data := range want {
		got, err := os.ReadFile(filepath.Join(dir, name))
		if err != nil {
			t.Fatal(err)
		}
		if !bytes.Equal(got, data) {
			t.Errorf("%s differs from dashboards.Build()", name)
		}
		if !strings.Contains(stdout.String(), filepath.Join(dir, name)+"\n") {
			t.Errorf("stdout %q does not list %s", stdout.String(), name)
		}
	}
}

func TestDashboardsCmdErrors(t *testing.T) {
	file := filepath.Join(t.TempDir(), "file")
	if err := os.WriteFile(file, nil, 0o600); err != nil {
		t.Fatal(err)
	}
	for _, tc := range []struct {
		args  []string
		want  string
		usage bool // a command-line mistake (exit status 2), not a failure to write
	}{
		{nil, "--out: the directory to write the dashboards into is required", true},
		{[]string{"--queries", "--out", "x"}, "--queries and --out: give one of them", true},
		{[]string{"--queries", "--rate-interval", "soon"}, `--rate-interval "soon": want a duration such as 1m`, true},
		{[]string{"--out", filepath.Join(file, "sub")}, "--out " + filepath.Join(file, "sub"), false},
		{[]string{"--out", "x", "extra"}, `unknown command "extra"`, true},
	} {
		cmd := newDashboardsCmd()
		cmd.SetOut(&bytes.Buffer{})
		cmd.SetErr(&bytes.Buffer{})
		cmd.SetArgs(tc.args)
		err := cmd.Execute()
		if err == nil || !strings.Contains(err.Error(), tc.want) {
			t.Errorf("args %q: err = %v, want it to contain %q", tc.args, err, tc.want)
		}
		if got := Main(append([]string{"dashboards"}, tc.args...), &bytes.Buffer{}, &bytes.Buffer{}); tc.usage != (got == exitUsage) {
			t.Errorf("args %q: exit status %d, usage error %v", tc.args, got, tc.usage)
		}
	}
}

func TestDashboardsCmdQueries(t *testing.T) {
	cmd := newDashboardsCmd()
	var stdout bytes.Buffer
	cmd.SetOut(&stdout)
	cmd.SetArgs([]string{"--queries", "--rate-interval", "30s"})
	if err := cmd.Execute(); err != nil {
		t.Fatal(err)
	}
	qs, err := dashboards.Queries()
	if err != nil {
		t.Fatal(err)
	}
	lines := strings.Split(strings.TrimSuffix(stdout.String(), "\n"), "\n")
	if len(lines) != len(qs) {
		t.Fatalf("printed %d lines for %d queries", len(lines), len(qs))
	}
	for i, line := range lines {
		f := strings.Split(line, "\t")
		if len(f) != 4 || f[0] != qs[i].Dashboard || f[1] != qs[i].Panel || f[3] != dashboards.Expand(qs[i].Expr, "30s") {
			t.Errorf("line %d = %q", i, line)
		}
	}
}

package faults

import (
	"os"
	"path/filepath"
	"strings"
	"testing"
	"time"

	"github.com/attestload/attestload/test/faults/harness"
)

// Unreadable or malformed files named by the configuration stop the run before any load, with an error that
// names the file and its key; when the failure comes after enrollment, the enrolled rows are removed again.
func TestBadFiles(t *testing.T) {
	w := newWorld(t, harness.SimOptions{})
	garbage := filepath.Join(w.dir, "garbage.pem")
	if err := os.WriteFile(garbage, []byte("this is not PEM\n"), 0o600); err != nil {
		t.Fatal(err)
	}
	badPool := filepath.Join(w.dir, "bad-pool.bin")
	if err := os.WriteFile(badPool, []byte("\x00\x01not a key pool"), 0o600); err != nil {
		t.Fatal(err)
	}
	missing := filepath.Join(w.dir, "missing.pem")
	base := []string{"run", w.sim.URL(), w.dbURL, "-a", "2", "-t", "1", "--results-dir", w.dir, "--prefix", w.prefix}
	for _, c := range []struct {
		name    string
		args    []string
		env     []string
		culprit []string // every one must appear on stderr
	}{
		{name: "missing CA file", args: []string{"--key-pool", w.keys, "--verifier-ca", missing}, culprit: []string{"missing.pem"}},
		{name: "CA file not PEM", args: []string{"--key-pool", w.keys, "--verifier-ca", garbage}, culprit: []string{"garbage.pem"}},
		{name: "CA file is a directory", args: []string{"--key-pool", w.keys, "--verifier-ca", w.dir}, culprit: []string{w.dir}},
		{name: "client certificate missing", args: []string{"--key-pool", w.keys},
			env: []string{"ATTESTLOAD_VERIFIER_CERT_FILE=" + missing, "ATTESTLOAD_VERIFIER_KEY_FILE=" + garbage}, culprit: []string{"missing.pem"}},
		{name: "key pool corrupt", args: []string{"--key-pool", badPool}, culprit: []string{"run.key_pool", "bad-pool.bin"}},
		{name: "captured log missing", args: []string{"--key-pool", w.keys, "--profile", "captured"},
			env: []string{"ATTESTLOAD_EVIDENCE_CAPTURED_LOG=" + missing}, culprit: []string{"evidence.captured_log", "missing.pem"}},
	} {
		t.Run(c.name, func(t *testing.T) {
			env := append(w.baseEnv(), c.env...)
			args := append(append([]string{}, base...), c.args...)
			p, code := harness.Run(t, w.dir, env, time.Minute, append(args, "--results-dir", t.TempDir())...)
			stderr := p.Stderr.String()
			harness.NoCrash(t, "stderr", stderr)
			if code == 0 {
				t.Errorf("exit code 0 with %s", c.name)
			}
			for _, want := range c.culprit {
				if !strings.Contains(stderr, want) {
					t.Errorf("stderr does not name %q:\n%s", want, stderr)
				}
			}
			w.checkClean()
		})
	}
}

// attestload report on files that are not results: the culprit is named (file and line), nothing crashes, a
// missing input is an error, and so is a set of inputs without a single record (named: "no records in X").
func TestReportMalformedFiles(t *testing.T) {
	harness.RequireFaults(t)
	dir := t.TempDir()
	write := func(name string, b []byte) string {
		p := filepath.Join(dir, name)
		if err := os.WriteFile(p, b, 0o600); err != nil {
			t.Fatal(err)
		}
		return p
	}
	good := `{"agent_index":0,"task_index":0,"worker_index":0,"create_successful":true,"update_successful":true,` +
		`"create_duration":0.1,"update_duration":0.2}` + "\n"
	huge := append([]byte(`{"agent_index":0,"outcome":"`), make([]byte, 20<<20)...)
	for _, c := range []struct {
		name      string
		input     string
		wantError bool     // exit code non-zero
		culprit   []string // on stderr
	}{
		{"missing file", filepath.Join(dir, "nope.jsonl"), true, []string{"nope.jsonl"}},
		{"garbage lines", write("garbage.jsonl", []byte("garbage\n{\"agent_index\": \"x\"}\n")), true,
			[]string{"garbage.jsonl:1", "skipped", "no records in " + filepath.Join(dir, "garbage.jsonl")}},
		{"objects that are not records", write("objects.jsonl", []byte(good+`{"a":1}`+"\n")), false,
			[]string{"objects.jsonl:2", "not a results record"}},
		{"binary", write("binary.jsonl", []byte("\x00\xff\xfe\x01\n\x02\x03")), true, []string{"binary.jsonl:1", "skipped", "no records in"}},
		{"truncated last line", write("cut.jsonl", []byte(good+`{"agent_index":0,"task_index":0,"outcome":"succ`)), false,
			[]string{"cut.jsonl:2", "truncated"}},
		{"line over the size bound", write("huge.jsonl", huge), true, []string{"huge.jsonl:1", "skipped", "no records in"}},
		{"empty file", write("empty.jsonl", nil), true, []string{"no records in " + filepath.Join(dir, "empty.jsonl")}},
		{"directory", dir, true, []string{dir + " is a directory; give the .jsonl files in it or a glob such as " +
			filepath.Join(dir, "*.jsonl")}},
	} {
		t.Run(c.name, func(t *testing.T) {
			p, code := harness.Run(t, dir, nil, time.Minute, "report", c.input)
			stderr := p.Stderr.String()
			harness.NoCrash(t, "stderr", stderr)
			harness.NoCrash(t, "stdout", p.Stdout.String())
			if (code != 0) != c.wantError {
				t.Errorf("exit code %d, want error %v; stderr:\n%s", code, c.wantError, stderr)
			}
			for _, want := range c.culprit {
				if !strings.Contains(stderr, want) {
					t.Errorf("stderr does not name %q:\n%s", want, stderr)
				}
			}
		})
	}
}

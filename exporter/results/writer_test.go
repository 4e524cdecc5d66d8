package results

import (
	"encoding/json"
	"errors"
	"os"
	"path/filepath"
	"strings"
	"sync/atomic"
	"testing"
	"testing/synctest"
	"time"

	"github.com/attestload/attestload/attestation/record"
)

func rec(i int) *record.Record {
	d := 0.25
	ok := true
	ra := 0
	st := 201
	return &record.Record{AgentIndex: i, TaskIndex: i % 3, Schema: record.SchemaVersion, RunID: "r1", AgentID: "a<&>",
		Outcome: record.OutcomeSuccess, CreateSuccessful: true, UpdateSuccessful: true,
		CreateAttempts: []record.Attempt{{Action: record.ActionCreate, Method: "POST", URL: "https://v/x", StartTime: 1.5,
			EndTime: 1.75, Duration: &d, OK: &ok, RetryAfter: &ra, Status: &st}}}
}

func readLines(t *testing.T, path string) []string {
	t.Helper()
	b, err := os.ReadFile(path)
	if err != nil {
		t.Fatal(err)
	}
	s := string(b)
	if s == "" {
		return nil
	}
	if !strings.HasSuffix(s, "\n") {
		t.Fatalf("file does not end with a whole line: %q", s[max(0, len(s)-40):])
	}
	return strings.Split(strings.TrimSuffix(s, "\n"), "\n")
}

func TestWriterWritesWholeLinesAndFlushesEverySecond(t *testing.T) {
	synctest.Test(t, func(t *testing.T) {
		dir := t.TempDir()
		start := time.Date(2026, 11, 30, 20, 21, 18, 0, time.UTC)
		w, err := Create(filepath.Join(dir, "results"), start, Options{BufferBytes: 1024})
		if err != nil {
			t.Fatal(err)
		}
		if want := filepath.Join(dir, "results", "20261130202118.jsonl"); w.Path() != want {
			t.Fatalf("path %s, want %s", w.Path(), want)
		}
		for i := range 50 {
			w.Observe(rec(i))
		}
		// The 1 KiB buffer overflowed several times: whatever is on disk must be whole lines.
		if n := len(readLines(t, w.Path())); n == 0 || n >= 50 {
			t.Fatalf("%d lines on disk before the flush interval; want some but not all", n)
		}
		time.Sleep(1100 * time.Millisecond)
		synctest.Wait()
		lines := readLines(t, w.Path())
		if len(lines) != 50 {
			t.Fatalf("%d lines on disk after a second; want all 50 flushed", len(lines))
		}
		var r record.Record
		if err := json.Unmarshal([]byte(lines[7]), &r); err != nil || r.AgentIndex != 7 || r.AgentID != "a<&>" {
			t.Fatalf("line 7 = %s (err %v)", lines[7], err)
		}
		if strings.Contains(lines[0], `\u003c`) {
			t.Fatal("HTML escaping in results lines")
		}
		w.Observe(rec(50))
		if err := w.Close(); err != nil {
			t.Fatal(err)
		}
		if err := w.Close(); err != nil {
			t.Fatal("second Close:", err)
		}
		if n := len(readLines(t, w.Path())); n != 51 || w.Written() != 51 {
			t.Fatalf("%d lines after Close (written %d), want 51", n, w.Written())
		}
		if _, err := Create(filepath.Join(dir, "results"), start, Options{}); err == nil {
			t.Fatal("Create overwrote an existing results file")
		}
	})
}

func TestWriterReportsWriteErrors(t *testing.T) {
	path := filepath.Join(t.TempDir(), "x.jsonl")
	var calls atomic.Int32
	var got error
	w, err := Open(path, Options{BufferBytes: 512, OnError: func(err error) { calls.Add(1); got = err }})
	if err != nil {
		t.Fatal(err)
	}
	w.f.Close() // the disk goes away under the writer
	for i := range 20 {
		w.Observe(rec(i))
	}
	if calls.Load() != 1 || got == nil || !strings.Contains(got.Error(), path) {
		t.Fatalf("OnError called %d times with %v; want once, naming the file", calls.Load(), got)
	}
	if w.Failed() == 0 {
		t.Fatal("no failed records counted")
	}
	cerr := w.Close()
	if cerr == nil || !errors.Is(cerr, os.ErrClosed) || !strings.Contains(cerr.Error(), "records were not written") {
		t.Fatalf("Close = %v; want the write error and the lost count", cerr)
	}
}

func TestSidecar(t *testing.T) {
	dir := t.TempDir()
	p := filepath.Join(dir, "20261130202118.jsonl")
	if SidecarPath(p) != filepath.Join(dir, "20261130202118.run.json") {
		t.Fatalf("SidecarPath = %s", SidecarPath(p))
	}
	info := map[string]any{"schema": 1, "run_id": "r1"}
	if err := WriteSidecar(p, info); err != nil {
		t.Fatal(err)
	}
	info["agents"] = 3
	if err := WriteSidecar(p, info); err != nil {
		t.Fatal(err)
	}
	var back map[string]any
	b, _ := os.ReadFile(SidecarPath(p))
	if err := json.Unmarshal(b, &back); err != nil || back["agents"] != 3.0 {
		t.Fatalf("sidecar %s (err %v)", b, err)
	}
	ents, _ := os.ReadDir(dir)
	if len(ents) != 1 {
		t.Fatalf("temporary files left behind: %v", ents)
	}
	if err := WriteSidecar(filepath.Join(dir, "missing", "x.jsonl"), info); err == nil {
		t.Fatal("WriteSidecar into a missing directory succeeded")
	}
}

func BenchmarkWriterObserve(b *testing.B) {
	w, err := Open(filepath.Join(b.TempDir(), "b.jsonl"), Options{})
	if err != nil {
		b.Fatal(err)
	}
	r := rec(1)
	b.ReportAllocs()
	for b.Loop() {
		w.Observe(r)
	}
	if err := w.Close(); err != nil {
		b.Fatal(err)
	}
}

// Two runs starting in the same second in one directory (shards on one host, a quick restart) must both start:
// the second takes <stamp>-<run_id>.jsonl, and nothing is ever overwritten.
func TestCreateSameSecondUsesRunID(t *testing.T) {
	dir := filepath.Join(t.TempDir(), "results")
	start := time.Date(2026, 11, 30, 20, 21, 18, 0, time.UTC)
	a, err := Create(dir, start, Options{RunID: "aaaa1111"})
	if err != nil {
		t.Fatal(err)
	}
	if want := filepath.Join(dir, "20261130202118.jsonl"); a.Path() != want {
		t.Fatalf("first run: %s, want %s", a.Path(), want)
	}
	a.Observe(rec(1))
	if err := a.Close(); err != nil {
		t.Fatal(err)
	}
	if err := WriteSidecar(a.Path(), map[string]any{"run_id": "aaaa1111"}); err != nil {
		t.Fatal(err)
	}
	b, err := Create(dir, start, Options{RunID: "bbbb2222"})
	if err != nil {
		t.Fatalf("second run in the same second: %v", err)
	}
	if want := filepath.Join(dir, "20261130202118-bbbb2222.jsonl"); b.Path() != want {
		t.Fatalf("second run: %s, want %s", b.Path(), want)
	}
	if want := filepath.Join(dir, "20261130202118-bbbb2222.run.json"); SidecarPath(b.Path()) != want {
		t.Fatalf("second run's sidecar: %s, want %s", SidecarPath(b.Path()), want)
	}
	if err := WriteSidecar(b.Path(), map[string]any{"run_id": "bbbb2222"}); err != nil {
		t.Fatal(err)
	}
	if err := b.Close(); err != nil {
		t.Fatal(err)
	}
	if n := len(readLines(t, a.Path())); n != 1 {
		t.Fatalf("the first run's file has %d lines after the second run started, want 1", n)
	}
	side, _ := os.ReadFile(SidecarPath(a.Path()))
	if !strings.Contains(string(side), "aaaa1111") {
		t.Fatalf("the first run's sidecar was replaced: %s", side)
	}

	// Both names taken: an error naming both, never an overwrite.
	_, err = Create(dir, start, Options{RunID: "bbbb2222"})
	if err == nil || !strings.Contains(err.Error(), "20261130202118.jsonl") || !strings.Contains(err.Error(), "20261130202118-bbbb2222.jsonl") {
		t.Fatalf("third run with the second's id: %v; want an error naming both files", err)
	}
	// No run id to tell the runs apart.
	if _, err := Create(dir, start, Options{}); err == nil || !strings.Contains(err.Error(), "same second") {
		t.Fatalf("clash without a run id: %v", err)
	}
	// A run id that would leave the directory or hide a path separator.
	for _, bad := range []string{"../x", "a/b", "a.b", "é"} {
		if _, err := Create(dir, start, Options{RunID: bad}); err == nil || !strings.Contains(err.Error(), "run id") {
			t.Errorf("run id %q: %v", bad, err)
		}
	}
	ents, _ := os.ReadDir(dir)
	if len(ents) != 4 {
		t.Fatalf("%d entries in the results directory, want 2 results files and 2 sidecars: %v", len(ents), ents)
	}
}

// A sidecar left without its results file still claims the name: the run does not adopt (and later replace) it.
func TestCreateKeepsAnOrphanSidecar(t *testing.T) {
	dir := t.TempDir()
	start := time.Date(2026, 11, 30, 20, 21, 18, 0, time.UTC)
	orphan := filepath.Join(dir, "20261130202118.run.json")
	if err := os.WriteFile(orphan, []byte(`{"run_id":"old"}`), 0o644); err != nil {
		t.Fatal(err)
	}
	w, err := Create(dir, start, Options{RunID: "new1"})
	if err != nil {
		t.Fatal(err)
	}
	defer w.Close()
	if filepath.Base(w.Path()) != "20261130202118-new1.jsonl" {
		t.Fatalf("path %s; want the run-id name beside an existing sidecar", w.Path())
	}
}

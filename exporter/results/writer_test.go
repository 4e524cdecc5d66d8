package results

import (
	"fmt"
	"io"

	"encoding/json"
	"errors"
	"github.com/klauspost/compress/zstd"
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
	info := record.RunInfo{Schema: 1, RunID: "r1"}
	if err := WriteSidecar(p, info); err != nil {
		t.Fatal(err)
	}
	info.Agents = 3
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
	if err := WriteSidecar(a.Path(), record.RunInfo{RunID: "aaaa1111"}); err != nil {
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
	if err := WriteSidecar(b.Path(), record.RunInfo{RunID: "bbbb2222"}); err != nil {
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

// readZstd decodes a .zst part the way a reader after a crash would: every complete frame, then whatever the
// decoder could make of the rest, and whether the stream ended cleanly.
func readZstd(t *testing.T, path string) (lines []string, clean bool) {
	t.Helper()
	f, err := os.Open(path)
	if err != nil {
		t.Fatal(err)
	}
	defer f.Close()
	d, err := zstd.NewReader(f, zstd.WithDecoderConcurrency(1))
	if err != nil {
		t.Fatal(err)
	}
	defer d.Close()
	b, err := io.ReadAll(d)
	s := string(b)
	if i := strings.LastIndexByte(s, '\n'); i >= 0 {
		lines = strings.Split(s[:i], "\n")
	}
	return lines, err == nil
}

func TestWriterRotatesBySizeIntoCompleteZstdParts(t *testing.T) {
	dir := t.TempDir()
	start := time.Date(2026, 12, 7, 19, 0, 0, 0, time.UTC)
	w, err := Create(dir, start, Options{Settings: Settings{Compression: CompressionZstd, RotateSize: 4 << 10},
		BufferBytes: 1024})
	if err != nil {
		t.Fatal(err)
	}
	const n = 6000
	for i := range n {
		w.Observe(rec(i))
	}
	if err := w.Close(); err != nil {
		t.Fatal(err)
	}
	paths := w.Paths()
	if len(paths) < 3 {
		t.Fatalf("%d parts, want several at a 4 KiB rotation size", len(paths))
	}
	total := 0
	var disk int64
	for i, p := range paths {
		if want := filepath.Join(dir, fmt.Sprintf("20261207190000.part%04d.jsonl.zst", i+1)); p != want {
			t.Fatalf("part %d is %s, want %s", i+1, p, want)
		}
		if SidecarPath(p) != filepath.Join(dir, "20261207190000.run.json") || w.SidecarPath() != SidecarPath(p) {
			t.Fatalf("sidecar of %s is %s", p, SidecarPath(p))
		}
		lines, clean := readZstd(t, p)
		if !clean {
			t.Fatalf("part %s does not decode cleanly on its own", p)
		}
		for j, l := range lines {
			var r record.Record
			if err := json.Unmarshal([]byte(l), &r); err != nil || r.AgentIndex != total+j {
				t.Fatalf("%s line %d: %q (err %v), want agent %d", p, j, l, err, total+j)
			}
		}
		total += len(lines)
		fi, _ := os.Stat(p)
		disk += fi.Size()
	}
	if total != n || w.Written() != n {
		t.Fatalf("%d lines over the parts (written %d), want %d", total, w.Written(), n)
	}
	if w.DiskBytes() != disk || w.RawBytes() <= disk {
		t.Fatalf("DiskBytes %d (files %d), RawBytes %d: want the file sizes and compression", w.DiskBytes(), disk, w.RawBytes())
	}
}

// A crash between flushes: everything flushed so far is in complete frames, so a reader gets every flushed line
// even though the file ends inside the frame that was being written.
func TestZstdPartReadableUpToLastFrameAfterCrash(t *testing.T) {
	path := filepath.Join(t.TempDir(), "x.jsonl.zst")
	w, err := Open(path, Options{Settings: Settings{Compression: CompressionZstd, FlushInterval: time.Hour}})
	if err != nil {
		t.Fatal(err)
	}
	for i := range 100 {
		w.Observe(rec(i))
	}
	if err := w.Flush(); err != nil {
		t.Fatal(err)
	}
	flushed, _ := os.Stat(path)
	// Enough further lines that the encoder writes blocks of an unfinished frame; then "crash": the file is cut
	// inside that frame, as a kill would leave it.
	for i := 100; i < 5000; i++ {
		w.Observe(rec(i))
	}
	w.mu.Lock()
	_ = w.buf.Flush() // into the encoder, which writes whole blocks but does not end the frame
	w.mu.Unlock()
	cur, _ := os.Stat(path)
	if cur.Size() <= flushed.Size() {
		t.Fatalf("the unfinished frame wrote nothing (%d bytes, %d after the flush); the test proves nothing", cur.Size(), flushed.Size())
	}
	b, _ := os.ReadFile(path)
	cut := filepath.Join(t.TempDir(), "cut.jsonl.zst")
	if err := os.WriteFile(cut, b[:cur.Size()-7], 0o644); err != nil {
		t.Fatal(err)
	}
	lines, clean := readZstd(t, cut)
	if clean {
		t.Fatal("a cut frame decoded cleanly")
	}
	if len(lines) < 100 {
		t.Fatalf("%d lines readable after the crash, want at least the 100 flushed", len(lines))
	}
	for i, l := range lines[:100] {
		var r record.Record
		if err := json.Unmarshal([]byte(l), &r); err != nil || r.AgentIndex != i {
			t.Fatalf("line %d: %q (err %v)", i, l, err)
		}
	}
	w.Close()
}

func TestWriterRotatesByIntervalOnlyWithRecords(t *testing.T) {
	synctest.Test(t, func(t *testing.T) {
		dir := t.TempDir()
		w, err := Create(dir, time.Now(), Options{Settings: Settings{RotateInterval: time.Minute}})
		if err != nil {
			t.Fatal(err)
		}
		w.Observe(rec(0))
		time.Sleep(61 * time.Second) // the flusher rotates a part that is old and holds a record
		synctest.Wait()
		time.Sleep(5 * time.Minute) // an idle run makes no empty parts
		synctest.Wait()
		w.Observe(rec(1))
		if err := w.Close(); err != nil {
			t.Fatal(err)
		}
		ps := w.Paths()
		if len(ps) != 2 || !strings.HasSuffix(ps[0], ".part0001.jsonl") || !strings.HasSuffix(ps[1], ".part0002.jsonl") {
			t.Fatalf("parts %v, want two", ps)
		}
		for _, p := range ps {
			if n := len(readLines(t, p)); n != 1 {
				t.Fatalf("%s has %d lines, want 1", p, n)
			}
		}
	})
}

func TestDiskGuard(t *testing.T) {
	dir := t.TempDir()
	if _, err := Create(dir, time.Now(), Options{Settings: Settings{MinFreeDisk: 1 << 62}}); err == nil ||
		!strings.Contains(err.Error(), "results.min_free_disk") {
		t.Fatalf("Create with an impossible min free disk: %v", err)
	}
	synctest.Test(t, func(t *testing.T) {
		var calls atomic.Int32
		var got error
		w, err := Create(dir, time.Now(), Options{Settings: Settings{MinFreeDisk: 100 << 20},
			OnDiskLow: func(err error) { calls.Add(1); got = err }})
		if err != nil {
			t.Fatal(err)
		}
		var free atomic.Int64
		free.Store(1 << 30)
		w.mu.Lock()
		w.free = func(string) (int64, bool) { return free.Load(), true }
		w.mu.Unlock()
		time.Sleep(10 * time.Second)
		synctest.Wait()
		if calls.Load() != 0 {
			t.Fatal("guard fired with 1 GiB free")
		}
		free.Store(50 << 20)
		time.Sleep(10 * time.Second)
		synctest.Wait()
		if calls.Load() != 1 || !strings.Contains(got.Error(), "50.0 MiB free") || !strings.Contains(got.Error(), "results.min_free_disk") {
			t.Fatalf("guard called %d times with %v; want once with the free space and the setting", calls.Load(), got)
		}
		w.Observe(rec(1)) // the run drains: records still get written
		if err := w.Close(); err != nil || w.Written() != 1 {
			t.Fatalf("close %v, written %d", err, w.Written())
		}
	})
}

func TestRunBase(t *testing.T) {
	for in, want := range map[string]string{
		"r/20261207190000.jsonl":                   "r/20261207190000",
		"r/20261207190000.jsonl.zst":               "r/20261207190000",
		"r/20261207190000-ab12.part0003.jsonl.zst": "r/20261207190000-ab12",
		"r/20261207190000.part0010.jsonl.gz":       "r/20261207190000",
		"r/my.partial.jsonl":                       "r/my.partial",
	} {
		if got := RunBase(in); got != want {
			t.Errorf("RunBase(%s) = %s, want %s", in, got, want)
		}
	}
}

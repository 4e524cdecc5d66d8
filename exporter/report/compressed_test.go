package report

import (
	"bytes"
	"compress/gzip"
	"context"
	"os"
	"strings"
	"testing"
	"time"

	"github.com/attestload/attestload/attestation/record"
	"github.com/attestload/attestload/exporter/results"
)

func writeRun(t *testing.T, dir string, start time.Time, n int, opts results.Options) []string {
	t.Helper()
	w, err := results.Create(dir, start, opts)
	if err != nil {
		t.Fatal(err)
	}
	for i := range n {
		d := 0.01
		ok := true
		ra := 0
		w.Observe(&record.Record{AgentIndex: i % 10, TaskIndex: i / 10, Schema: 1, AgentID: "agent", Outcome: "success",
			CreateSuccessful: true, UpdateSuccessful: true, StartTime: 1e9 + float64(i), EndTime: 1e9 + float64(i) + 0.02,
			CreateAttempts: []record.Attempt{{Action: "create", Method: "POST", URL: "https://v/x", StartTime: 1e9 + float64(i),
				EndTime: 1e9 + float64(i) + d, Duration: &d, OK: &ok, RetryAfter: &ra}},
			UpdateAttempts: []record.Attempt{{Action: "update", Method: "PATCH", URL: "https://v/x", StartTime: 1e9 + float64(i) + d,
				EndTime: 1e9 + float64(i) + 2*d, Duration: &d, OK: &ok, RetryAfter: &ra}}})
	}
	if err := w.Close(); err != nil {
		t.Fatal(err)
	}
	if err := results.WriteSidecar(w.Path(), record.RunInfo{Schema: 1, RunID: "r1"}); err != nil {
		t.Fatal(err)
	}
	return w.Paths()
}

// A rotated, compressed run is read whole by its stamp, parts in any compression mix, and a part cut inside a
// frame gives up only the cut frame's lines.
func TestReportReadsRotatedCompressedRunByStamp(t *testing.T) {
	dir := t.TempDir()
	start := time.Date(2026, 12, 7, 19, 30, 0, 0, time.UTC)
	const n = 6000
	parts := writeRun(t, dir, start, n, results.Options{Settings: results.Settings{Compression: results.CompressionZstd, RotateSize: 4 << 10}})
	if len(parts) < 3 {
		t.Fatalf("%d parts", len(parts))
	}
	// The second part recompressed with gzip, as a user archiving old parts might.
	plain := decompress(t, parts[1])
	var gz bytes.Buffer
	zw := gzip.NewWriter(&gz)
	zw.Write(plain)
	zw.Close()
	gzPath := strings.TrimSuffix(parts[1], ".zst") + ".gz"
	os.WriteFile(gzPath, gz.Bytes(), 0o644)
	os.Remove(parts[1])

	paths, err := ResolveInputs([]string{"20261207193000"}, dir)
	if err != nil {
		t.Fatal(err)
	}
	if len(paths) != len(parts) || paths[1] != gzPath {
		t.Fatalf("stamp resolved to %v; want the %d parts in order", paths, len(parts))
	}
	var stderr bytes.Buffer
	s, err := Load(context.Background(), paths, &stderr)
	if err != nil {
		t.Fatal(err)
	}
	if s.Records != n || s.SkippedLines != 0 || len(s.Runs) != 1 {
		t.Fatalf("records %d skipped %d runs %d; want %d, 0, 1 (stderr %s)", s.Records, s.SkippedLines, len(s.Runs), n, stderr.String())
	}

	// The last part cut inside its frame, as a killed writer leaves it.
	last := parts[len(parts)-1]
	b, _ := os.ReadFile(last)
	os.WriteFile(last, b[:len(b)-20], 0o644)
	stderr.Reset()
	s, err = Load(context.Background(), paths, &stderr)
	if err != nil {
		t.Fatal(err)
	}
	if s.Records >= n || s.Records < n-int64(len(decompress(t, parts[0]))/200) || s.SkippedLines == 0 ||
		!strings.Contains(stderr.String(), "cut off") {
		t.Fatalf("after cutting the last part: %d records, %d skipped, stderr %q", s.Records, s.SkippedLines, stderr.String())
	}
}

func decompress(t *testing.T, path string) []byte {
	t.Helper()
	rr, err := openResults(path)
	if err != nil {
		t.Fatal(err)
	}
	var out bytes.Buffer
	out.ReadFrom(rr)
	if err := rr.Close(); err != nil {
		t.Fatal(err)
	}
	return out.Bytes()
}

// The parts of a rotated run share one sidecar: the report takes the run's span from it, as for a single file.
func TestRotatedRunUsesItsSidecar(t *testing.T) {
	dir := t.TempDir()
	parts := writeRun(t, dir, time.Date(2026, 12, 7, 19, 40, 0, 0, time.UTC), 3000,
		results.Options{Settings: results.Settings{Compression: results.CompressionZstd, RotateSize: 4 << 10}})
	if len(parts) < 2 {
		t.Fatalf("%d parts", len(parts))
	}
	if err := results.WriteSidecar(parts[0], record.RunInfo{Schema: 1, RunID: "r1", StartTime: 1e9 - 100, EndTime: 1e9 + 4000,
		Workers: 7, Agents: 70}); err != nil {
		t.Fatal(err)
	}
	s, err := Load(context.Background(), parts, nil)
	if err != nil {
		t.Fatal(err)
	}
	if s.Track.Source != "runs" || s.Workers != 7 || s.Agents != 70 || len(s.Runs) != 1 {
		t.Fatalf("track %+v, workers %d, agents %d, runs %d; want the sidecar's", s.Track, s.Workers, s.Agents, len(s.Runs))
	}
}

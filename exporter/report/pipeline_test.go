package report

import (
	"bytes"
	"context"
	"os"
	"path/filepath"
	"strings"
	"testing"
)

// Decoding in parallel changes nothing: the summary (every sum added in file order, so the old tables' float
// arithmetic too) and the skipped-line messages, with their line numbers, are those of a single worker.
func TestParallelDecodeEqualsSequential(t *testing.T) {
	dir := t.TempDir()
	var paths []string
	for i, n := range []int{6000, 1, 3000} { // several chunks per file, and a file of one line
		b := genRecords(t, uint64(i+1), n, 1.7e9+float64(i)*1000, 900)
		lines := bytes.SplitAfter(b, []byte("\n"))
		var buf bytes.Buffer
		for j, l := range lines {
			if j > 0 && j%997 == 0 {
				buf.WriteString("{not json\n") // a malformed line now and then
			}
			buf.Write(l)
		}
		if i == 2 {
			buf.WriteString(`{"agent_index": 1, "task_ind`) // a truncated last line
		}
		p := filepath.Join(dir, "f"+string(rune('a'+i))+".jsonl")
		if err := os.WriteFile(p, buf.Bytes(), 0o644); err != nil {
			t.Fatal(err)
		}
		paths = append(paths, p)
	}
	var seqErr, parErr bytes.Buffer
	seq, err := load(context.Background(), paths, &seqErr, 1, false)
	if err != nil {
		t.Fatal(err)
	}
	par, err := load(context.Background(), paths, &parErr, 4, false)
	if err != nil {
		t.Fatal(err)
	}
	a, _ := seq.JSON()
	b, _ := par.JSON()
	if !bytes.Equal(a, b) {
		t.Fatal("the summary of 4 decoding workers differs from that of one")
	}
	if seqErr.String() != parErr.String() || !strings.Contains(seqErr.String(), "fc.jsonl:") ||
		!strings.Contains(seqErr.String(), "truncated last line") {
		t.Fatalf("skip messages differ or are missing:\n1 worker:\n%s\n4 workers:\n%s", seqErr.String(), parErr.String())
	}
	if seq.Records != 9001 || seq.SkippedLines != int64(6000/997+3000/997+1) {
		t.Fatalf("records %d, skipped %d", seq.Records, seq.SkippedLines)
	}
	// The line numbers are the file's: line 998 of the first file is its first malformed line.
	if !strings.Contains(seqErr.String(), "fa.jsonl:998: skipped") {
		t.Fatalf("line numbers:\n%s", seqErr.String())
	}
}

// A cancelled context stops the pipeline with its error and leaves no goroutine behind (goleak in TestMain would
// not see this one, so the test waits for the report to return).
func TestPipelineCancel(t *testing.T) {
	p := filepath.Join(t.TempDir(), "x.jsonl")
	os.WriteFile(p, genRecords(t, 1, 3000, 1.7e9, 900), 0o644)
	ctx, cancel := context.WithCancel(context.Background())
	cancel()
	if _, err := load(ctx, []string{p}, nil, 2, false); err == nil {
		t.Fatal("a cancelled load succeeded")
	}
}

// The throughput table picks a bucket size people read at a glance and stays within a few dozen rows: a
// three-day run gets 2-hour buckets, an hour 5-minute ones, ten minutes 30-second ones.
func TestBucketSizeFitsTheRun(t *testing.T) {
	for _, c := range []struct {
		span  float64
		width float64
		label string
	}{{3 * 86400, 7200, "2h"}, {3600, 300, "5m"}, {600, 30, "30s"}, {20, 1, "1s"}, {30 * 86400, 86400, "1d"}} {
		var tl timeline
		tl.init()
		var ph [len(phaseNames)]float64
		var has [len(phaseNames)]bool
		for ts := 1.7e9 + 17; ts < 1.7e9+17+c.span; ts += c.span / 5000 {
			tl.add(ts, "success", &ph, &has)
		}
		tp := tl.export()
		if tp.BucketSeconds != c.width || len(tp.Buckets) > maxBuckets || fmtBucket(tp.BucketSeconds) != c.label {
			t.Errorf("span %vs: %d buckets of %vs (%s), want %vs buckets (%s), at most %d", c.span, len(tp.Buckets),
				tp.BucketSeconds, fmtBucket(tp.BucketSeconds), c.width, c.label, maxBuckets)
		}
		var n int64
		for _, b := range tp.Buckets {
			n += b.Cycles
		}
		if n != 5000 && n != 5001 {
			t.Errorf("span %vs: %d cycles over the buckets", c.span, n)
		}
	}
}

// --legacy without thresholds aggregates only the old tables; what it prints is what the full aggregation
// prints, for the current layout and the old tool's goldens alike.
func TestOldOnlyLegacyEqualsFull(t *testing.T) {
	dir := t.TempDir()
	p := filepath.Join(dir, "f.jsonl")
	if err := os.WriteFile(p, genRecords(t, 7, 5000, 1.7e9, 600), 0o644); err != nil {
		t.Fatal(err)
	}
	goldens, err := filepath.Glob(filepath.Join(goldenDir(t), "*.jsonl"))
	if err != nil || len(goldens) == 0 {
		t.Fatalf("no golden inputs: %v", err)
	}
	for _, in := range append([]string{p}, goldens...) {
		full, err := load(context.Background(), []string{in}, nil, 2, false)
		if err != nil {
			t.Fatal(err)
		}
		old, err := load(context.Background(), []string{in}, nil, 2, true)
		if err != nil {
			t.Fatal(err)
		}
		var a, b bytes.Buffer
		if err := writeLegacy(&a, full, false); err != nil {
			t.Fatal(err)
		}
		if err := writeLegacy(&b, old, false); err != nil {
			t.Fatal(err)
		}
		if a.String() != b.String() || a.Len() == 0 {
			t.Errorf("%s: the old tables from the old-only aggregation differ:\n%s\nfull:\n%s", in, b.String(), a.String())
		}
	}
}

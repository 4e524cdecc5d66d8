package report

import (
	"bufio"
	"bytes"
	"context"
	"encoding/json"
	"flag"
	"os"
	"path/filepath"
	"runtime"
	"strconv"
	"strings"
	"testing"
	"time"

	"github.com/klauspost/compress/zstd"

	"github.com/attestload/attestload/attestation/record"
)

var (
	large        = flag.Bool("large", false, "run TestLargeFile (writes multi-gigabyte files to a temp dir)")
	largeRecords = flag.String("large-records", "1000000,10000000", "record counts for TestLargeFile")
	largeOut     = flag.String("large-out", "", "TestLargeFile: keep the files (plain and zstd) in this directory "+
		"instead of reporting on them, for timing the binary on them")
)

func benchLines(b *testing.B) [][]byte {
	return bytes.Split(bytes.TrimSpace(genRecords(b, 3, 1000, 1.7e9, 3600)), []byte("\n"))
}

func BenchmarkDecodeLine(b *testing.B) {
	lines := benchLines(b)
	var n int64
	for _, l := range lines {
		n += int64(len(l))
	}
	b.SetBytes(n / int64(len(lines)))
	var d record.Decoder
	var c record.Line
	b.ReportAllocs()
	b.ResetTimer()
	for i := 0; b.Loop(); i++ {
		if err := d.Decode(lines[i%len(lines)], &c); err != nil {
			b.Fatal(err)
		}
	}
}

// BenchmarkDecodeLineEncodingJSON is the reference the hand-written decoder is measured against.
func BenchmarkDecodeLineEncodingJSON(b *testing.B) {
	lines := benchLines(b)
	var n int64
	for _, l := range lines {
		n += int64(len(l))
	}
	b.SetBytes(n / int64(len(lines)))
	b.ReportAllocs()
	b.ResetTimer()
	for i := 0; b.Loop(); i++ {
		var r record.Record
		if err := json.Unmarshal(lines[i%len(lines)], &r); err != nil {
			b.Fatal(err)
		}
	}
}

// BenchmarkAggregate measures decoding plus aggregation of in-memory lines (no I/O).
func BenchmarkAggregate(b *testing.B) {
	lines := benchLines(b)
	var n int64
	for _, l := range lines {
		n += int64(len(l))
	}
	b.SetBytes(n / int64(len(lines)))
	a := newAggregator()
	var d record.Decoder
	var c record.Line
	b.ResetTimer()
	for i := 0; b.Loop(); i++ {
		if err := d.Decode(lines[i%len(lines)], &c); err != nil {
			b.Fatal(err)
		}
		a.add(&c)
	}
}

// vmHWM reads the process's peak resident set size from /proc (Linux), in MiB; 0 elsewhere.
func vmHWM() float64 {
	b, err := os.ReadFile("/proc/self/status")
	if err != nil {
		return 0
	}
	for _, l := range strings.Split(string(b), "\n") {
		if rest, ok := strings.CutPrefix(l, "VmHWM:"); ok {
			var kb float64
			for _, f := range strings.Fields(rest) {
				if v, err := strconv.ParseFloat(f, 64); err == nil {
					kb = v
					break
				}
			}
			return kb / 1024
		}
	}
	return 0
}

// TestLargeFile is opt-in (-large): it writes files of 1,000,000 and 10,000,000 records to a temp dir, runs the
// whole report on each, and logs MB/s, peak heap and peak RSS. The files are deleted afterwards.
func TestLargeFile(t *testing.T) {
	if !*large {
		t.Skip("opt-in: go test ./exporter/report/ -run TestLargeFile -large -v")
	}
	block := genRecords(t, 9, 10000, 1.7e9, 3*86400)
	for _, f := range strings.Split(*largeRecords, ",") {
		n, err := strconv.Atoi(strings.TrimSpace(f))
		if err != nil || n < 10000 {
			t.Fatalf("-large-records %q: want counts of at least 10000", f)
		}
		t.Run(f, func(t *testing.T) {
			dir := t.TempDir()
			if *largeOut != "" {
				dir = *largeOut
			}
			path := filepath.Join(dir, "large-"+f+".jsonl")
			out, err := os.Create(path)
			if err != nil {
				t.Fatal(err)
			}
			w := bufio.NewWriterSize(out, 1<<20)
			for range n / 10000 {
				w.Write(block)
			}
			if err := w.Flush(); err != nil {
				t.Fatal(err)
			}
			out.Close()
			fi, _ := os.Stat(path)
			if *largeOut != "" {
				zstdCopy(t, path)
				return
			}
			defer os.Remove(path)

			runtime.GC()
			var before runtime.MemStats
			runtime.ReadMemStats(&before)
			stop := make(chan struct{})
			peakHeap := make(chan uint64)
			go func() { // sample the live heap while the report runs
				var m runtime.MemStats
				var peak uint64
				tick := time.NewTicker(50 * time.Millisecond)
				defer tick.Stop()
				for {
					select {
					case <-stop:
						peakHeap <- peak
						return
					case <-tick.C:
						runtime.ReadMemStats(&m)
						peak = max(peak, m.HeapInuse)
					}
				}
			}()
			start := time.Now()
			var sink bytes.Buffer
			res, err := Generate(context.Background(), Options{Inputs: []string{path}}, &sink, &sink)
			elapsed := time.Since(start)
			close(stop)
			heap := <-peakHeap
			if err != nil || res.ThresholdsCrossed {
				t.Fatalf("Generate: %+v %v", res, err)
			}
			if !strings.Contains(sink.String(), "Performed "+f+" attestations") {
				t.Errorf("report does not count %s attestations", f)
			}
			mb := float64(fi.Size()) / 1e6
			t.Logf("%s records, %.0f MB: %.1fs, %.0f MB/s, %.0f records/s, peak heap in use %.1f MiB, peak RSS %.1f MiB",
				f, mb, elapsed.Seconds(), mb/elapsed.Seconds(), float64(n)/elapsed.Seconds(), float64(heap)/(1<<20), vmHWM())
		})
	}
}

// zstdCopy writes path.zst as the results writer would: zstd frames of about a second's worth of lines at 720
// cycles/s (1 MiB).
func zstdCopy(t *testing.T, path string) {
	in, err := os.Open(path)
	if err != nil {
		t.Fatal(err)
	}
	defer in.Close()
	out, err := os.Create(path + ".zst")
	if err != nil {
		t.Fatal(err)
	}
	defer out.Close()
	bw := bufio.NewWriterSize(out, 1<<20)
	zw, err := zstd.NewWriter(bw, zstd.WithEncoderLevel(zstd.SpeedBetterCompression), zstd.WithWindowSize(1<<20))
	if err != nil {
		t.Fatal(err)
	}
	br := bufio.NewReaderSize(in, 1<<20)
	n := 0
	for {
		line, err := br.ReadSlice('\n')
		zw.Write(line)
		n += len(line)
		if n >= 1<<20 {
			zw.Close()
			zw.Reset(bw)
			n = 0
		}
		if err != nil {
			break
		}
	}
	if err := zw.Close(); err != nil {
		t.Fatal(err)
	}
	if err := bw.Flush(); err != nil {
		t.Fatal(err)
	}
}

package report

import (
	"context"
	"encoding/json"
	"errors"
	"fmt"
	"io"
	"os"
	"path/filepath"
	"strings"

	"github.com/attestload/attestload/attestation/record"
	"github.com/attestload/attestload/exporter/results"
)

// MaxLineBytes bounds one results line. A longer line is skipped as malformed without being held in memory.
const MaxLineBytes = 16 << 20

// maxSkipMessages bounds the per-line messages on stderr; the total is always reported.
const maxSkipMessages = 20

// ResolveInputs turns the command-line arguments into file paths. Each argument is an existing file, a glob, or
// a run timestamp looked up under resultsDir with or without ".jsonl"; a bare timestamp also names every
// <stamp>-<run_id>.jsonl there (runs that started in the same second), after <stamp>.jsonl and in name order.
// Duplicates are dropped, order is kept.
func ResolveInputs(args []string, resultsDir string) ([]string, error) {
	if len(args) == 0 {
		return nil, errors.New("no input: give a results file, a run timestamp or a glob")
	}
	var out []string
	seen := map[string]bool{}
	addPath := func(p string) {
		if !seen[p] {
			seen[p] = true
			out = append(out, p)
		}
	}
	for _, arg := range args {
		if fi, err := os.Stat(arg); err == nil {
			if fi.IsDir() {
				return nil, fmt.Errorf("%s is a directory; give the .jsonl files in it or a glob such as %s",
					arg, filepath.Join(arg, "*.jsonl"))
			}
			addPath(arg)
			continue
		}
		if strings.ContainsAny(arg, "*?[") {
			matches, err := filepath.Glob(arg)
			if err != nil {
				return nil, fmt.Errorf("input %q: bad glob: %w", arg, err)
			}
			if len(matches) == 0 && resultsDir != "" && !strings.ContainsRune(arg, filepath.Separator) {
				// A bare pattern such as 202506* names runs, like a bare timestamp does.
				matches, _ = filepath.Glob(filepath.Join(resultsDir, arg))
			}
			var files []string
			for _, m := range matches {
				if fi, err := os.Stat(m); err == nil && !fi.IsDir() && !strings.HasSuffix(m, ".run.json") {
					files = append(files, m)
				}
			}
			if len(files) == 0 {
				return nil, fmt.Errorf("input %q: the glob matches no file", arg)
			}
			for _, f := range files {
				addPath(f)
			}
			continue
		}
		found := false
		if resultsDir != "" && !strings.ContainsRune(arg, filepath.Separator) {
			cands := []string{filepath.Join(resultsDir, arg)}
			for _, e := range resultsExts {
				cands = append(cands, filepath.Join(resultsDir, arg+e))
			}
			for _, p := range cands {
				if fi, err := os.Stat(p); err == nil && !fi.IsDir() {
					addPath(p)
					found = true
					break
				}
			}
			if isStamp(arg) {
				for _, p := range runFiles(resultsDir, arg) {
					addPath(p)
					found = true
				}
			}
		}
		if !found {
			also := ""
			if isStamp(arg) {
				also = ", " + arg + ".partNNNN.jsonl* or " + arg + "-*.jsonl*"
			}
			return nil, fmt.Errorf("input %q: no such file, and no %s[.zst|.gz]%s under the results directory %q",
				arg, strings.TrimSuffix(arg, ".jsonl")+".jsonl", also, resultsDir)
		}
	}
	return out, nil
}

// isStamp reports whether arg is a bare run timestamp (YYYYmmddHHMMSS), the name results files start with.
func isStamp(arg string) bool {
	if len(arg) != len("20060102150405") {
		return false
	}
	for _, c := range []byte(arg) {
		if c < '0' || c > '9' {
			return false
		}
	}
	return true
}

// runFiles lists the results files of the runs that started in the second stamp names, in name order: the parts
// of a rotated run (<stamp>.partNNNN.jsonl[.zst|.gz]), then the files of runs named with their run id because they
// started in the same second as another (<stamp>-<run_id>[.partNNNN].jsonl[.zst|.gz]). The directory is listed
// rather than globbed so that a results directory whose name holds glob characters still works.
func runFiles(dir, stamp string) []string {
	ents, err := os.ReadDir(dir) // sorted by name
	if err != nil {
		return nil
	}
	var parts, others []string
	for _, e := range ents {
		name := e.Name()
		if e.IsDir() || !isResultsName(name) {
			continue
		}
		p := filepath.Join(dir, name)
		switch {
		case strings.HasPrefix(name, stamp+".part"):
			parts = append(parts, p)
		case strings.HasPrefix(name, stamp+"-"):
			others = append(others, p)
		default:
			continue
		}
	}
	return append(parts, others...)
}

// sidecarPath is results/<stamp>.run.json for results/<stamp>.jsonl, results/<stamp>.jsonl.zst and every part
// results/<stamp>.partNNNN.jsonl[.zst|.gz] of a rotated run.
func sidecarPath(path string) string {
	return results.SidecarPath(path)
}

// resultsExts are the extensions of results files the report reads: plain, zstd and gzip.
var resultsExts = []string{".jsonl", ".jsonl.zst", ".jsonl.gz"}

func isResultsName(name string) bool {
	for _, e := range resultsExts {
		if strings.HasSuffix(name, e) {
			return true
		}
	}
	return false
}

// readRunInfo reads a sidecar; a missing one is not an error.
func readRunInfo(path string) (*record.RunInfo, error) {
	b, err := os.ReadFile(sidecarPath(path))
	if errors.Is(err, os.ErrNotExist) {
		return nil, nil
	}
	if err != nil {
		return nil, err
	}
	var ri record.RunInfo
	if err := json.Unmarshal(b, &ri); err != nil {
		return nil, fmt.Errorf("run sidecar %s: %w", sidecarPath(path), err)
	}
	return &ri, nil
}

// skipLog reports skipped lines on stderr, each with its file and line number, up to a bound.
type skipLog struct {
	w     io.Writer
	count int64
}

func (s *skipLog) skip(file string, line int64, why string) {
	s.count++
	if s.count <= maxSkipMessages && s.w != nil {
		if line < 0 {
			fmt.Fprintf(s.w, "report: %s: skipped: %s\n", file, why)
			return
		}
		fmt.Fprintf(s.w, "report: %s:%d: skipped: %s\n", file, line, why)
	}
}

// ErrNoRecords is wrapped by Load's error when the inputs, taken together, hold no valid record: an empty report
// would read as a run that did nothing, when the input is more likely the wrong file or not a results file.
var ErrNoRecords = errors.New("no records")

// Load reads and aggregates the given files (already resolved) and their run sidecars into a Summary. Skipped
// lines are reported on stderr; the count is in Summary.SkippedLines. When no file holds a valid record, Load
// fails with ErrNoRecords naming them; an input without records next to ones with records is only noted on stderr.
func Load(ctx context.Context, paths []string, stderr io.Writer) (*Summary, error) {
	return load(ctx, paths, stderr, decodeWorkers(), false)
}

// loadOld is Load for a summary of which only the old tables and the run line are used (--legacy without
// thresholds): the other figures stay empty.
func loadOld(ctx context.Context, paths []string, stderr io.Writer) (*Summary, error) {
	return load(ctx, paths, stderr, decodeWorkers(), true)
}

// load is Load with the number of decoding goroutines; oldOnly aggregates the old tables only.
func load(ctx context.Context, paths []string, stderr io.Writer, workers int, oldOnly bool) (*Summary, error) {
	agg := newAggregator()
	agg.oldOnly = oldOnly
	skips := &skipLog{w: stderr}
	var runs []record.RunInfo
	var empty []string // inputs without a record, each with why
	sidecars := map[string]bool{}
	// Sidecars are small; read them before the records so that a bad one fails fast.
	for _, p := range paths {
		if sidecars[sidecarPath(p)] {
			continue // another part of the same run
		}
		sidecars[sidecarPath(p)] = true
		ri, err := readRunInfo(p)
		if err != nil {
			return nil, err
		}
		if ri != nil {
			runs = append(runs, *ri)
		}
	}
	var records, skipped int64
	err := runPipeline(ctx, paths, workers, agg, skips, func(file int, closeErr error) {
		p := paths[file]
		if closeErr != nil {
			// A compressed part that ends inside a frame: the process writing it died. Every complete frame was
			// read; the lines of the cut frame are lost, as a plain file's last line would be.
			skips.skip(p, -1, closeErr.Error())
		}
		if agg.records == records {
			why := "empty"
			if n := skips.count - skipped; n > 0 {
				why = fmt.Sprintf("%d malformed line(s) skipped", n)
			}
			empty = append(empty, fmt.Sprintf("%s (%s)", p, why))
		}
		records, skipped = agg.records, skips.count
	})
	if err != nil {
		return nil, err
	}
	if skips.count > maxSkipMessages && stderr != nil {
		fmt.Fprintf(stderr, "report: %d more skipped lines not shown\n", skips.count-maxSkipMessages)
	}
	if skips.count > 0 && stderr != nil {
		fmt.Fprintf(stderr, "report: skipped %d malformed line(s) in total\n", skips.count)
	}
	if agg.records == 0 {
		if len(paths) == 0 {
			return nil, fmt.Errorf("%w: no input files", ErrNoRecords)
		}
		return nil, fmt.Errorf("%w in %s", ErrNoRecords, strings.Join(empty, ", "))
	}
	if stderr != nil {
		for _, e := range empty {
			fmt.Fprintf(stderr, "report: no records in %s; the report covers the other inputs\n", e)
		}
	}
	return agg.summary(paths, skips.count, runs), nil
}

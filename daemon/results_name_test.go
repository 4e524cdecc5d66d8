package daemon

import (
	"os"
	"path/filepath"
	"strings"
	"testing"
	"time"

	"github.com/attestload/attestload/exporter/results"
)

// Two runs that start in the same second in one results directory (shards on one host, a quick restart) both
// get a results file: the later one's name carries its run id instead of failing on the existing file.
func TestResultsFileNameClashUsesRunID(t *testing.T) {
	dir := t.TempDir()
	cfg := testConfig(t, dir)
	if err := os.MkdirAll(cfg.Results.Dir, 0o755); err != nil {
		t.Fatal(err)
	}
	// Occupy the plain names of the next few seconds, whenever Setup happens to run.
	now := time.Now()
	for i := range 5 {
		name := filepath.Join(cfg.Results.Dir, now.Add(time.Duration(i)*time.Second).Format(results.StampLayout)+".jsonl")
		if err := os.WriteFile(name, []byte("{}\n"), 0o644); err != nil {
			t.Fatal(err)
		}
	}
	r, err := newLoad(t.Context(), cfg, loadOptions{})
	if err != nil {
		t.Fatalf("setup with the plain results name taken: %v", err)
	}
	sum := executeAndClose(t, t.Context(), r)
	if base := filepath.Base(sum.ResultsPath); !strings.HasSuffix(base, "-"+r.runID+".jsonl.zst") {
		t.Fatalf("results file %s, want <stamp>-%s.jsonl.zst (zstd by default)", base, r.runID)
	}
	if n := len(readRecords(t, sum.ResultsPath)); n != cfg.Run.Agents*cfg.Run.Tasks {
		t.Fatalf("%d records, want %d", n, cfg.Run.Agents*cfg.Run.Tasks)
	}
}

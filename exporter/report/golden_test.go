package report

import (
	"bytes"
	"context"
	"flag"
	"os"
	"path/filepath"
	"strconv"
	"testing"

	"github.com/attestload/attestload/internal/sharedtest"
)

var update = flag.Bool("update", false, "rewrite the golden files in testdata")

func TestLegacyGolden(t *testing.T) {
	for _, name := range []string{"mixed-101", "retries-102"} {
		t.Run(name, func(t *testing.T) {
			dir := goldenDir(t)
			want, err := os.ReadFile(filepath.Join(dir, name+".txt"))
			if err != nil {
				t.Fatalf("golden files (testdata/report-golden) not readable: %v", err)
			}
			var out, errb bytes.Buffer
			res, err := Generate(context.Background(), Options{Inputs: []string{filepath.Join(dir, name+".jsonl")},
				Legacy: true}, &out, &errb)
			if err != nil || res.ThresholdsCrossed {
				t.Fatalf("Generate: %+v %v %s", res, err, errb.String())
			}
			if !bytes.Equal(out.Bytes(), want) {
				os.WriteFile(filepath.Join(t.TempDir(), "got.txt"), out.Bytes(), 0o644)
				t.Errorf("legacy output differs from %s.txt:\n%s", name, lineDiff(string(want), out.String()))
			}
		})
	}
}

// lineDiff shows the first differing lines, enough to find a formatting slip.
func lineDiff(want, got string) string {
	w, g := bytes.Split([]byte(want), []byte("\n")), bytes.Split([]byte(got), []byte("\n"))
	var b bytes.Buffer
	n := 0
	for i := 0; i < max(len(w), len(g)) && n < 10; i++ {
		var wl, gl []byte
		if i < len(w) {
			wl = w[i]
		}
		if i < len(g) {
			gl = g[i]
		}
		if !bytes.Equal(wl, gl) {
			n++
			b.WriteString("line " + itoa(i+1) + "\n want " + string(wl) + "\n got  " + string(gl) + "\n")
		}
	}
	return b.String()
}

func itoa(i int) string { return strconv.Itoa(i) }

// TestFormatsGolden renders every format for a generated schema-1 file (with its run sidecar) and for a shared
// v0 file, and compares with testdata/*.golden; -update rewrites them (and the generated input).
func TestFormatsGolden(t *testing.T) {
	v1 := filepath.Join("testdata", "v1-sample.jsonl")
	if *update {
		if err := os.WriteFile(v1, genRecords(t, 1, 120, 1.7e9, 3*3600), 0o644); err != nil {
			t.Fatal(err)
		}
		side := `{"schema":1,"run_id":"run-1","instance":"host-a","model":"fleet","start_time":1700000000,` +
			`"end_time":1700010800,"dropped_cycles":7,"late_cycles":58,"agents":37,"workers":4}` + "\n"
		if err := os.WriteFile(sidecarPath(v1), []byte(side), 0o644); err != nil {
			t.Fatal(err)
		}
	}
	wd, _ := os.Getwd()
	v0, err := filepath.Rel(wd, filepath.Join(goldenDir(t), "mixed-101.jsonl"))
	if err != nil {
		t.Fatal(err)
	}
	cases := []struct {
		name       string
		input      string
		thresholds []string
	}{
		{"v1-sample", v1, []string{"evidence.p99<2s", "verdict.pass_rate>0.999", "cycles.dropped==0", "cycle.count>=120"}},
		{"mixed-101", v0, nil},
	}
	for _, c := range cases {
		if _, err := os.Stat(c.input); err != nil {
			t.Fatalf("golden input not readable: %v", err)
		}
		for _, format := range []string{FormatText, FormatJSON, FormatMarkdown, FormatHTML} {
			t.Run(c.name+"."+format, func(t *testing.T) {
				var out, errb bytes.Buffer
				res, err := Generate(context.Background(), Options{Inputs: []string{c.input}, Format: format,
					Thresholds: c.thresholds}, &out, &errb)
				if err != nil {
					t.Fatal(err)
				}
				if want := len(c.thresholds) > 0; res.ThresholdsCrossed != want {
					t.Errorf("thresholds crossed %v, want %v", res.ThresholdsCrossed, want)
				}
				golden := filepath.Join("testdata", c.name+"."+format+".golden")
				if *update {
					if err := os.WriteFile(golden, out.Bytes(), 0o644); err != nil {
						t.Fatal(err)
					}
					return
				}
				want, err := os.ReadFile(golden)
				if err != nil {
					t.Fatalf("%v (run with -update to create it)", err)
				}
				if !bytes.Equal(out.Bytes(), want) {
					t.Errorf("%s differs from the golden file:\n%s", golden, lineDiff(string(want), out.String()))
				}
			})
		}
	}
}

// goldenDir is the old tool's report goldens in the repository's testdata.
func goldenDir(t testing.TB) string {
	t.Helper()
	return sharedtest.Testdata(t, "report-golden")
}

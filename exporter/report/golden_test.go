package report

import (
	"bytes"
	"context"
	"flag"
	"os"
	"path/filepath"
	"strconv"
	"testing"
)

var update = flag.Bool("update", false, "rewrite the golden files in testdata")

func TestLegacyGolden(t *testing.T) {
	for _, name := range []string{"mixed-101", "retries-102"} {
		t.Run(name, func(t *testing.T) {
			dir := goldenDir(t)
			want, err := os.ReadFile(filepath.Join(dir, name+".txt"))
			if err != nil {
				t.Skipf("shared golden files not available: %v", err)
			}
			var out, errb bytes.Buffer
			code, err := Run(context.Background(), Options{Inputs: []string{filepath.Join(dir, name+".jsonl")},
				Legacy: true}, &out, &errb)
			if err != nil || code != 0 {
				t.Fatalf("Run: %d %v %s", code, err, errb.String())
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

package report

import (
	"bytes"
	"context"
	"os"
	"path/filepath"
	"strings"
	"testing"
)

// The legacy tables take the run's duration, workers and agents from its sidecar when there is one: a 20 s fleet
// run of 2 agents that did one cycle ran 20 s with 2 agents (it printed "in 0:00:00", "1 worker processes and 1
// mock agents" and 56.55 per second before). Without a sidecar the old rule (the records' span) holds.
func TestLegacyTablesTakeTheRunFromTheSidecar(t *testing.T) {
	dir := t.TempDir()
	p := filepath.Join(dir, "20260101120000.jsonl")
	if err := os.WriteFile(p, []byte(v0Line(0, 0, true, true, 1700000003, 0.0071, 0.0106)+"\n"), 0o644); err != nil {
		t.Fatal(err)
	}
	legacy := func() string {
		var out, errb bytes.Buffer
		if _, err := Generate(context.Background(), Options{Inputs: []string{p}, Legacy: true}, &out, &errb); err != nil {
			t.Fatal(err)
		}
		return out.String()
	}
	before := legacy()
	for _, want := range []string{"Performed 1 attestations in 0:00:00 ", "Used 1 worker processes and 1 mock agents"} {
		if !strings.Contains(before, want) {
			t.Errorf("without a sidecar (old rule) the tables lack %q:\n%s", want, before)
		}
	}
	side := `{"schema":1,"run_id":"r","instance":"h","model":"fleet","start_time":1700000000,"end_time":1700000020,` +
		`"dropped_cycles":0,"late_cycles":0,"agents":2,"workers":2}`
	if err := os.WriteFile(sidecarPath(p), []byte(side), 0o644); err != nil {
		t.Fatal(err)
	}
	after := legacy()
	for _, want := range []string{"Performed 1 attestations in 0:00:20 ", "Used 2 worker processes and 2 mock agents",
		"Per minute             3.0     0.0     3.0"} {
		if !strings.Contains(after, want) {
			t.Errorf("with the sidecar the tables lack %q:\n%s", want, after)
		}
	}
}

// --legacy prints microseconds as the old tool did, with U+03BC (Greek mu: perf_tests/output.py's f"{...}μs");
// every other output, including the old tables inside the default text, Markdown and HTML reports, uses U+00B5
// (the micro sign) like the rest of attestload.
func TestMicroSignOnlyLegacyKeepsGreekMu(t *testing.T) {
	content := v0Line(0, 0, true, true, 1000, 0.0005, 0.0007) + "\n"
	out, _, _ := runOn(t, content, Options{Legacy: true})
	if !strings.Contains(out.String(), "500μs") || strings.Contains(out.String(), "µ") {
		t.Errorf("--legacy: want 500μs with U+03BC only:\n%s", out.String())
	}
	for _, f := range []string{FormatText, FormatMarkdown, FormatHTML} {
		out, _, _ := runOn(t, content, Options{Format: f})
		if strings.Contains(out.String(), "μ") || !strings.Contains(out.String(), "500µs") {
			t.Errorf("%s: want 500µs with U+00B5 and no U+03BC:\n%s", f, out.String())
		}
	}
}

// The HTML report's latency-over-time chart says in its visible legend which line is p50 (dashed) and which p99
// (solid), not only in a tooltip, and uses a logarithmic axis: its grid lines are decades.
func TestPercentileChartLegendAndLogAxis(t *testing.T) {
	var b strings.Builder
	for i := range 60 {
		cd := 0.05
		if i == 30 {
			cd = 40 // one very slow cycle
		}
		b.WriteString(v0Line(i%4, 0, true, true, 1000+float64(i), cd, 0.1) + "\n")
	}
	out, _, _ := runOn(t, b.String(), Options{Format: FormatHTML})
	page := out.String()
	start := strings.Index(page, "<title>Latency percentiles over time")
	if start < 0 {
		t.Fatalf("no latency-over-time chart:\n%s", page)
	}
	chart := page[start:]
	chart = chart[:strings.Index(chart, "</svg>")]
	for _, want := range []string{`class="legend">p50</text>`, `class="legend">p99</text>`, `stroke="#555555" stroke-width="3" stroke-dasharray="4 3"/>`,
		`class="tick">10ms</text>`, `class="tick">100ms</text>`, `class="tick">1s</text>`, `class="tick">10s</text>`} {
		if !strings.Contains(chart, want) {
			t.Errorf("the chart lacks %s", want)
		}
	}
	if !strings.Contains(page, "log scale") {
		t.Errorf("the caption does not say the axis is logarithmic")
	}
}

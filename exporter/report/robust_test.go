package report

import (
	"bytes"
	"context"
	"errors"
	"fmt"
	"math"
	"os"
	"os/exec"
	"path/filepath"
	"strings"
	"testing"

	"github.com/attestload/attestload/attestation/record"
)

// v0Line builds an old-layout line with one create and one update attempt.
func v0Line(agent, worker int, createOK, updateOK bool, start, cd, ud float64) string {
	upd := ""
	if createOK {
		upd = fmt.Sprintf(`{"action": "update", "method": "PATCH", "url": "u", "start_time": %v, "end_time": %v, `+
			`"duration": %v, "ok": %v, "conflicts": false, "retry_after": 0}`, start+cd, start+cd+ud, ud, updateOK)
	}
	return fmt.Sprintf(`{"agent_index": %d, "task_index": 0, "worker_index": %d, "create_successful": %v, `+
		`"update_successful": %v, "create_duration": %v, "update_duration": %v, "create_attempts": [{"action": `+
		`"create", "method": "POST", "url": "u", "start_time": %v, "end_time": %v, "duration": %v, "ok": %v, `+
		`"conflicts": false, "retry_after": 0}], "update_attempts": [%s]}`,
		agent, worker, createOK, createOK && updateOK, cd, ud, start, start+cd, cd, createOK, upd)
}

func runOn(t *testing.T, content string, opts Options) (*bytes.Buffer, string, Result) {
	t.Helper()
	dir := t.TempDir()
	p := filepath.Join(dir, "r.jsonl")
	if err := os.WriteFile(p, []byte(content), 0o644); err != nil {
		t.Fatal(err)
	}
	opts.Inputs = []string{p}
	var out, errb bytes.Buffer
	res, err := Generate(context.Background(), opts, &out, &errb)
	if err != nil {
		t.Fatalf("Generate: %v", err)
	}
	return &out, errb.String(), res
}

func TestTruncatedLastLine(t *testing.T) {
	full := v0Line(0, 0, true, true, 1, 0.1, 0.2)
	out, stderr, res := runOn(t, full+"\n"+full[:len(full)/2], Options{Legacy: true})
	if res.ThresholdsCrossed || !strings.Contains(out.String(), "Performed 1 attestations") {
		t.Errorf("result %+v, output:\n%s", res, out)
	}
	if !strings.Contains(stderr, "r.jsonl:2: skipped: truncated last line") {
		t.Errorf("stderr %q must name line 2 as truncated", stderr)
	}
	if _, _, res = runOn(t, full+"\n"+full[:len(full)/2], Options{Legacy: true}); res.SkippedLines != 1 {
		t.Errorf("%d lines skipped, want 1 (--strict exits 3 on it)", res.SkippedLines)
	}
}

func TestGarbageLines(t *testing.T) {
	good := v0Line(2, 1, true, true, 1, 0.1, 0.2)
	in := strings.Join([]string{good, "garbage", "", "{\"agent_index\": \"x\"}", good, "[1,2]", "\x00\xff", good}, "\n") + "\n"
	var opts Options
	opts.Format = FormatJSON
	out, stderr, res := runOn(t, in, opts)
	if res.SkippedLines != 4 || res.ThresholdsCrossed {
		t.Errorf("result %+v, want 4 skipped lines and nothing else (no exit status without --strict)", res)
	}
	for _, want := range []string{":2: skipped", ":4: skipped", ":6: skipped", ":7: skipped", "skipped 4 malformed line(s)"} {
		if !strings.Contains(stderr, want) {
			t.Errorf("stderr lacks %q:\n%s", want, stderr)
		}
	}
	if strings.Contains(stderr, ":3:") {
		t.Error("a blank line is not malformed")
	}
	if !strings.Contains(out.String(), `"records": 3,`) || !strings.Contains(out.String(), `"skipped_lines": 4,`) {
		t.Errorf("JSON must count 3 records and 4 skipped lines")
	}
}

// A valid JSON object that carries none of the record's identity keys is not an attestation: it is skipped and
// counted as malformed, like a garbage line, and the records around it are counted as usual.
func TestObjectsThatAreNotRecords(t *testing.T) {
	good := v0Line(2, 1, true, true, 1, 0.1, 0.2)
	v1 := string(bytes.TrimSpace(genRecords(t, 1, 1, 1.7e9, 60)))
	in := strings.Join([]string{good, `{"a":1}`, `{}`, `{"agent_index": 3}`, `{"agent_id": ""}`, v1,
		`{"agent_id": "a-1", "outcome": "success"}`}, "\n") + "\n"
	out, stderr, res := runOn(t, in, Options{Format: FormatJSON})
	if res.SkippedLines != 4 || res.ThresholdsCrossed {
		t.Errorf("result %+v, want 4 skipped lines and nothing else (no exit status without --strict)", res)
	}
	for _, want := range []string{":2: skipped: not a results record", ":3: skipped", ":4: skipped", ":5: skipped",
		"skipped 4 malformed line(s)"} {
		if !strings.Contains(stderr, want) {
			t.Errorf("stderr lacks %q:\n%s", want, stderr)
		}
	}
	if !strings.Contains(out.String(), `"records": 3,`) || !strings.Contains(out.String(), `"skipped_lines": 4,`) {
		t.Errorf("JSON must count 3 records and 4 skipped lines:\n%s", out)
	}
	if _, _, res := runOn(t, in, Options{}); res.SkippedLines == 0 {
		t.Errorf("no line skipped (--strict exits 3 on one)")
	}
}

func TestManySkippedLinesAreSummarised(t *testing.T) {
	good := v0Line(0, 0, true, true, 1, 0.1, 0.2) + "\n"
	_, stderr, _ := runOn(t, good+strings.Repeat("x\n", 100), Options{})
	if n := strings.Count(stderr, "skipped: "); n != maxSkipMessages {
		t.Errorf("%d per-line messages, want %d", n, maxSkipMessages)
	}
	if !strings.Contains(stderr, "80 more skipped lines not shown") {
		t.Errorf("stderr %q", stderr)
	}
}

func TestOverlongLineIsSkippedNotLoaded(t *testing.T) {
	good := v0Line(0, 0, true, true, 1, 0.1, 0.2)
	huge := `{"x": "` + strings.Repeat("a", MaxLineBytes) + `"}`
	_, stderr, _ := runOn(t, good+"\n"+huge+"\n"+good+"\n", Options{Legacy: true})
	if !strings.Contains(stderr, ":2: skipped: line longer than") || strings.Contains(stderr, ":3:") {
		t.Errorf("stderr %q", stderr)
	}
}

// Inputs that hold no record at all are an error naming them, whatever the format: an empty report would read as
// a run that did nothing.
func TestNoRecordsIsAnError(t *testing.T) {
	dir := t.TempDir()
	write := func(name, content string) string {
		p := filepath.Join(dir, name)
		if err := os.WriteFile(p, []byte(content), 0o644); err != nil {
			t.Fatal(err)
		}
		return p
	}
	empty := write("empty.jsonl", "")
	blank := write("blank.jsonl", "\n\n")
	junk := write("junk.jsonl", "garbage\n{\"a\":1}\n")
	good := write("good.jsonl", v0Line(0, 0, true, true, 1, 0.1, 0.2)+"\n")
	for _, c := range []struct {
		inputs []string
		want   []string
	}{
		{[]string{empty}, []string{"no records in " + empty + " (empty)"}},
		{[]string{blank}, []string{"no records in " + blank + " (empty)"}},
		{[]string{junk}, []string{"no records in " + junk + " (2 malformed line(s) skipped)"}},
		{[]string{empty, junk}, []string{empty + " (empty)", junk + " (2 malformed"}},
	} {
		for _, f := range []string{FormatText, FormatJSON, FormatMarkdown, FormatHTML} {
			var out, errb bytes.Buffer
			_, err := Generate(context.Background(), Options{Inputs: c.inputs, Format: f}, &out, &errb)
			if !errors.Is(err, ErrNoRecords) {
				t.Fatalf("%v %s: err %v; want ErrNoRecords", c.inputs, f, err)
			}
			for _, w := range c.want {
				if !strings.Contains(err.Error(), w) {
					t.Errorf("%v: error %q lacks %q", c.inputs, err, w)
				}
			}
			if out.Len() != 0 {
				t.Errorf("%v %s: a report was written:\n%s", c.inputs, f, out.String())
			}
		}
	}
	// An empty file next to one with records is fine: it is noted, and the report covers the rest.
	var out, errb bytes.Buffer
	res, err := Generate(context.Background(), Options{Inputs: []string{empty, good}, Legacy: true}, &out, &errb)
	if err != nil || res.ThresholdsCrossed {
		t.Fatalf("empty and good: %+v, %v", res, err)
	}
	if !strings.Contains(out.String(), "Performed 1 attestations") ||
		!strings.Contains(errb.String(), "no records in "+empty+" (empty)") {
		t.Errorf("stdout:\n%s\nstderr:\n%s", out.String(), errb.String())
	}
}

// A summary of nothing still renders in every format (the report never makes one, but Write must not trip on it).
func TestEmptySummaryEveryFormat(t *testing.T) {
	s := newAggregator().summary(nil, 0, nil)
	for _, f := range []string{FormatText, FormatJSON, FormatMarkdown, FormatHTML} {
		var out bytes.Buffer
		if err := Write(&out, s, f, false, false); err != nil || out.Len() == 0 {
			t.Errorf("%s: %v, %d bytes", f, err, out.Len())
		}
	}
	var out bytes.Buffer
	if err := Write(&out, s, FormatText, true, false); err != nil {
		t.Fatal(err)
	}
	for _, want := range []string{"Performed 0 attestations in 0:00:00 \n", "Used 0 worker processes and 0 mock agents",
		"Per second              --      --      --"} {
		if !strings.Contains(out.String(), want) {
			t.Errorf("empty legacy output lacks %q:\n%s", want, out.String())
		}
	}
}

func TestOnlyFailedCycles(t *testing.T) {
	var lines []string
	for i := range 5 {
		lines = append(lines, v0Line(i, 0, false, false, float64(i), 2, 0))
	}
	out, _, _ := runOn(t, strings.Join(lines, "\n")+"\n", Options{Legacy: true})
	s := out.String()
	for _, want := range []string{
		"│   Number                   0       5       5 │",
		"│   Percentage            0.0%  100.0%         │",
		"│   Average                 --    2.0s    2.0s │",
		"│   Shortest                --     0ns     0ns │", // evidence phase of failed creates: 0 s
	} {
		if !strings.Contains(s, want) {
			t.Errorf("legacy output lacks %q:\n%s", want, s)
		}
	}
	out, _, res := runOn(t, strings.Join(lines, "\n")+"\n", Options{Thresholds: []string{"cycles.fail_rate<0.5"}})
	if !res.ThresholdsCrossed || !strings.Contains(out.String(), "crossed  cycles.fail_rate<0.5 (actual 100%)") {
		t.Errorf("result %+v\n%s", res, out)
	}
}

func TestDurationsNanosecondsToHours(t *testing.T) {
	var lines []string
	for i, d := range []float64{3e-9, 4.5e-6, 0.0125, 1.25, 125, 7200} {
		lines = append(lines, v0Line(i, 0, true, true, 10, d, d))
	}
	out, _, _ := runOn(t, strings.Join(lines, "\n")+"\n", Options{Legacy: true})
	if !strings.Contains(out.String(), "│   Shortest             3ns") || !strings.Contains(out.String(), "│   Longest             2.0h") {
		t.Errorf("legacy output:\n%s", out)
	}
	out, _, _ = runOn(t, strings.Join(lines, "\n")+"\n", Options{Format: FormatText})
	if !strings.Contains(out.String(), "negotiate      6  12.5ms") {
		t.Errorf("text output:\n%s", out)
	}
}

func TestTrackOverADay(t *testing.T) {
	in := v0Line(0, 0, true, true, 100, 0.2, 0.2) + "\n" + v0Line(1, 3, true, true, 100+93784.4-0.4, 0.2, 0.2) + "\n"
	out, _, _ := runOn(t, in, Options{Legacy: true})
	if !strings.Contains(out.String(), "Performed 2 attestations in 1 day, 2:03:04 (93784.4s)\n") ||
		!strings.Contains(out.String(), "Used 4 worker processes and 2 mock agents") {
		t.Errorf("legacy output:\n%s", out)
	}
}

func TestInputsMergeAndLookup(t *testing.T) {
	dir := t.TempDir()
	write := func(name, content string) {
		if err := os.WriteFile(filepath.Join(dir, name), []byte(content), 0o644); err != nil {
			t.Fatal(err)
		}
	}
	write("20250101000000.jsonl", v0Line(0, 0, true, true, 1, 0.1, 0.1)+"\n")
	write("20250102000000.jsonl", v0Line(1, 0, true, true, 5, 0.1, 0.1)+"\n"+v0Line(2, 0, true, true, 6, 0.1, 0.1)+"\n")
	write("20250102000000.run.json", `{"schema":1,"run_id":"r","instance":"i","model":"rate","start_time":1,"end_time":9,`+
		`"dropped_cycles":3,"late_cycles":2,"agents":3,"workers":1}`)
	for _, c := range []struct {
		args []string
		n    int64
	}{
		{[]string{"20250101000000"}, 1},
		{[]string{"20250102000000.jsonl"}, 2},
		{[]string{filepath.Join(dir, "*.jsonl")}, 3},
		{[]string{"202501*.jsonl"}, 3},                               // a bare pattern is also looked up under the results directory
		{[]string{"20250101000000", filepath.Join(dir, "2025*")}, 3}, // duplicates are read once
	} {
		paths, err := ResolveInputs(c.args, dir)
		if err != nil {
			t.Fatalf("%v: %v", c.args, err)
		}
		s, err := Load(context.Background(), paths, nil)
		if err != nil {
			t.Fatal(err)
		}
		if s.Records != c.n {
			t.Errorf("%v: %d records, want %d", c.args, s.Records, c.n)
		}
		if c.n == 3 && (s.Scheduling.Dropped == nil || *s.Scheduling.Dropped != 3 || math.Abs(s.Track.Seconds-5.2) > 1e-9) {
			t.Errorf("%v: dropped %v, track %v", c.args, s.Scheduling.Dropped, s.Track.Seconds)
		}
		if v, ok := s.Metric("cycles.dropped"); c.n == 1 && ok {
			t.Errorf("dropped cycles must be 'not recorded' without a sidecar, got %v", v)
		}
	}
	for _, bad := range [][]string{{"nope"}, {filepath.Join(dir, "*.csv")}, {}} {
		if _, err := ResolveInputs(bad, dir); err == nil {
			t.Errorf("%v: want an error", bad)
		}
	}
}

// A directory given as input is named as one, with what to give instead, not reported as a missing file.
func TestInputDirectory(t *testing.T) {
	dir := filepath.Join(t.TempDir(), "results")
	if err := os.MkdirAll(filepath.Join(dir, "sub"), 0o755); err != nil {
		t.Fatal(err)
	}
	for _, arg := range []string{dir, filepath.Join(dir, "sub")} {
		_, err := ResolveInputs([]string{arg}, dir)
		want := arg + " is a directory; give the .jsonl files in it or a glob such as " + filepath.Join(arg, "*.jsonl")
		if err == nil || !strings.Contains(err.Error(), want) || strings.Contains(err.Error(), "no such file") {
			t.Errorf("%s: %v; want %q", arg, err, want)
		}
	}
	var out, errb bytes.Buffer
	_, err := Generate(context.Background(), Options{Inputs: []string{dir}}, &out, &errb)
	if err == nil || !strings.Contains(err.Error(), "is a directory") {
		t.Errorf("Generate on a directory: %v", err)
	}
}

func TestEveryThresholdMetricResolves(t *testing.T) {
	paths := []string{filepath.Join("testdata", "v1-sample.jsonl")}
	s, err := Load(context.Background(), paths, nil)
	if err != nil {
		t.Fatal(err)
	}
	for _, n := range []string{"session.p50", "negotiate.p99.9", "evidence.max", "cycle.avg", "verdict.p90",
		"cycle.count", "evidence.rate", "verdict.pass_rate", "cycles.fail_rate", "http.error_rate",
		"cycles.dropped", "cycles.late_rate"} {
		if _, ok := s.Metric(n); !ok {
			t.Errorf("%s has no value on the sample", n)
		}
	}
	if _, ok := s.Metric("evidence.p42"); ok {
		t.Error("unknown stat must have no value")
	}
}

func TestBoundedState(t *testing.T) {
	a := newAggregator()
	var c record.Line
	for i := range 300000 {
		c.Reset()
		c.Schema, c.EndTime, c.Outcome = 1, float64(i+1), "fail" // three and a half days, one cycle per second
		c.Error = record.ErrorClass(fmt.Sprintf("class-%d", i))
		a.add(&c)
	}
	if n := len(a.timeline.buckets); n > maxBuckets {
		t.Errorf("%d time buckets, bound is %d", n, maxBuckets)
	}
	if n := len(a.outcomeErrs); n > maxLabels+1 {
		t.Errorf("%d error labels, bound is %d and \"other\"", n, maxLabels)
	}
	s := a.summary(nil, 0, nil)
	var total int64
	for _, b := range s.Throughput.Buckets {
		total += b.Cycles
	}
	if total != 300000 {
		t.Errorf("buckets hold %d cycles, want 300000", total)
	}
}

// TestHTMLInChromium runs scripts/html-check.sh on the sample page: no console errors, no external fetches, the
// four charts in the rendered DOM, and a screenshot. It skips where Chromium is not installed.
func TestHTMLInChromium(t *testing.T) {
	if testing.Short() {
		t.Skip("-short")
	}
	if _, err := exec.LookPath("chromium"); err != nil {
		if os.Getenv("CI") != "" {
			t.Fatal("chromium is not installed; .ci/run installs it, so CI must not skip this check")
		}
		t.Skip("chromium is not installed")
	}
	dir := t.TempDir()
	page := filepath.Join(dir, "report.html")
	f, err := os.Create(page)
	if err != nil {
		t.Fatal(err)
	}
	res, err := Generate(context.Background(), Options{Inputs: []string{filepath.Join("testdata", "v1-sample.jsonl")},
		Format: FormatHTML}, f, &bytes.Buffer{})
	f.Close()
	if err != nil || res.ThresholdsCrossed {
		t.Fatalf("Generate: %+v %v", res, err)
	}
	cmd := exec.Command("bash", filepath.Join("..", "..", "scripts", "html-check.sh"), page, filepath.Join(dir, "shot.png"))
	out, err := cmd.CombinedOutput()
	if err != nil {
		t.Fatalf("html-check: %v\n%s", err, out)
	}
	if fi, err := os.Stat(filepath.Join(dir, "shot.png")); err != nil || fi.Size() < 10000 {
		t.Errorf("screenshot missing or blank: %v", err)
	}
}

// A run that started in the same second as another one in the same directory is <stamp>-<run_id>.jsonl; a
// timestamp argument names all of them, merged after <stamp>.jsonl in name order.
func TestInputsSameSecondRuns(t *testing.T) {
	dir := t.TempDir()
	write := func(name, content string) {
		if err := os.WriteFile(filepath.Join(dir, name), []byte(content), 0o644); err != nil {
			t.Fatal(err)
		}
	}
	line := func(i int) string { return v0Line(i, 0, true, true, float64(i), 0.1, 0.1) + "\n" }
	write("20250103000000.jsonl", line(0))
	write("20250103000000-bbbb2222.jsonl", line(1)+line(2))
	write("20250103000000-aaaa1111.jsonl", line(3))
	write("20250103000000-aaaa1111.run.json", `{"schema":1,"run_id":"aaaa1111","instance":"i","model":"fleet",`+
		`"start_time":1,"end_time":9,"agents":1,"workers":1}`)
	write("20250103000001.jsonl", line(4))          // the next second: another run
	write("202501030000001-x.jsonl", line(5))       // not a timestamp and a dash
	write("20250104000000-cccc3333.jsonl", line(6)) // only a run-id name for that second
	if err := os.Mkdir(filepath.Join(dir, "20250103000000-dddd.jsonl"), 0o755); err != nil {
		t.Fatal(err)
	}
	rel := func(ps []string) []string {
		var out []string
		for _, p := range ps {
			out = append(out, filepath.Base(p))
		}
		return out
	}
	for _, c := range []struct {
		args []string
		want []string
	}{
		{[]string{"20250103000000"}, []string{"20250103000000.jsonl", "20250103000000-aaaa1111.jsonl", "20250103000000-bbbb2222.jsonl"}},
		{[]string{"20250103000000.jsonl"}, []string{"20250103000000.jsonl"}}, // a file name names that file only
		{[]string{"20250104000000"}, []string{"20250104000000-cccc3333.jsonl"}},
		{[]string{"20250103000000-bbbb2222", "20250103000000"}, []string{"20250103000000-bbbb2222.jsonl",
			"20250103000000.jsonl", "20250103000000-aaaa1111.jsonl"}},
	} {
		paths, err := ResolveInputs(c.args, dir)
		if err != nil {
			t.Fatalf("%v: %v", c.args, err)
		}
		if got := rel(paths); strings.Join(got, " ") != strings.Join(c.want, " ") {
			t.Errorf("%v: %v, want %v", c.args, got, c.want)
		}
	}
	paths, _ := ResolveInputs([]string{"20250103000000"}, dir)
	s, err := Load(context.Background(), paths, nil)
	if err != nil {
		t.Fatal(err)
	}
	if s.Records != 4 || len(s.Runs) != 1 || s.Runs[0].RunID != "aaaa1111" {
		t.Errorf("merged: %d records, runs %+v; want 4 records and the aaaa1111 sidecar", s.Records, s.Runs)
	}
	_, err = ResolveInputs([]string{"20250105000000"}, dir)
	if err == nil || !strings.Contains(err.Error(), "20250105000000-*.jsonl") {
		t.Errorf("missing timestamp: %v", err)
	}
}

// The key types of all runs add up in one line; runs without them (older sidecars) leave the section out.
func TestKeyTypesLine(t *testing.T) {
	runs := []record.RunInfo{{KeyTypes: map[string]int{"rsa2048": 1, "ecc-p256": 2}}, {}, {KeyTypes: map[string]int{"ecc-p256": 1}}}
	if got, want := keyTypesLine(runs), "Agents by key type: ecc-p256 3 (75.0%), rsa2048 1 (25.0%)."; got != want {
		t.Fatalf("%q, want %q", got, want)
	}
	if got := keyTypesLine([]record.RunInfo{{}}); got != "" {
		t.Fatalf("without key types: %q, want no line", got)
	}
}

// The sidecars' profiles, with or without measured boot, make one line; older sidecars leave the section out.
func TestEvidenceLine(t *testing.T) {
	runs := []record.RunInfo{{Profile: "ima", MeasuredBoot: true}, {}, {Profile: "ima", MeasuredBoot: true}}
	want := "Evidence profile: ima with measured boot (a UEFI event log with every attestation, checked against an " +
		"mbpolicies reference state)."
	if got := evidenceLine(runs); got != want {
		t.Fatalf("%q, want %q", got, want)
	}
	if got := evidenceLine([]record.RunInfo{{Profile: "quote-only"}}); got != "Evidence profile: quote-only without measured boot." {
		t.Fatalf("without measured boot: %q", got)
	}
	if got := evidenceLine([]record.RunInfo{{}}); got != "" {
		t.Fatalf("older sidecar: %q, want no line", got)
	}
}

func TestConnectionLines(t *testing.T) {
	runs := []record.RunInfo{{RunID: "r1", Connections: &record.ConnInfo{Model: "per-agent", Opened: 100, TLSHandshakes: 100,
		PeakOpen: 100, Budget: 500, SourceAddrs: 3}}, {RunID: "old"}}
	got := connectionLines(runs)
	want := "per-agent connections (run r1): 100 opened, 100 TLS handshakes, at most 100 open at once (budget 500, 0 idle closed to keep to it), from 3 source addresses."
	if len(got) != 1 || got[0] != want {
		t.Errorf("connectionLines = %q, want [%q]", got, want)
	}
}

package report

import (
	"fmt"
	"io"
	"maps"
	"math"
	"slices"
	"strconv"
	"strings"
	"time"
	"unicode/utf8"

	"github.com/attestload/attestload/attestation/record"
	"github.com/attestload/attestload/internal/pyfmt"
)

// The new sections are built once as format-neutral sections and rendered as aligned text, Markdown or HTML, so
// the three formats cannot drift apart.

type tbl struct {
	header []string
	rows   [][]string
}

type section struct {
	title string
	lines []string // sentences before the tables
	tbls  []tbl
}

// fmtSeconds prints a duration with three significant digits and a unit, for percentiles.
func fmtSeconds(p *float64) string {
	if p == nil {
		return "--"
	}
	v := *p
	unit, scale := "s", 1.0
	switch a := math.Abs(v); {
	case a == 0:
		return "0s"
	case a < 1e-6:
		unit, scale = "ns", 1e9
	case a < 1e-3:
		unit, scale = "µs", 1e6
	case a < 1:
		unit, scale = "ms", 1e3
	case a >= 3600:
		unit, scale = "h", 1.0/3600
	case a >= 60:
		unit, scale = "m", 1.0/60
	}
	x := v * scale
	digits := 2
	switch a := math.Abs(x); {
	case a >= 100:
		digits = 0
	case a >= 10:
		digits = 1
	}
	return strconv.FormatFloat(x, 'f', digits, 64) + unit
}

func fmtRate(p *float64) string {
	if p == nil {
		return "--"
	}
	if math.Abs(*p) < 1 {
		return strconv.FormatFloat(*p, 'g', 3, 64)
	}
	return strconv.FormatFloat(*p, 'f', 2, 64)
}

func share(n, of int64) string {
	if of == 0 {
		return "--"
	}
	return strconv.FormatFloat(float64(n)/float64(of)*100, 'f', 1, 64) + "%"
}

func i64(n int64) string { return strconv.FormatInt(n, 10) }

func latencyRow(label string, l Latency) []string {
	return []string{label, i64(l.Count), fmtSeconds(l.P50), fmtSeconds(l.P90), fmtSeconds(l.P99),
		fmtSeconds(l.P999), fmtSeconds(l.Max), fmtSeconds(l.Avg)}
}

var latencyHeader = []string{"", "count", "p50", "p90", "p99", "p99.9", "max", "avg"}

func namedTable(label string, ns []NamedCount, total int64) tbl {
	t := tbl{header: []string{label, "count", "share"}}
	for _, n := range ns {
		t.rows = append(t.rows, []string{n.Name, i64(n.Count), share(n.Count, total)})
	}
	if len(t.rows) == 0 {
		t.rows = [][]string{{"(none)", "0", "--"}}
	}
	return t
}

// keyTypesLine counts the agents of all runs by attestation-key type, from the sidecars ("" when none says).
func keyTypesLine(runs []record.RunInfo) string {
	total := map[string]int{}
	for _, r := range runs {
		for t, n := range r.KeyTypes {
			total[t] += n
		}
	}
	if len(total) == 0 {
		return ""
	}
	var all int
	for _, n := range total {
		all += n
	}
	parts := make([]string, 0, len(total))
	for _, t := range slices.Sorted(maps.Keys(total)) {
		parts = append(parts, fmt.Sprintf("%s %d (%s)", t, total[t], share(int64(total[t]), int64(all))))
	}
	return "Agents by key type: " + strings.Join(parts, ", ") + "."
}

// evidenceLine names the runs' evidence profiles and whether they included measured boot, from the sidecars (""
// when none says).
func evidenceLine(runs []record.RunInfo) string {
	var names []string
	for _, r := range runs {
		if r.Profile == "" {
			continue
		}
		n := r.Profile
		if r.MeasuredBoot {
			n += " with measured boot (a UEFI event log with every attestation, checked against an mbpolicies reference state)"
		} else {
			n += " without measured boot"
		}
		if !slices.Contains(names, n) {
			names = append(names, n)
		}
	}
	if len(names) == 0 {
		return ""
	}
	return "Evidence profile: " + strings.Join(names, "; ") + "."
}

// connectionLines says, per run whose sidecar tells, which connection model ran and how many connections and TLS
// handshakes there were.
func connectionLines(runs []record.RunInfo) []string {
	var out []string
	for _, r := range runs {
		c := r.Connections
		if c == nil {
			continue
		}
		line := fmt.Sprintf("%s connections (run %s): %d opened, %d TLS handshakes, at most %d open at once",
			c.Model, r.RunID, c.Opened, c.TLSHandshakes, c.PeakOpen)
		if c.Budget > 0 {
			line += fmt.Sprintf(" (budget %d, %d idle closed to keep to it)", c.Budget, c.Evicted)
		}
		if c.SourceAddrs > 1 {
			line += fmt.Sprintf(", from %d source addresses", c.SourceAddrs)
		}
		out = append(out, line+".")
	}
	return out
}

// offsetLabel prints a bucket's offset from the first bucket as H:MM:SS (days past a day).
func offsetLabel(sec float64) string { return "+" + pyfmt.Timedelta(sec) }

func buildSections(s *Summary) []section {
	var out []section
	if ev := evidenceLine(s.Runs); ev != "" {
		out = append(out, section{title: "Evidence", lines: []string{ev}})
	}
	if keys := keyTypesLine(s.Runs); keys != "" {
		out = append(out, section{title: "Attestation keys", lines: []string{keys}})
	}
	if conns := connectionLines(s.Runs); len(conns) > 0 {
		out = append(out, section{title: "Connections", lines: conns})
	}
	out = append(out, latencySection(s), outcomeSection(s), verdictSection(s), httpSection(s), schedulingSection(s))
	if os := outageSection(s.Runs); os != nil {
		out = append(out, *os)
	}
	out = append(out, throughputSection(s))
	if len(s.Thresholds) > 0 {
		th := section{title: "Thresholds"}
		for _, r := range s.Thresholds {
			th.lines = append(th.lines, r.String())
		}
		out = append(out, th)
	}
	if len(s.VerifierDefects) > 0 {
		vd := section{title: "Verifier defects met"}
		for _, d := range s.VerifierDefects {
			vd.lines = append(vd.lines, d.Line)
		}
		out = append(out, vd)
	}
	notes := section{title: "Notes", lines: append([]string{}, s.Notes...)}
	notes.lines = append(notes.lines, fmt.Sprintf("%d records from %d file(s); %d malformed line(s) skipped.",
		s.Records, len(s.Inputs), s.SkippedLines))
	out = append(out, notes)
	return out
}

// latencySection is the percentiles of every phase and request kind.
func latencySection(s *Summary) section {
	ph := tbl{header: append([]string{"phase"}, append(latencyHeader[1:], "per second")...)}
	for _, l := range s.Phases {
		ph.rows = append(ph.rows, append(latencyRow(l.Name, l), fmtRate(l.Rate)))
	}
	rq := tbl{header: append([]string{"request", "ok", "retry", "fail", "all"}, latencyHeader[2:]...)}
	for _, r := range s.Requests {
		l := r.Latency
		rq.rows = append(rq.rows, []string{r.Name, i64(r.OK), i64(r.Retry), i64(r.Fail), i64(r.All),
			fmtSeconds(l.P50), fmtSeconds(l.P90), fmtSeconds(l.P99), fmtSeconds(l.P999), fmtSeconds(l.Max),
			fmtSeconds(l.Avg)})
	}
	return section{title: "Latency percentiles", lines: []string{
		"Phases: session (PoP token), negotiate (create), evidence (update), cycle (whole cycle), verdict " +
			"(evidence accepted to verdict observed)."}, tbls: []tbl{ph, rq}}
}

// outcomeSection counts the cycles by outcome, and the failed ones by error class.
func outcomeSection(s *Summary) section {
	o := s.Outcomes
	total := o.Success + o.Fail + o.Aborted
	ot := tbl{header: []string{"outcome", "count", "share"}, rows: [][]string{
		{"success", i64(o.Success), share(o.Success, total)},
		{"fail", i64(o.Fail), share(o.Fail, total)},
		{"aborted", i64(o.Aborted), share(o.Aborted, total)},
	}}
	return section{title: "Cycle outcomes", lines: []string{fmt.Sprintf("%d cycles.", total)},
		tbls: []tbl{ot, namedTable("failed or aborted, by error", o.ByError, o.Fail+o.Aborted)}}
}

// verdictSection counts the verdicts, the fail reasons, and the time to a verdict.
func verdictSection(s *Summary) section {
	v := s.Verdicts
	vt := tbl{header: []string{"verdict", "count", "share"}, rows: [][]string{
		{"pass", i64(v.Pass), share(v.Pass, v.Pass+v.Fail+v.Unknown)},
		{"fail", i64(v.Fail), share(v.Fail, v.Pass+v.Fail+v.Unknown)},
		{"unknown", i64(v.Unknown), share(v.Unknown, v.Pass+v.Fail+v.Unknown)},
	}}
	ttv := tbl{header: append([]string{"time to verdict"}, latencyHeader[1:]...),
		rows: [][]string{latencyRow("evidence → verdict", s.Phases[len(phaseNames)])}}
	return section{title: "Verification verdicts", tbls: []tbl{vt,
		namedTable("fail reason", v.FailReasons, v.Fail), ttv}}
}

// httpSection counts the requests by status class and error class.
func httpSection(s *Summary) section {
	h := s.HTTP
	return section{title: "HTTP status and errors", lines: []string{
		fmt.Sprintf("%d requests, %d not ok (%s).", h.Attempts, h.NotOK, share(h.NotOK, h.Attempts))},
		tbls: []tbl{namedTable("status class", h.StatusClasses, h.Attempts), namedTable("error class", h.Errors, h.Attempts)}}
}

// schedulingSection is the late and dropped cycles, and how late the late ones were.
func schedulingSection(s *Summary) section {
	sc := s.Scheduling
	dropped, lateRuns := "not recorded", "not recorded"
	if sc.Dropped != nil {
		dropped = i64(*sc.Dropped)
	}
	if sc.LateFromRuns != nil {
		lateRuns = i64(*sc.LateFromRuns)
	}
	lateLine := "Late cycles: not recorded (no record carries late_seconds)."
	if sc.Scheduled > 0 {
		lateLine = fmt.Sprintf("Late cycles (started more than %s after their due time): %d of %d scheduled "+
			"cycles (%s).", fmtTolerance(), sc.Late, sc.Scheduled, share(sc.Late, sc.Scheduled))
	}
	st := section{title: "Late and dropped cycles", lines: []string{lateLine,
		"Late cycles reported by the runs: " + lateRuns + ".", "Dropped cycles: " + dropped + "."}}
	if sc.Scheduled > 0 {
		st.tbls = []tbl{{header: append([]string{"lateness"}, latencyHeader[1:]...),
			rows: [][]string{latencyRow("start − due", sc.Lateness)}}}
	}
	return st
}

// throughputSection is the completed cycles per time bucket.
func throughputSection(s *Summary) section {
	tp := tbl{header: []string{"from", "cycles", "success", "fail", "aborted", "per second", "cycle p50", "cycle p99"}}
	for _, b := range s.Throughput.Buckets {
		tp.rows = append(tp.rows, []string{offsetLabel(b.Offset), i64(b.Cycles), i64(b.Success), i64(b.Fail),
			i64(b.Aborted), fmtRate(&b.PerSecond), fmtSeconds(b.P50["cycle"]),
			fmtSeconds(b.P99["cycle"])})
	}
	tput := section{title: "Throughput over time", lines: []string{fmt.Sprintf(
		"Completed cycles per %s bucket (the size chosen to keep the table within %d rows), by end time, from the "+
			"first bucket's start.",
		fmtBucket(s.Throughput.BucketSeconds), maxBuckets)}}
	if len(tp.rows) > 0 {
		tput.tbls = []tbl{tp}
	} else {
		tput.lines = append(tput.lines, "No cycle has an end time.")
	}
	return tput
}

// alignTable renders a table with the first column left-aligned and the others right-aligned.
func alignTable(t tbl) []string {
	widths := make([]int, len(t.header))
	for _, r := range append([][]string{t.header}, t.rows...) {
		for i, c := range r {
			widths[i] = max(widths[i], utf8.RuneCountInString(c))
		}
	}
	line := func(r []string) string {
		cells := make([]string, len(r))
		for i, c := range r {
			if i == 0 {
				cells[i] = pyfmt.PadRight(c, widths[i])
			} else {
				cells[i] = pyfmt.PadLeft(c, widths[i])
			}
		}
		return strings.TrimRight("  "+strings.Join(cells, "  "), " ")
	}
	out := []string{line(t.header)}
	dashes := make([]string, len(widths))
	for i, w := range widths {
		dashes[i] = strings.Repeat("-", w)
	}
	out = append(out, line(dashes))
	for _, r := range t.rows {
		out = append(out, line(r))
	}
	return out
}

func writeText(w io.Writer, s *Summary) error {
	var b strings.Builder
	for _, sec := range buildSections(s) {
		b.WriteString("  " + sec.title + "\n  " + strings.Repeat("═", utf8.RuneCountInString(sec.title)) + "\n")
		for _, l := range sec.lines {
			b.WriteString("  " + l + "\n")
		}
		for _, t := range sec.tbls {
			b.WriteString("\n")
			for _, l := range alignTable(t) {
				b.WriteString(l + "\n")
			}
		}
		b.WriteString("\n")
	}
	_, err := io.WriteString(w, b.String())
	return err
}

func mdEscape(s string) string { return strings.ReplaceAll(s, "|", `\|`) }

func writeMarkdown(w io.Writer, s *Summary) error {
	var b strings.Builder
	b.WriteString("# Attestation load test report\n\n")
	b.WriteString(fmt.Sprintf("%d attestations in %s, %d workers, %d agents.\n\n", s.Legacy.CompleteRuns.All.Count,
		pyfmt.Timedelta(s.Track.Seconds), s.Workers, s.Agents))
	b.WriteString("## Summary tables\n\n```text\n")
	if err := writeTables(&b, s, false); err != nil {
		return err
	}
	b.WriteString("```\n\n")
	for _, sec := range buildSections(s) {
		b.WriteString("## " + sec.title + "\n\n")
		for _, l := range sec.lines {
			b.WriteString(mdEscape(l) + "\n\n")
		}
		for _, t := range sec.tbls {
			hdr := make([]string, len(t.header))
			sep := make([]string, len(t.header))
			for i, h := range t.header {
				hdr[i] = mdEscape(h)
				sep[i] = "---:"
				if i == 0 {
					sep[i] = "---"
				}
			}
			b.WriteString("| " + strings.Join(hdr, " | ") + " |\n| " + strings.Join(sep, " | ") + " |\n")
			for _, r := range t.rows {
				cells := make([]string, len(r))
				for i, c := range r {
					cells[i] = mdEscape(c)
				}
				b.WriteString("| " + strings.Join(cells, " | ") + " |\n")
			}
			b.WriteString("\n")
		}
	}
	_, err := io.WriteString(w, b.String())
	return err
}

// fmtTolerance is record.LateTolerance as the report writes durations elsewhere ("1 ms").
func fmtTolerance() string {
	return strconv.FormatFloat(record.LateTolerance.Seconds()*1000, 'g', -1, 64) + " ms"
}

// outageSection lists the verifier outages the runs recorded in their sidecars, as time ranges; nil when no input
// has a sidecar (old files), since then nothing is known either way.
func outageSection(runs []record.RunInfo) *section {
	if len(runs) == 0 {
		return nil
	}
	sec := &section{title: "Verifier outages"}
	t := tbl{header: []string{"from (UTC)", "to (UTC)", "length", "error"}}
	for _, r := range runs {
		for _, o := range r.Outages {
			to := utcTime(o.End)
			if o.Ongoing {
				to += " (run ended)"
			}
			length := o.End - o.Start
			t.rows = append(t.rows, []string{utcTime(o.Start), to, fmtSeconds(&length), string(o.Error)})
		}
	}
	if len(t.rows) == 0 {
		sec.lines = []string{"None: the verifier answered throughout."}
		return sec
	}
	sec.lines = []string{fmt.Sprintf("%d outage(s): time ranges in which every cycle failed without an answer "+
		"from the verifier; agents backed off meanwhile.", len(t.rows))}
	sec.tbls = []tbl{t}
	return sec
}

func utcTime(s float64) string {
	return time.Unix(0, int64(s*1e9)).UTC().Format("2006-01-02 15:04:05.000")
}

// fmtBucket prints a bucket width in its whole unit: 30s, 5m, 2h, 1d.
func fmtBucket(sec float64) string {
	for _, u := range []struct {
		s    float64
		name string
	}{{86400, "d"}, {3600, "h"}, {60, "m"}, {1, "s"}} {
		if sec >= u.s && math.Mod(sec, u.s) == 0 {
			return strconv.FormatFloat(sec/u.s, 'f', -1, 64) + u.name
		}
	}
	return fmtSeconds(&sec)
}

package report

import (
	"io"
	"strconv"
	"strings"
	"unicode/utf8"

	"github.com/attestload/attestload/internal/pyfmt"
)

// The legacy renderer reproduces the old tool's tables; see ../shared/docs/results-and-report.md for the rules
// and testdata for the exact text.

const (
	bannerWidth = 105
	pageWidth   = 103 // the width the complete-runs group is centred in
	esc         = "\x1b[40;1m"
	escReset    = "\x1b[0m"
)

var (
	requestWidths = []int{18, 6, 6, 6, 6}
	phaseWidths   = []int{18, 8, 6, 6}
)

// table renders rows of cells joined by two spaces, the first column left-aligned and the others right-aligned.
func table(widths []int, rows [][]string) []string {
	out := make([]string, 0, len(rows))
	for _, r := range rows {
		cells := make([]string, len(widths))
		for i, w := range widths {
			c := ""
			if i < len(r) {
				c = r[i]
			}
			if i == 0 {
				cells[i] = pyfmt.PadRight(c, w)
			} else {
				cells[i] = pyfmt.PadLeft(c, w)
			}
		}
		out = append(out, strings.Join(cells, "  "))
	}
	return out
}

// headerRows is the column header and the dashes under each labelled column.
func headerRows(widths []int, labels ...string) [][]string {
	head := append([]string{""}, labels...)
	dash := []string{""}
	for i := range labels {
		dash = append(dash, strings.Repeat("-", widths[i+1]))
	}
	return [][]string{head, dash}
}

func pct(c, all Counter) string {
	if all.Count == 0 {
		return "--"
	}
	return pyfmt.Round1(float64(c.Count)/float64(all.Count)*100) + "%"
}

func avg(c Counter) string {
	if c.Count == 0 {
		return "--"
	}
	return pyfmt.Duration(c.Total / float64(c.Count))
}

func minOf(c Counter) string {
	if c.Count == 0 {
		return "--"
	}
	return pyfmt.Duration(float64(c.Min))
}

func maxOf(c Counter) string {
	if c.Count == 0 {
		return "--"
	}
	return pyfmt.Duration(float64(c.Max))
}

func num(c Counter) string { return strconv.FormatInt(c.Count, 10) }

func requestTable(title string, r RequestCounters) []string {
	rows := headerRows(requestWidths, "ok", "retry", "fail", "all")
	cs := []Counter{r.OK, r.Retry, r.Fail, r.All}
	row := func(label string, f func(Counter) string, withAll bool) []string {
		out := []string{label}
		for i, c := range cs {
			if i == 3 && !withAll {
				out = append(out, "")
				continue
			}
			out = append(out, f(c))
		}
		return out
	}
	rows = append(rows,
		[]string{title},
		row("  Number", num, true),
		row("  Percentage", func(c Counter) string { return pct(c, r.All) }, false),
		[]string{"Durations:"},
		row("  Average", avg, true),
		row("  Shortest", minOf, true),
		row("  Longest", maxOf, true),
	)
	return table(requestWidths, rows)
}

func phaseRows(title string, p PhaseCounters, indent string) [][]string {
	cs := []Counter{p.Success, p.Fail, p.All}
	row := func(label string, f func(Counter) string, withAll bool) []string {
		out := []string{indent + label}
		for i, c := range cs {
			if i == 2 && !withAll {
				out = append(out, "")
				continue
			}
			out = append(out, f(c))
		}
		return out
	}
	return [][]string{
		{indent + title},
		row("  Number", num, true),
		row("  Percentage", func(c Counter) string { return pct(c, p.All) }, false),
		{indent + "Durations:"},
		row("  Average", avg, true),
		row("  Shortest", minOf, true),
		row("  Longest", maxOf, true),
	}
}

// box draws a group: a title over one or more side-by-side sections, each a list of lines of equal width.
func box(title string, subtitles []string, cols [][]string) []string {
	widths := make([]int, len(cols))
	for i, c := range cols {
		for _, l := range c {
			widths[i] = max(widths[i], utf8.RuneCountInString(l)+2)
		}
		if len(subtitles) > 0 {
			widths[i] = max(widths[i], utf8.RuneCountInString(subtitles[i])+2)
		}
	}
	inner := len(widths) - 1
	for _, w := range widths {
		inner += w
	}
	rule := func(left, mid, right string) string {
		parts := make([]string, len(widths))
		for i, w := range widths {
			parts[i] = strings.Repeat("─", w)
		}
		return left + strings.Join(parts, mid) + right
	}
	row := func(cells []string, center bool) string {
		parts := make([]string, len(widths))
		for i, w := range widths {
			if center {
				parts[i] = centerTitle(cells[i], w)
			} else {
				parts[i] = " " + pyfmt.PadRight(cells[i], w-2) + " "
			}
		}
		return "│" + strings.Join(parts, "│") + "│"
	}
	out := []string{"┌" + strings.Repeat("─", inner) + "┐", "│" + centerTitle(title, inner) + "│"}
	if len(subtitles) > 0 {
		out = append(out, rule("├", "┬", "┤"), row(subtitles, true), rule("├", "┼", "┤"))
	} else {
		out = append(out, rule("├", "┬", "┤"))
	}
	n := 0
	for _, c := range cols {
		n = max(n, len(c))
	}
	for i := range n {
		cells := make([]string, len(cols))
		for j, c := range cols {
			if i < len(c) {
				cells[j] = c[i]
			}
		}
		out = append(out, row(cells, false))
	}
	return append(out, rule("└", "┴", "┘"))
}

// centerTitle centres a box title with any odd padding space on the right, which is what the old tool's box
// titles do even where str.center would put it on the left (odd width).
func centerTitle(s string, width int) string {
	marg := width - utf8.RuneCountInString(s)
	if marg <= 0 {
		return s
	}
	return strings.Repeat(" ", marg/2) + s + strings.Repeat(" ", marg-marg/2)
}

// Microsecond units: the old tool wrote U+03BC (Greek small mu), which --legacy keeps byte for byte; the rest of
// attestload writes U+00B5 (the micro sign), also in the old tables when they are part of a report.
const (
	legacyMicro = pyfmt.Micro
	microUnit   = "µs"
)

// writeTables writes the old tables as a part of a report: as writeLegacy, with the micro sign of the rest.
func writeTables(w io.Writer, s *Summary, color bool) error {
	var b strings.Builder
	if err := writeLegacy(&b, s, color); err != nil {
		return err
	}
	_, err := io.WriteString(w, strings.ReplaceAll(b.String(), legacyMicro, microUnit))
	return err
}

// writeLegacy writes the old tables exactly.
func writeLegacy(w io.Writer, s *Summary, color bool) error {
	var b strings.Builder
	b.WriteString("\n\n")
	for _, l := range []string{strings.Repeat("─", bannerWidth), pyfmt.Center("TEST RESULT SUMMARY", bannerWidth),
		strings.Repeat("═", bannerWidth)} {
		if color {
			l = esc + l + escReset
		}
		b.WriteString(l + "\n")
	}
	track := s.Track.Seconds
	run := "  Performed " + strconv.FormatInt(s.Legacy.CompleteRuns.All.Count, 10) + " attestations in " +
		pyfmt.Timedelta(track)
	if track > 60 {
		run += " (" + pyfmt.Round1(track) + "s)"
	} else {
		run += " "
	}
	b.WriteString("\n" + run + "\n")
	b.WriteString("  Used " + strconv.Itoa(s.Workers) + " worker processes and " + strconv.Itoa(s.Agents) +
		" mock agents\n\n")

	l := &s.Legacy
	for _, g := range []struct {
		title, requests string
		r               RequestCounters
		p               PhaseCounters
	}{
		{"Capabilities Negotiation Phase", "Create Requests:", l.CreateRequests, l.NegotiationPhase},
		{"Evidence Handling Phase", "Update Requests:", l.UpdateRequests, l.EvidencePhase},
	} {
		left := requestTable(g.requests, g.r)
		right := table(phaseWidths, append(headerRows(phaseWidths, "success", "fail", "all"),
			phaseRows("Executions:", g.p, "")...))
		for _, line := range box(g.title, []string{"Individual Requests", "Phase Executions"}, [][]string{left, right}) {
			b.WriteString("  " + line + "\n")
		}
	}

	rows := append(headerRows(phaseWidths, "success", "fail", "all"), phaseRows("Attestation Tasks:", l.CompleteRuns, "")...)
	rows = append(rows, []string{"Rates:"})
	cs := []Counter{l.CompleteRuns.Success, l.CompleteRuns.Fail, l.CompleteRuns.All}
	for _, r := range []struct {
		label string
		per   float64
		f     func(float64) string
	}{{"  Per second", 1, pyfmt.Round1}, {"  Per minute", 60, pyfmt.Round1}, {"  Per hour", 3600, pyfmt.RoundInt}} {
		row := []string{r.label}
		for _, c := range cs {
			if track <= 0 {
				row = append(row, "--")
				continue
			}
			row = append(row, r.f(float64(c.Count)/(track/r.per)))
		}
		rows = append(rows, row)
	}
	var col []string
	for _, line := range table(phaseWidths, rows) {
		col = append(col, pyfmt.Center(line, 50))
	}
	for _, line := range box("Complete Protocol Runs", nil, [][]string{col}) {
		b.WriteString(pyfmt.Center(line, pageWidth) + "\n")
	}
	b.WriteString("\n")
	_, err := io.WriteString(w, b.String())
	return err
}

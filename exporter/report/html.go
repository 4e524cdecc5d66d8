package report

import (
	"fmt"
	"html"
	"io"
	"math"
	"strconv"
	"strings"
	"unicode/utf8"

	"github.com/attestload/attestload/internal/pyfmt"
)

// The HTML page is one self-contained file: inline CSS, charts drawn as inline SVG, no script and no external
// fetch, so it opens the same from a ticket attachment, a CI artifact or an air-gapped machine.

const (
	chartW, chartH = 640.0, 260.0
	padL, padR     = 64.0, 16.0
	padT, padB     = 24.0, 40.0
)

var phaseColors = map[string]string{"session": "#8e44ad", "negotiate": "#2980b9", "evidence": "#e67e22",
	"cycle": "#2c3e50"}

var outcomeColors = []string{"#27ae60", "#c0392b", "#7f8c8d"}

func escHTML(s string) string { return html.EscapeString(s) }

func f1(v float64) string { return strconv.FormatFloat(v, 'f', 1, 64) }

// niceMax rounds an axis maximum up to 1, 2 or 5 times a power of ten.
func niceMax(v float64) float64 {
	if v <= 0 || math.IsNaN(v) || math.IsInf(v, 0) {
		return 1
	}
	p := math.Pow(10, math.Floor(math.Log10(v)))
	for _, m := range []float64{1, 2, 5, 10} {
		if v <= m*p {
			return m * p
		}
	}
	return 10 * p
}

type svg struct{ b strings.Builder }

func (s *svg) open(title string) {
	fmt.Fprintf(&s.b, `<svg xmlns="http://www.w3.org/2000/svg" viewBox="0 0 %g %g" width="%g" height="%g" role="img">`,
		chartW, chartH, chartW, chartH)
	fmt.Fprintf(&s.b, `<title>%s</title>`, escHTML(title))
}

func (s *svg) text(x, y float64, anchor, cls, t string) {
	fmt.Fprintf(&s.b, `<text x="%s" y="%s" text-anchor="%s" class="%s">%s</text>`, f1(x), f1(y), anchor, cls, escHTML(t))
}

// axes draws the frame, y grid lines labelled by yLabel, and x labels at the given fractions.
func (s *svg) axes(yMax float64, yLabel func(float64) string, xTicks []float64, xLabel func(float64) string) {
	x0, y0, x1, y1 := padL, chartH-padB, chartW-padR, padT
	for i := 0; i <= 4; i++ {
		y := y0 - (y0-y1)*float64(i)/4
		fmt.Fprintf(&s.b, `<line x1="%s" y1="%s" x2="%s" y2="%s" class="grid"/>`, f1(x0), f1(y), f1(x1), f1(y))
		s.text(x0-6, y+4, "end", "tick", yLabel(yMax*float64(i)/4))
	}
	for _, t := range xTicks {
		x := x0 + (x1-x0)*t
		anchor := "middle"
		switch t {
		case 0:
			anchor = "start"
		case 1:
			anchor = "end"
		}
		s.text(x, y0+16, anchor, "tick", xLabel(t))
	}
	fmt.Fprintf(&s.b, `<line x1="%s" y1="%s" x2="%s" y2="%s" class="axis"/>`, f1(x0), f1(y0), f1(x1), f1(y0))
	fmt.Fprintf(&s.b, `<line x1="%s" y1="%s" x2="%s" y2="%s" class="axis"/>`, f1(x0), f1(y0), f1(x0), f1(y1))
}

func (s *svg) legend(items []string, colors []string, dashed []bool) {
	x := padL
	for i, it := range items {
		dash := ""
		if dashed != nil && dashed[i] {
			dash = ` stroke-dasharray="4 3"`
		}
		fmt.Fprintf(&s.b, `<line x1="%s" y1="12" x2="%s" y2="12" stroke="%s" stroke-width="3"%s/>`, f1(x), f1(x+16),
			colors[i], dash)
		s.text(x+20, 16, "start", "legend", it)
		x += 28 + 7*float64(utf8.RuneCountInString(it))
	}
}

func (s *svg) close() string {
	s.b.WriteString(`</svg>`)
	return s.b.String()
}

func emptyChart(title, why string) string {
	var s svg
	s.open(title)
	s.text(chartW/2, chartH/2, "middle", "legend", why)
	return s.close()
}

func timeTicks(s *Summary) ([]float64, func(float64) string) {
	span := float64(len(s.Throughput.Buckets)) * s.Throughput.BucketSeconds
	return []float64{0, 0.25, 0.5, 0.75, 1}, func(t float64) string { return "+" + pyfmt.Timedelta(t*span) }
}

// throughputChart stacks success, fail and aborted cycles per second in each bucket.
func throughputChart(s *Summary) string {
	const title = "Throughput over time (cycles per second, by end time)"
	bs := s.Throughput.Buckets
	if len(bs) == 0 {
		return emptyChart(title, "no cycle has an end time")
	}
	peak := 0.0
	for _, b := range bs {
		peak = math.Max(peak, b.PerSecond)
	}
	yMax := niceMax(peak)
	var c svg
	c.open(title)
	ticks, label := timeTicks(s)
	c.axes(yMax, func(v float64) string { return strconv.FormatFloat(v, 'g', 4, 64) }, ticks, label)
	c.legend([]string{"success", "fail", "aborted"}, outcomeColors, nil)
	w := (chartW - padL - padR) / float64(len(bs))
	plotH := chartH - padT - padB
	for i, b := range bs {
		y := chartH - padB
		for j, n := range []int64{b.Success, b.Fail, b.Aborted} {
			h := float64(n) / s.Throughput.BucketSeconds / yMax * plotH
			if h <= 0 {
				continue
			}
			y -= h
			fmt.Fprintf(&c.b, `<rect x="%s" y="%s" width="%s" height="%s" fill="%s"/>`, f1(padL+float64(i)*w+0.5),
				f1(y), f1(math.Max(w-1, 0.5)), f1(h), outcomeColors[j])
		}
	}
	return c.close()
}

// percentileChart draws p50 (dashed) and p99 (solid) of each phase per time bucket on a logarithmic latency axis:
// on a linear one, a single slow session flattened every other line against the floor.
func percentileChart(s *Summary) string {
	const title = "Latency percentiles over time per phase (log scale; p50 dashed, p99 solid)"
	bs := s.Throughput.Buckets
	peak, low := latencyRange(bs)
	if len(bs) == 0 || peak == 0 {
		return emptyChart(title, "no latency data over time")
	}
	// Whole decades, at least one.
	hiExp := math.Ceil(math.Log10(peak))
	loExp := math.Min(math.Floor(math.Log10(low)), hiExp-1)
	plotH := chartH - padT - padB
	yOf := func(v float64) float64 {
		v = math.Max(v, math.Pow(10, loExp)) // a zero or tiny value sits on the floor
		return chartH - padB - (math.Log10(v)-loExp)/(hiExp-loExp)*plotH
	}
	var c svg
	c.open(title)
	x0, x1 := padL, chartW-padR
	for e := loExp; e <= hiExp; e++ {
		y := yOf(math.Pow(10, e))
		fmt.Fprintf(&c.b, `<line x1="%s" y1="%s" x2="%s" y2="%s" class="grid"/>`, f1(x0), f1(y), f1(x1), f1(y))
		c.text(x0-6, y+4, "end", "tick", decadeLabel(math.Pow(10, e)))
	}
	ticks, label := timeTicks(s)
	for _, t := range ticks {
		anchor := "middle"
		switch t {
		case 0:
			anchor = "start"
		case 1:
			anchor = "end"
		}
		c.text(x0+(x1-x0)*t, chartH-padB+16, anchor, "tick", label(t))
	}
	fmt.Fprintf(&c.b, `<line x1="%s" y1="%s" x2="%s" y2="%s" class="axis"/>`, f1(x0), f1(chartH-padB), f1(x1), f1(chartH-padB))
	fmt.Fprintf(&c.b, `<line x1="%s" y1="%s" x2="%s" y2="%s" class="axis"/>`, f1(x0), f1(chartH-padB), f1(x0), f1(padT))
	// The legend says what the colours and the two dash styles mean, not only the tooltip.
	names, colors, dashed := []string{}, []string{}, []bool{}
	for _, n := range phaseNames {
		names, colors, dashed = append(names, n), append(colors, phaseColors[n]), append(dashed, false)
	}
	names, colors, dashed = append(names, "p50", "p99"), append(colors, "#555555", "#555555"), append(dashed, true, false)
	c.legend(names, colors, dashed)
	w := (chartW - padL - padR) / float64(len(bs))
	for _, n := range phaseNames {
		for _, q := range []struct {
			get  func(Bucket) *float64
			dash string
		}{{func(b Bucket) *float64 { return b.P50[n] }, ` stroke-dasharray="4 3"`},
			{func(b Bucket) *float64 { return b.P99[n] }, ""}} {
			segs := segments(bs, q.get, func(i int, v float64) string {
				return f1(padL+(float64(i)+0.5)*w) + "," + f1(yOf(v))
			})
			c.polylines(segs, phaseColors[n], q.dash)
		}
	}
	return c.close()
}

// latencyRange is the highest and the lowest positive p50 or p99 of the buckets (0 and +Inf without any).
func latencyRange(bs []Bucket) (peak, low float64) {
	peak, low = 0.0, math.Inf(1)
	for _, b := range bs {
		for _, m := range []map[string]*float64{b.P50, b.P99} {
			for _, p := range m {
				if p != nil && *p > 0 {
					peak, low = math.Max(peak, *p), math.Min(low, *p)
				}
			}
		}
	}
	return peak, low
}

// segments turns the buckets' values (get) into runs of "x,y" points (point): a bucket without data breaks the
// line, so a gap in the run does not read as a trend.
func segments(bs []Bucket, get func(Bucket) *float64, point func(i int, v float64) string) [][]string {
	var segs [][]string
	var cur []string
	for i, b := range bs {
		v := get(b)
		if v == nil {
			if len(cur) > 0 {
				segs, cur = append(segs, cur), nil
			}
			continue
		}
		cur = append(cur, point(i, *v))
	}
	if len(cur) > 0 {
		segs = append(segs, cur)
	}
	return segs
}

// polylines draws each segment as a line in color (dash: extra attributes), or as a dot when it is one point.
func (c *svg) polylines(segs [][]string, color, dash string) {
	for _, pts := range segs {
		if len(pts) == 1 {
			xy := strings.Split(pts[0], ",")
			fmt.Fprintf(&c.b, `<circle cx="%s" cy="%s" r="3" fill="%s"/>`, xy[0], xy[1], color)
			continue
		}
		fmt.Fprintf(&c.b, `<polyline points="%s" fill="none" stroke="%s" stroke-width="2"%s/>`,
			strings.Join(pts, " "), color, dash)
	}
}

// decadeLabel writes a power of ten seconds with the unit that makes it a whole number: 10ms, 1s, 100s.
func decadeLabel(v float64) string {
	unit, scale := "s", 1.0
	switch {
	case v < 1e-6*0.999:
		unit, scale = "ns", 1e9
	case v < 1e-3*0.999:
		unit, scale = "µs", 1e6
	case v < 0.999:
		unit, scale = "ms", 1e3
	}
	return strconv.FormatFloat(math.Round(v*scale), 'f', -1, 64) + unit
}

// histogramChart draws the whole-cycle latency distribution on log-spaced bins.
func histogramChart(s *Summary) string {
	const title = "Cycle latency histogram (log-spaced bins)"
	bins := s.CycleHistogram
	if len(bins) == 0 {
		return emptyChart(title, "no cycle latency recorded")
	}
	var peak uint64
	for _, b := range bins {
		peak = max(peak, b.Count)
	}
	yMax := niceMax(float64(peak))
	var c svg
	c.open(title)
	lo, hi := bins[0].Lower, bins[len(bins)-1].Upper
	c.axes(yMax, func(v float64) string { return strconv.FormatFloat(v, 'g', 4, 64) },
		[]float64{0, 0.5, 1}, func(t float64) string {
			v := lo * math.Pow(hi/lo, t)
			if len(bins) == 1 {
				v = lo + (hi-lo)*t
			}
			return fmtSeconds(&v)
		})
	w := (chartW - padL - padR) / float64(len(bins))
	plotH := chartH - padT - padB
	for i, b := range bins {
		h := float64(b.Count) / yMax * plotH
		if h <= 0 {
			continue
		}
		fmt.Fprintf(&c.b, `<rect x="%s" y="%s" width="%s" height="%s" fill="#2c3e50"><title>%s – %s: %d</title></rect>`,
			f1(padL+float64(i)*w+0.5), f1(chartH-padB-h), f1(math.Max(w-1, 0.5)), f1(h),
			escHTML(fmtSeconds(&b.Lower)), escHTML(fmtSeconds(&b.Upper)), b.Count)
	}
	return c.close()
}

// outcomeChart draws two proportional bars: cycle outcomes and verdicts.
func outcomeChart(s *Summary) string {
	const title = "Outcome breakdown"
	var c svg
	c.open(title)
	rows := []struct {
		label  string
		names  []string
		counts []int64
		colors []string
	}{
		{"cycles", []string{"success", "fail", "aborted"}, []int64{s.Outcomes.Success, s.Outcomes.Fail,
			s.Outcomes.Aborted}, outcomeColors},
		{"verdicts", []string{"pass", "fail", "unknown"}, []int64{s.Verdicts.Pass, s.Verdicts.Fail,
			s.Verdicts.Unknown}, []string{"#27ae60", "#c0392b", "#bdc3c7"}},
	}
	x0, x1 := 90.0, chartW-padR
	for r, row := range rows {
		y := 50 + float64(r)*100
		c.text(x0-8, y+22, "end", "legend", row.label)
		var total int64
		for _, n := range row.counts {
			total += n
		}
		if total == 0 {
			c.text(x0, y+22, "start", "legend", "no data")
			continue
		}
		x := x0
		for i, n := range row.counts {
			w := float64(n) / float64(total) * (x1 - x0)
			if w > 0 {
				fmt.Fprintf(&c.b, `<rect x="%s" y="%s" width="%s" height="34" fill="%s"><title>%s: %d</title></rect>`,
					f1(x), f1(y), f1(w), row.colors[i], escHTML(row.names[i]), n)
			}
			x += w
		}
		lx := x0
		for i, n := range row.counts {
			lbl := fmt.Sprintf("%s %d (%s)", row.names[i], n, share(n, total))
			fmt.Fprintf(&c.b, `<rect x="%s" y="%s" width="10" height="10" fill="%s"/>`, f1(lx), f1(y+44), row.colors[i])
			c.text(lx+14, y+53, "start", "legend", lbl)
			lx += 24 + 7*float64(utf8.RuneCountInString(lbl))
		}
	}
	return c.close()
}

const pageCSS = `body{font-family:system-ui,sans-serif;margin:24px;color:#222;background:#fff}
h1{font-size:22px}h2{font-size:18px;margin-top:28px;border-bottom:1px solid #ddd}
.charts{display:grid;grid-template-columns:repeat(auto-fill,minmax(660px,1fr));gap:16px}
figure{margin:0;border:1px solid #ddd;padding:8px}figcaption{font-weight:600;margin-bottom:4px}
svg text{font-size:11px;fill:#333}svg .tick{font-size:10px;fill:#666}
svg .grid{stroke:#eee}svg .axis{stroke:#999}
table{border-collapse:collapse;margin:8px 0 16px}td,th{padding:2px 10px;border-bottom:1px solid #eee}
td:not(:first-child),th:not(:first-child){text-align:right}pre{font-size:12px;line-height:1.2}`

func writeHTML(w io.Writer, s *Summary) error {
	var b strings.Builder
	b.WriteString("<!DOCTYPE html>\n<html lang=\"en\">\n<head>\n<meta charset=\"utf-8\">\n")
	b.WriteString("<title>attestload report</title>\n<style>" + pageCSS + "</style>\n</head>\n<body>\n")
	b.WriteString("<h1>Attestation load test report</h1>\n")
	fmt.Fprintf(&b, "<p>%d attestations in %s, %d workers, %d agents, from %s.</p>\n",
		s.Legacy.CompleteRuns.All.Count, escHTML(pyfmt.Timedelta(s.Track.Seconds)), s.Workers, s.Agents,
		escHTML(strings.Join(s.Inputs, ", ")))
	b.WriteString("<div class=\"charts\">\n")
	for _, ch := range []struct{ caption, svg string }{
		{"Throughput over time", throughputChart(s)},
		{"Latency percentiles over time (log scale; p50 dashed, p99 solid)", percentileChart(s)},
		{"Cycle latency histogram", histogramChart(s)},
		{"Outcomes and verdicts", outcomeChart(s)},
	} {
		fmt.Fprintf(&b, "<figure><figcaption>%s</figcaption>%s</figure>\n", escHTML(ch.caption), ch.svg)
	}
	b.WriteString("</div>\n<h2>Summary tables</h2>\n<pre>")
	var legacy strings.Builder
	if err := writeTables(&legacy, s, false); err != nil {
		return err
	}
	b.WriteString(escHTML(strings.Trim(legacy.String(), "\n")) + "</pre>\n")
	for _, sec := range buildSections(s) {
		b.WriteString("<h2>" + escHTML(sec.title) + "</h2>\n")
		for _, l := range sec.lines {
			b.WriteString("<p>" + escHTML(l) + "</p>\n")
		}
		for _, t := range sec.tbls {
			b.WriteString("<table>\n<tr>")
			for _, h := range t.header {
				b.WriteString("<th>" + escHTML(h) + "</th>")
			}
			b.WriteString("</tr>\n")
			for _, r := range t.rows {
				b.WriteString("<tr>")
				for _, c := range r {
					b.WriteString("<td>" + escHTML(c) + "</td>")
				}
				b.WriteString("</tr>\n")
			}
			b.WriteString("</table>\n")
		}
	}
	b.WriteString("</body>\n</html>\n")
	_, err := io.WriteString(w, b.String())
	return err
}

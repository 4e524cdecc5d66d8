package harness

import (
	"bytes"
	"context"
	"encoding/json"
	"fmt"
	"io"
	"math"
	"net/http"
	"slices"
	"sort"
	"strings"
	"testing"
	"time"

	"github.com/jackc/pgx/v5"
	dto "github.com/prometheus/client_model/go"
	"github.com/prometheus/common/expfmt"
	"github.com/prometheus/common/model"

	"github.com/attestload/attestload/attestation/record"
	"github.com/attestload/attestload/internal/resultsread"
)

// NoCrash fails the test when output shows a panic or a goroutine dump: bad input and faults must end in a clear
// error, never in a stack trace.
func NoCrash(t testing.TB, what, output string) {
	t.Helper()
	for _, bad := range []string{"panic:", "goroutine ", "runtime error", "fatal error:"} {
		if strings.Contains(output, bad) {
			t.Errorf("%s contains %q:\n%s", what, bad, tail(output, 4000))
		}
	}
}

// ReadRecords decodes every complete line of a results file. partial reports whether the file ended in an
// unterminated line (a line cut by a crash); a complete line that is not a record fails the test.
//
// A zstd or gzip file (told by its first bytes) is decompressed first; one whose compressed stream is cut off
// counts as partial, with every line of its complete frames returned.
func ReadRecords(t testing.TB, path string) (recs []record.Record, partial bool) {
	t.Helper()
	b, cut := ReadResults(t, path)
	if cut {
		partial = true
	}
	if len(b) == 0 {
		return nil, partial
	}
	lines := bytes.Split(b, []byte("\n"))
	partial = partial || len(lines[len(lines)-1]) > 0
	for i, l := range lines[:len(lines)-1] {
		var r record.Record
		dec := json.NewDecoder(bytes.NewReader(l))
		dec.DisallowUnknownFields()
		if err := dec.Decode(&r); err != nil {
			t.Fatalf("%s line %d is not a record: %v\n%s", path, i+1, err, l)
		}
		recs = append(recs, r)
	}
	return recs, partial
}

// ReadResults returns a results file's JSONL bytes, decompressing zstd and gzip; cut reports a compressed stream
// that breaks off (the bytes are then those of its complete part).
func ReadResults(t testing.TB, path string) (b []byte, cut bool) {
	t.Helper()
	b, cut, err := resultsread.Bytes(path)
	if err != nil {
		t.Fatalf("read results: %v", err)
	}
	return b, cut
}

// Outcomes counts records by outcome.
func Outcomes(recs []record.Record) map[record.Outcome]int {
	out := map[record.Outcome]int{}
	for _, r := range recs {
		out[r.Outcome]++
	}
	return out
}

// Attempts lists a record's attempts in phase order: session, create, update.
func Attempts(r record.Record) []record.Attempt {
	return slices.Concat(r.SessionAttempts, r.CreateAttempts, r.UpdateAttempts)
}

// AttemptErrors counts the failed attempts of recs by error class.
func AttemptErrors(recs []record.Record) map[record.ErrorClass]int {
	return AttemptErrorsBefore(recs, math.Inf(1))
}

// AttemptErrorsBefore counts, by error class, the failed attempts of recs that started before until (Unix s).
func AttemptErrorsBefore(recs []record.Record, until float64) map[record.ErrorClass]int {
	out := map[record.ErrorClass]int{}
	for _, r := range recs {
		for _, a := range Attempts(r) {
			if a.Error != nil && a.StartTime < until {
				out[*a.Error]++
			}
		}
	}
	return out
}

// CheckRecords asserts what every record of a finished run must satisfy whatever the faults: a known outcome,
// success only with both phases successful, a failed or aborted cycle names its error class, one run id.
func CheckRecords(t testing.TB, recs []record.Record) {
	t.Helper()
	runs := map[string]bool{}
	for i, r := range recs {
		runs[r.RunID] = true
		switch r.Outcome {
		case record.OutcomeSuccess:
			if !r.CreateSuccessful || !r.UpdateSuccessful || r.Error != nil {
				t.Errorf("record %d: outcome success but create %v, update %v, error %v", i, r.CreateSuccessful,
					r.UpdateSuccessful, deref(r.Error))
			}
		case record.OutcomeFail, record.OutcomeAborted:
			if r.Error == nil || *r.Error == "" {
				t.Errorf("record %d: outcome %s without an error class", i, r.Outcome)
			}
		default:
			t.Errorf("record %d: unknown outcome %q", i, r.Outcome)
		}
		if r.EndTime < r.StartTime {
			t.Errorf("record %d: ends (%f) before it starts (%f)", i, r.EndTime, r.StartTime)
		}
	}
	if len(runs) > 1 {
		t.Errorf("records carry %d run ids, want 1: %v", len(runs), runs)
	}
}

func deref[T ~string](s *T) string {
	if s == nil {
		return "<nil>"
	}
	return string(*s)
}

// Metrics is a scraped exposition: series value by "name{l1="v1",...}" with labels sorted.
type Metrics map[string]float64

// Scrape fetches http://addr/metrics and flattens counters, gauges and untyped series (histograms contribute
// their _count and _sum).
func Scrape(t testing.TB, addr string) Metrics {
	t.Helper()
	m, err := TryScrape(addr)
	if err != nil {
		t.Fatal(err)
	}
	return m
}

// TryScrape is Scrape returning an error, for pollers.
func TryScrape(addr string) (Metrics, error) {
	ctx, cancel := context.WithTimeout(context.Background(), 5*time.Second)
	defer cancel()
	req, err := http.NewRequestWithContext(ctx, http.MethodGet, "http://"+addr+"/metrics", nil)
	if err != nil {
		return nil, err
	}
	resp, err := http.DefaultClient.Do(req)
	if err != nil {
		return nil, fmt.Errorf("scrape %s: %w", addr, err)
	}
	defer resp.Body.Close()
	body, err := io.ReadAll(resp.Body)
	if err != nil {
		return nil, fmt.Errorf("scrape %s: %w", addr, err)
	}
	if resp.StatusCode != http.StatusOK {
		return nil, fmt.Errorf("scrape %s: status %d", addr, resp.StatusCode)
	}
	return ParseMetrics(body)
}

// ParseMetrics flattens a text exposition.
func ParseMetrics(body []byte) (Metrics, error) {
	p := expfmt.NewTextParser(model.UTF8Validation)
	fams, err := p.TextToMetricFamilies(bytes.NewReader(body))
	if err != nil {
		return nil, fmt.Errorf("parse exposition: %w", err)
	}
	out := Metrics{}
	for name, f := range fams {
		for _, m := range f.GetMetric() {
			key := func(n string) string { return seriesKey(n, m.GetLabel()) }
			switch f.GetType() {
			case dto.MetricType_COUNTER:
				out[key(name)] = m.GetCounter().GetValue()
			case dto.MetricType_GAUGE:
				out[key(name)] = m.GetGauge().GetValue()
			case dto.MetricType_UNTYPED:
				out[key(name)] = m.GetUntyped().GetValue()
			case dto.MetricType_HISTOGRAM:
				out[key(name+"_count")] = float64(m.GetHistogram().GetSampleCount())
				out[key(name+"_sum")] = m.GetHistogram().GetSampleSum()
			case dto.MetricType_SUMMARY:
				out[key(name+"_count")] = float64(m.GetSummary().GetSampleCount())
				out[key(name+"_sum")] = m.GetSummary().GetSampleSum()
			}
		}
	}
	return out, nil
}

func seriesKey(name string, labels []*dto.LabelPair) string {
	if len(labels) == 0 {
		return name
	}
	parts := make([]string, 0, len(labels))
	for _, l := range labels {
		parts = append(parts, fmt.Sprintf("%s=%q", l.GetName(), l.GetValue()))
	}
	sort.Strings(parts)
	return name + "{" + strings.Join(parts, ",") + "}"
}

// Sum adds every series of the metric name whose labels include all of match ("k=v" pairs).
func (m Metrics) Sum(name string, match ...string) float64 {
	var total float64
	for k, v := range m {
		n, labels, _ := strings.Cut(k, "{")
		if n != name {
			continue
		}
		ok := true
		for _, want := range match {
			k, val, _ := strings.Cut(want, "=")
			if !strings.Contains(labels, fmt.Sprintf("%s=%q", k, val)) {
				ok = false
				break
			}
		}
		if ok {
			total += v
		}
	}
	return total
}

// CheckMetricsMatchRecords asserts that the cycle counters on /metrics equal the JSONL's outcome counts.
func CheckMetricsMatchRecords(t testing.TB, m Metrics, recs []record.Record) {
	t.Helper()
	got := Outcomes(recs)
	for _, o := range record.Outcomes() {
		if c := m.Sum("attestload_cycles_total", "outcome="+string(o)); int(c) != got[o] {
			t.Errorf("attestload_cycles_total{outcome=%q} = %v, the JSONL has %d", o, c, got[o])
		}
	}
	if c := m.Sum("attestload_cycles_total"); int(c) != len(recs) {
		t.Errorf("attestload_cycles_total = %v over all outcomes, the JSONL has %d records", c, len(recs))
	}
}

// RowCounts are rows in the verifier's tables whose agent id or policy name starts with a prefix.
type RowCounts struct {
	Agents, Attestations, EvidenceItems, Sessions, IMAPolicies, MBPolicies int
}

// Total is the sum over all tables.
func (c RowCounts) Total() int {
	return c.Agents + c.Attestations + c.EvidenceItems + c.Sessions + c.IMAPolicies + c.MBPolicies
}

// CountRows counts the rows under prefix in the database at dbURL.
func CountRows(t testing.TB, dbURL, prefix string) RowCounts {
	t.Helper()
	ctx, cancel := context.WithTimeout(context.Background(), 30*time.Second)
	defer cancel()
	conn, err := pgx.Connect(ctx, dbURL)
	if err != nil {
		t.Fatalf("connect to the test database: %v", err)
	}
	defer conn.Close(ctx)
	like := strings.NewReplacer(`\`, `\\`, `%`, `\%`, `_`, `\_`).Replace(prefix) + "%"
	var c RowCounts
	for _, q := range []struct {
		sql string
		n   *int
	}{
		{`SELECT count(*) FROM verifiermain WHERE agent_id LIKE $1`, &c.Agents},
		{`SELECT count(*) FROM attestations WHERE agent_id LIKE $1`, &c.Attestations},
		{`SELECT count(*) FROM evidence_items WHERE agent_id LIKE $1`, &c.EvidenceItems},
		{`SELECT count(*) FROM sessions WHERE agent_id LIKE $1`, &c.Sessions},
		{`SELECT count(*) FROM allowlists WHERE name LIKE $1`, &c.IMAPolicies},
		{`SELECT count(*) FROM mbpolicies WHERE name LIKE $1`, &c.MBPolicies},
	} {
		if err := conn.QueryRow(ctx, q.sql, like).Scan(q.n); err != nil {
			t.Fatalf("count rows: %v", err)
		}
	}
	return c
}

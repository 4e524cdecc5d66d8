package report

import (
	"bytes"
	"encoding/json"
	"math"

	"github.com/attestload/attestload/attestation/record"
	"github.com/attestload/attestload/exporter/threshold"
)

// SummaryVersion is the "report_version" of the JSON document; docs/report-json.md describes it.
const SummaryVersion = 1

// Summary is everything the report knows about the merged inputs. Every output format renders a Summary, and it
// is a threshold.Source.
type Summary struct {
	Version      int      `json:"report_version"`
	Inputs       []string `json:"inputs"`
	Records      int64    `json:"records"`
	V0Records    int64    `json:"v0_records"`
	SkippedLines int64    `json:"skipped_lines"`
	Track        Track    `json:"track"`
	Workers      int      `json:"workers"`
	Agents       int      `json:"agents"`

	Legacy Legacy `json:"legacy"`

	Phases     []Latency     `json:"phases"`   // session, negotiate, evidence, cycle, verdict
	Requests   []RequestKind `json:"requests"` // session_create, session_pop, create, update
	Outcomes   Outcomes      `json:"outcomes"`
	Verdicts   Verdicts      `json:"verdicts"`
	HTTP       HTTP          `json:"http"`
	Scheduling Scheduling    `json:"scheduling"`
	Throughput Throughput    `json:"throughput"`
	// CycleHistogram is the whole-cycle latency distribution in log-spaced bins, for drawing.
	CycleHistogram []Bin `json:"cycle_histogram"`

	Runs       []record.RunInfo   `json:"runs"`
	Thresholds []threshold.Result `json:"thresholds"`
	Notes      []string           `json:"notes"`
	// VerifierDefects are the known verifier defects the records met (docs/verifier-conformance.md); absent when
	// none was met.
	VerifierDefects []VerifierDefect `json:"verifier_defects,omitempty"`
}

// VerifierDefect is a known defect of the stock verifier that cycles of the run met.
type VerifierDefect struct {
	Name  string `json:"name"`  // evidence_order, reboot or verdict_pending
	Count int64  `json:"count"` // cycles that met it
	Line  string `json:"line"`  // the one-line description the text report prints
}

// Track is the span of the attestation tasks: earliest task start to latest task end (the legacy definition).
type Track struct {
	Start   float64 `json:"start"`
	End     float64 `json:"end"`
	Seconds float64 `json:"seconds"`
	// Source says where the span comes from: "runs" (every input's sidecar: the runs' own start and end) or
	// "records" (the old tool's rule over the records, for files without a finished run's sidecar).
	Source string `json:"source"`
}

// Counter is one exact legacy counter. Min and max are kept in 32-bit floats as the old tool did.
type Counter struct {
	Count int64   `json:"count"`
	Total float64 `json:"total_seconds"`
	Min   float32 `json:"min_seconds"`
	Max   float32 `json:"max_seconds"`
}

func (c *Counter) add(v float64) {
	f := float32(v)
	if c.Count == 0 || f < c.Min {
		c.Min = f
	}
	if c.Count == 0 || f > c.Max {
		c.Max = f
	}
	c.Count++
	c.Total += v
}

// RequestCounters are the legacy per-attempt counters of one phase.
type RequestCounters struct {
	OK    Counter `json:"ok"`
	Retry Counter `json:"retry"`
	Fail  Counter `json:"fail"`
	All   Counter `json:"all"`
}

// PhaseCounters are the legacy per-execution counters of one phase.
type PhaseCounters struct {
	Success Counter `json:"success"`
	Fail    Counter `json:"fail"`
	All     Counter `json:"all"`
}

// Legacy holds the figures of the old tables, exactly.
type Legacy struct {
	CreateRequests   RequestCounters `json:"create_requests"`
	NegotiationPhase PhaseCounters   `json:"negotiation_phase"`
	UpdateRequests   RequestCounters `json:"update_requests"`
	EvidencePhase    PhaseCounters   `json:"evidence_phase"`
	CompleteRuns     PhaseCounters   `json:"complete_runs"`
}

// Latency summarises a distribution of durations in seconds. Percentiles come from a histogram (see Notes); count,
// min, max and avg are exact. Statistics are null when Count is 0.
type Latency struct {
	Name  string   `json:"name"`
	Count int64    `json:"count"`
	Rate  *float64 `json:"rate_per_second"`
	Min   *float64 `json:"min"`
	Avg   *float64 `json:"avg"`
	P50   *float64 `json:"p50"`
	P90   *float64 `json:"p90"`
	P99   *float64 `json:"p99"`
	P999  *float64 `json:"p99_9"`
	Max   *float64 `json:"max"`
}

// RequestKind is one kind of HTTP request: its legacy-style classification and its latency.
type RequestKind struct {
	Name    string  `json:"name"`
	OK      int64   `json:"ok"`
	Retry   int64   `json:"retry"`
	Fail    int64   `json:"fail"`
	All     int64   `json:"all"`
	Latency Latency `json:"latency"`
}

// Outcomes counts cycles by outcome (v0 records derive it from create/update_successful).
type Outcomes struct {
	Success int64 `json:"success"`
	Fail    int64 `json:"fail"`
	Aborted int64 `json:"aborted"`
	// ByError counts failed and aborted cycles by the record's error class.
	ByError []NamedCount `json:"by_error"`
}

// NamedCount is a label with a count.
type NamedCount struct {
	Name  string `json:"name"`
	Count int64  `json:"count"`
}

// Verdicts counts the verifier's judgements and the time to each.
type Verdicts struct {
	Pass        int64        `json:"pass"`
	Fail        int64        `json:"fail"`
	Unknown     int64        `json:"unknown"`
	FailReasons []NamedCount `json:"fail_reasons"`
	// The time to verdict is the "verdict" entry of Summary.Phases.
}

// HTTP breaks every attempt (session, create, update) down by status class and error class.
type HTTP struct {
	Attempts int64 `json:"attempts"`
	NotOK    int64 `json:"not_ok"`
	// StatusClasses: "2xx".."5xx"; "none" when no response arrived; "unrecorded" for v0 attempts.
	StatusClasses []NamedCount `json:"status_classes"`
	Errors        []NamedCount `json:"errors"`
}

// Scheduling covers the tool's own lateness and the cycles it dropped.
type Scheduling struct {
	Scheduled int64   `json:"scheduled_cycles"` // records carrying late_seconds
	Late      int64   `json:"late_cycles"`      // late_seconds > 0
	Lateness  Latency `json:"lateness"`
	// Dropped is the sum of the runs' dropped_cycles; null when no run sidecar recorded it.
	Dropped *int64 `json:"dropped_cycles"`
	// LateFromRuns is the sum of the runs' late_cycles; null when no sidecar recorded it.
	LateFromRuns *int64 `json:"late_cycles_from_runs"`
}

// Throughput is completed cycles per time bucket. Buckets are aligned to multiples of BucketSeconds and widen as
// the track grows, so there are never more than maxBuckets of them.
type Throughput struct {
	BucketSeconds float64  `json:"bucket_seconds"`
	Buckets       []Bucket `json:"buckets"`
}

// Bucket is one time bucket, keyed by when cycles ended.
type Bucket struct {
	Start     float64 `json:"start"`  // time of the bucket's start, in the files' clock
	Offset    float64 `json:"offset"` // seconds since the first bucket's start
	Cycles    int64   `json:"cycles"`
	Success   int64   `json:"success"`
	Fail      int64   `json:"fail"`
	Aborted   int64   `json:"aborted"`
	PerSecond float64 `json:"per_second"`
	// P50 and P99 per phase (session, negotiate, evidence, cycle), null without data; coarse resolution.
	P50 map[string]*float64 `json:"p50"`
	P99 map[string]*float64 `json:"p99"`
}

// Bin is one bar of a histogram.
type Bin struct {
	Lower float64 `json:"lower"`
	Upper float64 `json:"upper"`
	Count uint64  `json:"count"`
}

// Metric implements threshold.Source.
func (s *Summary) Metric(name string) (float64, bool) {
	ratio := func(num, den int64) (float64, bool) {
		if den == 0 {
			return 0, false
		}
		return float64(num) / float64(den), true
	}
	switch name {
	case "verdict.pass_rate":
		return ratio(s.Verdicts.Pass, s.Verdicts.Pass+s.Verdicts.Fail)
	case "cycles.fail_rate":
		return ratio(s.Outcomes.Fail, s.Outcomes.Success+s.Outcomes.Fail)
	case "http.error_rate":
		return ratio(s.HTTP.NotOK, s.HTTP.Attempts)
	case "cycles.late_rate":
		return ratio(s.Scheduling.Late, s.Scheduling.Scheduled)
	case "cycles.dropped":
		if s.Scheduling.Dropped == nil {
			return 0, false
		}
		return float64(*s.Scheduling.Dropped), true
	}
	for _, l := range s.Phases {
		phase := l.Name
		if len(name) <= len(phase)+1 || name[:len(phase)] != phase || name[len(phase)] != '.' {
			continue
		}
		var p *float64
		switch name[len(phase)+1:] {
		case "count":
			return float64(l.Count), true
		case "rate":
			p = l.Rate
		case "p50":
			p = l.P50
		case "p90":
			p = l.P90
		case "p99":
			p = l.P99
		case "p99.9":
			p = l.P999
		case "max":
			p = l.Max
		case "avg":
			p = l.Avg
		}
		if p == nil {
			return 0, false
		}
		return *p, true
	}
	return 0, false
}

// JSON renders the summary as the documented JSON document, indented, with a final newline.
func (s *Summary) JSON() ([]byte, error) {
	var b bytes.Buffer
	enc := json.NewEncoder(&b)
	enc.SetEscapeHTML(false) // thresholds contain < and >; the document is not embedded in HTML
	enc.SetIndent("", "  ")
	if err := enc.Encode(s); err != nil {
		return nil, err
	}
	return b.Bytes(), nil
}

func fptr(v float64) *float64 {
	if math.IsNaN(v) || math.IsInf(v, 0) {
		return nil
	}
	return &v
}

func latencyOf(name string, h *hist, trackSeconds float64) Latency {
	l := Latency{Name: name, Count: int64(h.count)}
	if trackSeconds > 0 {
		l.Rate = fptr(float64(h.count) / trackSeconds)
	}
	if h.count == 0 {
		return l
	}
	l.Min, l.Max, l.Avg = fptr(h.min), fptr(h.max), fptr(h.mean())
	l.P50, l.P90, l.P99, l.P999 = fptr(h.quantile(0.5)), fptr(h.quantile(0.9)), fptr(h.quantile(0.99)),
		fptr(h.quantile(0.999))
	return l
}

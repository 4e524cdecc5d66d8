package report

import (
	"fmt"
	"math"
	"sort"

	"github.com/attestload/attestload/attestation/record"
)

// Phase names, in report order. "cycle" is the whole attestation cycle.
var phaseNames = [...]string{"session", "negotiate", "evidence", "cycle"}

// Request kinds, in report order.
var requestKinds = [...]record.Action{record.ActionSessionCreate, record.ActionSessionPoP, record.ActionCreate,
	record.ActionUpdate}

// maxLabels bounds every map keyed by a value read from the files (error classes, failure reasons): a file with
// a million distinct strings must not grow memory, so the overflow is counted under "other".
const maxLabels = 64

type labelCounts map[string]int64

func (m labelCounts) inc(k string) {
	if _, ok := m[k]; !ok && len(m) >= maxLabels {
		k = "other"
	}
	m[k]++
}

func (m labelCounts) sorted() []NamedCount {
	out := make([]NamedCount, 0, len(m))
	for k, v := range m {
		out = append(out, NamedCount{k, v})
	}
	sort.Slice(out, func(i, j int) bool {
		if out[i].Count != out[j].Count {
			return out[i].Count > out[j].Count
		}
		return out[i].Name < out[j].Name
	})
	return out
}

type requestAgg struct {
	ok, retry, fail int64
	lat             *hist
}

// aggregator folds cycle lines into bounded state.
type aggregator struct {
	records, v0        int64
	maxWorker, maxAgen int
	trackStart         float64
	trackEnd           float64
	haveStart, haveEnd bool

	legacy Legacy

	phases   [len(phaseNames)]*hist
	verdict  *hist
	lateness *hist
	requests [len(requestKinds)]requestAgg

	outcomes    Outcomes
	outcomeErrs labelCounts
	pass, fail  int64
	unknown     int64
	reasons     labelCounts
	attempts    int64
	notOK       int64
	statuses    labelCounts
	errors      labelCounts
	scheduled   int64
	late        int64
	timeline    timeline

	// Known verifier defects met (docs/verifier-conformance.md).
	evidenceOrder int64                   // cycles refused by the evidence-order 422
	neverJudged   int64                   // accepted evidence whose verdict never came
	rebootAgents  map[string]*rebootState // agents that rebooted or had a broken_evidence_chain verdict

	// oldOnly keeps only what the old tables print (the record count, workers, agents, the old counters and the
	// track): --legacy without thresholds prints nothing else, and skipping the rest halves the aggregation.
	oldOnly bool
}

// rebootState is what the report keeps of an agent for the reboot defect.
type rebootState struct {
	rebooted bool
	broken   int64 // broken_evidence_chain verdicts
}

func newAggregator() *aggregator {
	a := &aggregator{verdict: newHist(fineSub), lateness: newHist(fineSub), outcomeErrs: labelCounts{},
		reasons: labelCounts{}, statuses: labelCounts{}, errors: labelCounts{}, maxWorker: -1, maxAgen: -1}
	for i := range a.phases {
		a.phases[i] = newHist(fineSub)
	}
	for i := range a.requests {
		a.requests[i].lat = newHist(fineSub)
	}
	a.timeline.init()
	return a
}

// legacyRequest applies the old per-attempt classification: ok, else retry when retry_after > 0, else fail.
func legacyRequest(rc *RequestCounters, at []record.LineAttempt) {
	for i := range at {
		a := &at[i]
		if !a.HasDuration {
			continue
		}
		switch {
		case a.OK:
			rc.OK.add(a.Duration)
		case a.RetryAfter > 0:
			rc.Retry.add(a.Duration)
		default:
			rc.Fail.add(a.Duration)
		}
		rc.All.add(a.Duration)
	}
}

func legacyPhase(pc *PhaseCounters, success bool, d float64) {
	if success {
		pc.Success.add(d)
	} else {
		pc.Fail.add(d)
	}
	pc.All.add(d)
}

func (a *aggregator) add(c *record.Line) {
	a.records++
	if c.Schema == 0 {
		a.v0++
	}
	a.maxWorker = max(a.maxWorker, c.WorkerIndex)
	a.maxAgen = max(a.maxAgen, c.AgentIndex)
	updateDur := a.addLegacy(c)
	end := a.addTrack(c)
	if a.oldOnly {
		return
	}
	outcome := a.addOutcome(c)
	phase, has := a.addPhases(c, updateDur)
	a.addVerdict(c, outcome)

	// Requests and HTTP.
	a.requestsOf(c.Session, -1, c.Schema)
	a.requestsOf(c.Create, 2, c.Schema)
	a.requestsOf(c.Update, 3, c.Schema)

	// Scheduling.
	if c.HasLateSeconds {
		a.scheduled++
		if record.IsLate(c.LateSeconds) {
			a.late++
		}
		a.lateness.add(c.LateSeconds)
	}

	// Throughput by end time: the record's own end for schema 1, else the task end.
	t := end
	if c.Schema >= 1 && c.EndTime > 0 {
		t = c.EndTime
	}
	if t != 0 {
		a.timeline.add(t, outcome, &phase, &has)
	}
}

// addLegacy adds c to the old tables and returns the evidence phase's duration as they count it (0 without an
// update attempt).
func (a *aggregator) addLegacy(c *record.Line) float64 {
	l := &a.legacy
	legacyRequest(&l.CreateRequests, c.Create)
	legacyRequest(&l.UpdateRequests, c.Update)
	legacyPhase(&l.NegotiationPhase, c.CreateOK, c.CreateDuration)
	updateDur := c.UpdateDuration
	if len(c.Update) == 0 {
		updateDur = 0
	}
	legacyPhase(&l.EvidencePhase, c.UpdateOK, updateDur)
	legacyPhase(&l.CompleteRuns, c.UpdateOK, c.CreateDuration+updateDur)

	return updateDur
}

// addTrack widens the run's track by c and returns c's task end. Task start is the first create attempt's start;
// its end the last update attempt's end, or the last create attempt's. Zero times are treated as missing.
func (a *aggregator) addTrack(c *record.Line) (end float64) {
	var start float64
	if len(c.Create) > 0 {
		start = c.Create[0].StartTime
		end = c.Create[len(c.Create)-1].EndTime
	}
	if len(c.Update) > 0 {
		end = c.Update[len(c.Update)-1].EndTime
	}
	if start != 0 && (!a.haveStart || start < a.trackStart) {
		a.trackStart, a.haveStart = start, true
	}
	if end != 0 && (!a.haveEnd || end > a.trackEnd) {
		a.trackEnd, a.haveEnd = end, true
	}

	return end
}

// addOutcome counts c's outcome, and its error class when it did not succeed, and returns the outcome.
func (a *aggregator) addOutcome(c *record.Line) record.Outcome {
	// Outcome: schema-1 records say it; v0 records (or a missing key) derive it.
	outcome := c.Outcome
	if outcome == "" {
		outcome = record.OutcomeFail
		if c.CreateOK && c.UpdateOK {
			outcome = record.OutcomeSuccess
		}
	}
	switch outcome {
	case record.OutcomeSuccess:
		a.outcomes.Success++
	case record.OutcomeAborted:
		a.outcomes.Aborted++
	default:
		a.outcomes.Fail++
	}
	if outcome != record.OutcomeSuccess {
		reason := string(c.Error)
		if reason == "" {
			reason = "unrecorded"
		}
		a.outcomeErrs.inc(reason)
	}

	return outcome
}

// addPhases adds c's phase durations and returns them, with which phases c has.
func (a *aggregator) addPhases(c *record.Line, updateDur float64) (phase [len(phaseNames)]float64, has [len(phaseNames)]bool) {
	// Phases: a phase is measured on every cycle that made at least one request in it.
	if len(c.Session) > 0 {
		phase[0], has[0] = c.SessionDuration, true
		if c.SessionDuration == 0 {
			for i := range c.Session {
				phase[0] += c.Session[i].Duration
			}
		}
	}
	if len(c.Create) > 0 {
		phase[1], has[1] = c.CreateDuration, true
	}
	if len(c.Update) > 0 {
		phase[2], has[2] = c.UpdateDuration, true
	}
	if c.Schema >= 1 && c.StartTime > 0 && c.EndTime >= c.StartTime {
		phase[3], has[3] = c.EndTime-c.StartTime, true
	} else if has[1] || has[2] {
		phase[3], has[3] = c.CreateDuration+updateDur, true
	}
	for i := range phase {
		if has[i] {
			a.phases[i].add(phase[i])
		}
	}

	return phase, has
}

// addVerdict counts c's verdict, the verifier defects it shows, and the time to the verdict.
func (a *aggregator) addVerdict(c *record.Line, outcome record.Outcome) {
	switch c.Evaluation {
	case record.EvaluationPass:
		a.pass++
	case record.EvaluationFail:
		a.fail++
		reason := c.FailureReason
		if !c.HasFailureReason || reason == "" {
			reason = "unspecified"
		}
		a.reasons.inc(reason)
	default:
		a.unknown++
	}
	a.defects(c, outcome)
	if c.HasVerdictSeconds {
		a.verdict.add(c.VerdictSeconds)
	}
}

// requestsOf counts one list of attempts; kind -1 picks the session kind from each attempt's action.
func (a *aggregator) requestsOf(at []record.LineAttempt, kind int, schema int) {
	for i := range at {
		x := &at[i]
		k := kind
		if k < 0 {
			k = 0
			if x.Action == record.ActionSessionPoP {
				k = 1
			}
		}
		r := &a.requests[k]
		switch {
		case x.OK:
			r.ok++
		case x.RetryAfter > 0:
			r.retry++
		default:
			r.fail++
		}
		if x.HasDuration {
			r.lat.add(x.Duration)
		}
		a.attempts++
		if !x.OK {
			a.notOK++
		}
		switch {
		case x.HasStatus:
			a.statuses.inc(statusClass(x.Status))
		case schema == 0:
			a.statuses.inc("unrecorded")
		default:
			a.statuses.inc("none")
		}
		if x.Error != "" {
			a.errors.inc(string(x.Error))
		}
	}
}

var statusClasses = [...]string{"1xx", "2xx", "3xx", "4xx", "5xx"}

func statusClass(s int) string {
	if s >= 100 && s < 600 {
		return statusClasses[s/100-1]
	}
	return "invalid"
}

// runsTrack is the span, workers and agents of the runs when every one of the n inputs has the sidecar of a
// finished run: from the earliest start to the latest end, workers and agents summed (the runs of a multi-host
// test are shards of one fleet).
func runsTrack(runs []record.RunInfo, n int) (t Track, workers, agents int, ok bool) {
	if len(runs) == 0 || len(runs) != n {
		return Track{}, 0, 0, false
	}
	for i, r := range runs {
		if r.StartTime <= 0 || r.EndTime < r.StartTime {
			return Track{}, 0, 0, false
		}
		if i == 0 || r.StartTime < t.Start {
			t.Start = r.StartTime
		}
		t.End = max(t.End, r.EndTime)
		workers += r.Workers
		agents += r.Agents
	}
	t.Seconds, t.Source = t.End-t.Start, "runs"
	return t, workers, agents, true
}

// distinctRuns is how many runs the inputs are: the parts of a rotated run are one.
func distinctRuns(inputs []string) int {
	seen := map[string]bool{}
	for _, p := range inputs {
		seen[sidecarPath(p)] = true
	}
	return len(seen)
}

// summary builds the Summary; runs are the sidecars found for the inputs.
func (a *aggregator) summary(inputs []string, skipped int64, runs []record.RunInfo) *Summary {
	s := &Summary{Version: SummaryVersion, Inputs: inputs, Records: a.records, V0Records: a.v0,
		SkippedLines: skipped, Workers: a.maxWorker + 1, Agents: a.maxAgen + 1, Legacy: a.legacy, Runs: runs}
	if s.Runs == nil {
		s.Runs = []record.RunInfo{}
	}
	// The parts of a rotated run share one sidecar: count runs, not files.
	if t, workers, agents, ok := runsTrack(runs, distinctRuns(inputs)); ok {
		// The runs' own span, workers and agents: a fleet run of 20 s with one cycle ran for 20 s with all its
		// agents, whatever the records' span and highest indexes say.
		s.Track, s.Workers, s.Agents = t, workers, agents
	} else if a.haveStart && a.haveEnd {
		s.Track = Track{Start: a.trackStart, End: a.trackEnd, Seconds: a.trackEnd - a.trackStart, Source: "records"}
	}
	for i, n := range phaseNames {
		s.Phases = append(s.Phases, latencyOf(n, a.phases[i], s.Track.Seconds))
	}
	s.Phases = append(s.Phases, latencyOf("verdict", a.verdict, s.Track.Seconds))
	for i, n := range requestKinds {
		r := a.requests[i]
		s.Requests = append(s.Requests, RequestKind{Name: string(n), OK: r.ok, Retry: r.retry, Fail: r.fail,
			All: r.ok + r.retry + r.fail, Latency: latencyOf(string(n), r.lat, s.Track.Seconds)})
	}
	s.Outcomes = a.outcomes
	s.Outcomes.ByError = a.outcomeErrs.sorted()
	s.Verdicts = Verdicts{Pass: a.pass, Fail: a.fail, Unknown: a.unknown, FailReasons: a.reasons.sorted()}
	s.HTTP = HTTP{Attempts: a.attempts, NotOK: a.notOK, StatusClasses: a.statuses.sorted(), Errors: a.errors.sorted()}
	s.Scheduling = Scheduling{Scheduled: a.scheduled, Late: a.late,
		Lateness: latencyOf("lateness", a.lateness, s.Track.Seconds)}
	if len(runs) > 0 {
		var dropped, late int64
		for _, r := range runs {
			dropped += r.DroppedCycles
			late += r.LateCycles
		}
		s.Scheduling.Dropped, s.Scheduling.LateFromRuns = &dropped, &late
	}
	s.VerifierDefects = a.verifierDefects()
	s.Throughput = a.timeline.export()
	s.CycleHistogram = a.phases[3].logBins(40)
	if s.CycleHistogram == nil {
		s.CycleHistogram = []Bin{}
	}
	s.Thresholds = nil
	s.Notes = []string{
		fmt.Sprintf("Percentiles come from log-linear histograms with a relative error of at most %.2g%%; "+
			"counts, min, max and averages are exact.", 100.0/(2*fineSub)),
		fmt.Sprintf("Per-bucket percentiles over time have a relative error of at most %.2g%%.", 100.0/(2*coarseSub)),
		"Phases are measured on every cycle that made at least one request in them, whatever its outcome.",
	}
	if a.v0 > 0 {
		s.Notes = append(s.Notes, fmt.Sprintf("%d record(s) use the v0 layout: no session phase, verdict, HTTP "+
			"status or lateness was recorded for them.", a.v0))
	}
	return s
}

// defects counts the cycles that met a known verifier defect.
func (a *aggregator) defects(c *record.Line, outcome record.Outcome) {
	if outcome != record.OutcomeSuccess && c.Error == record.ClassEvidenceOrder {
		a.evidenceOrder++
	}
	if outcome == record.OutcomeSuccess && c.Schema >= 1 && c.Evaluation == record.EvaluationUnknown {
		a.neverJudged++
	}
	broken := c.Evaluation == record.EvaluationFail && c.FailureReason == "broken_evidence_chain"
	if !c.Rebooted && !broken {
		return
	}
	if a.rebootAgents == nil {
		a.rebootAgents = map[string]*rebootState{}
	}
	st := a.rebootAgents[string(c.AgentID)]
	if st == nil {
		st = &rebootState{}
		a.rebootAgents[string(c.AgentID)] = st
	}
	st.rebooted = st.rebooted || c.Rebooted
	if broken {
		st.broken++
	}
}

// verifierDefects lists the known verifier defects the records met, each with its count and a one-line
// description.
func (a *aggregator) verifierDefects() []VerifierDefect {
	var out []VerifierDefect
	if a.evidenceOrder > 0 {
		out = append(out, VerifierDefect{Name: "evidence_order", Count: a.evidenceOrder, Line: fmt.Sprintf(
			"Keylime evidence-order defect: %d cycle(s) refused with 422 \"same order as the evidence requested\" "+
				"although sent in the requested order (error class evidence_order).", a.evidenceOrder)})
	}
	var afterReboot int64
	for _, st := range a.rebootAgents {
		if st.rebooted {
			afterReboot += st.broken
		}
	}
	if afterReboot > 0 {
		out = append(out, VerifierDefect{Name: "reboot", Count: afterReboot, Line: fmt.Sprintf(
			"Keylime reboot defect: %d attestation(s) of rebooted agents failed with broken_evidence_chain "+
				"(the new IMA log is replayed from the old boot's PCR 10 until it regrows to its old length).",
			afterReboot)})
	}
	if a.neverJudged > 0 && a.pass+a.fail > 0 {
		out = append(out, VerifierDefect{Name: "verdict_pending", Count: a.neverJudged, Line: fmt.Sprintf(
			"Verdicts that never came: %d accepted attestation(s) have verdict unknown while others were judged "+
				"(verification stuck in pending on the verifier, e.g. crashed after its 202; or verdict.timeout or "+
				"verdict.max_pending too small).", a.neverJudged)})
	}
	return out
}

// timeline counts cycles per time bucket. The bucket width starts at one second and doubles, merging neighbours,
// whenever the span would need more than maxBuckets buckets, so memory is bounded whatever the track length.
type timeline struct {
	width   float64
	lo      int64
	buckets []*tbucket
}

// maxBuckets bounds the time buckets, and so the rows of the throughput table: a three-day run gets 2-hour
// buckets (36 or 37 rows), an hour-long one 5-minute buckets (12 or 13 rows).
const maxBuckets = 40

// bucketLadder are the bucket widths, in seconds, the timeline widens through: each a whole multiple of the one
// before, so that buckets merge exactly, and each a size people read at a glance. Past the last, widths double.
var bucketLadder = []float64{1, 5, 10, 30, 60, 300, 600, 1800, 3600, 7200, 21600, 43200, 86400}

// nextWidth is the bucket width after w, and the whole factor between them.
func nextWidth(w float64) (float64, int64) {
	for _, l := range bucketLadder {
		if l > w {
			return l, int64(math.Round(l / w))
		}
	}
	return 2 * w, 2
}

// floorDivK is floor(i/k) for k > 0, negatives included.
func floorDivK(i, k int64) int64 {
	q := i / k
	if i%k != 0 && i < 0 {
		q--
	}
	return q
}

type tbucket struct {
	cycles, success, fail, aborted int64
	phases                         [len(phaseNames)]*hist
}

func (t *timeline) init() { t.width = 1 }

func (t *timeline) coarsen() {
	width, k := nextWidth(t.width)
	newLo := floorDivK(t.lo, k)
	hi := floorDivK(t.lo+int64(len(t.buckets))-1, k)
	merged := make([]*tbucket, hi-newLo+1)
	for i, b := range t.buckets {
		if b == nil {
			continue
		}
		j := floorDivK(t.lo+int64(i), k) - newLo
		if merged[j] == nil {
			merged[j] = b
			continue
		}
		m := merged[j]
		m.cycles += b.cycles
		m.success += b.success
		m.fail += b.fail
		m.aborted += b.aborted
		for p := range m.phases {
			if b.phases[p] != nil {
				if m.phases[p] == nil {
					m.phases[p] = newHist(coarseSub)
				}
				m.phases[p].merge(b.phases[p])
			}
		}
	}
	t.width = width
	t.lo = newLo
	t.buckets = merged
}

func (t *timeline) add(ts float64, outcome record.Outcome, phase *[len(phaseNames)]float64, has *[len(phaseNames)]bool) {
	if math.IsNaN(ts) || math.IsInf(ts, 0) || math.Abs(ts) > 1e15 {
		return
	}
	idx := int64(math.Floor(ts / t.width))
	if len(t.buckets) == 0 {
		t.lo = idx
		t.buckets = []*tbucket{nil}
	}
	for {
		lo, hi := min(t.lo, idx), max(t.lo+int64(len(t.buckets))-1, idx)
		if hi-lo+1 <= maxBuckets {
			break
		}
		t.coarsen()
		idx = int64(math.Floor(ts / t.width))
	}
	if idx < t.lo {
		grown := make([]*tbucket, t.lo-idx, int(t.lo-idx)+len(t.buckets))
		t.buckets = append(grown, t.buckets...)
		t.lo = idx
	}
	for idx >= t.lo+int64(len(t.buckets)) {
		t.buckets = append(t.buckets, nil)
	}
	b := t.buckets[idx-t.lo]
	if b == nil {
		b = &tbucket{}
		t.buckets[idx-t.lo] = b
	}
	b.cycles++
	switch outcome {
	case record.OutcomeSuccess:
		b.success++
	case record.OutcomeAborted:
		b.aborted++
	default:
		b.fail++
	}
	for p := range phase {
		if has[p] {
			if b.phases[p] == nil {
				b.phases[p] = newHist(coarseSub)
			}
			b.phases[p].add(phase[p])
		}
	}
}

func (t *timeline) export() Throughput {
	out := Throughput{BucketSeconds: t.width, Buckets: []Bucket{}}
	for i, b := range t.buckets {
		start := float64(t.lo+int64(i)) * t.width
		x := Bucket{Start: start, Offset: float64(i) * t.width, P50: map[string]*float64{},
			P99: map[string]*float64{}}
		if b != nil {
			x.Cycles, x.Success, x.Fail, x.Aborted = b.cycles, b.success, b.fail, b.aborted
			for p, h := range b.phases {
				if h != nil {
					x.P50[phaseNames[p]] = fptr(h.quantile(0.5))
					x.P99[phaseNames[p]] = fptr(h.quantile(0.99))
				}
			}
		}
		x.PerSecond = float64(x.Cycles) / t.width
		out.Buckets = append(out.Buckets, x)
	}
	return out
}

package verdict

import (
	"context"
	"errors"
	"log/slog"
	"math"
	"strconv"
	"strings"
	"sync"
	"testing"
	"testing/synctest"
	"time"

	"github.com/prometheus/client_golang/prometheus"
	"github.com/prometheus/client_golang/prometheus/testutil"

	"github.com/attestload/attestload/attestation/record"
	"github.com/attestload/attestload/exporter/metrics"
)

type collect struct {
	mu     sync.Mutex
	got    []*record.Record
	closed bool
}

func (c *collect) Observe(r *record.Record) { c.mu.Lock(); c.got = append(c.got, r); c.mu.Unlock() }
func (c *collect) Close() error             { c.mu.Lock(); c.closed = true; c.mu.Unlock(); return nil }
func (c *collect) snapshot() []*record.Record {
	c.mu.Lock()
	defer c.mu.Unlock()
	return append([]*record.Record(nil), c.got...)
}

// fakeSource answers from a map the test changes; a nil entry means pending.
type fakeSource struct {
	mu    sync.Mutex
	known map[Key]Result
	err   error
	calls int
}

func (f *fakeSource) Resolve(_ context.Context, keys []Key) (map[Key]Result, error) {
	f.mu.Lock()
	defer f.mu.Unlock()
	f.calls++
	if f.err != nil {
		return nil, f.err
	}
	out := map[Key]Result{}
	for _, k := range keys {
		if r, ok := f.known[k]; ok {
			out[k] = r
		}
	}
	return out, nil
}

func (f *fakeSource) set(k Key, r Result) { f.mu.Lock(); f.known[k] = r; f.mu.Unlock() }

func ptr[T any](v T) *T { return &v }

func accepted(agent string, index int, endTime float64) *record.Record {
	return &record.Record{AgentID: agent, Outcome: record.OutcomeSuccess, UpdateSuccessful: true,
		AttestationIndex: ptr(index), UpdateAttempts: []record.Attempt{{EndTime: endTime}}}
}

func TestWatcherResolvesAndTimesOut(t *testing.T) {
	synctest.Test(t, func(t *testing.T) {
		src := &fakeSource{known: map[Key]Result{}}
		next := &collect{}
		w := NewWatcher(src, Options{Settings: Settings{Timeout: 10 * time.Second, PollInterval: time.Second}}, next)
		start := float64(time.Now().UnixNano()) / 1e9

		// The evidence was accepted a moment before the record reaches the watcher (the cycle still had to
		// finish): time to verdict runs from the acceptance, not from the record's arrival.
		pass := accepted("a", 1, start-0.5)
		fail := accepted("b", 7, start-0.25)
		slow := accepted("c", 2, start)
		// A record whose update attempt carries no end time is timed from its arrival.
		noEnd := accepted("e", 3, 0)
		notAccepted := &record.Record{AgentID: "d", Outcome: record.OutcomeFail}
		for _, r := range []*record.Record{pass, fail, slow, notAccepted, noEnd} {
			w.Observe(r)
		}
		if got := next.snapshot(); len(got) != 1 || got[0] != notAccepted ||
			notAccepted.Verdict.Evaluation != record.EvaluationUnknown {
			t.Fatalf("a cycle without accepted evidence must pass straight through as unknown, got %v", got)
		}

		time.Sleep(2500 * time.Millisecond)
		src.set(Key{"a", 1}, Result{Evaluation: record.EvaluationPass})
		src.set(Key{"b", 7}, Result{Evaluation: record.EvaluationFail, FailureReason: ptr("policy_violation")})
		src.set(Key{"e", 3}, Result{Evaluation: record.EvaluationPass})
		time.Sleep(time.Second)
		synctest.Wait()
		got := next.snapshot()
		if len(got) != 4 {
			t.Fatalf("after the verdicts appeared: %d forwarded, want 4", len(got))
		}
		// Seconds go through a float Unix time, good to about a microsecond.
		near := func(got *float64, want float64) bool { return got != nil && math.Abs(*got-want) < 1e-5 }
		secs := func(p *float64) string {
			if p == nil {
				return "none"
			}
			return strconv.FormatFloat(*p, 'f', 6, 64)
		}
		if pass.Verdict.Evaluation != record.EvaluationPass || !near(pass.Verdict.Seconds, 3.5) {
			t.Fatalf("pass verdict %+v (seconds %s), want pass 3.5 s after acceptance", pass.Verdict,
				secs(pass.Verdict.Seconds))
		}
		if fail.Verdict.Evaluation != record.EvaluationFail || *fail.Verdict.FailureReason != "policy_violation" ||
			!near(fail.Verdict.Seconds, 3.25) {
			t.Fatalf("fail verdict %+v (seconds %s), want fail 3.25 s after acceptance", fail.Verdict,
				secs(fail.Verdict.Seconds))
		}
		if noEnd.Verdict.Evaluation != record.EvaluationPass || !near(noEnd.Verdict.Seconds, 3) {
			t.Fatalf("verdict of a record without an update end time %+v (seconds %s), want 3 s after arrival",
				noEnd.Verdict, secs(noEnd.Verdict.Seconds))
		}

		time.Sleep(7 * time.Second)
		synctest.Wait()
		if got := next.snapshot(); len(got) != 5 || got[4] != slow {
			t.Fatalf("after the timeout: %d forwarded, want 5 ending with the pending one", len(got))
		}
		if slow.Verdict.Evaluation != record.EvaluationUnknown || slow.Verdict.Seconds != nil {
			t.Fatalf("timed-out verdict %+v", slow.Verdict)
		}
		st := w.Stats()
		if st.Resolved != 3 || st.TimedOut != 1 || st.Passthrough != 1 || st.Pending != 0 {
			t.Fatalf("stats %+v", st)
		}
		if err := w.Close(); err != nil {
			t.Fatal(err)
		}
		if !next.closed {
			t.Fatal("Close did not close the next sink")
		}
	})
}

func TestWatcherBoundedAndClose(t *testing.T) {
	synctest.Test(t, func(t *testing.T) {
		src := &fakeSource{known: map[Key]Result{}, err: errors.New("database down")}
		next := &collect{}
		w := NewWatcher(src, Options{Settings: Settings{Timeout: time.Hour, PollInterval: time.Second,
			MaxPending: 100}}, next)
		for i := range 150 {
			w.Observe(accepted("a", i, 1))
		}
		if st := w.Stats(); st.Pending != 100 || st.Overflowed != 50 {
			t.Fatalf("stats %+v, want 100 pending and 50 overflowed", st)
		}
		if got := len(next.snapshot()); got != 50 {
			t.Fatalf("%d forwarded at once, want the 50 over the bound", got)
		}
		time.Sleep(5 * time.Second) // lookups fail; records keep waiting, nothing is lost
		synctest.Wait()
		if st := w.Stats(); st.Pending != 100 || st.PollErrors == 0 {
			t.Fatalf("stats %+v while the source fails", st)
		}
		reg := prometheus.NewRegistry()
		reg.MustRegister(w.Collector())
		want := `
# HELP attestload_verdict_pending_records Records the verdict watcher holds, waiting for their verdict.
# TYPE attestload_verdict_pending_records gauge
attestload_verdict_pending_records 100
# HELP attestload_verdict_records_total Records forwarded by the verdict watcher, by how: resolved, timeout, overflow (held bound reached), passthrough (nothing to wait for).
# TYPE attestload_verdict_records_total counter
attestload_verdict_records_total{result="overflow"} 50
attestload_verdict_records_total{result="passthrough"} 0
attestload_verdict_records_total{result="resolved"} 0
attestload_verdict_records_total{result="timeout"} 0
`
		if err := testutil.GatherAndCompare(reg, strings.NewReader(want), metrics.NameVerdictPending, metrics.NameVerdictRecords); err != nil {
			t.Fatal(err)
		}
		if problems, _ := testutil.GatherAndLint(reg); len(problems) > 0 {
			t.Fatalf("promlint: %+v", problems)
		}
		if err := w.Close(); err != nil {
			t.Fatal(err)
		}
		if got := len(next.snapshot()); got != 150 {
			t.Fatalf("after Close %d forwarded, want all 150", got)
		}
		late := accepted("z", 1, 1)
		w.Observe(late)
		if got := next.snapshot(); got[len(got)-1] != late {
			t.Fatal("a record observed after Close was not forwarded")
		}
	})
}

func TestWatcherNoSource(t *testing.T) {
	next := &collect{}
	w := NewWatcher(nil, Options{}, next)
	r := accepted("a", 1, 1)
	w.Observe(r)
	if got := next.snapshot(); len(got) != 1 || r.Verdict.Evaluation != record.EvaluationUnknown {
		t.Fatalf("without a source the record must pass through as unknown: %v %+v", got, r.Verdict)
	}
	if err := w.Close(); err != nil {
		t.Fatal(err)
	}
}

func TestSourceFunc(t *testing.T) {
	f := SourceFunc(func(agent string, index int) (string, string, bool, bool) {
		switch index {
		case 0:
			return "pass", "", true, true
		case 1:
			return "fail", "broken_evidence_chain", true, true
		case 2:
			return "pending", "", false, true
		default:
			return "", "", false, false
		}
	})
	got, err := f.Resolve(context.Background(), []Key{{"a", 0}, {"a", 1}, {"a", 2}, {"a", 3}})
	if err != nil {
		t.Fatal(err)
	}
	if len(got) != 3 || got[Key{"a", 0}].Evaluation != "pass" || *got[Key{"a", 1}].FailureReason != "broken_evidence_chain" ||
		got[Key{"a", 3}].Evaluation != record.EvaluationUnknown {
		t.Fatalf("resolved %+v", got)
	}
	if _, pending := got[Key{"a", 2}]; pending {
		t.Fatal("a pending attestation was resolved")
	}
}

func TestSettle(t *testing.T) {
	rows := []row{{index: 5, evaluation: "fail", reason: "policy_violation"}, {index: 7, evaluation: "pass"},
		{index: 8, evaluation: "pending"}}
	for _, c := range []struct {
		index int
		want  string
		ok    bool
	}{
		{5, "fail", true},
		{4, "pass", true},    // vanished, a later one passed: §5.3 rolling deletion
		{6, "pass", true},    // vanished between a failed and a passed one
		{8, "", false},       // still pending
		{9, "unknown", true}, // vanished, nothing later passed
	} {
		got, ok := settle(rows, c.index)
		if ok != c.ok || got.Evaluation != c.want {
			t.Errorf("settle(%d) = %+v, %v; want %q, %v", c.index, got, ok, c.want, c.ok)
		}
	}
	if got, _ := settle([]row{{index: 3, evaluation: "fail"}}, 2); got.Evaluation != record.EvaluationUnknown {
		t.Errorf("vanished with only a later failure: %+v, want unknown", got)
	}
}

// The run's last cycles are still being verified when it ends: Close waits for their verdicts up to FinalWait,
// and what is still pending then goes on as unknown.
func TestWatcherCloseWaitsForLastVerdicts(t *testing.T) {
	synctest.Test(t, func(t *testing.T) {
		src := &fakeSource{known: map[Key]Result{}}
		next := &collect{}
		w := NewWatcher(src, Options{Settings: Settings{Timeout: time.Minute, PollInterval: time.Second},
			FinalWait: 5 * time.Second}, next)
		start := float64(time.Now().UnixNano()) / 1e9
		late, never := accepted("a", 1, start), accepted("b", 1, start)
		w.Observe(late)
		w.Observe(never)
		go func() {
			time.Sleep(2 * time.Second)
			src.set(Key{"a", 1}, Result{Evaluation: record.EvaluationPass})
		}()
		t0 := time.Now()
		if err := w.Close(); err != nil {
			t.Fatal(err)
		}
		if waited := time.Since(t0); waited != 5*time.Second {
			t.Fatalf("Close waited %s, want FinalWait (5s) since one verdict never came", waited)
		}
		if late.Verdict.Evaluation != record.EvaluationPass || late.Verdict.Seconds == nil {
			t.Fatalf("verdict that arrived during Close: %+v", late.Verdict)
		}
		if never.Verdict.Evaluation != record.EvaluationUnknown {
			t.Fatalf("verdict that never arrived: %+v", never.Verdict)
		}
		if got := next.snapshot(); len(got) != 2 || !next.closed {
			t.Fatalf("forwarded %d (closed %v), want both and closed", len(got), next.closed)
		}
	})
}

func TestWatcherCloseReturnsWhenNothingPending(t *testing.T) {
	synctest.Test(t, func(t *testing.T) {
		src := &fakeSource{known: map[Key]Result{{"a", 1}: {Evaluation: record.EvaluationFail}}}
		next := &collect{}
		w := NewWatcher(src, Options{Settings: Settings{Timeout: time.Minute, PollInterval: time.Second},
			FinalWait: time.Hour}, next)
		r := accepted("a", 1, float64(time.Now().UnixNano())/1e9)
		w.Observe(r)
		t0 := time.Now()
		w.Close()
		if waited := time.Since(t0); waited != 0 || r.Verdict.Evaluation != record.EvaluationFail {
			t.Fatalf("Close waited %s with verdict %+v; want at once with fail", waited, r.Verdict)
		}
		src.err = errors.New("database down")
		w2 := NewWatcher(src, Options{Settings: Settings{Timeout: time.Minute, PollInterval: time.Second},
			FinalWait: time.Hour}, &collect{})
		w2.Observe(accepted("b", 1, 0))
		t0 = time.Now()
		w2.Close()
		if waited := time.Since(t0); waited != 0 {
			t.Fatalf("Close with a failing source waited %s; it must not wait for a source that is down", waited)
		}
	})
}

func TestWatcherHurryEndsTheFinalWait(t *testing.T) {
	synctest.Test(t, func(t *testing.T) {
		src := &fakeSource{known: map[Key]Result{}}
		next := &collect{}
		w := NewWatcher(src, Options{Settings: Settings{Timeout: time.Minute, PollInterval: time.Second},
			FinalWait: time.Minute}, next)
		r := accepted("a", 1, float64(time.Now().UnixNano())/1e9)
		w.Observe(r)
		go func() {
			time.Sleep(3 * time.Second)
			w.Hurry()
		}()
		t0 := time.Now()
		w.Close()
		if waited := time.Since(t0); waited != 3*time.Second || r.Verdict.Evaluation != record.EvaluationUnknown {
			t.Fatalf("Close waited %s (verdict %+v); want it to stop at Hurry after 3s with unknown", waited, r.Verdict)
		}
		if len(next.snapshot()) != 1 || !next.closed {
			t.Fatal("the pending record was not forwarded, or next not closed")
		}
	})
}

// lockedBuffer is a log destination safe for the watcher's goroutine.
type lockedBuffer struct {
	mu sync.Mutex
	b  strings.Builder
}

func (l *lockedBuffer) Write(p []byte) (int, error) {
	l.mu.Lock()
	defer l.mu.Unlock()
	return l.b.Write(p)
}
func (l *lockedBuffer) String() string { l.mu.Lock(); defer l.mu.Unlock(); return l.b.String() }

// An outage of the source is logged once when it starts and once when it ends, not on every failed poll; and
// once most held records are resolved (the order list is compacted), the rest still time out on schedule and every
// record is forwarded exactly once.
func TestWatcherOutageLogAndCompaction(t *testing.T) {
	synctest.Test(t, func(t *testing.T) {
		src := &fakeSource{known: map[Key]Result{}, err: errors.New("database down")}
		next := &collect{}
		logs := &lockedBuffer{}
		w := NewWatcher(src, Options{Settings: Settings{Timeout: 20 * time.Second, PollInterval: time.Second},
			Logger: slog.New(slog.NewTextHandler(logs, nil))}, next)
		for i := range 100 {
			w.Observe(accepted("a", i, 1))
		}
		time.Sleep(3500 * time.Millisecond)
		synctest.Wait()
		if n := strings.Count(logs.String(), "verdict lookup failing"); n != 1 || w.Stats().PollErrors != 3 {
			t.Fatalf("after 3 failed polls: %d 'failing' lines, %d poll errors; want 1 and 3\n%s", n,
				w.Stats().PollErrors, logs.String())
		}
		src.mu.Lock()
		src.err = nil
		for i := range 90 {
			src.known[Key{"a", i}] = Result{Evaluation: record.EvaluationPass}
		}
		src.mu.Unlock()
		time.Sleep(2 * time.Second)
		synctest.Wait()
		if n := strings.Count(logs.String(), "verdict lookup recovered"); n != 1 {
			t.Fatalf("%d 'recovered' lines, want 1\n%s", n, logs.String())
		}
		if st := w.Stats(); st.Resolved != 90 || st.Pending != 10 {
			t.Fatalf("stats %+v, want 90 resolved and 10 pending", st)
		}
		// The ten left are due at 20 s after they were observed.
		time.Sleep(15 * time.Second)
		synctest.Wait()
		st := w.Stats()
		if st.TimedOut != 10 || st.Pending != 0 {
			t.Fatalf("after the timeout: stats %+v, want the 10 left timed out", st)
		}
		seen := map[int]int{}
		for _, r := range next.snapshot() {
			seen[*r.AttestationIndex]++
		}
		for i := range 100 {
			if seen[i] != 1 {
				t.Fatalf("record %d forwarded %d times, want once", i, seen[i])
			}
		}
		if err := w.Close(); err != nil {
			t.Fatal(err)
		}
	})
}

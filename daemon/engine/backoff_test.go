package engine

import (
	"bytes"
	"context"
	"log/slog"
	"strings"
	"sync"
	"sync/atomic"
	"testing"
	"testing/synctest"
	"time"

	"github.com/attestload/attestload/attestation/record"
)

// downRunner fails every cycle that starts while the verifier is down (a refused connection, no HTTP answer) and
// succeeds otherwise, answering 202.
type downRunner struct {
	start    time.Time
	downFrom time.Duration
	downTo   time.Duration
	took     time.Duration

	mu      sync.Mutex
	perDown map[int]int // cycles per agent started while down
	all     int
}

func (d *downRunner) Cycle(ctx context.Context, agent, task, worker int) *record.Record {
	now := time.Now()
	at := now.Sub(d.start)
	down := at >= d.downFrom && at < d.downTo
	d.mu.Lock()
	d.all++
	if down {
		d.perDown[agent]++
	}
	d.mu.Unlock()
	r := &record.Record{AgentIndex: agent, TaskIndex: task, WorkerIndex: worker, StartTime: unixSeconds(now)}
	att := record.Attempt{Action: record.ActionCreate, StartTime: unixSeconds(now)}
	select {
	case <-time.After(d.took):
	case <-ctx.Done():
		r.Outcome = record.OutcomeAborted
		return r
	}
	att.EndTime = unixSeconds(time.Now())
	if down {
		class := record.ClassConnRefused
		att.Error = &class
		r.Outcome, r.Error = record.OutcomeFail, &class
	} else {
		st := 201
		att.Status = &st
		r.Outcome = record.OutcomeSuccess
	}
	r.CreateAttempts = []record.Attempt{att}
	r.EndTime = att.EndTime
	return r
}

func (d *downRunner) NotBefore(int) time.Time { return time.Time{} }

type backoffObs struct {
	nopObserver
	maxBacking, backing atomic.Int64
	up                  atomic.Int32 // 0 unknown, 1 up, 2 down
	outages             atomic.Int32
}

func (o *backoffObs) SetBackingOff(n int) {
	o.backing.Store(int64(n))
	for m := o.maxBacking.Load(); int64(n) > m && !o.maxBacking.CompareAndSwap(m, int64(n)); m = o.maxBacking.Load() {
	}
}
func (o *backoffObs) SetVerifierUp(up bool) {
	if up {
		o.up.Store(1)
	} else {
		o.up.Store(2)
	}
}
func (o *backoffObs) OutageStarted() { o.outages.Add(1) }

// An outage costs nothing: in every model, agents back off after a failure, so a minute of a closed port yields a
// handful of records per agent, not thousands; the outage is logged once each way, counted, and returned as a time
// range; after it the agents come back and succeed.
func TestOutageBacksOffInEveryModel(t *testing.T) {
	const agents = 20
	for _, model := range []string{ModelClosed, ModelFleet, ModelRate} {
		t.Run(model, func(t *testing.T) {
			synctest.Test(t, func(t *testing.T) {
				dr := &downRunner{start: time.Now(), downFrom: 10 * time.Second, downTo: 70 * time.Second,
					took: 5 * time.Millisecond, perDown: map[int]int{}}
				if model == ModelClosed {
					dr.took = time.Second // back to back once the verifier is back: keep the cycle count small
				}
				s := Schedule{Model: model, Agents: agents, Workers: agents, Duration: 200 * time.Second,
					DrainTimeout: time.Second, Interval: 2 * time.Second, Backoff: Backoff{Initial: 2 * time.Second, Max: time.Minute}}
				if model == ModelRate {
					s.Pacer, _ = NewStagedPacer(20, []Stage{{Duration: 200 * time.Second, Target: 20}})
				}
				var logs bytes.Buffer
				obs := &backoffObs{}
				sink := &collect{}
				e, err := New(dr, s, WithResultsSink(sink), WithObserver(obs),
					WithLogger(slog.New(slog.NewTextHandler(&logs, nil))),
					WithTransportErrorDetail(func() string { return "dial tcp 127.0.0.1:1: connect: connection refused" }))
				if err != nil {
					t.Fatal(err)
				}
				st, err := runBounded(t, e, t.Context())
				if err != nil {
					t.Fatal(err)
				}
				worst := 0
				for a := range agents {
					worst = max(worst, dr.perDown[a])
				}
				// Waits of at least 1, 2, 4, 8, 16, 30 s: the seventh attempt comes after 61 s at the earliest.
				if worst > 7 {
					t.Fatalf("an agent ran %d cycles in the 60 s outage, want at most 7", worst)
				}
				if obs.maxBacking.Load() != agents || obs.backing.Load() != 0 {
					t.Fatalf("backing off: max %d, at the end %d; want %d and 0", obs.maxBacking.Load(), obs.backing.Load(), agents)
				}
				if obs.up.Load() != 1 || obs.outages.Load() != 1 {
					t.Fatalf("verifier up state %d, outages %d; want up again after one outage", obs.up.Load(), obs.outages.Load())
				}
				if len(st.Outages) != 1 {
					t.Fatalf("outages %+v, want one", st.Outages)
				}
				o := st.Outages[0]
				from, to := o.Start-unixSeconds(dr.start), o.End-unixSeconds(dr.start)
				if from < 10 || from > 11 || to < 70 || to > 135 || o.Ongoing || o.Error != record.ClassConnRefused {
					t.Fatalf("outage %+v is %.1f..%.1f s into the run; want from 10 s to after 70 s", o, from, to)
				}
				l := logs.String()
				if strings.Count(l, "verifier unreachable") != 1 || strings.Count(l, "verifier reachable again") != 1 ||
					!strings.Contains(l, "connection refused") || !strings.Contains(l, "outage=") {
					t.Fatalf("want one warning each way, with the error detail and the outage length:\n%s", l)
				}
				ok := 0
				for _, r := range sink.recs {
					if r.Outcome == record.OutcomeSuccess && r.StartTime-unixSeconds(dr.start) > 135 {
						ok++
					}
				}
				if ok == 0 {
					t.Fatal("no successful cycle after the outage")
				}
				if model == ModelRate && st.Dropped < 20*50 {
					t.Fatalf("rate model dropped %d ticks; want most of the outage's 20/s dropped", st.Dropped)
				}
			})
		})
	}
}

// Without backoff (max 0) the closed model retries back to back: the bound above comes from the backoff.
func TestNoBackoffRetriesBackToBack(t *testing.T) {
	synctest.Test(t, func(t *testing.T) {
		dr := &downRunner{start: time.Now(), downTo: time.Hour, took: 5 * time.Millisecond, perDown: map[int]int{}}
		e, _ := New(dr, Schedule{Model: ModelClosed, Agents: 2, Workers: 2, Duration: 10 * time.Second},
			WithResultsSink(&collect{}))
		st, _ := runBounded(t, e, t.Context())
		if st.Fail < 1000 {
			t.Fatalf("%d failed cycles in 10 s without backoff; want back-to-back retries", st.Fail)
		}
		if len(st.Outages) != 1 || !st.Outages[0].Ongoing {
			t.Fatalf("outages %+v; want one, ongoing at the end", st.Outages)
		}
	})
}

// Sporadic failures among answered requests are no outage.
func TestSporadicFailuresAreNoOutage(t *testing.T) {
	var logs bytes.Buffer
	tr := newOutageTracker(slog.New(slog.NewTextHandler(&logs, nil)), nil, nil, 100)
	refused := record.ClassConnRefused
	st := 202
	for i := range 100 {
		r := &record.Record{StartTime: float64(i), Outcome: record.OutcomeSuccess,
			CreateAttempts: []record.Attempt{{Status: &st, EndTime: float64(i)}}}
		if i%3 == 0 {
			r = &record.Record{StartTime: float64(i), Outcome: record.OutcomeFail,
				CreateAttempts: []record.Attempt{{Error: &refused, EndTime: float64(i)}}}
		}
		tr.observe(r)
	}
	if o := tr.finish(time.Now()); len(o) != 0 || logs.Len() != 0 {
		t.Fatalf("outages %+v, logs %s", o, logs.String())
	}
}

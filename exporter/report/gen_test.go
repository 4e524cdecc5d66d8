package report

import (
	"bytes"
	"encoding/json"
	"math"
	"math/rand/v2"
	"testing"

	"github.com/attestload/attestload/attestation/record"
)

// genRecords produces n deterministic schema-1 records spread over span seconds from start, with sessions,
// retries, failures, aborted cycles, verdicts of every kind and scheduling lateness.
func genRecords(t testing.TB, seed uint64, n int, start, span float64) []byte {
	r := rand.New(rand.NewPCG(seed, 42))
	var buf bytes.Buffer
	p := func(v float64) *float64 { return &v }
	pi := func(v int) *int { return &v }
	pb := func(v bool) *bool { return &v }
	ps := func(v string) *string { return &v }
	pc := func(v record.ErrorClass) *record.ErrorClass { return &v }
	attemptAt := func(action record.Action, method string, at, dur float64, ok bool, status int, errc record.ErrorClass, retry int) record.Attempt {
		a := record.Attempt{Action: action, Method: method, URL: "https://127.0.0.1:8881/v3/x", StartTime: at,
			EndTime: at + dur, Duration: p(dur), OK: pb(ok), Conflicts: pb(status == 409), RetryAfter: pi(retry),
			RequestID: "req", BytesSent: 600, BytesRecv: 300}
		if status != 0 {
			a.Status = pi(status)
		}
		if errc != "" {
			a.Error = &errc
		}
		return a
	}
	for i := range n {
		t0 := start + span*float64(i)/float64(n) + r.Float64()
		lat := math.Exp(r.NormFloat64()*0.5 - 2)
		rec := record.Record{AgentIndex: i % 37, TaskIndex: i / 37, WorkerIndex: i % 4, Schema: record.SchemaVersion,
			RunID: "run-1", Instance: "host-a", AgentID: "agent", StartTime: t0, ScheduledTime: p(t0 - 0.01)}
		late := 0.0
		if r.IntN(10) == 0 {
			late = r.Float64() * 2
		}
		rec.LateSeconds = p(late)
		at := t0
		if i%8 == 0 {
			d1, d2 := lat/3, lat/2
			rec.SessionAttempts = []record.Attempt{
				attemptAt(record.ActionSessionCreate, "POST", at, d1, true, 200, "", 0),
				attemptAt(record.ActionSessionPoP, "PATCH", at+d1, d2, true, 200, "", 0)}
			rec.SessionDuration = d1 + d2
			at += d1 + d2
		}
		cd := lat
		if r.IntN(12) == 0 { // a 409 retried after 1 s
			rec.CreateAttempts = append(rec.CreateAttempts, attemptAt(record.ActionCreate, "POST", at, cd/4, false, 409,
				record.ClassConflict, 1))
			rec.CreateDuration += cd / 4
			at += cd/4 + 1
		}
		switch k := r.IntN(60); {
		case k == 0: // create times out, the cycle fails
			rec.CreateAttempts = append(rec.CreateAttempts, attemptAt(record.ActionCreate, "POST", at, 5, false, 0,
				record.ClassTimeout, 0))
			rec.CreateDuration += 5
			rec.Outcome, rec.Error = record.OutcomeFail, pc(record.ClassTimeout)
			rec.Verdict = record.Verdict{Evaluation: record.EvaluationUnknown}
			rec.EndTime = at + 5
		case k == 1: // shutdown during create
			rec.CreateAttempts = append(rec.CreateAttempts, attemptAt(record.ActionCreate, "POST", at, 0.2, false, 0,
				record.ClassCanceled, 0))
			rec.CreateDuration += 0.2
			rec.Outcome, rec.Error = record.OutcomeAborted, pc(record.ClassCanceled)
			rec.Verdict = record.Verdict{Evaluation: record.EvaluationUnknown}
			rec.EndTime = at + 0.2
		default:
			rec.CreateAttempts = append(rec.CreateAttempts, attemptAt(record.ActionCreate, "POST", at, cd, true, 201, "", 0))
			rec.CreateDuration += cd
			rec.CreateSuccessful = true
			at += cd
			ud := lat * 2
			if k == 2 { // 503 retried, then accepted
				rec.UpdateAttempts = append(rec.UpdateAttempts, attemptAt(record.ActionUpdate, "PATCH", at, 0.05,
					false, 503, record.ClassUnavailable, 2))
				rec.UpdateDuration += 0.05
				at += 2.05
			}
			if k == 3 { // evidence rejected as invalid: the cycle fails
				rec.UpdateAttempts = append(rec.UpdateAttempts, attemptAt(record.ActionUpdate, "PATCH", at, ud, false,
					422, record.ClassInvalidData, 0))
				rec.UpdateDuration += ud
				rec.Outcome, rec.Error = record.OutcomeFail, pc(record.ClassInvalidData)
				rec.Verdict = record.Verdict{Evaluation: record.EvaluationUnknown}
				rec.EndTime = at + ud
				break
			}
			rec.UpdateAttempts = append(rec.UpdateAttempts, attemptAt(record.ActionUpdate, "PATCH", at, ud, true, 202, "", 0))
			rec.UpdateDuration += ud
			rec.UpdateSuccessful = true
			rec.Outcome = record.OutcomeSuccess
			rec.EndTime = at + ud
			switch v := r.IntN(40); {
			case v == 0:
				rec.Verdict = record.Verdict{Evaluation: record.EvaluationFail, FailureReason: ps("policy_violation"),
					Seconds: p(0.5 + r.Float64())}
			case v == 1:
				rec.Verdict = record.Verdict{Evaluation: record.EvaluationFail,
					FailureReason: ps("broken_evidence_chain"), Seconds: p(0.4 + r.Float64())}
			case v < 4:
				rec.Verdict = record.Verdict{Evaluation: record.EvaluationUnknown}
			default:
				rec.Verdict = record.Verdict{Evaluation: record.EvaluationPass, Seconds: p(0.3 + r.Float64()*0.5)}
			}
		}
		b, err := json.Marshal(rec)
		if err != nil {
			t.Fatal(err)
		}
		buf.Write(b)
		buf.WriteByte('\n')
	}
	return buf.Bytes()
}

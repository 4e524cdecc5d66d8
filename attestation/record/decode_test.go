package record

import (
	"bufio"
	"bytes"
	"encoding/json"
	"errors"
	"github.com/attestload/attestload/internal/sharedtest"
	"os"
	"path/filepath"
	"reflect"
	"strings"
	"testing"
	"unicode/utf8"
)

// project maps what encoding/json decoded into the fields the hand-written decoder extracts.
func project(r *Record) Line {
	conv := func(in []Attempt) []LineAttempt {
		out := []LineAttempt{}
		for _, a := range in {
			x := LineAttempt{Action: a.Action, StartTime: a.StartTime, EndTime: a.EndTime}
			if a.Duration != nil {
				x.Duration, x.HasDuration = *a.Duration, true
			}
			x.OK = a.OK != nil && *a.OK
			if a.RetryAfter != nil {
				x.RetryAfter = *a.RetryAfter
			}
			if a.Status != nil {
				x.Status, x.HasStatus = *a.Status, true
			}
			if a.Error != nil {
				x.Error = *a.Error
			}
			out = append(out, x)
		}
		return out
	}
	c := Line{
		Schema: r.Schema, AgentIndex: r.AgentIndex, WorkerIndex: r.WorkerIndex,
		CreateOK: r.CreateSuccessful, UpdateOK: r.UpdateSuccessful,
		CreateDuration: r.CreateDuration, UpdateDuration: r.UpdateDuration,
		Create: conv(r.CreateAttempts), Update: conv(r.UpdateAttempts), Session: conv(r.SessionAttempts),
		Outcome: r.Outcome, Evaluation: r.Verdict.Evaluation,
		SessionDuration: r.SessionDuration, StartTime: r.StartTime, EndTime: r.EndTime,
	}
	if r.Verdict.FailureReason != nil {
		c.FailureReason, c.HasFailureReason = *r.Verdict.FailureReason, true
	}
	if r.Verdict.Seconds != nil {
		c.VerdictSeconds, c.HasVerdictSeconds = *r.Verdict.Seconds, true
	}
	if r.Error != nil {
		c.Error = *r.Error
	}
	if r.LateSeconds != nil {
		c.LateSeconds, c.HasLateSeconds = *r.LateSeconds, true
	}
	c.Scheduled = r.ScheduledTime != nil
	c.Rebooted = r.Rebooted
	c.AgentID = []byte(r.AgentID)
	return c
}

func normalise(c Line) Line {
	for _, p := range []*[]LineAttempt{&c.Create, &c.Update, &c.Session} {
		if len(*p) == 0 {
			*p = []LineAttempt{}
		}
	}
	if len(c.AgentID) == 0 {
		c.AgentID = nil
	}
	return c
}

// checkEquivalent asserts the hand-written decoder agrees with encoding/json on line.
func checkEquivalent(t *testing.T, line []byte) {
	t.Helper()
	var rec Record
	stdErr := json.Unmarshal(line, &rec)
	var d Decoder
	var got Line
	myErr := d.Decode(line, &got)
	if bytes.Equal(bytes.TrimSpace(line), []byte("null")) {
		if myErr == nil {
			t.Fatalf("a bare null line must be malformed")
		}
		return
	}
	if stdErr != nil && (myErr == nil || errors.Is(myErr, ErrNotRecord)) {
		t.Fatalf("encoding/json error %v, decoder error %v, line %q", stdErr, myErr, line)
	}
	if stdErr != nil {
		return
	}
	// The decoder also refuses valid objects that are not records: decode the identity keys the way
	// encoding/json decodes pointer fields (last value wins, null is nil) and apply the same rule.
	var id struct {
		AgentIndex *int    `json:"agent_index"`
		TaskIndex  *int    `json:"task_index"`
		AgentID    *string `json:"agent_id"`
	}
	if err := json.Unmarshal(line, &id); err != nil {
		t.Fatalf("identity keys of %q: %v", line, err)
	}
	isRecord := id.AgentIndex != nil && id.TaskIndex != nil || id.AgentID != nil && *id.AgentID != ""
	if !isRecord {
		if !errors.Is(myErr, ErrNotRecord) {
			t.Fatalf("%q is not a record (identity %+v); decoder error %v, want ErrNotRecord", line, id, myErr)
		}
		return
	}
	if myErr != nil {
		t.Fatalf("%q is a record; decoder error %v", line, myErr)
	}
	want := normalise(project(&rec))
	got = normalise(got)
	if !reflect.DeepEqual(got, want) {
		t.Fatalf("decoded differently for %q:\n got  %+v\n want %+v", line, got, want)
	}
}

func sampleV1Line(t testing.TB) []byte {
	dur, ok, ra, st := 0.25, true, 0, 202
	reason, secs, late, sched := "policy_violation", 1.5, 0.02, 1.7e9
	errc := ErrorClass("timeout")
	rec := Record{
		AgentIndex: 3, TaskIndex: 9, WorkerIndex: 1, CreateSuccessful: true, UpdateSuccessful: true,
		CreateDuration: 0.125, UpdateDuration: 0.25,
		CreateAttempts: []Attempt{{Action: "create", Method: "POST", URL: "https://127.0.0.1/x", StartTime: 1.7e9,
			EndTime: 1.7e9 + 0.125, Duration: &dur, OK: &ok, RetryAfter: &ra, Status: &st, RequestID: "r\u00e9\"q"}},
		UpdateAttempts: []Attempt{{Action: "update", StartTime: 1.7e9 + 1, Duration: &dur, Error: &errc}},
		Schema:         1, RunID: "run", Instance: "i", AgentID: "a", Outcome: "success",
		Verdict:         Verdict{Evaluation: "fail", FailureReason: &reason, Seconds: &secs},
		SessionAttempts: []Attempt{{Action: "session_create", Duration: &dur}},
		SessionDuration: 0.25, StartTime: 1.7e9, EndTime: 1.7e9 + 2, ScheduledTime: &sched, LateSeconds: &late,
	}
	b, err := json.Marshal(rec)
	if err != nil {
		t.Fatal(err)
	}
	return b
}

// goldenDir is the old tool's report goldens in the repository's testdata.
func goldenDir(t testing.TB) string {
	t.Helper()
	return sharedtest.Testdata(t, "report-golden")
}

func goldenLines(t testing.TB) [][]byte {
	var lines [][]byte
	for _, name := range []string{"mixed-101.jsonl", "retries-102.jsonl"} {
		f, err := os.Open(filepath.Join(goldenDir(t), name))
		if err != nil {
			t.Fatalf("test data (testdata/report-golden) not readable: %v", err)
		}
		sc := bufio.NewScanner(f)
		sc.Buffer(nil, 1<<20)
		for sc.Scan() {
			lines = append(lines, append([]byte(nil), sc.Bytes()...))
		}
		f.Close()
	}
	return lines
}

func TestDecodeMatchesEncodingJSON(t *testing.T) {
	for _, l := range goldenLines(t) {
		checkEquivalent(t, l)
	}
	checkEquivalent(t, sampleV1Line(t))
	for _, l := range edgeLines {
		t.Run("", func(t *testing.T) { checkEquivalent(t, []byte(l)) })
	}
}

var edgeLines = []string{
	`{}`, ` {} `, `{"agent_index": 1.5}`, `{"agent_index": 1e2}`, `{"agent_index": -0}`, `{"agent_index": "1"}`,
	`{"AGENT_INDEX": 7}`, `{"agent_index": 7, "agent_index": null}`, `{"create_attempts": [{"ok": true}], "create_attempts": null}`,
	`{"verdict": {"evaluation": "pass"}, "verdict": {"seconds": 2}}`, `{"verdict": null}`, `{"verdict": 3}`,
	`{"update_duration": 1e999}`, `{"update_duration": 01}`, `{"x": [1, {"y": [true, false, null]}]}`,
	`{"outcome": "su\u0063cess"}`, "{\"outcome\": \"\xff\"}", `{"outcome": "a\qb"}`, `{"task_index": "x"}`,
	`{"run_id": 5}`, `{"trace_id": null}`, `{"create_attempts": [null, {"status": 409, "retry_after": 1}]}`,
	`{"create_attempts": [{"bytes_sent": 1.5}]}`, `{"create_attempts": [{"conflicts": "no"}]}`, `[1]`, `5`, `"x"`,
	`null`, `{"a":1}x`, `{"a":1`, `{"a" 1}`, `{"a":1,}`, `{"late_seconds": 0.5, "scheduled_time": 2}`,
	`{"session_attempts": [{"action": "session_pop", "error": "pop_rejected", "status": 200}]}`,
	`{"create_duration": 123456789012345678901234567890}`, `{"create_duration": -0.0}`, `{"schema": 1, "error": "timeout"}`,
	`{"verdict": {"failure_reason": "x", "failure_reason": null}}`, "{\"a\":\"\t\"}", `{"a": tru}`, `{"a": nul}`,
	`{"ſchema": 1}`, `{"agent_index": 99999999999999999999}`, `{"create_successful": 1}`,
	// Which valid objects are records.
	`{"a":1}`, `{"agent_index": 1}`, `{"task_index": 1}`, `{"agent_index": 1, "task_index": 2}`,
	`{"AGENT_INDEX": 1, "Task_Index": 2}`, `{"agent_index": 1, "task_index": null}`,
	`{"agent_index": null, "task_index": 2, "agent_index": 3}`, `{"agent_id": "x"}`, `{"agent_id": ""}`,
	`{"agent_id": null}`, `{"agent_id": "x", "agent_id": null}`, `{"Agent_ID": "\u0061"}`, `{"agent_id": 5}`,
	`{"agent_index": 1, "task_index": "x"}`, `{"verdict": {"agent_id": "x"}}`,
	`{"create_attempts": [{"agent_index": 1, "task_index": 2}]}`,
	// server_retry_after (what the verifier sent) is an integer like retry_after (what the client waited).
	`{"agent_index": 1, "task_index": 2, "session_attempts": [{"status": 429, "server_retry_after": 120}]}`,
	`{"agent_index": 1, "task_index": 2, "session_attempts": [{"status": 429, "server_retry_after": "120"}]}`,
	`{"agent_index": 1, "task_index": 2, "update_attempts": [{"Server_Retry_After": 1.5}]}`,
}

func FuzzDecodeLine(f *testing.F) {
	f.Add(sampleV1Line(f))
	for _, l := range edgeLines {
		f.Add([]byte(l))
	}
	if ls := goldenLinesNoSkip(f); len(ls) > 0 {
		for _, l := range ls[:5] {
			f.Add(l)
		}
	}
	f.Fuzz(func(t *testing.T, line []byte) {
		checkEquivalent(t, line)
	})
}

// goldenLinesNoSkip returns the lines of one shared golden file for fuzz seeds, or none when it is absent.
func goldenLinesNoSkip(t testing.TB) [][]byte {
	t.Helper()
	b, err := os.ReadFile(filepath.Join(goldenDir(t), "mixed-101.jsonl"))
	if err != nil {
		return nil
	}
	var out [][]byte
	for _, l := range strings.Split(string(b), "\n") {
		if l != "" {
			out = append(out, []byte(l))
		}
	}
	return out
}

// plainString's eight-bytes-at-a-time check agrees with the byte-by-byte rule for every byte value at every
// position of strings of several lengths.
func TestPlainStringMatchesByteRule(t *testing.T) {
	slow := func(seg []byte) bool {
		for _, b := range seg {
			if b < 0x20 || b == '\\' || b >= utf8.RuneSelf {
				return false
			}
		}
		return true
	}
	for _, n := range []int{1, 7, 8, 9, 16, 23, 40} {
		for pos := range n {
			for v := range 256 {
				seg := bytes.Repeat([]byte("a"), n)
				seg[pos] = byte(v)
				if got, want := plainString(seg), slow(seg); got != want {
					t.Fatalf("plainString(%q) = %v, want %v", seg, got, want)
				}
			}
		}
	}
}

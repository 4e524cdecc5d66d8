package client

import (
	"bytes"
	"context"
	"encoding/base64"
	"encoding/json"
	"fmt"
	"log/slog"
	"net/http"
	"strings"
	"sync"
	"testing"
	"time"

	"github.com/attestload/attestload/attestation/evidence"
	"github.com/attestload/attestload/attestation/record"
	"github.com/attestload/attestload/attestation/softtpm"
)

// fakeClock is a clock that only moves when the client sleeps, so tests can tell waiting from latency.
type fakeClock struct {
	mu     sync.Mutex
	now    time.Time
	slept  []time.Duration
	onWait func(ctx context.Context) error // optional: replaces the wait (e.g. to block until cancel)
}

func newFakeClock() *fakeClock {
	return &fakeClock{now: time.Date(2026, 11, 30, 20, 0, 0, 0, time.UTC)}
}

func (c *fakeClock) Now() time.Time {
	c.mu.Lock()
	defer c.mu.Unlock()
	c.now = c.now.Add(time.Millisecond) // every reading moves a little, like a real clock
	return c.now
}

func (c *fakeClock) Sleep(ctx context.Context, d time.Duration) error {
	c.mu.Lock()
	c.slept = append(c.slept, d)
	c.now = c.now.Add(d)
	hook := c.onWait
	c.mu.Unlock()
	if hook != nil {
		return hook(ctx)
	}
	return ctx.Err()
}

func (c *fakeClock) Slept() []time.Duration {
	c.mu.Lock()
	defer c.mu.Unlock()
	return append([]time.Duration(nil), c.slept...)
}

// newFakeClient builds a client for f with a fake clock; mod adjusts the config.
func newFakeClient(t testing.TB, f *fakeVerifier, mod func(*Config)) (*Client, *fakeClock) {
	t.Helper()
	clk := newFakeClock()
	cfg := Config{
		BaseURL:        f.srv.URL,
		HTTPClient:     f.srv.Client(),
		RequestTimeout: 5 * time.Second,
		Now:            clk.Now,
		Sleep:          clk.Sleep,
	}
	if mod != nil {
		mod(&cfg)
	}
	c, err := New(cfg)
	if err != nil {
		t.Fatal(err)
	}
	return c, clk
}

func errOf(r *record.Record) record.ErrorClass {
	if r.Error == nil {
		return ""
	}
	return *r.Error
}

func attErr(a record.Attempt) record.ErrorClass {
	if a.Error == nil {
		return ""
	}
	return *a.Error
}

func intp(p *int) string {
	if p == nil {
		return "nil"
	}
	return fmt.Sprint(*p)
}

// assertNoToken fails if the record, serialized, contains the token the fake verifier hands out.
func assertNoToken(t *testing.T, r *record.Record) {
	t.Helper()
	b, err := json.Marshal(r)
	if err != nil {
		t.Fatal(err)
	}
	if strings.Contains(string(b), "x-njhr5pnl6dfxW1cGaDMADA8rBURgAvdSoeqM5hq9g") {
		t.Fatal("the bearer token appears in the record")
	}
}

func TestCycleAgainstRecordedResponses(t *testing.T) {
	f := newFakeVerifier(t, true)
	c, _ := newFakeClient(t, f, nil)
	a := newIMAAgent(t, "vec-agent-1", 3, 4)
	ctx := context.Background()
	wantText, _, _ := a.Log.Entries(0)
	wantPCR10 := a.Log.PCR10()

	rec := c.Cycle(ctx, a, 11, 2)
	assertNoToken(t, rec)
	if rec.Outcome != record.OutcomeSuccess || rec.Error != nil {
		t.Fatalf("outcome %s error %s", rec.Outcome, errOf(rec))
	}
	if rec.Schema != 1 || rec.AgentID != "vec-agent-1" || rec.AgentIndex != 3 || rec.TaskIndex != 11 || rec.WorkerIndex != 2 {
		t.Errorf("identity fields: %+v", rec)
	}
	if len(rec.SessionAttempts) != 2 || rec.SessionAttempts[0].Action != record.ActionSessionCreate || rec.SessionAttempts[1].Action != record.ActionSessionPoP {
		t.Fatalf("session attempts: %+v", rec.SessionAttempts)
	}
	if !rec.CreateSuccessful || !rec.UpdateSuccessful || len(rec.CreateAttempts) != 1 || len(rec.UpdateAttempts) != 1 {
		t.Fatalf("create %v/%d update %v/%d", rec.CreateSuccessful, len(rec.CreateAttempts), rec.UpdateSuccessful, len(rec.UpdateAttempts))
	}
	if got := intp(rec.AttestationIndex); got != "0" {
		t.Errorf("attestation index %s, want 0 (from Location)", got)
	}
	if intp(rec.IMAOffset) != "0" || intp(rec.IMAEntriesSent) != fmt.Sprint(4) {
		t.Errorf("ima offset %s sent %s", intp(rec.IMAOffset), intp(rec.IMAEntriesSent))
	}
	if rec.Verdict.Evaluation != record.EvaluationUnknown {
		t.Errorf("verdict %q", rec.Verdict.Evaluation)
	}
	wantURL := f.srv.URL + "/v3.0/agents/vec-agent-1/attestations/latest"
	if u := rec.UpdateAttempts[0].URL; u != wantURL {
		t.Errorf("update url %q, want %q", u, wantURL)
	}
	for _, att := range append(append(rec.SessionAttempts, rec.CreateAttempts...), rec.UpdateAttempts...) {
		if att.OK == nil || !*att.OK || att.Error != nil || att.Status == nil || att.BytesSent == 0 || att.BytesRecv == 0 || att.Duration == nil {
			t.Errorf("attempt %s not filled as ok: %+v", att.Action, att)
		}
	}
	sum := *rec.CreateAttempts[0].Duration
	if rec.CreateDuration != sum || rec.StartTime == 0 || rec.EndTime < rec.StartTime {
		t.Errorf("create duration %v vs %v; times %v..%v", rec.CreateDuration, sum, rec.StartTime, rec.EndTime)
	}
	if !a.NotBefore.After(time.Date(2026, 11, 30, 20, 0, 1, 0, time.UTC)) {
		t.Errorf("NotBefore %v not moved by seconds_to_next_attestation 2", a.NotBefore)
	}

	// What was sent: the PoP certifies the raw nonce with the AK; the evidence answers the request in order.
	reqs := f.requests()
	checkPoP(t, a, reqs[1].body, "eWFxSz/pRp2FDsqc5kmLbQ==")
	checkEvidence(t, a, reqs[3].body, "1boquaZ0K3emDHbgAfMC9g==", []int{10}, wantText, wantPCR10)
	if a.LastIndex != 0 {
		t.Errorf("last index %d", a.LastIndex)
	}

	// Second cycle: token reused (no session), log grown.
	rec2 := c.Cycle(ctx, a, 12, 2)
	if rec2.Outcome != record.OutcomeSuccess || len(rec2.SessionAttempts) != 0 {
		t.Fatalf("second cycle: %s, %d session attempts", rec2.Outcome, len(rec2.SessionAttempts))
	}
	var caps struct {
		Data struct {
			Attributes struct {
				EvidenceSupported []struct {
					Type         string `json:"evidence_type"`
					Capabilities struct {
						EntryCount int `json:"entry_count"`
					} `json:"capabilities"`
				} `json:"evidence_supported"`
			} `json:"attributes"`
		} `json:"data"`
	}
	reqs = f.requests()
	if err := json.Unmarshal(reqs[4].body, &caps); err != nil {
		t.Fatal(err)
	}
	es := caps.Data.Attributes.EvidenceSupported
	if len(es) != 2 || es[1].Type != "ima_log" || es[1].Capabilities.EntryCount != 5 || a.Log.EntryCount() != 6 {
		t.Errorf("second capabilities advertise %+v, log has %d", es, a.Log.EntryCount())
	}
}

// checkPoP verifies a session PATCH body: a TPM2_Certify of the AK by itself over the raw challenge.
func checkPoP(t *testing.T, a *Agent, body []byte, challengeB64 string) {
	t.Helper()
	var doc struct {
		Data struct {
			Attributes struct {
				Provided []struct {
					Type string `json:"authentication_type"`
					Data struct {
						Message, Signature string
					} `json:"data"`
				} `json:"authentication_provided"`
			} `json:"attributes"`
		} `json:"data"`
	}
	if err := json.Unmarshal(body, &doc); err != nil {
		t.Fatal(err)
	}
	p := doc.Data.Attributes.Provided
	if len(p) != 1 || p[0].Type != "tpm_pop" {
		t.Fatalf("authentication_provided = %+v", p)
	}
	msg, _ := base64.StdEncoding.DecodeString(p[0].Data.Message)
	sig, _ := base64.StdEncoding.DecodeString(p[0].Data.Signature)
	pub, err := softtpm.ParsePublic(a.TPM.Key().Public)
	if err != nil {
		t.Fatal(err)
	}
	if err := softtpm.VerifySignature(pub, msg, sig); err != nil {
		t.Errorf("PoP signature: %v", err)
	}
	att, err := softtpm.ParseAttest(msg)
	if err != nil {
		t.Fatal(err)
	}
	nonce, _ := base64.StdEncoding.DecodeString(challengeB64)
	if string(att.ExtraData) != string(nonce) {
		t.Errorf("PoP extraData %x, want raw nonce %x", att.ExtraData, nonce)
	}
}

// checkEvidence verifies an evidence PATCH body against what was requested.
func checkEvidence(t *testing.T, a *Agent, body []byte, challengeB64 string, pcrs []int, text string, pcr10 []byte) {
	t.Helper()
	var doc struct {
		Data struct {
			Attributes struct {
				Items []struct {
					Class string          `json:"evidence_class"`
					Type  string          `json:"evidence_type"`
					Data  json.RawMessage `json:"data"`
				} `json:"evidence_collected"`
			} `json:"attributes"`
		} `json:"data"`
	}
	if err := json.Unmarshal(body, &doc); err != nil {
		t.Fatal(err)
	}
	items := doc.Data.Attributes.Items
	if len(items) != 2 || items[0].Type != "tpm_quote" || items[0].Class != "certification" || items[1].Type != "ima_log" || items[1].Class != "log" {
		t.Fatalf("evidence_collected order: %+v", items)
	}
	var q struct {
		SubjectData string `json:"subject_data"`
		Message     string `json:"message"`
		Signature   string `json:"signature"`
	}
	var ima struct {
		EntryCount int    `json:"entry_count"`
		Entries    string `json:"entries"`
	}
	if err := json.Unmarshal(items[0].Data, &q); err != nil {
		t.Fatal(err)
	}
	if err := json.Unmarshal(items[1].Data, &ima); err != nil {
		t.Fatal(err)
	}
	msg, _ := base64.StdEncoding.DecodeString(q.Message)
	sig, _ := base64.StdEncoding.DecodeString(q.Signature)
	subject, _ := base64.StdEncoding.DecodeString(q.SubjectData)
	pub, _ := softtpm.ParsePublic(a.TPM.Key().Public)
	if err := softtpm.VerifySignature(pub, msg, sig); err != nil {
		t.Errorf("quote signature: %v", err)
	}
	att, err := softtpm.ParseAttest(msg)
	if err != nil {
		t.Fatal(err)
	}
	ch, _ := base64.StdEncoding.DecodeString(challengeB64)
	if string(att.ExtraData) != string(ch) {
		t.Errorf("quote extraData %x, want %x", att.ExtraData, ch)
	}
	_, values, order, err := softtpm.ParsePCRBlob(subject)
	if err != nil {
		t.Fatal(err)
	}
	if !equalInts(order, pcrs) {
		t.Errorf("subject_data PCRs %v, want %v", order, pcrs)
	}
	if string(values[10]) != string(pcr10) {
		t.Errorf("quoted PCR 10 does not match the log sent")
	}
	n := strings.Count(text, "\n")
	if ima.Entries != text || ima.EntryCount != n {
		t.Errorf("ima entries: sent %d lines (count %d), want %d", strings.Count(ima.Entries, "\n"), ima.EntryCount, n)
	}
}

func premature(seconds string) canned {
	return canned{status: 429, header: map[string]string{"Retry-After": seconds},
		body: `{"errors":[{"status":"429","code":"premature_attestation","detail":"Cannot create attestation for agent 'x' before the configured interval has elapsed. Wait ` + seconds + ` seconds before trying again."}]}`}
}

func apiErr(status int, code, detail string) canned {
	return canned{status: status, body: fmt.Sprintf(`{"errors":[{"status":"%d","code":"%s","detail":"%s"}],"jsonapi":{"version":"1.1"}}`, status, code, detail)}
}

func TestCycleRetries(t *testing.T) {
	for _, tc := range []struct {
		name       string
		setup      func(f *fakeVerifier)
		mod        func(*Config)
		outcome    record.Outcome
		err        record.ErrorClass
		creates    int
		updates    int
		sessions   int
		slept      []time.Duration
		check      func(t *testing.T, r *record.Record, a *Agent)
		noFirstSes bool
	}{
		{
			name:    "429 premature honours Retry-After",
			setup:   func(f *fakeVerifier) { f.push("create", premature("2")) },
			outcome: record.OutcomeSuccess, creates: 2, updates: 1, sessions: 2,
			slept: []time.Duration{2 * time.Second},
			check: func(t *testing.T, r *record.Record, _ *Agent) {
				a := r.CreateAttempts[0]
				if attErr(a) != record.ClassRateLimited || a.Code != "premature_attestation" || intp(a.RetryAfter) != "2" || *a.OK {
					t.Errorf("429 attempt: %+v", a)
				}
				if r.CreateDuration > 1 {
					t.Errorf("create duration %v includes the 2 s sleep", r.CreateDuration)
				}
			},
		},
		{
			name:    "429 longer than MaxRetryAfter fails without sleeping",
			setup:   func(f *fakeVerifier) { f.push("create", premature("3600")) },
			mod:     func(c *Config) { c.MaxRetryAfter = time.Minute },
			outcome: record.OutcomeFail, err: record.ClassRateLimited, creates: 1, updates: 0, sessions: 2,
			check: func(t *testing.T, r *record.Record, a *Agent) {
				if r.CreateAttempts[0].RetryAfter != nil {
					t.Error("retry_after set though no retry happened")
				}
				if time.Until(a.NotBefore) < 30*time.Minute && a.NotBefore.Sub(time.Date(2026, 11, 30, 20, 0, 0, 0, time.UTC)) < 59*time.Minute {
					t.Errorf("NotBefore %v not an hour ahead", a.NotBefore)
				}
			},
		},
		{
			name: "429 on the session POST: the agent waits the block out, not the worker",
			setup: func(f *fakeVerifier) {
				f.push("session_create", canned{status: 429, header: map[string]string{"Retry-After": "60"},
					body: `{"errors":[{"status":"429","title":"Too Many Requests","detail":"Rate limit exceeded. Try again in 60 seconds."}]}`})
			},
			outcome: record.OutcomeFail, err: record.ClassRateLimited, creates: 0, updates: 0, sessions: 1,
			check: func(t *testing.T, r *record.Record, a *Agent) {
				s := r.SessionAttempts[0]
				if s.RetryAfter != nil || intp(s.ServerRetryAfter) != "60" {
					t.Errorf("session attempt retry_after %s, server_retry_after %s; want none and 60",
						intp(s.RetryAfter), intp(s.ServerRetryAfter))
				}
				if a.NotBefore.IsZero() {
					t.Error("NotBefore not set: the scheduler would bring the agent back into the block")
				}
			},
		},
		{
			name:    "server Retry-After recorded on a retried answer too",
			setup:   func(f *fakeVerifier) { f.push("create", premature("1")) },
			outcome: record.OutcomeSuccess, creates: 2, updates: 1, sessions: 2,
			slept: []time.Duration{time.Second},
			check: func(t *testing.T, r *record.Record, _ *Agent) {
				if a := r.CreateAttempts[0]; intp(a.ServerRetryAfter) != "1" || intp(a.RetryAfter) != "1" {
					t.Errorf("429 attempt: server_retry_after %s retry_after %s, want 1 and 1", intp(a.ServerRetryAfter), intp(a.RetryAfter))
				}
				if a := r.CreateAttempts[1]; a.ServerRetryAfter != nil {
					t.Errorf("201 attempt has server_retry_after %s", intp(a.ServerRetryAfter))
				}
			},
		},
		{
			name:    "409 conflict retried after 1 s",
			setup:   func(f *fakeVerifier) { f.push("create", apiErr(409, "conflict", "concurrent")) },
			outcome: record.OutcomeSuccess, creates: 2, updates: 1, sessions: 2,
			slept: []time.Duration{time.Second},
			check: func(t *testing.T, r *record.Record, _ *Agent) {
				a := r.CreateAttempts[0]
				if a.Conflicts == nil || !*a.Conflicts || intp(a.RetryAfter) != "1" || attErr(a) != record.ClassConflict {
					t.Errorf("409 attempt: %+v", a)
				}
			},
		},
		{
			name:    "403 challenges_expired renegotiates",
			setup:   func(f *fakeVerifier) { f.push("update", apiErr(403, "challenges_expired", "expired")) },
			outcome: record.OutcomeSuccess, creates: 2, updates: 2, sessions: 2,
			check: func(t *testing.T, r *record.Record, _ *Agent) {
				if attErr(r.UpdateAttempts[0]) != record.ClassForbidden || r.UpdateAttempts[0].Code != "challenges_expired" {
					t.Errorf("403 attempt: %+v", r.UpdateAttempts[0])
				}
			},
		},
		{
			name: "403 evidence_immutable renegotiates, bounded",
			setup: func(f *fakeVerifier) {
				for range 5 {
					f.push("update", apiErr(403, "evidence_immutable", "immutable"))
				}
			},
			mod:     func(c *Config) { c.MaxRetries = 2 },
			outcome: record.OutcomeFail, err: record.ClassForbidden, creates: 3, updates: 3, sessions: 2,
		},
		{
			name:    "403 other code fails",
			setup:   func(f *fakeVerifier) { f.push("update", apiErr(403, "old_attestation", "old")) },
			outcome: record.OutcomeFail, err: record.ClassForbidden, creates: 1, updates: 1, sessions: 2,
		},
		{
			name:    "401 on POST re-authenticates once",
			setup:   func(f *fakeVerifier) { f.push("create", apiErr(401, "", "Invalid authentication token")) },
			outcome: record.OutcomeSuccess, creates: 2, updates: 1, sessions: 4,
			check: func(t *testing.T, r *record.Record, _ *Agent) {
				if attErr(r.CreateAttempts[0]) != record.ClassAuth {
					t.Errorf("401 attempt: %+v", r.CreateAttempts[0])
				}
			},
		},
		{
			name:    "401 on PATCH re-authenticates and resends",
			setup:   func(f *fakeVerifier) { f.push("update", apiErr(401, "", "Authentication token expired")) },
			outcome: record.OutcomeSuccess, creates: 1, updates: 2, sessions: 4,
		},
		{
			name: "401 twice fails auth",
			setup: func(f *fakeVerifier) {
				f.push("create", apiErr(401, "", "bad"), apiErr(401, "", "bad"))
			},
			outcome: record.OutcomeFail, err: record.ClassAuth, creates: 2, updates: 0, sessions: 4,
		},
		{
			name: "422 evidence order is the verifier's bug",
			setup: func(f *fakeVerifier) {
				f.push("update", apiErr(422, "invalid_resource_data", "Evidence items must appear in the same order as the evidence requested"))
			},
			outcome: record.OutcomeFail, err: record.ClassEvidenceOrder, creates: 1, updates: 1, sessions: 2,
		},
		{
			name: "422 other is invalid data",
			setup: func(f *fakeVerifier) {
				f.push("update", apiErr(422, "invalid_resource_data", "subject_data lacks PCR 10"))
			},
			outcome: record.OutcomeFail, err: record.ClassInvalidData, creates: 1, updates: 1, sessions: 2,
		},
		{
			name: "503 without Retry-After backs off then fails",
			setup: func(f *fakeVerifier) {
				f.push("create", canned{status: 503}, canned{status: 503}, canned{status: 503})
			},
			mod:     func(c *Config) { c.MaxRetries = 2 },
			outcome: record.OutcomeFail, err: record.ClassUnavailable, creates: 3, sessions: 2,
			slept: []time.Duration{time.Second, 2 * time.Second},
			check: func(t *testing.T, r *record.Record, _ *Agent) {
				if intp(r.CreateAttempts[0].RetryAfter) != "1" || intp(r.CreateAttempts[1].RetryAfter) != "2" || r.CreateAttempts[2].RetryAfter != nil {
					t.Errorf("retry_after: %s %s %s", intp(r.CreateAttempts[0].RetryAfter), intp(r.CreateAttempts[1].RetryAfter), intp(r.CreateAttempts[2].RetryAfter))
				}
			},
		},
		{
			name: "503 verification_in_progress with Retry-After",
			setup: func(f *fakeVerifier) {
				f.push("create", canned{status: 503, header: map[string]string{"Retry-After": "3"}})
			},
			outcome: record.OutcomeSuccess, creates: 2, updates: 1, sessions: 2,
			slept: []time.Duration{3 * time.Second},
		},
		{
			name: "500 with empty body retried",
			setup: func(f *fakeVerifier) {
				f.push("update", canned{status: 500, header: map[string]string{"Content-Type": "text/html; charset=UTF-8"}})
			},
			outcome: record.OutcomeSuccess, creates: 1, updates: 2, sessions: 2,
			slept: []time.Duration{time.Second},
		},
		{
			name:    "415 fails as http_status",
			setup:   func(f *fakeVerifier) { f.push("create", canned{status: 415}) },
			outcome: record.OutcomeFail, err: record.ClassHTTPStatus, creates: 1, sessions: 2,
		},
		{
			name:    "404 agent unknown",
			setup:   func(f *fakeVerifier) { f.push("create", apiErr(404, "not_found", "agent not found")) },
			outcome: record.OutcomeFail, err: record.ClassNotFound, creates: 1, sessions: 2,
		},
		{
			name: "PoP 401 is pop_rejected",
			setup: func(f *fakeVerifier) {
				f.push("session_pop", canned{status: 401, body: `{"data":{"type":"session","attributes":{"evaluation":"fail"}}}`})
			},
			outcome: record.OutcomeFail, err: record.ClassPoPRejected, sessions: 2,
		},
		{
			name: "PoP 200 fail is pop_rejected",
			setup: func(f *fakeVerifier) {
				f.push("session_pop", canned{status: 200, body: `{"data":{"type":"session","attributes":{"evaluation":"fail","token_expires_at":null}}}`})
			},
			outcome: record.OutcomeFail, err: record.ClassPoPRejected, sessions: 2,
		},
		{
			name:    "session POST 429 honoured",
			setup:   func(f *fakeVerifier) { f.push("session_create", apiErr(429, "", "Rate limit exceeded")) },
			outcome: record.OutcomeSuccess, creates: 1, updates: 1, sessions: 3,
			slept: []time.Duration{time.Second}, // no Retry-After: backoff
		},
		{
			name:    "session POST garbage is bad_response",
			setup:   func(f *fakeVerifier) { f.push("session_create", canned{status: 200, body: `{"data":{"id":"x"}}`}) },
			outcome: record.OutcomeFail, err: record.ClassBadResponse, sessions: 1,
		},
		{
			name: "201 without challenge is bad_response",
			setup: func(f *fakeVerifier) {
				f.push("create", canned{status: 201, body: `{"data":{"attributes":{"evidence_requested":[]}}}`})
			},
			outcome: record.OutcomeFail, err: record.ClassBadResponse, creates: 1, sessions: 2,
		},
		{
			name: "huge body is bounded",
			setup: func(f *fakeVerifier) {
				f.push("create", canned{status: 201, body: `{"x":"` + strings.Repeat("a", 3<<20) + `"}`})
			},
			mod:     func(c *Config) { c.MaxBodyBytes = 1 << 20 },
			outcome: record.OutcomeFail, err: record.ClassBadResponse, creates: 1, sessions: 2,
			check: func(t *testing.T, r *record.Record, _ *Agent) {
				if got := r.CreateAttempts[0].BytesRecv; got != 1<<20+1 {
					t.Errorf("bytes received %d, want the bound + 1", got)
				}
			},
		},
	} {
		t.Run(tc.name, func(t *testing.T) {
			f := newFakeVerifier(t, false)
			if tc.setup != nil {
				tc.setup(f)
			}
			c, clk := newFakeClient(t, f, tc.mod)
			a := newIMAAgent(t, "vec-agent-1", 0, 4)
			r := c.Cycle(context.Background(), a, 0, 0)
			assertNoToken(t, r)
			if r.Outcome != tc.outcome || errOf(r) != tc.err {
				t.Errorf("outcome %s error %q, want %s %q", r.Outcome, errOf(r), tc.outcome, tc.err)
			}
			if len(r.CreateAttempts) != tc.creates || len(r.UpdateAttempts) != tc.updates || len(r.SessionAttempts) != tc.sessions {
				t.Errorf("attempts create %d update %d session %d, want %d %d %d",
					len(r.CreateAttempts), len(r.UpdateAttempts), len(r.SessionAttempts), tc.creates, tc.updates, tc.sessions)
			}
			if got := clk.Slept(); fmt.Sprint(got) != fmt.Sprint(tc.slept) && !(len(got) == 0 && len(tc.slept) == 0) {
				t.Errorf("slept %v, want %v", got, tc.slept)
			}
			if tc.check != nil {
				tc.check(t, r, a)
			}
		})
	}
}

func TestCycleAbortedOnCancel(t *testing.T) {
	f := newFakeVerifier(t, false)
	f.push("create", premature("2"))
	c, clk := newFakeClient(t, f, nil)
	ctx, cancel := context.WithCancel(context.Background())
	clk.onWait = func(ctx context.Context) error {
		cancel() // shutdown arrives while the client waits out the Retry-After
		<-ctx.Done()
		return ctx.Err()
	}
	a := newIMAAgent(t, "vec-agent-1", 0, 4)
	r := c.Cycle(ctx, a, 0, 0)
	if r.Outcome != record.OutcomeAborted || errOf(r) != record.ClassCanceled {
		t.Fatalf("outcome %s error %q", r.Outcome, errOf(r))
	}
	if len(r.CreateAttempts) != 1 || len(r.UpdateAttempts) != 0 {
		t.Errorf("attempts after cancel: %d creates %d updates", len(r.CreateAttempts), len(r.UpdateAttempts))
	}

	// Cancelled in flight: the request itself is cut off and classed canceled.
	block := make(chan struct{})
	slow := newFakeVerifier(t, false)
	slow.srv.Config.Handler = http.HandlerFunc(func(w http.ResponseWriter, r *http.Request) { <-block })
	defer close(block)
	c2, _ := newFakeClient(t, slow, nil)
	ctx2, cancel2 := context.WithTimeout(context.Background(), 50*time.Millisecond)
	defer cancel2()
	r2 := c2.Cycle(ctx2, newIMAAgent(t, "vec-agent-1", 0, 4), 0, 0)
	if r2.Outcome != record.OutcomeAborted || len(r2.SessionAttempts) != 1 || attErr(r2.SessionAttempts[0]) != record.ClassCanceled {
		t.Fatalf("in-flight cancel: outcome %s attempts %+v", r2.Outcome, r2.SessionAttempts)
	}
}

func TestCycleTransportErrors(t *testing.T) {
	t.Run("wrong CA is tls", func(t *testing.T) {
		f := newFakeVerifier(t, true)
		tr, err := NewTransport(TLSOptions{CAFile: writePEM(t, "other.pem", otherCA(t))})
		if err != nil {
			t.Fatal(err)
		}
		defer tr.CloseIdleConnections()
		c, _ := newFakeClient(t, f, func(c *Config) { c.HTTPClient, c.Transport = nil, tr })
		r := c.Cycle(context.Background(), newIMAAgent(t, "vec-agent-1", 0, 4), 0, 0)
		if r.Outcome != record.OutcomeFail || errOf(r) != record.ClassTLS || len(r.SessionAttempts) != 1 || r.SessionAttempts[0].Status != nil {
			t.Fatalf("outcome %s error %q attempts %+v", r.Outcome, errOf(r), r.SessionAttempts)
		}
	})
	t.Run("refused", func(t *testing.T) {
		f := newFakeVerifier(t, false)
		f.srv.Close()
		c, _ := newFakeClient(t, f, nil)
		r := c.Cycle(context.Background(), newIMAAgent(t, "vec-agent-1", 0, 4), 0, 0)
		if errOf(r) != record.ClassConnRefused {
			t.Fatalf("error %q, want conn_refused", errOf(r))
		}
	})
	t.Run("timeout", func(t *testing.T) {
		block := make(chan struct{})
		f := newFakeVerifier(t, false)
		f.srv.Config.Handler = http.HandlerFunc(func(w http.ResponseWriter, r *http.Request) { <-block })
		defer close(block)
		c, _ := newFakeClient(t, f, func(c *Config) { c.RequestTimeout = 30 * time.Millisecond })
		r := c.Cycle(context.Background(), newIMAAgent(t, "vec-agent-1", 0, 4), 0, 0)
		if r.Outcome != record.OutcomeFail || errOf(r) != record.ClassTimeout {
			t.Fatalf("outcome %s error %q, want fail timeout", r.Outcome, errOf(r))
		}
	})
	t.Run("reset", func(t *testing.T) {
		f := newFakeVerifier(t, false)
		f.srv.Config.Handler = http.HandlerFunc(func(w http.ResponseWriter, r *http.Request) {
			conn, _, err := w.(http.Hijacker).Hijack()
			if err == nil {
				conn.Close()
			}
		})
		c, _ := newFakeClient(t, f, nil)
		r := c.Cycle(context.Background(), newIMAAgent(t, "vec-agent-1", 0, 4), 0, 0)
		if errOf(r) != record.ClassConnReset {
			t.Fatalf("error %q, want conn_reset", errOf(r))
		}
	})
}

func TestTokenRenewedBeforeExpiry(t *testing.T) {
	f := newFakeVerifier(t, false)
	c, clk := newFakeClient(t, f, func(c *Config) { c.TokenRenewMargin = 30 * time.Second })
	a := newIMAAgent(t, "vec-agent-1", 0, 4)
	if r := c.Cycle(context.Background(), a, 0, 0); r.Outcome != record.OutcomeSuccess {
		t.Fatal(errOf(r))
	}
	// The fake hands out a token valid until 2100; pretend it expires in 20 s.
	a.tokenExpiry = clk.Now().Add(20 * time.Second)
	r := c.Cycle(context.Background(), a, 1, 0)
	if r.Outcome != record.OutcomeSuccess || len(r.SessionAttempts) != 2 {
		t.Fatalf("outcome %s with %d session attempts, want a renewal", r.Outcome, len(r.SessionAttempts))
	}
}

// With the default margin (DefaultTokenRenewMargin, 10 s) a token expiring in 5 s is renewed before the cycle, one
// expiring in a minute is used.
func TestTokenRenewMarginDefault(t *testing.T) {
	f := newFakeVerifier(t, false)
	c, clk := newFakeClient(t, f, nil)
	a := newIMAAgent(t, "vec-agent-1", 0, 4)
	if r := c.Cycle(context.Background(), a, 0, 0); r.Outcome != record.OutcomeSuccess {
		t.Fatal(errOf(r))
	}
	for i, c2 := range []struct {
		expiresIn time.Duration
		sessions  int
	}{{time.Minute, 0}, {5 * time.Second, 2}} {
		a.tokenExpiry = clk.Now().Add(c2.expiresIn)
		r := c.Cycle(context.Background(), a, i+1, 0)
		if r.Outcome != record.OutcomeSuccess || len(r.SessionAttempts) != c2.sessions {
			t.Fatalf("token expiring in %s: outcome %s with %d session attempts, want %d", c2.expiresIn, r.Outcome,
				len(r.SessionAttempts), c2.sessions)
		}
	}
}

type hookLog struct {
	mu     sync.Mutex
	events []string
}

func (h *hookLog) add(s string) { h.mu.Lock(); h.events = append(h.events, s); h.mu.Unlock() }
func (h *hookLog) CycleStart(ctx context.Context, a *Agent, task int) context.Context {
	h.add(fmt.Sprintf("cycle %s %d", a.ID, task))
	return context.WithValue(ctx, hookKey{}, "span")
}
func (h *hookLog) PhaseStart(ctx context.Context, phase record.Phase) (context.Context, func(bool)) {
	if ctx.Value(hookKey{}) != "span" {
		h.add("phase without cycle context")
	}
	h.add("start " + string(phase))
	return ctx, func(ok bool) { h.add(fmt.Sprintf("end %s %v", phase, ok)) }
}
func (h *hookLog) Request(_ context.Context, att *record.Attempt) {
	h.add(fmt.Sprintf("request %s %v", att.Action, att.OK != nil && *att.OK))
}
func (h *hookLog) CycleEnd(_ context.Context, r *record.Record) {
	id := "trace"
	r.TraceID = &id
	h.add("end cycle " + r.Outcome.String())
}

type hookKey struct{}

func TestHooks(t *testing.T) {
	f := newFakeVerifier(t, false)
	f.push("create", premature("1"))
	h := &hookLog{}
	c, _ := newFakeClient(t, f, func(c *Config) { c.Hooks = h })
	r := c.Cycle(context.Background(), newIMAAgent(t, "vec-agent-1", 0, 4), 5, 0)
	want := []string{
		"cycle vec-agent-1 5",
		"start session", "request session_create true", "request session_pop true", "end session true",
		"start negotiate", "request create false", "request create true", "end negotiate true",
		"start evidence", "request update true", "end evidence true",
		"end cycle success",
	}
	if strings.Join(h.events, "\n") != strings.Join(want, "\n") {
		t.Errorf("hook events:\n%s\nwant:\n%s", strings.Join(h.events, "\n"), strings.Join(want, "\n"))
	}
	if r.TraceID == nil || *r.TraceID != "trace" {
		t.Error("CycleEnd could not set the trace id")
	}
}

func TestNewConfigErrors(t *testing.T) {
	for _, tc := range []struct {
		cfg  Config
		want string
	}{
		{Config{}, "base url is empty"},
		{Config{BaseURL: "ftp://h:1"}, "scheme must be http or https"},
		{Config{BaseURL: "https://"}, "no host"},
		{Config{BaseURL: "https://h:1/?a=b"}, "no query"},
		{Config{BaseURL: "https://u:p@h:1"}, "user information"},
		{Config{BaseURL: "https://h:1", APIPrefix: "v3.1"}, `api prefix "v3.1"`},
		{Config{BaseURL: "https://h:1", ExtraDataEncoding: "hex"}, `extra data encoding "hex"`},
		{Config{BaseURL: "https://h:1", RequestTimeout: -1}, "request timeout"},
		{Config{BaseURL: "https://h:1", MaxBodyBytes: -1}, "max body bytes"},
	} {
		_, err := New(tc.cfg)
		if err == nil || !strings.Contains(err.Error(), tc.want) {
			t.Errorf("New(%+v) error = %v, want %q", tc.cfg, err, tc.want)
		}
	}
	c, err := New(Config{BaseURL: "https://127.0.0.1:8881/", APIPrefix: "v3"})
	if err != nil {
		t.Fatal(err)
	}
	a := &Agent{ID: "a b/c"}
	if u := a.urlsFor(c.base, c.prefix).create; u != "https://127.0.0.1:8881/v3/agents/a%20b%2Fc/attestations" {
		t.Errorf("create url %q", u)
	}
}

func TestLogsCarryNoToken(t *testing.T) {
	f := newFakeVerifier(t, false)
	f.push("update", apiErr(401, "", "Invalid authentication token"), apiErr(401, "", "Invalid authentication token"))
	var buf bytes.Buffer
	logger := slog.New(slog.NewTextHandler(&buf, &slog.HandlerOptions{Level: slog.LevelDebug}))
	c, _ := newFakeClient(t, f, func(c *Config) { c.Logger = logger })
	r := c.Cycle(context.Background(), newIMAAgent(t, "vec-agent-1", 0, 4), 0, 0)
	if errOf(r) != record.ClassAuth {
		t.Fatalf("error %q", errOf(r))
	}
	out := buf.String()
	if !strings.Contains(out, "attempt failed") || !strings.Contains(out, "Invalid authentication token") {
		t.Fatalf("failed attempts not logged: %q", out)
	}
	if strings.Contains(out, "x-njhr5pnl6dfxW1cGaDMADA8rBURgAvdSoeqM5hq9g") {
		t.Fatal("the bearer token is in the log")
	}
}

// TestBodyOfExactlyMaxBodyBytes: MaxBodyBytes is the largest body read; a body of exactly that size is whole and
// used (only one byte more is bad_response, as "huge body is bounded" in TestCycleRetries checks).
func TestBodyOfExactlyMaxBodyBytes(t *testing.T) {
	const limit = 64 << 10
	f := newFakeVerifier(t, false)
	created := f.defaults["create"]
	if len(created.body) >= limit {
		t.Fatalf("the recorded 201 body has %d bytes; the test needs it under %d", len(created.body), limit)
	}
	created.body += strings.Repeat(" ", limit-len(created.body)) // JSON allows trailing white space
	f.push("create", created)
	c, _ := newFakeClient(t, f, func(c *Config) { c.MaxBodyBytes = limit })
	r := c.Cycle(context.Background(), newIMAAgent(t, "vec-agent-1", 0, 4), 0, 0)
	if r.Outcome != record.OutcomeSuccess {
		t.Fatalf("outcome %s error %q, want success", r.Outcome, errOf(r))
	}
	if got := r.CreateAttempts[0].BytesRecv; got != limit {
		t.Errorf("bytes received %d, want %d", got, limit)
	}
}

// TestWaitWithoutDelay: a wait of no time goes on at once unless the cycle was cancelled (no caller passes d <= 0
// today; the retry waits are at least a second).
func TestWaitWithoutDelay(t *testing.T) {
	f := newFakeVerifier(t, false)
	c, clk := newFakeClient(t, f, nil)
	cy := &cycle{c: c}
	if !cy.wait(context.Background(), 0) {
		t.Error("wait(0) on a live cycle reported it cancelled")
	}
	ctx, cancel := context.WithCancel(context.Background())
	cancel()
	if cy.wait(ctx, 0) || cy.wait(ctx, -time.Second) {
		t.Error("wait(<= 0) on a cancelled cycle reported it live")
	}
	if s := clk.Slept(); len(s) != 0 {
		t.Errorf("slept %v, want no sleep", s)
	}
}

// TestEvidenceAskedOfProfileWithout: a verifier asking for an IMA log the agent's profile does not have ends the
// cycle as a local failure, and the log names the profile (an empty name when the agent has none).
func TestEvidenceAskedOfProfileWithout(t *testing.T) {
	for _, tc := range []struct {
		name    string
		profile evidence.Profile
		want    string
	}{
		{"quote-only", evidence.NewQuoteOnly(), `profile \"` + evidence.ProfileQuoteOnly + `\" has none`},
		{"no profile", nil, `profile \"\" has none`},
	} {
		t.Run(tc.name, func(t *testing.T) {
			f := newFakeVerifier(t, false) // answers the negotiation with the IMA agent's recorded 201 (ima_log asked)
			var buf bytes.Buffer
			logger := slog.New(slog.NewTextHandler(&buf, &slog.HandlerOptions{Level: slog.LevelDebug}))
			c, _ := newFakeClient(t, f, func(c *Config) { c.Logger = logger })
			a := NewAgent("vec-agent-1", 0, softtpm.NewTPM(testKey(t, 0)), tc.profile)
			r := c.Cycle(context.Background(), a, 0, 0)
			if r.Outcome != record.OutcomeFail || errOf(r) != record.ClassLocal {
				t.Fatalf("outcome %s error %q, want fail %s", r.Outcome, errOf(r), record.ClassLocal)
			}
			if out := buf.String(); !strings.Contains(out, "verifier requested an ima_log but "+tc.want) {
				t.Errorf("log does not name the profile (%s): %s", tc.want, out)
			}
		})
	}
}

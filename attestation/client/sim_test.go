package client

import (
	"bytes"
	"context"
	"encoding/base64"
	"encoding/json"
	"fmt"
	"io"
	"log"
	"net/http"
	"net/http/httptest"
	"strings"
	"sync"
	"testing"
	"time"

	"github.com/attestload/attestload/attestation/evidence"
	"github.com/attestload/attestload/attestation/record"
	"github.com/attestload/attestload/attestation/simverifier"
	"github.com/attestload/attestload/attestation/softtpm"
)

// simClock is shared by the simulated verifier and the client: the client's sleeps move it, so Retry-After and
// lifetimes play out without real waiting.
type simClock struct {
	mu  sync.Mutex
	now time.Time
}

func (c *simClock) Now() time.Time {
	c.mu.Lock()
	defer c.mu.Unlock()
	return c.now
}

func (c *simClock) Advance(d time.Duration) {
	c.mu.Lock()
	c.now = c.now.Add(d)
	c.mu.Unlock()
}

func (c *simClock) Sleep(ctx context.Context, d time.Duration) error {
	c.Advance(d)
	return ctx.Err()
}

type simEnv struct {
	v   *simverifier.Verifier
	srv *httptest.Server
	clk *simClock
	c   *Client
}

// simConfig is a fast verifier: no quote interval, no PBKDF2 cost, no rate limits.
func simConfig(clk *simClock, tls bool) simverifier.Config {
	cfg := simverifier.DefaultConfig()
	cfg.QuoteInterval = 0
	cfg.SessionHashIterations = 0
	cfg.RateLimits = simverifier.RateLimits{}
	cfg.PlainHTTP = !tls
	cfg.Now = clk.Now
	return cfg
}

// startSim runs the simulated verifier over real HTTP (TLS with its own CA, or plain) and a client for it.
func startSim(t testing.TB, tls bool, modSim func(*simverifier.Config), modClient func(*Config)) *simEnv {
	t.Helper()
	clk := &simClock{now: time.Now().UTC()}
	cfg := simConfig(clk, tls)
	if modSim != nil {
		modSim(&cfg)
	}
	v, err := simverifier.New(cfg)
	if err != nil {
		t.Fatal(err)
	}
	t.Cleanup(v.Close)
	srv := httptest.NewUnstartedServer(v.Handler())
	srv.Config.ErrorLog = log.New(io.Discard, "", 0)
	tr, err := NewTransport(TLSOptions{})
	if err != nil {
		t.Fatal(err)
	}
	if tls {
		srv.TLS = v.TLSConfig()
		srv.StartTLS()
		tr, err = NewTransport(TLSOptions{CAFile: writeCAFile(t, v.CACertPEM())})
		if err != nil {
			t.Fatal(err)
		}
	} else {
		srv.Start()
	}
	t.Cleanup(srv.Close)
	t.Cleanup(tr.CloseIdleConnections)
	ccfg := Config{BaseURL: srv.URL, Transport: tr, RequestTimeout: 10 * time.Second, Now: clk.Now, Sleep: clk.Sleep}
	if modClient != nil {
		modClient(&ccfg)
	}
	c, err := New(ccfg)
	if err != nil {
		t.Fatal(err)
	}
	return &simEnv{v: v, srv: srv, clk: clk, c: c}
}

func writeCAFile(t testing.TB, pem []byte) string {
	t.Helper()
	dir := t.TempDir()
	p := dir + "/ca.crt"
	if err := writeFile(p, pem); err != nil {
		t.Fatal(err)
	}
	return p
}

// enroll registers an agent with the verifier as the enrol package would: its AK and its profile's policies.
func (e *simEnv) enroll(t testing.TB, id string, key *softtpm.Key, p evidence.Profile) {
	t.Helper()
	spec := simverifier.AgentSpec{
		ID: id, AKPublic: key.Public, TPMPolicy: p.TPMPolicy(),
		IMAPolicyJSON: p.PolicyJSON(), IMAGenerator: p.Generator(),
	}
	if b := p.MeasuredBoot(); b != nil {
		ref := string(b.Refstate())
		spec.MBPolicy = &ref
	}
	err := e.v.EnrollAgent(spec)
	if err != nil {
		t.Fatal(err)
	}
}

func (e *simEnv) verdict(t testing.TB, id string, r *record.Record) (string, string) {
	t.Helper()
	if r.AttestationIndex == nil {
		t.Fatalf("%s: no attestation index in the record", id)
	}
	ctx, cancel := context.WithTimeout(context.Background(), 10*time.Second)
	defer cancel()
	ev, reason, err := e.v.WaitVerdict(ctx, id, *r.AttestationIndex)
	if err != nil {
		t.Fatal(err)
	}
	return ev, reason
}

func TestSimFleetPasses(t *testing.T) {
	for _, tc := range []struct {
		name           string
		tls            bool
		agents, cycles int
	}{
		{"tls", true, 20, 50},
		{"plain", false, 5, 10},
	} {
		t.Run(tc.name, func(t *testing.T) {
			e := startSim(t, tc.tls, nil, nil)
			p := imaProfile(t, 4)
			var wg sync.WaitGroup
			for i := range tc.agents {
				id := fmt.Sprintf("fleet-%d", i)
				e.enroll(t, id, testKey(t, i), p)
				a := NewAgent(id, i, softtpm.NewTPM(testKey(t, i)), p)
				wg.Go(func() {
					for k := range tc.cycles {
						r := e.c.Cycle(context.Background(), a, k, i)
						if r.Outcome != record.OutcomeSuccess {
							t.Errorf("%s cycle %d: %s %s", id, k, r.Outcome, errOf(r))
							return
						}
						// The verifier asks for the log from where the last passed attestation ended.
						wantOffset, wantSent := 0, 4
						if k > 0 {
							wantOffset, wantSent = 4+k-1, 1
						}
						if intp(r.IMAOffset) != fmt.Sprint(wantOffset) || intp(r.IMAEntriesSent) != fmt.Sprint(wantSent) {
							t.Errorf("%s cycle %d: offset %s sent %s, want %d %d", id, k, intp(r.IMAOffset), intp(r.IMAEntriesSent), wantOffset, wantSent)
							return
						}
						if k > 0 && len(r.SessionAttempts) != 0 {
							t.Errorf("%s cycle %d: token not reused", id, k)
						}
						if ev, reason := e.verdict(t, id, r); ev != "pass" {
							t.Errorf("%s cycle %d: verdict %s (%s)", id, k, ev, reason)
							return
						}
					}
				})
			}
			wg.Wait()
		})
	}
}

// tokenRun enrolls agent id with test key k and runs n cycles, step apart on the verifier's clock: every cycle must
// succeed, and with verdicts every verdict must be pass. It returns the records, so callers can see which cycles
// opened a session.
func (e *simEnv) tokenRun(t *testing.T, id string, k, n int, step time.Duration, verdicts bool) []*record.Record {
	t.Helper()
	p := imaProfile(t, 4)
	e.enroll(t, id, testKey(t, k), p)
	a := NewAgent(id, k, softtpm.NewTPM(testKey(t, k)), p)
	recs := make([]*record.Record, 0, n)
	for i := range n {
		r := e.c.Cycle(context.Background(), a, i, 0)
		if r.Outcome != record.OutcomeSuccess {
			t.Fatalf("cycle %d: %s %s", i, r.Outcome, errOf(r))
		}
		if verdicts {
			if ev, reason := e.verdict(t, id, r); ev != "pass" {
				t.Fatalf("cycle %d: verdict %s (%s)", i, ev, reason)
			}
		}
		recs = append(recs, r)
		e.clk.Advance(step)
	}
	return recs
}

func TestSimTokenRenewedMidRun(t *testing.T) {
	e := startSim(t, false, func(c *simverifier.Config) {
		c.SessionLifetime = 10 * time.Second
		c.ExtendTokenOnAttestation = false
	}, func(c *Config) { c.TokenRenewMargin = 2 * time.Second; c.FixedTokenExpiry = true })
	renewals := 0
	for k, r := range e.tokenRun(t, "renew", 0, 20, 3*time.Second, true) {
		if k > 0 && len(r.SessionAttempts) > 0 {
			renewals++
		}
	}
	if renewals < 5 {
		t.Errorf("%d renewals over 60 s with 10 s tokens", renewals)
	}
}

// With the verifier's default (extend_token_on_attestation), an agent that keeps passing keeps its first session
// however short the token's lifetime, as a real agent does: no session load the fleet would not cause.
func TestSimTokenSlidesWithPassingAttestations(t *testing.T) {
	e := startSim(t, false, func(c *simverifier.Config) { c.SessionLifetime = 10 * time.Second }, nil)
	for k, r := range e.tokenRun(t, "slide", 0, 20, 4*time.Second, true) {
		if k > 0 && len(r.SessionAttempts) > 0 {
			t.Fatalf("cycle %d (%v into the run) made a new session; the token slides on every pass", k, time.Duration(k)*4*time.Second)
		}
	}
}

// A verifier that does not slide tokens (extend_token_on_attestation = false) while the client assumes it does:
// at each real expiry the create is answered 401 and the cycle authenticates again and succeeds.
func TestSimFixedExpiryLearnedFrom401(t *testing.T) {
	e := startSim(t, false, func(c *simverifier.Config) {
		c.SessionLifetime = 10 * time.Second
		c.ExtendTokenOnAttestation = false
	}, nil)
	reauths := 0
	for k, r := range e.tokenRun(t, "fixed", 1, 20, 3*time.Second, false) {
		if k > 0 && len(r.SessionAttempts) > 0 {
			if len(r.CreateAttempts) < 2 || attErr(r.CreateAttempts[0]) != record.ClassAuth {
				t.Errorf("cycle %d: new session without a 401 first: %+v", k, r.CreateAttempts)
			}
			reauths++
		}
	}
	// Cycles every 3 s: each token serves until the first cycle after its 10 s are up, i.e. 12 s.
	if reauths != 4 {
		t.Errorf("%d re-authentications over 57 s with fixed 10 s tokens, want 4 (one every 12 s)", reauths)
	}
}

func TestSimUnexpected401ReAuthenticates(t *testing.T) {
	e := startSim(t, false, func(c *simverifier.Config) {
		c.SessionLifetime = 10 * time.Second
		c.ExtendTokenOnAttestation = false
	}, nil)
	p := imaProfile(t, 4)
	e.enroll(t, "reauth", testKey(t, 1), p)
	a := NewAgent("reauth", 1, softtpm.NewTPM(testKey(t, 1)), p)
	if r := e.c.Cycle(context.Background(), a, 0, 0); r.Outcome != record.OutcomeSuccess {
		t.Fatal(errOf(r))
	}
	// The verifier expires the token while the client still believes in it.
	e.clk.Advance(time.Minute)
	a.tokenExpiry = e.clk.Now().Add(time.Hour)
	r := e.c.Cycle(context.Background(), a, 1, 0)
	if r.Outcome != record.OutcomeSuccess {
		t.Fatalf("outcome %s %s", r.Outcome, errOf(r))
	}
	if len(r.CreateAttempts) != 2 || attErr(r.CreateAttempts[0]) != record.ClassAuth || len(r.SessionAttempts) != 2 {
		t.Errorf("create attempts %+v, %d session attempts", r.CreateAttempts, len(r.SessionAttempts))
	}
	if ev, reason := e.verdict(t, "reauth", r); ev != "pass" {
		t.Errorf("verdict %s (%s)", ev, reason)
	}
}

func TestSimPremature429(t *testing.T) {
	e := startSim(t, false, func(c *simverifier.Config) { c.QuoteInterval = 2 }, nil)
	p := imaProfile(t, 4)
	e.enroll(t, "early", testKey(t, 2), p)
	a := NewAgent("early", 2, softtpm.NewTPM(testKey(t, 2)), p)
	if r := e.c.Cycle(context.Background(), a, 0, 0); r.Outcome != record.OutcomeSuccess {
		t.Fatal(errOf(r))
	}
	if want := e.clk.Now().Add(2 * time.Second); !a.NotBefore.Equal(want) {
		t.Errorf("NotBefore %v, want %v (seconds_to_next_attestation)", a.NotBefore, want)
	}
	r := e.c.Cycle(context.Background(), a, 1, 0) // ignores NotBefore on purpose
	if r.Outcome != record.OutcomeSuccess || len(r.CreateAttempts) != 2 {
		t.Fatalf("outcome %s, %d create attempts", r.Outcome, len(r.CreateAttempts))
	}
	first := r.CreateAttempts[0]
	if attErr(first) != record.ClassRateLimited || first.Code != "premature_attestation" || intp(first.RetryAfter) != "2" || *first.Status != 429 {
		t.Errorf("premature attempt: %+v", first)
	}
	if ev, _ := e.verdict(t, "early", r); ev != "pass" {
		t.Errorf("verdict %s", ev)
	}
}

// expireOnce advances the verifier's clock past the challenge lifetime when the first evidence phase starts.
type expireOnce struct {
	nopHooks
	clk  *simClock
	d    time.Duration
	once sync.Once
}

func (h *expireOnce) PhaseStart(ctx context.Context, phase record.Phase) (context.Context, func(bool)) {
	if phase == record.PhaseEvidence {
		h.once.Do(func() { h.clk.Advance(h.d) })
	}
	return ctx, func(bool) {}
}

func TestSimChallengeExpiredRenegotiates(t *testing.T) {
	h := &expireOnce{d: time.Minute}
	e := startSim(t, false, func(c *simverifier.Config) {
		c.ChallengeLifetime = 30 * time.Second
		c.SessionLifetime = time.Hour
	}, func(c *Config) { c.Hooks = h })
	h.clk = e.clk
	p := imaProfile(t, 4)
	e.enroll(t, "slow", testKey(t, 3), p)
	a := NewAgent("slow", 3, softtpm.NewTPM(testKey(t, 3)), p)
	r := e.c.Cycle(context.Background(), a, 0, 0)
	if r.Outcome != record.OutcomeSuccess || len(r.CreateAttempts) != 2 || len(r.UpdateAttempts) != 2 {
		t.Fatalf("outcome %s %s, creates %d updates %d", r.Outcome, errOf(r), len(r.CreateAttempts), len(r.UpdateAttempts))
	}
	if u := r.UpdateAttempts[0]; u.Code != "challenges_expired" || *u.Status != 403 {
		t.Errorf("first update: %+v", u)
	}
	if intp(r.AttestationIndex) != "1" {
		t.Errorf("attestation index %s, want the second negotiation's 1", intp(r.AttestationIndex))
	}
	if ev, reason := e.verdict(t, "slow", r); ev != "pass" {
		t.Errorf("verdict %s (%s)", ev, reason)
	}
}

func TestSimWrongKeyPoP(t *testing.T) {
	e := startSim(t, true, nil, nil)
	p := imaProfile(t, 4)
	e.enroll(t, "impostor", testKey(t, 4), p)
	a := NewAgent("impostor", 4, softtpm.NewTPM(testKey(t, 5)), p)
	r := e.c.Cycle(context.Background(), a, 0, 0)
	if r.Outcome != record.OutcomeFail || errOf(r) != record.ClassPoPRejected || len(r.SessionAttempts) != 2 {
		t.Fatalf("outcome %s %s, %d session attempts", r.Outcome, errOf(r), len(r.SessionAttempts))
	}
	if s := r.SessionAttempts[1].Status; s == nil || *s != 401 {
		t.Errorf("PoP status %v, want 401", s)
	}
	if len(r.CreateAttempts) != 0 || a.token != "" {
		t.Error("a rejected PoP still led to attestation or a token")
	}
}

// rewriter is a RoundTripper that lets a test tamper with traffic, to play a broken agent or a replay attack.
type rewriter struct {
	next    http.RoundTripper
	request func(r *http.Request, body []byte) []byte          // may return a new request body
	reply   func(r *http.Request, status int, b []byte) []byte // may return a new response body
}

func (rw *rewriter) RoundTrip(r *http.Request) (*http.Response, error) {
	if rw.request != nil && r.Body != nil {
		b, _ := io.ReadAll(r.Body)
		b = rw.request(r, b)
		r = r.Clone(r.Context())
		r.Body = io.NopCloser(bytes.NewReader(b))
		r.ContentLength = int64(len(b))
	}
	resp, err := rw.next.RoundTrip(r)
	if err != nil || rw.reply == nil {
		return resp, err
	}
	b, _ := io.ReadAll(resp.Body)
	resp.Body.Close()
	b = rw.reply(r, resp.StatusCode, b)
	resp.Body = io.NopCloser(bytes.NewReader(b))
	resp.ContentLength = int64(len(b))
	return resp, nil
}

// quoteOf returns the tpm_quote data of an evidence PATCH body, and a function putting replacement data back.
func quoteOf(t *testing.T, body []byte) (json.RawMessage, func(json.RawMessage) []byte) {
	var doc map[string]any
	if err := json.Unmarshal(body, &doc); err != nil {
		t.Error(err)
		return nil, func(json.RawMessage) []byte { return body }
	}
	items := doc["data"].(map[string]any)["attributes"].(map[string]any)["evidence_collected"].([]any)
	q := items[0].(map[string]any)
	raw, _ := json.Marshal(q["data"])
	return raw, func(repl json.RawMessage) []byte {
		q["data"] = repl
		out, _ := json.Marshal(doc)
		return out
	}
}

func TestSimBadEvidenceJudged(t *testing.T) {
	junk := bytes.Repeat([]byte{0xAB}, 32)
	for _, tc := range []struct {
		name, reason string
		// setup returns the agent to run and may wrap the transport.
		setup func(t *testing.T, e *simEnv, rw *rewriter) *Agent
		// judged is the cycle whose verdict is checked (earlier cycles must pass).
		judged int
	}{
		{
			name: "replayed quote", reason: simverifier.FailureBrokenEvidenceChain, judged: 1,
			setup: func(t *testing.T, e *simEnv, rw *rewriter) *Agent {
				var first json.RawMessage
				rw.request = func(r *http.Request, body []byte) []byte {
					if r.Method != http.MethodPatch || !strings.HasSuffix(r.URL.Path, "/latest") {
						return body
					}
					q, put := quoteOf(t, body)
					if first == nil {
						first = q
						return body
					}
					return put(first)
				}
				p := evidence.NewQuoteOnly()
				e.enroll(t, "replay", testKey(t, 6), p)
				return NewAgent("replay", 6, softtpm.NewTPM(testKey(t, 6)), p)
			},
		},
		{
			name: "wrong nonce", reason: simverifier.FailureBrokenEvidenceChain,
			setup: func(t *testing.T, e *simEnv, rw *rewriter) *Agent {
				rw.reply = func(r *http.Request, status int, b []byte) []byte {
					if status != http.StatusCreated {
						return b
					}
					var doc struct {
						Data struct {
							Attributes struct {
								Requested []struct {
									Params struct {
										Challenge string `json:"challenge"`
									} `json:"chosen_parameters"`
								} `json:"evidence_requested"`
							} `json:"attributes"`
						} `json:"data"`
					}
					_ = json.Unmarshal(b, &doc)
					ch := doc.Data.Attributes.Requested[0].Params.Challenge
					return bytes.Replace(b, []byte(ch), []byte(base64.StdEncoding.EncodeToString(junk[:16])), 1)
				}
				p := imaProfile(t, 4)
				e.enroll(t, "nonce", testKey(t, 7), p)
				return NewAgent("nonce", 7, softtpm.NewTPM(testKey(t, 7)), p)
			},
		},
		{
			name: "wrong PCR", reason: simverifier.FailurePolicyViolation,
			setup: func(t *testing.T, e *simEnv, rw *rewriter) *Agent {
				p := evidence.NewQuoteOnly()
				e.enroll(t, "pcr", testKey(t, 8), p)
				a := NewAgent("pcr", 8, softtpm.NewTPM(testKey(t, 8)), p)
				if err := a.TPM.SetPCR(7, junk); err != nil { // secure boot state changed behind the policy's back
					t.Fatal(err)
				}
				return a
			},
		},
		{
			name: "IMA entry not in policy", reason: simverifier.FailurePolicyViolation,
			setup: func(t *testing.T, e *simEnv, rw *rewriter) *Agent {
				narrow, err := evidence.NewSynthetic(4, 1, 4) // policy knows 4 files
				if err != nil {
					t.Fatal(err)
				}
				wide, err := evidence.NewSynthetic(12, 1, 64) // the agent runs files 5..10 too
				if err != nil {
					t.Fatal(err)
				}
				e.enroll(t, "ima", testKey(t, 9), narrow)
				return NewAgent("ima", 9, softtpm.NewTPM(testKey(t, 9)), wide)
			},
		},
	} {
		t.Run(tc.name, func(t *testing.T) {
			rw := &rewriter{}
			e := startSim(t, false, nil, func(c *Config) {
				tr, _ := NewTransport(TLSOptions{})
				rw.next = tr
				c.Transport = rw
			})
			a := tc.setup(t, e, rw)
			for k := 0; k <= tc.judged; k++ {
				r := e.c.Cycle(context.Background(), a, k, 0)
				if r.Outcome != record.OutcomeSuccess {
					t.Fatalf("cycle %d: %s %s (evidence is accepted before it is judged)", k, r.Outcome, errOf(r))
				}
				ev, reason := e.verdict(t, a.ID, r)
				want, wantReason := "pass", ""
				if k == tc.judged {
					want, wantReason = "fail", tc.reason
				}
				if ev != want || reason != wantReason {
					t.Errorf("cycle %d: verdict %s (%s), want %s (%s)", k, ev, reason, want, wantReason)
				}
			}
		})
	}
}

func TestSimHugeBodyBounded(t *testing.T) {
	e := startSim(t, false, func(c *simverifier.Config) {
		c.Faults = simverifier.Faults{Rules: map[simverifier.Endpoint]simverifier.FaultRule{
			simverifier.EndpointCreate: {HugeBodyRate: 1, HugeBodyBytes: 4 << 20},
		}}
	}, func(c *Config) { c.MaxBodyBytes = 64 << 10 })
	p := imaProfile(t, 4)
	e.enroll(t, "huge", testKey(t, 10), p)
	a := NewAgent("huge", 10, softtpm.NewTPM(testKey(t, 10)), p)
	r := e.c.Cycle(context.Background(), a, 0, 0)
	if r.Outcome != record.OutcomeFail || errOf(r) != record.ClassBadResponse {
		t.Fatalf("outcome %s %s", r.Outcome, errOf(r))
	}
	if got := r.CreateAttempts[0].BytesRecv; got != 64<<10+1 {
		t.Errorf("read %d bytes of a 4 MiB body, want the bound + 1", got)
	}
}

func TestSimB64TextExtraData(t *testing.T) {
	e := startSim(t, false, nil, func(c *Config) { c.ExtraDataEncoding = ExtraDataB64Text })
	p := imaProfile(t, 4)
	e.enroll(t, "b64", testKey(t, 11), p)
	a := NewAgent("b64", 11, softtpm.NewTPM(testKey(t, 11)), p)
	for k := range 2 {
		r := e.c.Cycle(context.Background(), a, k, 0)
		if r.Outcome != record.OutcomeSuccess {
			t.Fatalf("cycle %d: %s %s", k, r.Outcome, errOf(r))
		}
		if ev, reason := e.verdict(t, "b64", r); ev != "pass" {
			t.Fatalf("cycle %d: verdict %s (%s)", k, ev, reason)
		}
	}
}

func TestSimRebootRestartsIMALog(t *testing.T) {
	e := startSim(t, false, nil, nil)
	p := imaProfile(t, 4)
	e.enroll(t, "reboot", testKey(t, 0), p)
	tpm := softtpm.NewTPM(testKey(t, 0))
	a := NewAgent("reboot", 0, tpm, p)
	for k := range 3 {
		if r := e.c.Cycle(context.Background(), a, k, 0); r.Outcome != record.OutcomeSuccess {
			t.Fatal(errOf(r))
		} else if ev, _ := e.verdict(t, "reboot", r); ev != "pass" {
			t.Fatalf("cycle %d before reboot: %s", k, ev)
		}
	}
	boot, resets := a.BootTime, tpm.ClockInfo().ResetCount
	a.Reboot()
	if !a.BootTime.After(boot) || tpm.ClockInfo().ResetCount != resets+1 || a.Log.EntryCount() != 4 {
		t.Fatalf("reboot: boot %v -> %v, resets %d -> %d, log %d entries", boot, a.BootTime, resets, tpm.ClockInfo().ResetCount, a.Log.EntryCount())
	}
	r := e.c.Cycle(context.Background(), a, 3, 0)
	if r.Outcome != record.OutcomeSuccess || intp(r.IMAOffset) != "0" || intp(r.IMAEntriesSent) != "4" {
		t.Fatalf("after reboot: %s, offset %s sent %s; want the whole log from 0", r.Outcome, intp(r.IMAOffset), intp(r.IMAEntriesSent))
	}
}

func TestSimFaults(t *testing.T) {
	rule := func(ep simverifier.Endpoint, r simverifier.FaultRule) func(*simverifier.Config) {
		return func(c *simverifier.Config) {
			c.Faults = simverifier.Faults{Rules: map[simverifier.Endpoint]simverifier.FaultRule{ep: r}}
		}
	}
	for _, tc := range []struct {
		name    string
		sim     func(*simverifier.Config)
		client  func(*Config)
		outcome record.Outcome
		err     record.ErrorClass
	}{
		{"wrong content type tolerated", rule(simverifier.EndpointAll, simverifier.FaultRule{WrongContentTypeRate: 1}), nil, record.OutcomeSuccess, ""},
		{"invalid JSON", rule(simverifier.EndpointCreate, simverifier.FaultRule{InvalidJSONRate: 1}), nil, record.OutcomeFail, record.ClassBadResponse},
		{"connection closed", rule(simverifier.EndpointUpdate, simverifier.FaultRule{CloseRate: 1}), nil, record.OutcomeFail, record.ClassConnReset},
		{"Keylime's evidence-order 422", rule(simverifier.EndpointUpdate, simverifier.FaultRule{EvidenceOrderRate: 1}), nil, record.OutcomeFail, record.ClassEvidenceOrder},
		{"503 with Retry-After until out of retries", rule(simverifier.EndpointCreate, simverifier.FaultRule{ErrorRate: 1, ErrorRetryAfter: 1}),
			func(c *Config) { c.MaxRetries = 1 }, record.OutcomeFail, record.ClassUnavailable},
		{"stall", rule(simverifier.EndpointSessionCreate, simverifier.FaultRule{StallRate: 1, StallFor: 300 * time.Millisecond}),
			func(c *Config) { c.RequestTimeout = 50 * time.Millisecond }, record.OutcomeFail, record.ClassTimeout},
	} {
		t.Run(tc.name, func(t *testing.T) {
			e := startSim(t, false, tc.sim, tc.client)
			p := imaProfile(t, 4)
			e.enroll(t, "faulty", testKey(t, 0), p)
			a := NewAgent("faulty", 0, softtpm.NewTPM(testKey(t, 0)), p)
			r := e.c.Cycle(context.Background(), a, 0, 0)
			if r.Outcome != tc.outcome || errOf(r) != tc.err {
				t.Fatalf("outcome %s %q, want %s %q", r.Outcome, errOf(r), tc.outcome, tc.err)
			}
		})
	}
}

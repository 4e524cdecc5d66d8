package simverifier

import (
	"encoding/json"
	"fmt"
	"net/http"
	"net/http/httptest"
	"runtime"
	"strings"
	"testing"
	"time"

	"github.com/attestload/attestload/attestation/evidence"
)

// handlerDo sends one request straight to the handler (no network), for fuzzing and server-side cost.
func handlerDo(h http.Handler, method, path string, header map[string]string, body string) *httptest.ResponseRecorder {
	req := httptest.NewRequest(method, path, strings.NewReader(body))
	for k, v := range header {
		req.Header.Set(k, v)
	}
	rec := httptest.NewRecorder()
	h.ServeHTTP(rec, req)
	return rec
}

func recDoc(tb testing.TB, rec *httptest.ResponseRecorder) map[string]any {
	var m map[string]any
	if err := json.Unmarshal(rec.Body.Bytes(), &m); err != nil {
		tb.Fatalf("%d %s: %v", rec.Code, rec.Body.Bytes(), err)
	}
	return m
}

// handlerSession runs the PoP against the handler and returns the token.
func handlerSession(tb testing.TB, h http.Handler, a *simAgent) string {
	post := handlerDo(h, "POST", "/v3/sessions", vnd, sessionPostBody(a.id))
	doc := recDoc(tb, post)
	sid := str(tb, doc, "data", "id")
	nonce := b64(tb, str(tb, doc, "data", "attributes", "authentication_requested", 0, "chosen_parameters", "challenge"))
	msg, sig, err := a.tpm.Certify(nonce)
	if err != nil {
		tb.Fatal(err)
	}
	patch := handlerDo(h, "PATCH", "/v3/sessions/"+sid, vnd, sessionPatchBody(tb, sid, a.id, msg, sig))
	return str(tb, recDoc(tb, patch), "data", "attributes", "token")
}

// FuzzRequestBodies sends arbitrary bodies to every body-reading endpoint; none may panic, and every answer must
// be a status the real verifier can give.
func FuzzRequestBodies(f *testing.F) {
	for _, name := range []string{"01-agent1-session-pop.json", "02-agent1-cycle1.json", "03-agent1-cycle2.json"} {
		for _, ex := range dig(f, vector(f, name), "http").([]any) {
			f.Add(str(f, ex, "request", "body"))
		}
	}
	for _, s := range []string{"", "null", "[]", `{"data":null}`, `{"data":{"type":"attestation","attributes":{"evidence_supported":[1,null,{}]}}}`,
		`{"data":{"type":"attestation","attributes":{"evidence_collected":[{"evidence_class":"certification","evidence_type":"tpm_quote","data":{"message":"AAAA","signature":"AAAA","subject_data":"AAAA"}}]}}}`,
		`{"data":{"type":"attestation","attributes":{"evidence_supported":[{"evidence_class":"certification","evidence_type":"tpm_quote","capabilities":{"component_version":"2.0","hash_algorithms":["sha256"],"signature_schemes":["rsassa"],"available_subjects":{"sha256":[99999999999]},"certification_keys":[{}]}}],"system_info":{"boot_time":1e400}}}}`,
	} {
		f.Add(s)
	}
	clock := newFakeClock()
	cfg := testConfig(clock, nil)
	cfg.QuoteInterval = 0
	cfg.RateLimits = RateLimits{}
	v, err := New(cfg)
	if err != nil {
		f.Fatal(err)
	}
	k := vectorKey(f, "vec-agent-2")
	if err := v.EnrollAgent(quoteOnlySpec("a1", k)); err != nil {
		f.Fatal(err)
	}
	h := v.Handler()
	a := newSimAgent(f, "", "a1", k)
	token := handlerSession(f, h, a)
	auth := map[string]string{"Content-Type": "application/vnd.api+json", "Authorization": "Bearer " + token}
	allowed := map[int]bool{200: true, 201: true, 202: true, 400: true, 403: true, 404: true, 409: true, 415: true, 422: true, 429: true, 500: true}
	f.Fuzz(func(t *testing.T, body string) {
		for _, r := range []struct{ method, path string }{
			{"POST", "/v3/sessions"}, {"PATCH", "/v3/sessions/does-not-exist"},
			{"POST", "/v3/agents/a1/attestations"}, {"PATCH", "/v3/agents/a1/attestations/latest"},
		} {
			rec := handlerDo(h, r.method, r.path, auth, body)
			if !allowed[rec.Code] {
				t.Fatalf("%s %s: status %d for body %q", r.method, r.path, rec.Code, body)
			}
		}
	})
}

// BenchmarkSessionAndCycle is the server-side cost of a PoP session plus one quote-only attestation cycle
// (POST, PATCH and the verification after it). The agent's signing is excluded from the timing.
func BenchmarkSessionAndCycle(b *testing.B) {
	clock := newFakeClock()
	cfg := testConfig(clock, nil)
	cfg.SessionHashIterations = 0
	cfg.RateLimits = RateLimits{}
	v, err := New(cfg)
	if err != nil {
		b.Fatal(err)
	}
	k := vectorKey(b, "vec-agent-2")
	if err := v.EnrollAgent(quoteOnlySpec("a1", k)); err != nil {
		b.Fatal(err)
	}
	h := v.Handler()
	a := newSimAgent(b, "", "a1", k)
	b.ReportAllocs()
	b.ResetTimer()
	for range b.N {
		clock.Advance(3 * time.Second)
		post := handlerDo(h, "POST", "/v3/sessions", vnd, sessionPostBody(a.id))
		doc := recDoc(b, post)
		sid := str(b, doc, "data", "id")
		nonce := b64(b, str(b, doc, "data", "attributes", "authentication_requested", 0, "chosen_parameters", "challenge"))
		b.StopTimer()
		msg, sig, _ := a.tpm.Certify(nonce)
		body := sessionPatchBody(b, sid, a.id, msg, sig)
		b.StartTimer()
		patch := handlerDo(h, "PATCH", "/v3/sessions/"+sid, vnd, body)
		a.token = str(b, recDoc(b, patch), "data", "attributes", "token")
		c := handlerDo(h, "POST", "/v3/agents/a1/attestations", a.auth(), a.capabilities())
		if c.Code != http.StatusCreated {
			b.Fatalf("create: %d %s", c.Code, c.Body.Bytes())
		}
		b.StopTimer()
		ev := a.evidenceFor(httpResult{doc: recDoc(b, c)}, nil)
		b.StartTimer()
		if u := handlerDo(h, "PATCH", "/v3/agents/a1/attestations/latest", a.auth(), ev); u.Code != http.StatusAccepted {
			b.Fatalf("update: %d", u.Code)
		}
	}
	b.StopTimer()
	if ev, _, _, _ := v.Verdict("a1", b.N-1); ev != evalPass {
		b.Fatalf("last verdict %q", ev)
	}
}

// BenchmarkQuoteOnlyPostPatch measures POST + PATCH requests per second over loopback HTTP for a quote-only agent
// (quote_interval 0), verification included; the agent's quote signing is excluded.
func BenchmarkQuoteOnlyPostPatch(b *testing.B) {
	clock := newFakeClock()
	cfg := testConfig(clock, nil)
	cfg.QuoteInterval = 0
	v, err := New(cfg)
	if err != nil {
		b.Fatal(err)
	}
	k := vectorKey(b, "vec-agent-2")
	if err := v.EnrollAgent(quoteOnlySpec("a1", k)); err != nil {
		b.Fatal(err)
	}
	srv := httptest.NewServer(v.Handler())
	defer srv.Close()
	a := newSimAgent(b, srv.URL, "a1", k)
	a.startSession()
	b.ResetTimer()
	for range b.N {
		c := a.create()
		if c.status != http.StatusCreated {
			b.Fatalf("create: %d", c.status)
		}
		b.StopTimer()
		ev := a.evidenceFor(c, nil)
		b.StartTimer()
		if u := a.update("latest", ev); u.status != http.StatusAccepted {
			b.Fatalf("update: %d", u.status)
		}
	}
	b.ReportMetric(float64(2*b.N)/b.Elapsed().Seconds(), "req/s")
}

// BenchmarkAgentMemory reports the heap held per enrolled agent (all sharing one IMA policy, as a load test's
// agents do) and per agent after a session and one verified attestation cycle.
func BenchmarkAgentMemory(b *testing.B) {
	profile, err := evidence.NewSynthetic(4, 1, 1000)
	if err != nil {
		b.Fatal(err)
	}
	k := vectorKey(b, "vec-agent-2")
	heap := func() uint64 {
		runtime.GC()
		var ms runtime.MemStats
		runtime.ReadMemStats(&ms)
		return ms.HeapAlloc
	}
	for range b.N {
		clock := newFakeClock()
		cfg := testConfig(clock, nil)
		cfg.RateLimits = RateLimits{}
		v, err := New(cfg)
		if err != nil {
			b.Fatal(err)
		}
		const enrolled, cycled = 2000, 50
		before := heap()
		for i := range enrolled {
			if err := v.EnrollAgent(AgentSpec{ID: fmt.Sprintf("agent-%06d", i), AKPublic: k.Public,
				IMAPolicyJSON: profile.PolicyJSON(), IMAGenerator: profile.Generator()}); err != nil {
				b.Fatal(err)
			}
		}
		mid := heap()
		b.ReportMetric(float64(mid-before)/enrolled, "B/enrolled-agent")
		h := v.Handler()
		for i := range cycled {
			a := newSimAgent(b, "", fmt.Sprintf("agent-%06d", i), k)
			log := profile.NewAgentLog()
			a.imaEntries = func(from int) (string, int) {
				text, _, _ := log.Entries(from)
				return text, log.EntryCount()
			}
			if err := a.tpm.SetPCR(10, log.PCR10()); err != nil {
				b.Fatal(err)
			}
			a.token = handlerSession(b, h, a)
			c := handlerDo(h, "POST", "/v3/agents/"+a.id+"/attestations", a.auth(), a.capabilities())
			if u := handlerDo(h, "PATCH", "/v3/agents/"+a.id+"/attestations/latest", a.auth(),
				a.evidenceFor(httpResult{doc: recDoc(b, c)}, nil)); u.Code != http.StatusAccepted {
				b.Fatalf("update: %d", u.Code)
			}
		}
		after := heap()
		b.ReportMetric(float64(after-mid)/cycled, "B/attested-agent-extra")
		runtime.KeepAlive(v)
	}
}

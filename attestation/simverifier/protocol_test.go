package simverifier

import (
	"context"
	"fmt"
	"net/http"
	"strings"
	"sync/atomic"
	"testing"
	"time"
)

func errCode(t testing.TB, r httpResult) string {
	t.Helper()
	c, _ := dig(t, r.doc, "errors", 0).(map[string]any)["code"].(string)
	return c
}

func wantStatus(t testing.TB, what string, r httpResult, status int, code string) {
	t.Helper()
	if r.status != status {
		t.Fatalf("%s: status %d, want %d; body %s", what, r.status, status, r.body)
	}
	if code != "" {
		if got := errCode(t, r); got != code {
			t.Fatalf("%s: code %q, want %q; body %s", what, got, code, r.body)
		}
	}
}

func wantEmpty(t testing.TB, what string, r httpResult, status int) {
	t.Helper()
	if r.status != status || len(r.body) != 0 || r.header.Get("Content-Type") != ctFramework {
		t.Fatalf("%s: got %d %q body %q, want %d with an empty text/html body", what, r.status,
			r.header.Get("Content-Type"), r.body, status)
	}
}

func waitVerdict(t testing.TB, v *Verifier, id string, index int) (string, string) {
	t.Helper()
	ctx, cancel := context.WithTimeout(context.Background(), 10*time.Second)
	defer cancel()
	ev, fr, err := v.WaitVerdict(ctx, id, index)
	if err != nil {
		t.Fatal(err)
	}
	return ev, fr
}

// cycle runs one full POST + PATCH and returns the attestation index.
func cycle(t testing.TB, a *simAgent, clock *fakeClock) int {
	t.Helper()
	clock.Advance(3 * time.Second)
	c := a.create()
	wantStatus(t, "create", c, http.StatusCreated, "")
	u := a.update("latest", a.evidenceFor(c, nil))
	wantStatus(t, "update", u, http.StatusAccepted, "")
	return atoiSuffix(t.(*testing.T), c.header.Get("Location"))
}

func TestAttestationStatusCodes(t *testing.T) {
	v, srv, clock := newTestServer(t, nil)
	k1, k2 := vectorKey(t, "vec-agent-1"), vectorKey(t, "vec-agent-2")
	for id, k := range map[string]any{"a1": k1, "a2": k2} {
		_ = k
		_ = id
	}
	if err := v.EnrollAgent(quoteOnlySpec("a1", k1)); err != nil {
		t.Fatal(err)
	}
	if err := v.EnrollAgent(quoteOnlySpec("a2", k2)); err != nil {
		t.Fatal(err)
	}
	a1, a2 := newSimAgent(t, srv.URL, "a1", k1), newSimAgent(t, srv.URL, "a2", k2)
	wantStatus(t, "a1 PoP", a1.startSession(), http.StatusOK, "")
	wantStatus(t, "a2 PoP", a2.startSession(), http.StatusOK, "")
	path := srv.URL + "/v3/agents/a1/attestations"

	// Authentication and authorization.
	wantStatus(t, "no token", do(t, http.DefaultClient, "POST", path, vnd, a1.capabilities()), http.StatusForbidden, "")
	wantStatus(t, "malformed header", do(t, http.DefaultClient, "POST", path,
		map[string]string{"Content-Type": "application/vnd.api+json", "Authorization": "bearer " + a1.token}, a1.capabilities()), http.StatusUnauthorized, "")
	wantStatus(t, "unknown token", do(t, http.DefaultClient, "POST", path,
		map[string]string{"Content-Type": "application/vnd.api+json", "Authorization": "Bearer nope"}, a1.capabilities()), http.StatusUnauthorized, "")
	wantStatus(t, "other agent's token", do(t, http.DefaultClient, "POST", path, a2.auth(), a1.capabilities()), http.StatusForbidden, "")
	wantStatus(t, "admin may not submit", do(t, http.DefaultClient, "POST", path,
		map[string]string{"Content-Type": "application/vnd.api+json", "Authorization": "Bearer test-admin-token"}, a1.capabilities()), http.StatusForbidden, "")
	wantStatus(t, "agent may not read", do(t, http.DefaultClient, "GET", path+"/latest", a1.auth(), ""), http.StatusForbidden, "")
	wantStatus(t, "anonymous may not read", do(t, http.DefaultClient, "GET", path+"/latest", nil, ""), http.StatusForbidden, "")

	// Framework errors: empty text/html bodies.
	wantEmpty(t, "json content type", do(t, http.DefaultClient, "POST", path,
		map[string]string{"Content-Type": "application/json", "Authorization": "Bearer " + a1.token}, a1.capabilities()), http.StatusUnsupportedMediaType)
	wantEmpty(t, "empty body", do(t, http.DefaultClient, "POST", path, a1.auth(), ""), http.StatusBadRequest)
	wantEmpty(t, "bare v0 body", do(t, http.DefaultClient, "POST", path, a1.auth(), `{"evidence_supported":[]}`), http.StatusBadRequest)
	wantEmpty(t, "extra top-level key", do(t, http.DefaultClient, "POST", path, a1.auth(), `{"data":{"type":"attestation"},"x":1}`), http.StatusBadRequest)
	wantEmpty(t, "wrong data.type", do(t, http.DefaultClient, "POST", path, a1.auth(), `{"data":{"type":"session","attributes":{}}}`), http.StatusBadRequest)
	wantEmpty(t, "missing data.type", do(t, http.DefaultClient, "POST", path, a1.auth(), `{"data":{"attributes":{}}}`), http.StatusInternalServerError)
	noBoot := strings.Replace(a1.capabilities(), `"system_info":{"boot_time":"2026-01-01T00:00:00Z"}`, `"system_info":{}`, 1)
	wantEmpty(t, "missing boot_time", do(t, http.DefaultClient, "POST", path, a1.auth(), noBoot), http.StatusInternalServerError)

	// 422 variants, each naming the field.
	for name, body := range map[string]string{
		"no evidence":           `{"data":{"type":"attestation","attributes":{"evidence_supported":[],"system_info":{"boot_time":"2026-01-01T00:00:00Z"}}}}`,
		"bad class":             strings.Replace(a1.capabilities(), `"evidence_class":"certification"`, `"evidence_class":"cert"`, 1),
		"old component":         strings.Replace(a1.capabilities(), `"component_version":"2.0"`, `"component_version":"1.2"`, 1),
		"bank not listed":       strings.Replace(a1.capabilities(), `"hash_algorithms":["sha256"]`, `"hash_algorithms":["sha1"]`, 1),
		"ecc key, rsassa agent": strings.Replace(strings.Replace(a1.capabilities(), `"key_algorithm":"rsa"`, `"key_algorithm":"ecc"`, 1), `"signature_schemes":["rsassa"]`, `"signature_schemes":["ecdsa"]`, 1),
		"pcr missing":           strings.Replace(a1.capabilities(), `"sha256":[0,1,2,3,4,5,6,7,`, `"sha256":[0,1,2,3,4,5,6,`, 1),
		"bad boot_time":         strings.Replace(a1.capabilities(), `"2026-01-01T00:00:00Z"`, `"yesterday"`, 1),
	} {
		r := do(t, http.DefaultClient, "POST", path, a1.auth(), body)
		wantStatus(t, name, r, http.StatusUnprocessableEntity, "invalid_resource_data")
		if p, _ := dig(t, r.doc, "errors", 0).(map[string]any)["source"].(map[string]any)["pointer"].(string); !strings.HasPrefix(p, "/data/attributes/") {
			t.Errorf("%s: pointer %q does not name a field", name, p)
		}
	}

	// 201 with Location, no data.id, v3.0 prefix and trailing slash accepted.
	c := do(t, http.DefaultClient, "POST", srv.URL+"/v3.0/agents/a1/attestations/", a1.auth(), a1.capabilities())
	wantStatus(t, "create", c, http.StatusCreated, "")
	if loc := c.header.Get("Location"); loc != "/v3.0/agents/a1/attestations/0" {
		t.Errorf("Location %q", loc)
	}
	if c.header.Get("Content-Type") != ctJSONAPIOut {
		t.Errorf("Content-Type %q", c.header.Get("Content-Type"))
	}
	// An awaiting attestation does not block a new POST; the older one becomes "old".
	c2 := a1.create()
	wantStatus(t, "superseding create", c2, http.StatusCreated, "")
	wantStatus(t, "old index", a1.update("0", a1.evidenceFor(c, nil)), http.StatusForbidden, "old_attestation")
	wantStatus(t, "future index", a1.update("7", a1.evidenceFor(c2, nil)), http.StatusNotFound, "not_found")

	// PATCH 422s.
	wantStatus(t, "no attributes", a1.update("latest", `{"data":{"type":"attestation"}}`), http.StatusUnprocessableEntity, "invalid_resource_data")
	wantStatus(t, "patch wrong type", a1.update("latest", `{"data":{"type":"x","attributes":{}}}`), http.StatusBadRequest, "invalid_request")
	reordered := `{"data":{"type":"attestation","attributes":{"evidence_collected":[{"evidence_class":"log","evidence_type":"ima_log","data":{"entries":""}}]}}}`
	r := a1.update("latest", reordered)
	wantStatus(t, "wrong order", r, http.StatusUnprocessableEntity, "invalid_resource_data")
	if !strings.Contains(string(r.body), "same order as the evidence requested") {
		t.Errorf("order 422 detail: %s", r.body)
	}
	wantStatus(t, "missing message", a1.update("latest", strings.Replace(a1.evidenceFor(c2, nil), `"message":`, `"massage":`, 1)),
		http.StatusUnprocessableEntity, "invalid_resource_data")
	wantStatus(t, "subject_data lacks a PCR", a1.update("latest", a1.evidenceFor(c2, func(q *quote) { q.pcrs = []int{0} })),
		http.StatusUnprocessableEntity, "invalid_resource_data")

	// 202 with meta and the /3/ Location quirk; the evidence is then immutable.
	u := a1.update("1", a1.evidenceFor(c2, nil))
	wantStatus(t, "update", u, http.StatusAccepted, "")
	if loc := u.header.Get("Location"); loc != "/3/agents/a1/attestations/1" {
		t.Errorf("202 Location %q", loc)
	}
	if n := dig(t, u.doc, "meta", "seconds_to_next_attestation"); n != float64(2) {
		t.Errorf("seconds_to_next_attestation %v", n)
	}
	if ev, _ := waitVerdict(t, v, "a1", 1); ev != evalPass {
		t.Fatalf("verdict %s", ev)
	}
	wantStatus(t, "immutable", a1.update("latest", a1.evidenceFor(c2, nil)), http.StatusForbidden, "evidence_immutable")

	// 429 premature, with an integer Retry-After.
	clock.Advance(500 * time.Millisecond)
	r = a1.create()
	wantStatus(t, "premature", r, http.StatusTooManyRequests, "premature_attestation")
	if ra := r.header.Get("Retry-After"); ra != "2" {
		t.Errorf("premature Retry-After %q", ra)
	}
	// Admin reads: latest answers 201, the list 500s with more than one row.
	admin := map[string]string{"Authorization": "Bearer test-admin-token"}
	wantStatus(t, "admin latest", do(t, http.DefaultClient, "GET", path+"/latest", admin, ""), http.StatusCreated, "")
	wantStatus(t, "admin index", do(t, http.DefaultClient, "GET", path+"/1", admin, ""), http.StatusCreated, "")
	wantEmpty(t, "list quirk", do(t, http.DefaultClient, "GET", path, admin, ""), http.StatusInternalServerError)
	wantStatus(t, "list with one row", do(t, http.DefaultClient, "GET", srv.URL+"/v3/agents/a2/attestations", admin, ""), http.StatusOK, "")

	// 404 for an agent removed after it got its token.
	v.RemoveAgent("a2")
	wantStatus(t, "removed agent", a2.create(), http.StatusNotFound, "not_found")
	wantStatus(t, "admin unknown agent", do(t, http.DefaultClient, "GET", srv.URL+"/v3/agents/zz/attestations/latest", admin, ""), http.StatusNotFound, "not_found")

	// 403 challenges_expired.
	clock.Advance(5 * time.Second)
	c3 := a1.create()
	wantStatus(t, "create", c3, http.StatusCreated, "")
	clock.Advance(1801 * time.Second)
	// The token expired too (180 s); 401 first.
	r = a1.update("latest", a1.evidenceFor(c3, nil))
	wantStatus(t, "expired token", r, http.StatusUnauthorized, "")
	if !strings.Contains(string(r.body), "expired") {
		t.Errorf("expired token detail: %s", r.body)
	}
	wantStatus(t, "re-PoP", a1.startSession(), http.StatusOK, "")
	wantStatus(t, "challenges expired", a1.update("latest", a1.evidenceFor(c3, nil)), http.StatusForbidden, "challenges_expired")
}

func TestTokenExtensionOnlyOnPass(t *testing.T) {
	v, srv, clock := newTestServer(t, nil)
	k := vectorKey(t, "vec-agent-1")
	if err := v.EnrollAgent(quoteOnlySpec("a1", k)); err != nil {
		t.Fatal(err)
	}
	a := newSimAgent(t, srv.URL, "a1", k)
	a.startSession()
	clock.Advance(170 * time.Second)
	i := cycle(t, a, clock) // passes at t=173: token now valid until 353
	if ev, _ := waitVerdict(t, v, "a1", i); ev != evalPass {
		t.Fatalf("verdict %s", ev)
	}
	clock.Advance(100 * time.Second)
	// A failing attestation (wrong PCR 0) does not extend.
	c := a.create()
	wantStatus(t, "create", c, http.StatusCreated, "")
	if err := a.tpm.SetPCR(0, bytesOf(0x12)); err != nil {
		t.Fatal(err)
	}
	wantStatus(t, "update", a.update("latest", a.evidenceFor(c, nil)), http.StatusAccepted, "")
	if ev, fr := waitVerdict(t, v, "a1", i+1); ev != evalFail || fr != FailurePolicyViolation {
		t.Fatalf("wrong PCR verdict %s/%s", ev, fr)
	}
	clock.Advance(81 * time.Second) // t=354 > 353
	wantStatus(t, "token not extended by the failure", a.create(), http.StatusUnauthorized, "")
}

func TestSessions(t *testing.T) {
	v, srv, clock := newTestServer(t, func(c *Config) {
		c.RateLimits = RateLimits{PerIP: 100, PerAgent: 3}
	})
	k := vectorKey(t, "vec-agent-1")
	if err := v.EnrollAgent(quoteOnlySpec("a1", k)); err != nil {
		t.Fatal(err)
	}
	a := newSimAgent(t, srv.URL, "a1", k)
	sessions := srv.URL + "/v3/sessions"

	wantStatus(t, "no agent_id", do(t, http.DefaultClient, "POST", sessions, vnd, `{"data":{"type":"session","attributes":{}}}`), http.StatusBadRequest, "")
	wantEmpty(t, "missing type", do(t, http.DefaultClient, "POST", sessions, vnd, `{"data":{"attributes":{"agent_id":"a1"}}}`), http.StatusInternalServerError)
	wantEmpty(t, "text content", do(t, http.DefaultClient, "POST", sessions, map[string]string{"Content-Type": "text/plain"}, sessionPostBody("a1")), http.StatusUnsupportedMediaType)
	// application/json works (and data.type is then not required): first session of a1.
	post := do(t, http.DefaultClient, "POST", sessions, map[string]string{"Content-Type": "application/json"},
		`{"data":{"attributes":{"agent_id":"a1","authentication_supported":[{"authentication_class":"pop","authentication_type":"tpm_pop"}]}}}`)
	wantStatus(t, "json session", post, http.StatusOK, "")
	if post.header.Get("Content-Type") != ctSession {
		t.Errorf("session Content-Type %q", post.header.Get("Content-Type"))
	}
	sid := str(t, post.doc, "data", "id")
	nonce := b64(t, str(t, post.doc, "data", "attributes", "authentication_requested", 0, "chosen_parameters", "challenge"))
	msg, sig, _ := a.tpm.Certify(nonce)
	wantStatus(t, "agent mismatch", do(t, http.DefaultClient, "PATCH", sessions+"/"+sid, vnd, sessionPatchBody(t, sid, "a2", msg, sig)), http.StatusBadRequest, "")
	// The failed PATCH consumed the session.
	wantStatus(t, "consumed", do(t, http.DefaultClient, "PATCH", sessions+"/"+sid, vnd, sessionPatchBody(t, sid, "a1", msg, sig)), http.StatusNotFound, "")

	// Per-agent limit: 3 per minute (1 used above), then 429 with an escalating block.
	wantStatus(t, "second", a.startSession(), http.StatusOK, "")
	first := a.token
	wantStatus(t, "third", a.startSession(), http.StatusOK, "")
	wantStatus(t, "old token revoked", do(t, http.DefaultClient, "POST", srv.URL+"/v3/agents/a1/attestations",
		map[string]string{"Content-Type": "application/vnd.api+json", "Authorization": "Bearer " + first}, a.capabilities()), http.StatusUnauthorized, "")
	r := do(t, http.DefaultClient, "POST", sessions, vnd, sessionPostBody("a1"))
	wantStatus(t, "agent limit", r, http.StatusTooManyRequests, "")
	if r.header.Get("Retry-After") != "60" {
		t.Errorf("first block Retry-After %q", r.header.Get("Retry-After"))
	}
	clock.Advance(61 * time.Second)
	for range 3 {
		do(t, http.DefaultClient, "POST", sessions, vnd, sessionPostBody("a1"))
	}
	r = do(t, http.DefaultClient, "POST", sessions, vnd, sessionPostBody("a1"))
	wantStatus(t, "second breach", r, http.StatusTooManyRequests, "")
	if r.header.Get("Retry-After") != "120" {
		t.Errorf("second block Retry-After %q, want the doubled 120", r.header.Get("Retry-After"))
	}

	// Unknown agent and expired nonce: 200 with evaluation fail.
	clock.Advance(10 * time.Minute)
	ghost := newSimAgent(t, srv.URL, "ghost", k)
	res := ghost.startSession()
	wantStatus(t, "unknown agent", res, http.StatusOK, "")
	if ev := str(t, res.doc, "data", "attributes", "evaluation"); ev != evalFail {
		t.Errorf("unknown agent evaluation %q", ev)
	}
	post = do(t, http.DefaultClient, "POST", sessions, vnd, sessionPostBody("a1"))
	sid = str(t, post.doc, "data", "id")
	nonce = b64(t, str(t, post.doc, "data", "attributes", "authentication_requested", 0, "chosen_parameters", "challenge"))
	msg, sig, _ = a.tpm.Certify(nonce)
	clock.Advance(61 * time.Second)
	res = do(t, http.DefaultClient, "PATCH", sessions+"/"+sid, vnd, sessionPatchBody(t, sid, "a1", msg, sig))
	wantStatus(t, "expired nonce", res, http.StatusOK, "")
	if attrs := dig(t, res.doc, "data", "attributes").(map[string]any); attrs["evaluation"] != evalFail || attrs["token_expires_at"] != nil {
		t.Errorf("expired nonce attributes %v", attrs)
	}
	// A PoP over the wrong nonce is a 401.
	post = do(t, http.DefaultClient, "POST", sessions, vnd, sessionPostBody("a1"))
	sid = str(t, post.doc, "data", "id")
	msg, sig, _ = a.tpm.Certify(make([]byte, 16))
	wantStatus(t, "wrong nonce PoP", do(t, http.DefaultClient, "PATCH", sessions+"/"+sid, vnd, sessionPatchBody(t, sid, "a1", msg, sig)), http.StatusUnauthorized, "")
}

func TestSessionRateLimitPerIP(t *testing.T) {
	_, srv, clock := newTestServer(t, func(c *Config) { c.RateLimits = RateLimits{PerIP: 2} })
	for i := range 2 {
		wantStatus(t, "within limit", do(t, http.DefaultClient, "POST", srv.URL+"/v3/sessions", vnd, sessionPostBody(fmt.Sprint("x", i))), http.StatusOK, "")
	}
	// Even a bad request counts against the IP, as the limit is checked first.
	r := do(t, http.DefaultClient, "POST", srv.URL+"/v3/sessions", vnd, `{}`)
	wantStatus(t, "ip limit", r, http.StatusTooManyRequests, "")
	if r.header.Get("Retry-After") != "60" {
		t.Errorf("Retry-After %q", r.header.Get("Retry-After"))
	}
	clock.Advance(59 * time.Second)
	wantStatus(t, "still blocked", do(t, http.DefaultClient, "POST", srv.URL+"/v3/sessions", vnd, sessionPostBody("y")), http.StatusTooManyRequests, "")
	clock.Advance(2 * time.Second)
	wantStatus(t, "block over", do(t, http.DefaultClient, "POST", srv.URL+"/v3/sessions", vnd, sessionPostBody("y")), http.StatusOK, "")
}

func TestConflictAndVerificationInProgress(t *testing.T) {
	v, srv, clock := newTestServer(t, func(c *Config) { c.VerificationTimeout = 30 * time.Second })
	k := vectorKey(t, "vec-agent-1")
	if err := v.EnrollAgent(quoteOnlySpec("a1", k)); err != nil {
		t.Fatal(err)
	}
	a := newSimAgent(t, srv.URL, "a1", k)
	// Like the real verifier, the simulator verifies inside the PATCH's handler after the 202 has been sent, so
	// the keep-alive connection that carried the PATCH stays busy until verification ends. A create sent while the
	// verification is held must therefore use a fresh connection, or it waits behind the verification for good
	// (whether the pooled connection is reused is a race, which made this test hang now and then).
	a.client = &http.Client{Transport: &http.Transport{DisableKeepAlives: true}}
	a.startSession()

	// 409: a second create commits while the first sits between its state read and its commit.
	var raced atomic.Bool
	v.beforeCommit = func() {
		if raced.CompareAndSwap(false, true) {
			wantStatus(t, "inner create", a.create(), http.StatusCreated, "")
		}
	}
	wantStatus(t, "racing create", a.create(), http.StatusConflict, "conflict")
	v.beforeCommit = nil

	// 503 while the verification is held in progress.
	release, started := make(chan struct{}), make(chan struct{})
	v.beforeVerify = func() { close(started); <-release }
	c := a.create()
	wantStatus(t, "create", c, http.StatusCreated, "")
	done := make(chan httpResult)
	go func() { done <- a.update("latest", a.evidenceFor(c, nil)) }()
	<-started
	clock.Advance(5 * time.Second)
	r := a.create()
	wantStatus(t, "in progress", r, http.StatusServiceUnavailable, "verification_in_progress")
	if r.header.Get("Retry-After") != "25" {
		t.Errorf("Retry-After %q, want the 25 s left of the timeout", r.header.Get("Retry-After"))
	}
	close(release)
	wantStatus(t, "update", <-done, http.StatusAccepted, "")
	// The 202 is sent before verification runs, so the verdict may still be on its way: wait for it, as the real
	// agent does by waiting for its next interval.
	waitVerdict(t, v, "a1", atoiSuffix(t, c.header.Get("Location")))
	v.beforeVerify = nil
	wantStatus(t, "after verification", a.create(), http.StatusCreated, "")
}

func TestProbesAndQuirks(t *testing.T) {
	_, srv, _ := newTestServer(t, nil)
	noRedirect := &http.Client{CheckRedirect: func(*http.Request, []*http.Request) error { return http.ErrUseLastResponse }}
	r := do(t, noRedirect, "GET", srv.URL+"/", nil, "")
	if r.status != http.StatusTemporaryRedirect || r.header.Get("Location") != "/v3.0/" {
		t.Errorf("/: %d %q", r.status, r.header.Get("Location"))
	}
	for _, p := range []string{"/versions", "/version", "/versions/"} {
		if r := do(t, http.DefaultClient, "GET", srv.URL+p, nil, ""); r.status != http.StatusGone {
			t.Errorf("%s: %d", p, r.status)
		}
	}
	wantEmpty(t, "v3.0 root", do(t, http.DefaultClient, "GET", srv.URL+"/v3.0/", nil, ""), http.StatusInternalServerError)
	wantEmpty(t, "v3 agent GET", do(t, http.DefaultClient, "GET", srv.URL+"/v3/agents/a1", nil, ""), http.StatusInternalServerError)
	wantEmpty(t, "v3.1", do(t, http.DefaultClient, "GET", srv.URL+"/v3.1/agents/a1/attestations/latest", nil, ""), http.StatusNotFound)
	// Anonymous GET latest is the safe health probe: 403 without touching agent state.
	wantStatus(t, "probe", do(t, http.DefaultClient, "GET", srv.URL+"/v3/agents/x/attestations/latest", nil, ""), http.StatusForbidden, "")

	for in, want := range map[string]string{
		"6f1c-42aa!x": "6f1c42aax",
		"0123456789012345678901234567890123456789": "012345678901234567890123456789012345",
	} {
		r := do(t, http.DefaultClient, "GET", srv.URL+"/versions", map[string]string{"X-Request-ID": in}, "")
		if got := r.header.Get("X-Request-Id"); got != want {
			t.Errorf("X-Request-Id for %q: %q, want %q", in, got, want)
		}
	}
}

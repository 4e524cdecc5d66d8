package client

import (
	"encoding/hex"
	"encoding/json"
	"io"
	"log"
	"net/http"
	"net/http/httptest"
	"strings"
	"sync"
	"testing"
)

// canned is one scripted response.
type canned struct {
	status int
	header map[string]string
	body   string
}

// seenRequest is what the fake verifier received.
type seenRequest struct {
	method, path, auth, requestID, contentType string
	body                                       []byte
}

// fakeVerifier replays the real verifier's recorded answers (vectors 01 and 02), with per-endpoint queues of
// scripted answers served first. It checks the protocol rules every request must follow, so any test using it
// also checks those.
type fakeVerifier struct {
	t   testing.TB
	srv *httptest.Server

	mu       sync.Mutex
	queue    map[string][]canned // by endpoint: session_create, session_pop, create, update
	defaults map[string]canned
	seen     []seenRequest
}

func newFakeVerifier(t testing.TB, tls bool) *fakeVerifier {
	t.Helper()
	v1 := loadVector(t, "01-agent1-session-pop.json")
	v2 := loadVector(t, "02-agent1-cycle1.json")
	toCanned := func(x vectorExchange) canned {
		c := canned{status: x.Response.Status, header: map[string]string{}, body: x.Response.Body}
		for k, v := range x.Response.Headers {
			if k == "Location" || k == "Content-Type" || k == "Retry-After" {
				c.header[k] = v
			}
		}
		return c
	}
	pop := toCanned(vectorResponse(t, v1, "PATCH", "/sessions/ab31a091-a95d-4545-916f-639eddfdcaa3"))
	// The recorded expiry is in the past by now; a far-future one keeps the token valid across the test.
	pop.body = strings.Replace(pop.body, `"token_expires_at": "2026-11-30T20:14:39.454007+00:00"`, `"token_expires_at": "2100-01-01T00:00:00+00:00"`, 1)
	f := &fakeVerifier{
		t:     t,
		queue: map[string][]canned{},
		defaults: map[string]canned{
			"session_create": toCanned(vectorResponse(t, v1, "POST", "/sessions")),
			"session_pop":    pop,
			"create":         toCanned(vectorResponse(t, v2, "POST", "/attestations")),
			"update":         toCanned(vectorResponse(t, v2, "PATCH", "/attestations/latest")),
		},
	}
	f.srv = httptest.NewUnstartedServer(http.HandlerFunc(f.serve))
	f.srv.Config.ErrorLog = log.New(io.Discard, "", 0) // handshake failures are expected in the TLS tests
	if tls {
		f.srv.StartTLS()
	} else {
		f.srv.Start()
	}
	t.Cleanup(f.srv.Close)
	return f
}

func (f *fakeVerifier) push(endpoint string, c ...canned) {
	f.mu.Lock()
	defer f.mu.Unlock()
	f.queue[endpoint] = append(f.queue[endpoint], c...)
}

func (f *fakeVerifier) requests() []seenRequest {
	f.mu.Lock()
	defer f.mu.Unlock()
	return append([]seenRequest(nil), f.seen...)
}

func endpointOf(method, path string) string {
	switch {
	case method == http.MethodPost && strings.HasSuffix(path, "/sessions"):
		return "session_create"
	case method == http.MethodPatch && strings.Contains(path, "/sessions/"):
		return "session_pop"
	case method == http.MethodPost && strings.HasSuffix(path, "/attestations"):
		return "create"
	case method == http.MethodPatch && strings.HasSuffix(path, "/attestations/latest"):
		return "update"
	}
	return ""
}

func (f *fakeVerifier) serve(w http.ResponseWriter, r *http.Request) {
	body, _ := io.ReadAll(r.Body)
	sr := seenRequest{
		method: r.Method, path: r.URL.Path, auth: r.Header.Get("Authorization"),
		requestID: r.Header.Get("X-Request-ID"), contentType: r.Header.Get("Content-Type"), body: body,
	}
	ep := endpointOf(r.Method, r.URL.Path)
	f.check(ep, sr)
	f.mu.Lock()
	f.seen = append(f.seen, sr)
	c, ok := f.defaults[ep]
	if q := f.queue[ep]; len(q) > 0 {
		c, ok, f.queue[ep] = q[0], true, q[1:]
	}
	f.mu.Unlock()
	if !ok {
		w.WriteHeader(http.StatusNotFound)
		return
	}
	for k, v := range c.header {
		w.Header().Set(k, v)
	}
	if w.Header().Get("Content-Type") == "" {
		w.Header().Set("Content-Type", "application/json; charset=UTF-8")
	}
	w.WriteHeader(c.status)
	_, _ = io.WriteString(w, c.body)
}

// check applies the rules every request must follow (spec §1-§3, §7).
func (f *fakeVerifier) check(ep string, r seenRequest) {
	t := f.t
	if ep == "" {
		t.Errorf("unexpected request %s %s", r.method, r.path)
		return
	}
	if !strings.HasPrefix(r.path, "/v3.0/") {
		t.Errorf("%s: path %q lacks the /v3.0 prefix", ep, r.path)
	}
	if len(r.requestID) != 32 {
		t.Errorf("%s: X-Request-ID %q is not 32 hex characters", ep, r.requestID)
	} else if _, err := hex.DecodeString(r.requestID); err != nil {
		t.Errorf("%s: X-Request-ID %q is not hex", ep, r.requestID)
	}
	if r.contentType != "application/vnd.api+json" {
		t.Errorf("%s: Content-Type %q", ep, r.contentType)
	}
	attestation := ep == "create" || ep == "update"
	if attestation && !strings.HasPrefix(r.auth, "Bearer ") {
		t.Errorf("%s: no bearer token", ep)
	}
	if !attestation && r.auth != "" {
		t.Errorf("%s: session call carries an Authorization header", ep)
	}
	var doc struct {
		Data struct {
			Type string `json:"type"`
		} `json:"data"`
	}
	if err := json.Unmarshal(r.body, &doc); err != nil {
		t.Errorf("%s: body is not JSON: %v", ep, err)
	}
	want := "session"
	if attestation {
		want = "attestation"
	}
	if doc.Data.Type != want {
		t.Errorf("%s: data.type %q, want %q", ep, doc.Data.Type, want)
	}
}

// useQuoteOnlyVector answers the negotiation with the quote-only agent's recorded 201 (PCRs 0 and 7, no IMA).
func (f *fakeVerifier) useQuoteOnlyVector(t testing.TB) {
	v := loadVector(t, "05-agent2-quoteonly.json")
	x := vectorResponse(t, v, "POST", "/attestations")
	f.mu.Lock()
	defer f.mu.Unlock()
	f.defaults["create"] = canned{status: x.Response.Status, body: x.Response.Body,
		header: map[string]string{"Location": x.Response.Headers["Location"], "Content-Type": x.Response.Headers["Content-Type"]}}
}

package simverifier

import (
	"context"
	"crypto/tls"
	"crypto/x509"
	"encoding/json"
	"errors"
	"io"
	"math"
	"net"
	"net/http"
	"os"
	"path/filepath"
	"sort"
	"strings"
	"testing"
	"time"
)

func TestFaultValidation(t *testing.T) {
	for name, f := range map[string]Faults{
		"rate above 1":     {Rules: map[Endpoint]FaultRule{EndpointAll: {ErrorRate: 1.5}}},
		"negative latency": {Rules: map[Endpoint]FaultRule{EndpointCreate: {Latency: Latency{Fixed: -1}}}},
		"p99 below median": {Rules: map[Endpoint]FaultRule{EndpointCreate: {Latency: Latency{Median: time.Second, P99: time.Millisecond}}}},
		"median alone":     {Rules: map[Endpoint]FaultRule{EndpointCreate: {Latency: Latency{Median: time.Second}}}},
		"stall no length":  {Rules: map[Endpoint]FaultRule{EndpointUpdate: {StallRate: 0.1}}},
		"status 200":       {Rules: map[Endpoint]FaultRule{EndpointUpdate: {ErrorRate: 0.1, ErrorStatus: 200}}},
		"unknown endpoint": {Rules: map[Endpoint]FaultRule{"bogus": {}}},
		"negative cpu":     {VerifyCPU: -time.Second},
	} {
		v, _, _ := newTestServer(t, nil)
		err := v.SetFaults(f)
		if err == nil {
			t.Errorf("%s: accepted", name)
			continue
		}
		if _, err := New(Config{PlainHTTP: true, Faults: f}); err == nil {
			t.Errorf("%s: New accepted it", name)
		}
	}
	if _, err := ParseEndpoint("update"); err != nil {
		t.Error(err)
	}
	if _, err := ParseEndpoint("updat"); err == nil || !strings.Contains(err.Error(), "session_create") {
		t.Errorf("ParseEndpoint error should list the names: %v", err)
	}
}

func TestParseFaultSpec(t *testing.T) {
	var f Faults
	for _, s := range []string{"update:latency-median=20ms", "update:latency-p99=200ms", "*:error-rate=0.5",
		"*:error-status=500", "*:retry-after=3", "create:stall-rate=0.1", "create:stall-for=2s", "admin:trickle-chunk=8"} {
		if err := ParseFaultSpec(s, &f); err != nil {
			t.Fatalf("%s: %v", s, err)
		}
	}
	want := Faults{Rules: map[Endpoint]FaultRule{
		EndpointUpdate: {Latency: Latency{Median: 20 * time.Millisecond, P99: 200 * time.Millisecond}},
		EndpointAll:    {ErrorRate: 0.5, ErrorStatus: 500, ErrorRetryAfter: 3},
		EndpointCreate: {StallRate: 0.1, StallFor: 2 * time.Second},
		EndpointAdmin:  {TrickleChunk: 8},
	}}
	if err := f.validate(); err != nil {
		t.Fatal(err)
	}
	for e, r := range want.Rules {
		if f.Rules[e] != r {
			t.Errorf("%s: %+v, want %+v", e, f.Rules[e], r)
		}
	}
	if got := f.rule(EndpointSessionPoP); got != want.Rules[EndpointAll] {
		t.Errorf("fallback rule %+v", got)
	}
	for spec, wantErr := range map[string]string{
		"update":                   "ENDPOINT:KEY=VALUE",
		"update:latency":           "ENDPOINT:KEY=VALUE",
		"nowhere:latency=1s":       "unknown endpoint",
		"update:speed=1":           "unknown key",
		"update:latency=fast":      "latency",
		"update:error-rate=1.5":    "probability",
		"update:huge-body-bytes=x": "huge-body-bytes",
	} {
		if err := ParseFaultSpec(spec, &f); err == nil || !strings.Contains(err.Error(), wantErr) {
			t.Errorf("%s: error %v, want one mentioning %q", spec, err, wantErr)
		}
	}
}

func TestLatencyDistribution(t *testing.T) {
	l := Latency{Fixed: 5 * time.Millisecond, Median: 20 * time.Millisecond, P99: 200 * time.Millisecond}
	r := newLockedRand(42)
	const n = 20000
	s := make([]float64, n)
	for i := range s {
		s[i] = float64(l.sample(r) - l.Fixed)
	}
	sort.Float64s(s)
	med, p99 := s[n/2], s[n*99/100]
	if math.Abs(med/float64(l.Median)-1) > 0.05 {
		t.Errorf("median %v, want about %v", time.Duration(med), l.Median)
	}
	if math.Abs(p99/float64(l.P99)-1) > 0.15 {
		t.Errorf("p99 %v, want about %v", time.Duration(p99), l.P99)
	}
	if (Latency{Fixed: time.Second}).sample(r) != time.Second {
		t.Error("a fixed latency must be exact")
	}
}

func TestInjectedFaults(t *testing.T) {
	v, srv, _ := newTestServer(t, nil)
	url := srv.URL + "/versions"
	set := func(r FaultRule) {
		t.Helper()
		if err := v.SetFaults(Faults{Rules: map[Endpoint]FaultRule{EndpointOther: r}}); err != nil {
			t.Fatal(err)
		}
	}
	get := func() (*http.Response, []byte, error) {
		resp, err := http.Get(url)
		if err != nil {
			return nil, nil, err
		}
		defer resp.Body.Close()
		b, err := io.ReadAll(resp.Body)
		return resp, b, err
	}

	set(FaultRule{ErrorRate: 1, ErrorStatus: 502, ErrorRetryAfter: 7})
	resp, body, err := get()
	if err != nil || resp.StatusCode != 502 || resp.Header.Get("Retry-After") != "7" || !strings.Contains(string(body), "injected_fault") {
		t.Errorf("error fault: %v %v %s", err, resp, body)
	}
	set(FaultRule{ErrorRate: 1})
	if resp, _, _ := get(); resp.StatusCode != 503 || resp.Header.Get("Retry-After") != "" {
		t.Errorf("default error fault: %d Retry-After %q", resp.StatusCode, resp.Header.Get("Retry-After"))
	}
	set(FaultRule{CloseRate: 1})
	if _, _, err := get(); err == nil {
		t.Error("close fault: request succeeded")
	}
	set(FaultRule{TruncateRate: 1})
	if _, _, err := get(); !errors.Is(err, io.ErrUnexpectedEOF) {
		t.Errorf("truncate fault: %v, want unexpected EOF", err)
	}
	set(FaultRule{InvalidJSONRate: 1})
	if _, b, _ := get(); json.Valid(b) {
		t.Errorf("invalid JSON fault produced valid JSON: %s", b)
	}
	set(FaultRule{WrongContentTypeRate: 1})
	if resp, _, _ := get(); !strings.HasPrefix(resp.Header.Get("Content-Type"), "text/plain") {
		t.Errorf("content type fault: %q", resp.Header.Get("Content-Type"))
	}
	set(FaultRule{HugeBodyRate: 1, HugeBodyBytes: 1 << 20})
	if _, b, _ := get(); len(b) < 1<<20 || !json.Valid(b) {
		t.Errorf("huge body fault: %d bytes", len(b))
	}
	set(FaultRule{TrickleRate: 1, TrickleChunk: 5, TrickleDelay: time.Millisecond})
	if _, b, err := get(); err != nil || !json.Valid(b) {
		t.Errorf("trickle fault must deliver the whole body: %v %s", err, b)
	}
	// A stall outlasting the client's deadline: the client times out, the server gives up with it.
	set(FaultRule{StallRate: 1, StallFor: time.Hour})
	c := &http.Client{Timeout: 50 * time.Millisecond}
	if _, err := c.Get(url); err == nil {
		t.Error("stall fault: request did not time out")
	}
	// Faults apply only to their endpoint kind.
	set(FaultRule{ErrorRate: 1})
	if r := do(t, http.DefaultClient, "POST", srv.URL+"/v3/sessions", vnd, sessionPostBody("x")); r.status != http.StatusOK {
		t.Errorf("a fault for other endpoints hit the session POST: %d", r.status)
	}
	if got := v.Faults().Rules[EndpointOther].ErrorRate; got != 1 {
		t.Errorf("Faults() = %v", got)
	}
}

// TestVerificationAfterAbortedResponse: a body fault that drops the connection after the 202 must not stop the
// verification, as on the real verifier.
func TestVerificationAfterAbortedResponse(t *testing.T) {
	v, srv, clock := newTestServer(t, func(c *Config) { c.Workers = 1 })
	k := vectorKey(t, "vec-agent-2")
	if err := v.EnrollAgent(quoteOnlySpec("a1", k)); err != nil {
		t.Fatal(err)
	}
	a := newSimAgent(t, srv.URL, "a1", k)
	a.startSession()
	clock.Advance(3 * time.Second)
	c := a.create()
	if err := v.SetFaults(Faults{Rules: map[Endpoint]FaultRule{EndpointUpdate: {TruncateRate: 1}}, VerifyHashIterations: 1000}); err != nil {
		t.Fatal(err)
	}
	req, _ := http.NewRequest("PATCH", srv.URL+"/v3/agents/a1/attestations/latest", strings.NewReader(a.evidenceFor(c, nil)))
	for k, val := range a.auth() {
		req.Header.Set(k, val)
	}
	if resp, err := http.DefaultClient.Do(req); err == nil {
		_, err = io.ReadAll(resp.Body)
		resp.Body.Close()
		if err == nil {
			t.Fatal("truncated 202 was read completely")
		}
	}
	if ev, _ := waitVerdict(t, v, "a1", 0); ev != evalPass {
		t.Fatalf("verdict %s", ev)
	}
}

func TestServeTLS(t *testing.T) {
	dir := t.TempDir()
	cfg := DefaultConfig()
	cfg.TLSDir = dir
	cfg.SessionHashIterations = 1
	v, err := New(cfg)
	if err != nil {
		t.Fatal(err)
	}
	for _, f := range []string{"ca.crt", "server.crt", "server.key", "client-cert.crt", "client-private.pem"} {
		if _, err := os.Stat(filepath.Join(dir, f)); err != nil {
			t.Errorf("%s not written: %v", f, err)
		}
	}
	ln, err := net.Listen("tcp", "127.0.0.1:0")
	if err != nil {
		t.Fatal(err)
	}
	ctx, cancel := context.WithCancel(context.Background())
	served := make(chan error, 1)
	go func() { served <- v.Serve(ctx, ln) }()

	pool := x509.NewCertPool()
	if !pool.AppendCertsFromPEM(v.CACertPEM()) {
		t.Fatal("CA PEM not usable")
	}
	adminCert, err := tls.LoadX509KeyPair(filepath.Join(dir, "client-cert.crt"), filepath.Join(dir, "client-private.pem"))
	if err != nil {
		t.Fatal(err)
	}
	for _, host := range []string{"127.0.0.1", "localhost"} {
		base := "https://" + strings.Replace(ln.Addr().String(), "127.0.0.1", host, 1)
		agentClient := &http.Client{Transport: &http.Transport{TLSClientConfig: &tls.Config{RootCAs: pool}}}
		adminClient := &http.Client{Transport: &http.Transport{TLSClientConfig: &tls.Config{RootCAs: pool, Certificates: []tls.Certificate{adminCert}}}}
		if r := do(t, agentClient, "GET", base+"/v3/agents/x/attestations/latest", nil, ""); r.status != http.StatusForbidden {
			t.Errorf("%s anonymous: %d", host, r.status)
		}
		// The admin passes authorization and learns the agent does not exist.
		if r := do(t, adminClient, "GET", base+"/v3/agents/x/attestations/latest", nil, ""); r.status != http.StatusNotFound {
			t.Errorf("%s admin: %d %s", host, r.status, r.body)
		}
		// With an Authorization header the certificate no longer counts.
		if r := do(t, adminClient, "GET", base+"/v3/agents/x/attestations/latest", map[string]string{"Authorization": "Bearer x"}, ""); r.status != http.StatusUnauthorized {
			t.Errorf("%s admin with bearer: %d", host, r.status)
		}
		agentClient.CloseIdleConnections()
		adminClient.CloseIdleConnections()
	}
	cancel()
	if err := <-served; err != nil {
		t.Fatalf("Serve: %v", err)
	}
}

// '*' adds to every endpoint, also to those with rules of their own; a key an endpoint sets overrides the same key
// from '*' there. Before, '*:error-rate=0.02' next to update: rules gave 0 errors on 578 updates.
func TestStarAddsToEveryEndpoint(t *testing.T) {
	var f Faults
	for _, s := range []string{"*:error-rate=0.02", "*:latency=5ms", "*:stall-for=1s", "update:latency-median=50ms",
		"update:latency-p99=400ms", "create:error-rate=0.5", "create:error-status=429", "session_pop:stall-rate=0.1"} {
		if err := ParseFaultSpec(s, &f); err != nil {
			t.Fatalf("%s: %v", s, err)
		}
	}
	if err := f.validate(); err != nil {
		t.Fatal(err)
	}
	want := map[Endpoint]FaultRule{
		EndpointUpdate: {ErrorRate: 0.02, StallFor: time.Second,
			Latency: Latency{Fixed: 5 * time.Millisecond, Median: 50 * time.Millisecond, P99: 400 * time.Millisecond}},
		EndpointCreate:     {ErrorRate: 0.5, ErrorStatus: 429, StallFor: time.Second, Latency: Latency{Fixed: 5 * time.Millisecond}},
		EndpointSessionPoP: {ErrorRate: 0.02, StallRate: 0.1, StallFor: time.Second, Latency: Latency{Fixed: 5 * time.Millisecond}},
		EndpointAdmin:      {ErrorRate: 0.02, StallFor: time.Second, Latency: Latency{Fixed: 5 * time.Millisecond}},
	}
	for e, w := range want {
		if got := f.rule(e); got != w {
			t.Errorf("%s: %+v, want %+v", e, got, w)
		}
	}
	// Validation sees the combined rules: a stall rate set for one endpoint takes its duration from '*'.
	var g Faults
	for _, s := range []string{"*:stall-rate=0.5", "update:latency=1ms"} {
		if err := ParseFaultSpec(s, &g); err != nil {
			t.Fatal(err)
		}
	}
	if err := g.validate(); err == nil || !strings.Contains(err.Error(), "stall duration") {
		t.Errorf("validate = %v, want the missing stall duration", err)
	}
}

package simverifier

import (
	"context"
	"encoding/json"
	"net/http"
	"net/http/httptest"
	"strings"
	"testing"
	"time"
)

// vectorExchange replays one recorded request and checks the recorded status, request-id echo, Location and
// content type. It returns the simulator's response.
func vectorExchange(t *testing.T, base string, ex any) httpResult {
	t.Helper()
	req := dig(t, ex, "request")
	hdr := map[string]string{}
	for _, k := range []string{"Content-Type", "X-Request-ID", "Authorization"} {
		if v, ok := dig(t, req, "headers").(map[string]any)[k].(string); ok {
			hdr[k] = v
		}
	}
	label := str(t, ex, "label")
	res := do(t, http.DefaultClient, str(t, req, "method"), base+str(t, req, "path"), hdr, str(t, req, "body"))
	wantStatus := int(dig(t, ex, "response", "status").(float64))
	if res.status != wantStatus {
		t.Fatalf("%s: status %d, recorded %d; body %s", label, res.status, wantStatus, res.body)
	}
	rh := dig(t, ex, "response", "headers").(map[string]any)
	if got, want := res.header.Get("X-Request-Id"), rh["X-Request-Id"]; got != want {
		t.Errorf("%s: X-Request-Id %q, recorded %q", label, got, want)
	}
	if want, ok := rh["Location"].(string); ok && res.header.Get("Location") != want {
		t.Errorf("%s: Location %q, recorded %q", label, res.header.Get("Location"), want)
	}
	if want := rh["Content-Type"].(string); want == ctJSONAPIOut && res.header.Get("Content-Type") != want {
		t.Errorf("%s: Content-Type %q, recorded %q", label, res.header.Get("Content-Type"), want)
	}
	return res
}

func sessionScript(t *testing.T, ent *scriptedEntropy, exchanges any, challenge string) {
	ent.nonces = append(ent.nonces, b64(t, challenge))
	ent.sessionIDs = append(ent.sessionIDs, str(t, decodeRecorded(t, dig(t, exchanges, 0)), "data", "id"))
	if body := decodeRecorded(t, dig(t, exchanges, 1)); body != nil {
		if tok, ok := dig(t, body, "data", "attributes").(map[string]any)["token"].(string); ok {
			ent.tokenSecrets = append(ent.tokenSecrets, tok[strings.IndexByte(tok, '.')+1:])
			return
		}
	}
	ent.tokenSecrets = append(ent.tokenSecrets, "unused-secret")
}

func decodeRecorded(t *testing.T, ex any) map[string]any {
	var m map[string]any
	if err := json.Unmarshal([]byte(str(t, ex, "response", "body")), &m); err != nil {
		t.Fatalf("recorded body: %v", err)
	}
	return m
}

// TestVectors feeds the recorded requests of vectors 01-08 to the simulator, with the recorded challenges,
// nonces, session ids and tokens injected, and checks statuses, quirks and verdicts.
func TestVectors(t *testing.T) {
	enr := vector(t, "00-enrollment.json")
	v01 := vector(t, "01-agent1-session-pop.json")
	cycles := []map[string]any{
		vector(t, "02-agent1-cycle1.json"), vector(t, "03-agent1-cycle2.json"), vector(t, "04-agent1-cycle3.json"),
	}
	v05 := vector(t, "05-agent2-quoteonly.json")
	negs := []map[string]any{vector(t, "06-neg-quote-clock-not-increasing.json"), vector(t, "07-neg-quote-exact-replay.json")}
	v08 := vector(t, "08-neg-pop-wrong-key.json")

	ent := &scriptedEntropy{}
	sessionScript(t, ent, dig(t, v01, "http"), str(t, v01, "inputs", "challenge_b64"))
	sessionScript(t, ent, dig(t, v05, "session", "http"), str(t, v05, "session", "inputs", "challenge_b64"))
	for i := range 2 {
		variant := dig(t, v08, "variants", i)
		sessionScript(t, ent, dig(t, variant, "http"), str(t, variant, "inputs", "challenge_b64"))
	}
	for _, c := range cycles {
		ent.challenges = append(ent.challenges, b64(t, str(t, c, "inputs", "challenge_b64")))
	}
	ent.challenges = append(ent.challenges, b64(t, str(t, v05, "cycle1", "inputs", "challenge_b64")))
	ent.challenges = append(ent.challenges, b64(t, str(t, negs[0], "inputs", "challenge_b64")))
	ent.challenges = append(ent.challenges, b64(t, str(t, negs[1], "inputs", "challenge_b64 (new, as received)")))

	clock := newFakeClock()
	cfg := testConfig(clock, ent)
	cfg.ChallengeLifetime = 900 * time.Second
	v, err := New(cfg)
	if err != nil {
		t.Fatal(err)
	}
	keys := dig(t, enr, "keys")
	if err := v.EnrollAgent(AgentSpec{
		ID:            "vec-agent-1",
		AKPublic:      b64(t, str(t, keys, "vec-agent-1", "tpm2b_public_b64 (= verifiermain.ak_tpm)")),
		IMAPolicyJSON: []byte(str(t, enr, "ima_policy_json")),
		IMAGenerator:  2,
	}); err != nil {
		t.Fatal(err)
	}
	pol, err := ParseTPMPolicy(str(t, enr, "agent2_tpm_policy"))
	if err != nil {
		t.Fatal(err)
	}
	if err := v.EnrollAgent(AgentSpec{
		ID:            "vec-agent-2",
		AKPublic:      b64(t, str(t, keys, "vec-agent-2", "tpm2b_public_b64 (= verifiermain.ak_tpm)")),
		TPMPolicy:     pol,
		IMAPolicyJSON: []byte(str(t, enr, "empty_policy_json (generator 1)")),
		IMAGenerator:  1,
	}); err != nil {
		t.Fatal(err)
	}
	srv := httptest.NewServer(v.Handler())
	defer srv.Close()

	checkPoP := func(exchanges any) {
		post := vectorExchange(t, srv.URL, dig(t, exchanges, 0))
		want := decodeRecorded(t, dig(t, exchanges, 0))
		if got, w := str(t, post.doc, "data", "attributes", "authentication_requested", 0, "chosen_parameters", "challenge"),
			str(t, want, "data", "attributes", "authentication_requested", 0, "chosen_parameters", "challenge"); got != w {
			t.Errorf("session challenge %q, recorded %q", got, w)
		}
		patch := vectorExchange(t, srv.URL, dig(t, exchanges, 1))
		want = decodeRecorded(t, dig(t, exchanges, 1))
		for _, k := range []string{"evaluation", "token"} {
			w, _ := dig(t, want, "data", "attributes").(map[string]any)[k]
			g, _ := dig(t, patch.doc, "data", "attributes").(map[string]any)[k]
			if g != w {
				t.Errorf("session PATCH %s = %v, recorded %v", k, g, w)
			}
		}
	}
	checkCycle := func(agentID string, exchanges any, expected any) {
		clock.Advance(3 * time.Second)
		post := vectorExchange(t, srv.URL, dig(t, exchanges, 0))
		if _, ok := dig(t, post.doc, "data").(map[string]any)["id"]; ok {
			t.Error("201 body has data.id; the real verifier sends none")
		}
		index := atoiSuffix(t, post.header.Get("Location"))
		wantReq := dig(t, decodeRecorded(t, dig(t, exchanges, 0)), "data", "attributes", "evidence_requested")
		gotReq := dig(t, post.doc, "data", "attributes", "evidence_requested")
		if !sameRequested(wantReq, gotReq) {
			t.Errorf("evidence_requested differs:\n got  %v\n want %v", gotReq, wantReq)
		}
		patch := vectorExchange(t, srv.URL, dig(t, exchanges, 1))
		wantMeta := dig(t, decodeRecorded(t, dig(t, exchanges, 1)), "meta", "seconds_to_next_attestation")
		if got := dig(t, patch.doc, "meta", "seconds_to_next_attestation"); got != wantMeta {
			t.Errorf("seconds_to_next_attestation %v, recorded %v", got, wantMeta)
		}
		ctx, cancel := context.WithTimeout(context.Background(), 10*time.Second)
		defer cancel()
		ev, reason, err := v.WaitVerdict(ctx, agentID, index)
		if err != nil {
			t.Fatal(err)
		}
		wantEval := str(t, expected, "evaluation")
		wantReason, _ := dig(t, expected, "failure_reason").(string)
		if ev != wantEval || reason != wantReason {
			t.Errorf("%s/%d verdict %s/%q, recorded %s/%q", agentID, index, ev, reason, wantEval, wantReason)
		}
	}

	checkPoP(dig(t, v01, "http"))
	for _, c := range cycles {
		checkCycle("vec-agent-1", dig(t, c, "http"), dig(t, c, "expected"))
	}
	checkPoP(dig(t, v05, "session", "http"))
	checkCycle("vec-agent-2", dig(t, v05, "cycle1", "http"), dig(t, v05, "expected"))
	for _, n := range negs {
		checkCycle("vec-agent-1", dig(t, n, "http"), dig(t, n, "expected"))
	}
	for i := range 2 {
		checkPoP(dig(t, v08, "variants", i, "http"))
	}

	// The earlier verdicts are still readable (bounded history of 4).
	if ev, _, done, ok := v.Verdict("vec-agent-1", 2); !ok || !done || ev != evalPass {
		t.Errorf("verdict of attestation 2 after two more: %s done=%v ok=%v", ev, done, ok)
	}
	if _, _, _, ok := v.Verdict("vec-agent-1", 0); ok {
		t.Error("verdict of attestation 0 should have left the history of 4")
	}
	// Admin GET latest answers 201 with the /3/ Location and no failure_reason.
	res := do(t, http.DefaultClient, "GET", srv.URL+"/v3/agents/vec-agent-1/attestations/latest",
		map[string]string{"Authorization": "Bearer test-admin-token"}, "")
	if res.status != http.StatusCreated || res.header.Get("Location") != "/3/agents/vec-agent-1/attestations/4" {
		t.Errorf("admin GET latest: %d %q", res.status, res.header.Get("Location"))
	}
	if ev := str(t, res.doc, "data", "attributes", "evaluation"); ev != evalFail {
		t.Errorf("admin GET latest evaluation %q", ev)
	}
	if strings.Contains(string(res.body), "failure_reason") {
		t.Error("admin GET must not carry failure_reason")
	}
	if s := string(res.body); !strings.Contains(s, `"clock":4000`) {
		t.Errorf("admin GET lacks the parsed clock_info: %s", s)
	}
}

func atoiSuffix(t *testing.T, loc string) int {
	t.Helper()
	i := strings.LastIndexByte(loc, '/')
	n := 0
	for _, c := range loc[i+1:] {
		if c < '0' || c > '9' {
			t.Fatalf("Location %q does not end in an index", loc)
		}
		n = n*10 + int(c-'0')
	}
	return n
}

// sameRequested compares evidence_requested lists by class, type and the chosen parameters that matter.
func sameRequested(want, got any) bool {
	w, _ := want.([]any)
	g, _ := got.([]any)
	if len(w) != len(g) {
		return false
	}
	for i := range w {
		wi, gi := w[i].(map[string]any), g[i].(map[string]any)
		if wi["evidence_type"] != gi["evidence_type"] || wi["evidence_class"] != gi["evidence_class"] {
			return false
		}
		wc, gc := wi["chosen_parameters"].(map[string]any), gi["chosen_parameters"].(map[string]any)
		for _, k := range []string{"challenge", "signature_scheme", "hash_algorithm", "starting_offset", "format"} {
			if wc[k] != gc[k] {
				return false
			}
		}
		wb, _ := json.Marshal(wc["selected_subjects"])
		gb, _ := json.Marshal(gc["selected_subjects"])
		if string(wb) != string(gb) {
			return false
		}
	}
	return true
}

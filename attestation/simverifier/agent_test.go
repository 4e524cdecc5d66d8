package simverifier

import (
	"crypto/rsa"
	"crypto/x509"
	"encoding/base64"
	"encoding/hex"
	"encoding/json"
	"encoding/pem"
	"net/http"
	"net/http/httptest"
	"testing"

	"github.com/attestload/attestload/attestation/softtpm"
)

// vectorKey loads one of the published throwaway test keys, so tests need no RSA key generation.
func vectorKey(t testing.TB, name string) *softtpm.Key {
	t.Helper()
	enr := vector(t, "00-enrollment.json")
	block, _ := pem.Decode([]byte(str(t, enr, "keys", name, "private_key_pem")))
	if block == nil {
		t.Fatal("no PEM block")
	}
	priv, err := x509.ParsePKCS8PrivateKey(block.Bytes)
	if err != nil {
		t.Fatal(err)
	}
	k, err := softtpm.NewKey(priv.(*rsa.PrivateKey))
	if err != nil {
		t.Fatal(err)
	}
	return k
}

// Quote-only policy used by the protocol tests: PCRs 0 and 7 must hold these values.
var (
	pcr0 = bytesOf(0x11)
	pcr7 = bytesOf(0x77)
)

func bytesOf(b byte) []byte {
	out := make([]byte, 32)
	for i := range out {
		out[i] = b
	}
	return out
}

func quoteOnlySpec(id string, k *softtpm.Key) AgentSpec {
	return AgentSpec{
		ID: id, AKPublic: k.Public,
		TPMPolicy: map[string][]string{"0": {hex.EncodeToString(pcr0)}, "7": {"0x" + hex.EncodeToString(pcr7)}},
	}
}

// simAgent drives the protocol by hand (without the client package).
type simAgent struct {
	t      testing.TB
	id     string
	key    *softtpm.Key
	tpm    *softtpm.TPM
	base   string
	client *http.Client
	token  string
	boot   string
	// imaEntries returns the log text from an offset and the total entry count; nil for quote-only agents.
	imaEntries func(from int) (text string, total int)
}

func newSimAgent(t testing.TB, base, id string, k *softtpm.Key) *simAgent {
	tpm := softtpm.NewTPM(k)
	if err := tpm.SetPCR(0, pcr0); err != nil {
		t.Fatal(err)
	}
	if err := tpm.SetPCR(7, pcr7); err != nil {
		t.Fatal(err)
	}
	return &simAgent{t: t, id: id, key: k, tpm: tpm, base: base, client: http.DefaultClient, boot: "2026-01-01T00:00:00Z"}
}

func mustJSON(t testing.TB, v any) string {
	t.Helper()
	b, err := json.Marshal(v)
	if err != nil {
		t.Fatal(err)
	}
	return string(b)
}

var vnd = map[string]string{"Content-Type": "application/vnd.api+json"}

func sessionPostBody(agentID string) string {
	return `{"data":{"type":"session","attributes":{"agent_id":"` + agentID +
		`","authentication_supported":[{"authentication_class":"pop","authentication_type":"tpm_pop"}]}}}`
}

func sessionPatchBody(t testing.TB, sid, agentID string, msg, sig []byte) string {
	return mustJSON(t, map[string]any{"data": map[string]any{"type": "session", "id": sid, "attributes": map[string]any{
		"agent_id": agentID,
		"authentication_provided": []any{map[string]any{"authentication_class": "pop", "authentication_type": "tpm_pop",
			"data": map[string]any{"message": base64.StdEncoding.EncodeToString(msg), "signature": base64.StdEncoding.EncodeToString(sig)}}},
	}}})
}

// startSession runs POST + PATCH and returns the PATCH result (token stored on success).
func (a *simAgent) startSession() httpResult {
	a.t.Helper()
	post := do(a.t, a.client, "POST", a.base+"/v3/sessions", vnd, sessionPostBody(a.id))
	if post.status != http.StatusOK {
		a.t.Fatalf("session POST: %d %s", post.status, post.body)
	}
	sid := str(a.t, post.doc, "data", "id")
	nonce := b64(a.t, str(a.t, post.doc, "data", "attributes", "authentication_requested", 0, "chosen_parameters", "challenge"))
	msg, sig, err := a.tpm.Certify(nonce)
	if err != nil {
		a.t.Fatal(err)
	}
	res := do(a.t, a.client, "PATCH", a.base+"/v3/sessions/"+sid, vnd, sessionPatchBody(a.t, sid, a.id, msg, sig))
	if tok, ok := dig(a.t, res.doc, "data", "attributes").(map[string]any)["token"].(string); ok {
		a.token = tok
	}
	return res
}

func (a *simAgent) auth() map[string]string {
	return map[string]string{"Content-Type": "application/vnd.api+json", "Authorization": "Bearer " + a.token}
}

func (a *simAgent) capabilities() string {
	items := []any{map[string]any{
		"evidence_class": "certification", "evidence_type": "tpm_quote",
		"capabilities": map[string]any{
			"component_version": "2.0", "hash_algorithms": []string{"sha256"}, "signature_schemes": []string{"rsassa"},
			"available_subjects": map[string]any{"sha256": []int{0, 1, 2, 3, 4, 5, 6, 7, 8, 9, 10, 11, 12, 13, 14, 15, 16, 17, 18, 19, 20, 21, 22, 23}},
			"certification_keys": []any{map[string]any{"key_class": "asymmetric", "key_algorithm": "rsa", "key_size": 2048,
				"server_identifier": "ak", "local_identifier": "att_local_identifier", "public": a.key.PublicBase64()}},
		},
	}}
	if a.imaEntries != nil {
		_, total := a.imaEntries(0)
		items = append(items, map[string]any{"evidence_class": "log", "evidence_type": "ima_log",
			"capabilities": map[string]any{"entry_count": total, "supports_partial_access": true, "appendable": true, "formats": []string{"text/plain"}}})
	}
	return mustJSON(a.t, map[string]any{"data": map[string]any{"type": "attestation", "attributes": map[string]any{
		"evidence_supported": items, "system_info": map[string]any{"boot_time": a.boot},
	}}})
}

func (a *simAgent) create() httpResult {
	a.t.Helper()
	return do(a.t, a.client, "POST", a.base+"/v3/agents/"+a.id+"/attestations", a.auth(), a.capabilities())
}

// quote is how evidence is built from a 201; tests override fields to break it.
type quote struct {
	extraData []byte
	pcrs      []int
	message   []byte
	signature []byte
	subject   []byte
}

// evidenceFor builds the PATCH body for a 201 response; mutate may alter the quote before encoding.
func (a *simAgent) evidenceFor(created httpResult, mutate func(q *quote)) string {
	a.t.Helper()
	req := dig(a.t, created.doc, "data", "attributes", "evidence_requested").([]any)
	var items []any
	for _, it := range req {
		m := it.(map[string]any)
		cp := m["chosen_parameters"].(map[string]any)
		switch m["evidence_type"] {
		case "tpm_quote":
			q := &quote{extraData: b64(a.t, cp["challenge"].(string))}
			for _, p := range cp["selected_subjects"].(map[string]any)["sha256"].([]any) {
				q.pcrs = append(q.pcrs, int(p.(float64)))
			}
			if mutate != nil {
				mutate(q)
			}
			if q.message == nil {
				var err error
				q.message, q.signature, q.subject, err = a.tpm.Quote(q.extraData, q.pcrs)
				if err != nil {
					a.t.Fatal(err)
				}
			}
			items = append(items, map[string]any{"evidence_class": "certification", "evidence_type": "tpm_quote",
				"data": map[string]any{"subject_data": base64.StdEncoding.EncodeToString(q.subject),
					"message": base64.StdEncoding.EncodeToString(q.message), "signature": base64.StdEncoding.EncodeToString(q.signature)}})
		case "ima_log":
			from := int(cp["starting_offset"].(float64))
			text, _ := a.imaEntries(from)
			items = append(items, map[string]any{"evidence_class": "log", "evidence_type": "ima_log",
				"data": map[string]any{"entries": text}})
		}
	}
	return mustJSON(a.t, map[string]any{"data": map[string]any{"type": "attestation", "attributes": map[string]any{"evidence_collected": items}}})
}

func (a *simAgent) update(which, body string) httpResult {
	a.t.Helper()
	return do(a.t, a.client, "PATCH", a.base+"/v3/agents/"+a.id+"/attestations/"+which, a.auth(), body)
}

// newTestServer builds a verifier on a fake clock with two quote-only agents ("a1" and "a2") and serves it.
func newTestServer(t testing.TB, mod func(*Config)) (*Verifier, *httptest.Server, *fakeClock) {
	t.Helper()
	clock := newFakeClock()
	cfg := testConfig(clock, nil)
	if mod != nil {
		mod(&cfg)
	}
	v, err := New(cfg)
	if err != nil {
		t.Fatal(err)
	}
	srv := httptest.NewServer(v.Handler())
	t.Cleanup(srv.Close)
	return v, srv, clock
}

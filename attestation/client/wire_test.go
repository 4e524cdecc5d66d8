package client

import (
	"encoding/base64"
	"encoding/json"
	"net/http"
	"strings"
	"testing"
	"time"

	"github.com/attestload/attestload/internal/sharedtest"
)

func TestParseRecordedSessionExchange(t *testing.T) {
	v := loadVector(t, "01-agent1-session-pop.json")
	post := vectorResponse(t, v, "POST", "/sessions")
	s, err := parseSessionCreated([]byte(post.Response.Body))
	if err != nil {
		t.Fatal(err)
	}
	if s.ID != "ab31a091-a95d-4545-916f-639eddfdcaa3" {
		t.Errorf("session id = %q", s.ID)
	}
	want, _ := base64.StdEncoding.DecodeString("eWFxSz/pRp2FDsqc5kmLbQ==")
	if string(s.Challenge) != string(want) || len(s.Challenge) != 16 {
		t.Errorf("challenge = %x, want %x", s.Challenge, want)
	}

	patch := vectorResponse(t, v, "PATCH", "/sessions/ab31a091-a95d-4545-916f-639eddfdcaa3")
	r, err := parsePoPResult([]byte(patch.Response.Body))
	if err != nil {
		t.Fatal(err)
	}
	if !r.Pass || !strings.HasPrefix(r.Token, "ab31a091-") {
		t.Errorf("pop result pass=%v token prefix wrong", r.Pass)
	}
	wantExp := time.Date(2026, 11, 30, 20, 14, 39, 454007000, time.UTC)
	if !r.Expires.Equal(wantExp) {
		t.Errorf("expires = %v, want %v", r.Expires, wantExp)
	}
}

func TestParseRecordedPoPRejection(t *testing.T) {
	b, err := jsonFromVector(t, "08-neg-pop-wrong-key.json")
	if err != nil {
		t.Fatal(err)
	}
	for _, body := range b {
		r, err := parsePoPResult([]byte(body))
		if err != nil {
			t.Fatal(err)
		}
		if r.Pass || r.Token != "" {
			t.Errorf("rejected PoP parsed as pass")
		}
	}
}

// jsonFromVector returns the 401 response bodies of the wrong-key vector's variants.
func jsonFromVector(t *testing.T, name string) ([]string, error) {
	t.Helper()
	var doc struct {
		Variants []struct {
			HTTP []vectorExchange `json:"http"`
		} `json:"variants"`
	}
	raw := sharedtest.Vector(t, name)
	if err := json.Unmarshal(raw, &doc); err != nil {
		return nil, err
	}
	var out []string
	for _, v := range doc.Variants {
		for _, x := range v.HTTP {
			if x.Request.Method == "PATCH" {
				if x.Response.Status != http.StatusUnauthorized {
					t.Fatalf("vector PATCH status %d, want 401", x.Response.Status)
				}
				out = append(out, x.Response.Body)
			}
		}
	}
	if len(out) == 0 {
		t.Fatal("no PoP PATCH in vector")
	}
	return out, nil
}

func TestParseRecordedNegotiation(t *testing.T) {
	for _, tc := range []struct {
		file       string
		index      int
		pcrs       []int
		imaOffset  int // -1: no ima_log requested
		challenges string
	}{
		{"02-agent1-cycle1.json", 0, []int{10}, 0, "1boquaZ0K3emDHbgAfMC9g=="},
		{"03-agent1-cycle2.json", 1, []int{10}, 4, ""},
		{"05-agent2-quoteonly.json", -1, []int{0, 7}, -1, ""},
	} {
		t.Run(tc.file, func(t *testing.T) {
			v := loadVector(t, tc.file)
			x := vectorResponse(t, v, "POST", "/attestations")
			n, err := parseNegotiation([]byte(x.Response.Body), x.Response.Headers["Location"])
			if err != nil {
				t.Fatal(err)
			}
			if n.Index == nil {
				t.Fatal("no index")
			}
			if tc.index >= 0 && *n.Index != tc.index {
				t.Errorf("index = %d, want %d", *n.Index, tc.index)
			}
			q := n.Items[0]
			if q.Type != "tpm_quote" || q.SigScheme != "rsassa" || q.HashAlg != "sha256" || len(q.Challenge) != 16 {
				t.Errorf("quote item = %+v", q)
			}
			if tc.challenges != "" && q.ChallengeText != tc.challenges {
				t.Errorf("challenge text = %q", q.ChallengeText)
			}
			if !equalInts(q.PCRs, tc.pcrs) {
				t.Errorf("pcrs = %v, want %v", q.PCRs, tc.pcrs)
			}
			if tc.imaOffset < 0 {
				if len(n.Items) != 1 {
					t.Errorf("items = %d, want only the quote", len(n.Items))
				}
				return
			}
			if len(n.Items) != 2 || n.Items[1].Type != "ima_log" || n.Items[1].StartingOffset != tc.imaOffset {
				t.Errorf("ima item = %+v", n.Items[1:])
			}
		})
	}
}

func TestParseRecordedAccepted(t *testing.T) {
	v := loadVector(t, "02-agent1-cycle1.json")
	x := vectorResponse(t, v, "PATCH", "/attestations/latest")
	next, err := parseAccepted([]byte(x.Response.Body))
	if err != nil {
		t.Fatal(err)
	}
	if next == nil || *next != 2 {
		t.Errorf("seconds_to_next_attestation = %v, want 2", next)
	}
}

func TestParseAPIError(t *testing.T) {
	for _, tc := range []struct{ body, code, detail string }{
		{`{"errors":[{"status":"429","code":"premature_attestation","detail":"Wait 2 seconds"}],"jsonapi":{"version":"1.1"}}`, "premature_attestation", "Wait 2 seconds"},
		{`{"errors":[{"status":"400","title":"Bad Request","detail":"agent_id is required"}]}`, "", "agent_id is required"},
		{`{"errors":[{"title":"Not Found"}]}`, "", "Not Found"},
		{``, "", ""},
		{`<html>500</html>`, "", ""},
		{`{"errors":[{"code":42,"detail":["x"]}]}`, "", ""},
		{`{"errors":[]}`, "", ""},
	} {
		e := parseAPIError([]byte(tc.body))
		if e.Code != tc.code || e.Detail != tc.detail {
			t.Errorf("parseAPIError(%q) = %+v, want code %q detail %q", tc.body, e, tc.code, tc.detail)
		}
	}
}

func TestParseNegotiationRejects(t *testing.T) {
	quote := func(params string) string {
		return `{"data":{"attributes":{"evidence_requested":[{"evidence_class":"certification","evidence_type":"tpm_quote","chosen_parameters":` + params + `}]}}}`
	}
	for _, tc := range []struct{ name, body, want string }{
		{"not json", `nope`, "invalid character"},
		{"no data", `{}`, "no data"},
		{"empty request", `{"data":{"attributes":{"evidence_requested":[]}}}`, "evidence_requested is empty"},
		{"bad challenge", quote(`{"challenge":"***","selected_subjects":{"sha256":[10]}}`), "challenge"},
		{"no pcrs", quote(`{"challenge":"AAAA","selected_subjects":{"sha256":null}}`), "selects no sha256 PCR"},
		{"other bank", quote(`{"challenge":"AAAA","selected_subjects":{"sha1":[10]}}`), `bank "sha1"`},
		{"pcr range", quote(`{"challenge":"AAAA","selected_subjects":{"sha256":[24]}}`), "outside 0-23"},
		{"no offset", `{"data":{"attributes":{"evidence_requested":[{"evidence_type":"ima_log","chosen_parameters":{}}]}}}`, "no starting_offset"},
		{"negative offset", `{"data":{"attributes":{"evidence_requested":[{"evidence_type":"ima_log","chosen_parameters":{"starting_offset":-1}}]}}}`, "negative"},
	} {
		t.Run(tc.name, func(t *testing.T) {
			_, err := parseNegotiation([]byte(tc.body), "")
			if err == nil || !strings.Contains(err.Error(), tc.want) {
				t.Errorf("error = %v, want it to contain %q", err, tc.want)
			}
		})
	}
}

func TestParsePoPResultNeverLeaksToken(t *testing.T) {
	const secret = "sid.SECRET-TOKEN-VALUE"
	for _, body := range []string{
		`{"data":{"attributes":{"evaluation":"maybe","token":"` + secret + `"}}}`,
		`{"data":{"attributes":{"evaluation":"pass","token":"` + secret + `","token_expires_at":"soon"}}}`,
		`{"data":{"attributes":{"evaluation":"pass","token":["` + secret + `"]}}}`,
		`{"data":{"attributes":{"evaluation":"pass","token":"` + secret + `"`,
	} {
		_, err := parsePoPResult([]byte(body))
		if err == nil {
			t.Errorf("parsePoPResult(%q) accepted", body)
			continue
		}
		if strings.Contains(err.Error(), "SECRET") {
			t.Errorf("error leaks the token: %v", err)
		}
	}
}

func TestIndexFromPath(t *testing.T) {
	for _, tc := range []struct {
		in   string
		want int
		ok   bool
	}{
		{"/v3/agents/a/attestations/0", 0, true},
		{"/v3.0/agents/a/attestations/17/", 17, true},
		{"https://h:1/v3.0/agents/a/attestations/5", 5, true},
		{"/3/agents/a/attestations/3", 3, true},
		{"/v3/agents/a/attestations", 0, false},
		{"/v3/agents/a/attestations/latest", 0, false},
		{"/v3/agents/a/attestations/-1", 0, false},
		{"", 0, false},
	} {
		got, ok := indexFromPath(tc.in)
		if got != tc.want || ok != tc.ok {
			t.Errorf("indexFromPath(%q) = %d, %v", tc.in, got, ok)
		}
	}
}

func TestRetryAfter(t *testing.T) {
	now := time.Date(2026, 11, 30, 20, 0, 0, 0, time.UTC)
	for _, tc := range []struct {
		v    string
		want time.Duration
		ok   bool
	}{
		{"2", 2 * time.Second, true},
		{" 0 ", 0, true},
		{"Mon, 30 Nov 2026 20:00:05 GMT", 5 * time.Second, true},
		{"-3", 0, false},
		{"soon", 0, false},
		{"", 0, false},
		{"99999999999", 24 * time.Hour, true},
	} {
		h := http.Header{}
		if tc.v != "" {
			h.Set("Retry-After", tc.v)
		}
		got, ok := retryAfter(h, now)
		if got != tc.want || ok != tc.ok {
			t.Errorf("retryAfter(%q) = %v, %v; want %v, %v", tc.v, got, ok, tc.want, tc.ok)
		}
	}
}

func equalInts(a, b []int) bool {
	if len(a) != len(b) {
		return false
	}
	for i := range a {
		if a[i] != b[i] {
			return false
		}
	}
	return true
}

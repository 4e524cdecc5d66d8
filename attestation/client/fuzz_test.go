package client

import (
	"net/http"
	"testing"
	"time"
)

// The parsers take verifier output, which under fault injection or a broken verifier can be anything; none may
// panic. Seeds are the recorded real responses.

func addVectorSeeds(f *testing.F, method, suffix string) {
	for _, name := range []string{"01-agent1-session-pop.json", "02-agent1-cycle1.json", "03-agent1-cycle2.json", "05-agent2-quoteonly.json"} {
		v := loadVector(f, name)
		for _, x := range v.HTTP {
			p := x.Request.Path
			if x.Request.Method == method && len(p) >= len(suffix) && p[len(p)-len(suffix):] == suffix {
				f.Add([]byte(x.Response.Body))
			}
		}
	}
	f.Add([]byte(`{"errors":[{"status":"429","code":"premature_attestation","detail":"Wait 2 seconds"}]}`))
	f.Add([]byte(`{"data":null}`))
	f.Add([]byte(``))
}

func FuzzParseSessionCreated(f *testing.F) {
	addVectorSeeds(f, "POST", "/sessions")
	f.Fuzz(func(t *testing.T, b []byte) {
		s, err := parseSessionCreated(b)
		if err == nil && (s.ID == "" || len(s.Challenge) == 0) {
			t.Fatalf("accepted a session without id or challenge: %+v", s)
		}
	})
}

func FuzzParsePoPResult(f *testing.F) {
	v := loadVector(f, "01-agent1-session-pop.json")
	for _, x := range v.HTTP {
		f.Add([]byte(x.Response.Body))
	}
	f.Fuzz(func(t *testing.T, b []byte) {
		r, err := parsePoPResult(b)
		if err == nil && r.Pass && r.Token == "" {
			t.Fatal("pass without a token")
		}
	})
}

func FuzzParseNegotiation(f *testing.F) {
	addVectorSeeds(f, "POST", "/attestations")
	f.Fuzz(func(t *testing.T, b []byte) {
		n, err := parseNegotiation(b, "/v3/agents/a/attestations/1")
		if err != nil {
			return
		}
		if len(n.Items) == 0 {
			t.Fatal("accepted a negotiation requesting nothing")
		}
		for _, it := range n.Items {
			if it.Type == "tpm_quote" && (len(it.Challenge) == 0 || len(it.PCRs) == 0) {
				t.Fatalf("accepted a quote request without challenge or PCRs: %+v", it)
			}
			if it.StartingOffset < 0 {
				t.Fatal("negative offset accepted")
			}
		}
	})
}

func FuzzParseAccepted(f *testing.F) {
	addVectorSeeds(f, "PATCH", "/attestations/latest")
	f.Fuzz(func(t *testing.T, b []byte) {
		next, err := parseAccepted(b)
		if err == nil && next != nil && (*next < 0 || *next > 1e9) {
			t.Fatalf("out-of-range hint accepted: %v", *next)
		}
	})
}

func FuzzParseErrorsAndHeaders(f *testing.F) {
	f.Add([]byte(`{"errors":[{"status":"422","code":"invalid_resource_data","detail":"must appear in the same order as the evidence requested"}]}`), "2")
	f.Add([]byte(`{"errors":"x"}`), "Mon, 30 Nov 2026 20:00:05 GMT")
	f.Fuzz(func(t *testing.T, b []byte, ra string) {
		_ = parseAPIError(b)
		h := http.Header{}
		h.Set("Retry-After", ra)
		if d, ok := retryAfter(h, time.Unix(0, 0)); ok && (d < 0 || d > 24*time.Hour) {
			t.Fatalf("retry after %v", d)
		}
		_, _ = indexFromPath(string(b))
	})
}

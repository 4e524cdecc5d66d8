package client

import (
	"encoding/json"
	"net/http"
	"net/url"
	"strconv"
	"strings"
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
	f.Add([]byte(`{"errors":[{"status":"422","code":"invalid_resource_data","detail":"must appear in the same order as the evidence requested"}]}`),
		"2", "premature_attestation", "Wait 2 seconds", "", int64(2))
	f.Add([]byte(`{"errors":"x"}`), "Mon, 30 Nov 2026 20:00:05 GMT", "", "", "Not Found", int64(0))
	f.Add([]byte(`not json`), "-1", "x\u0000y", "", "", int64(-5))
	f.Add([]byte(`{"errors":[{"code":7,"detail":["x"]}]}`), "", "", "", "", int64(1e15))
	now := time.Date(2026, 11, 30, 20, 0, 0, 0, time.UTC)
	f.Fuzz(func(t *testing.T, b []byte, ra, code, detail, title string, n int64) {
		// Any body: a code or detail can only come out of a JSON document.
		if e := parseAPIError(b); (e.Code != "" || e.Detail != "") && !json.Valid(b) {
			t.Fatalf("%q is not JSON but gave %+v", b, e)
		}
		// A JSON:API error document: the first error's code and detail (its title when there is no detail) come
		// back exactly, whatever text the strings hold (JSON carries text only: invalid UTF-8 is made valid).
		code, detail, title = strings.ToValidUTF8(code, "?"), strings.ToValidUTF8(detail, "?"), strings.ToValidUTF8(title, "?")
		doc, err := json.Marshal(map[string]any{"errors": []any{
			map[string]any{"status": "422", "code": code, "detail": detail, "title": title},
			map[string]any{"code": "second", "detail": "second"}}})
		if err != nil {
			t.Fatal(err)
		}
		wantDetail := detail
		if wantDetail == "" {
			wantDetail = title
		}
		if e := parseAPIError(doc); e.Code != code || e.Detail != wantDetail {
			t.Fatalf("%s parsed as %+v, want code %q detail %q", doc, e, code, wantDetail)
		}

		// Retry-After, any value: never negative or beyond a day.
		h := http.Header{}
		h.Set("Retry-After", ra)
		if d, ok := retryAfter(h, now); ok && (d < 0 || d > 24*time.Hour) {
			t.Fatalf("Retry-After %q: %v", ra, d)
		}
		// delta-seconds: n seconds, capped at a day; negative is not a Retry-After.
		h.Set("Retry-After", strconv.FormatInt(n, 10))
		d, ok := retryAfter(h, now)
		switch {
		case n < 0 && ok:
			t.Fatalf("Retry-After %d accepted as %v", n, d)
		case n >= 0 && (!ok || d != time.Duration(min(n, 86400))*time.Second):
			t.Fatalf("Retry-After %d = %v, %v; want %d s (at most a day)", n, d, ok, min(n, 86400))
		}
		// HTTP-date: the time until then, 0 when it has passed, capped at a day.
		if n > -1e10 && n < 1e10 {
			h.Set("Retry-After", now.Add(time.Duration(n)*time.Second).Format(http.TimeFormat))
			want := min(max(time.Duration(n)*time.Second, 0), 24*time.Hour)
			if d, ok := retryAfter(h, now); !ok || d != want {
				t.Fatalf("Retry-After %q = %v, %v; want %v", h.Get("Retry-After"), d, ok, want)
			}
		}

		// The attestation index from a Location: the last path element after /attestations, as a URL or a path.
		_, _ = indexFromPath(string(b))
		if n >= 0 {
			path := "/v3.0/agents/" + url.PathEscape(code) + "/attestations/" + strconv.FormatInt(n, 10)
			for _, loc := range []string{path, "https://127.0.0.1:8881" + path, path + "/"} {
				if got, ok := indexFromPath(loc); !ok || int64(got) != n {
					t.Fatalf("indexFromPath(%q) = %d, %v; want %d", loc, got, ok, n)
				}
			}
			if _, ok := indexFromPath("/v3.0/agents/a/sessions/" + strconv.FormatInt(n, 10)); ok {
				t.Fatalf("an index taken from a path that is not an attestation's")
			}
		} else if _, ok := indexFromPath("/v3.0/agents/a/attestations/" + strconv.FormatInt(n, 10)); ok {
			t.Fatalf("negative index %d accepted", n)
		}
	})
}

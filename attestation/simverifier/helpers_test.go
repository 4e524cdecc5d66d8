package simverifier

import (
	"bytes"
	"encoding/base64"
	"encoding/json"
	"io"
	"net/http"
	"strings"
	"sync"
	"testing"
	"time"

	"github.com/attestload/attestload/internal/sharedtest"
)

func vector(t testing.TB, name string) map[string]any {
	t.Helper()
	var m map[string]any
	sharedtest.DecodeVector(t, name, &m)
	return m
}

// dig walks nested maps and lists: keys are map keys or list indexes written as strings.
func dig(t testing.TB, v any, path ...any) any {
	t.Helper()
	for _, p := range path {
		switch k := p.(type) {
		case string:
			m, ok := v.(map[string]any)
			if !ok {
				t.Fatalf("dig %v: %q: not an object", path, k)
			}
			v, ok = m[k]
			if !ok {
				t.Fatalf("dig %v: key %q missing", path, k)
			}
		case int:
			l, ok := v.([]any)
			if !ok || k >= len(l) {
				t.Fatalf("dig %v: index %d out of range", path, k)
			}
			v = l[k]
		}
	}
	return v
}

func str(t testing.TB, v any, path ...any) string {
	t.Helper()
	s, ok := dig(t, v, path...).(string)
	if !ok {
		t.Fatalf("dig %v: not a string", path)
	}
	return s
}

func b64(t testing.TB, s string) []byte {
	t.Helper()
	b, err := base64.StdEncoding.DecodeString(s)
	if err != nil {
		t.Fatalf("base64 %q: %v", s, err)
	}
	return b
}

// fakeClock is a manually advanced clock.
type fakeClock struct {
	mu  sync.Mutex
	now time.Time
}

func newFakeClock() *fakeClock {
	return &fakeClock{now: time.Date(2026, 11, 30, 20, 11, 39, 0, time.UTC)}
}

func (c *fakeClock) Now() time.Time {
	c.mu.Lock()
	defer c.mu.Unlock()
	return c.now
}

func (c *fakeClock) Advance(d time.Duration) {
	c.mu.Lock()
	c.now = c.now.Add(d)
	c.mu.Unlock()
}

// scriptedEntropy hands out queued values, falling back to crypto/rand when a queue is empty.
type scriptedEntropy struct {
	mu                         sync.Mutex
	challenges, nonces         [][]byte
	sessionIDs, tokenSecrets   []string
	fallback                   cryptoEntropy
	challengesUsed, nonceCalls int
}

func (s *scriptedEntropy) Challenge() ([]byte, error) {
	s.mu.Lock()
	defer s.mu.Unlock()
	s.challengesUsed++
	if len(s.challenges) == 0 {
		return s.fallback.Challenge()
	}
	c := s.challenges[0]
	s.challenges = s.challenges[1:]
	return c, nil
}

func (s *scriptedEntropy) SessionNonce() ([]byte, error) {
	s.mu.Lock()
	defer s.mu.Unlock()
	s.nonceCalls++
	if len(s.nonces) == 0 {
		return s.fallback.SessionNonce()
	}
	c := s.nonces[0]
	s.nonces = s.nonces[1:]
	return c, nil
}

func (s *scriptedEntropy) SessionID() (string, error) {
	s.mu.Lock()
	defer s.mu.Unlock()
	if len(s.sessionIDs) == 0 {
		return s.fallback.SessionID()
	}
	c := s.sessionIDs[0]
	s.sessionIDs = s.sessionIDs[1:]
	return c, nil
}

func (s *scriptedEntropy) TokenSecret() (string, error) {
	s.mu.Lock()
	defer s.mu.Unlock()
	if len(s.tokenSecrets) == 0 {
		return s.fallback.TokenSecret()
	}
	c := s.tokenSecrets[0]
	s.tokenSecrets = s.tokenSecrets[1:]
	return c, nil
}

// testConfig is a plain-HTTP configuration on a fake clock with cheap session hashing.
func testConfig(clock *fakeClock, ent Entropy) Config {
	cfg := DefaultConfig()
	cfg.PlainHTTP = true
	cfg.SessionHashIterations = 1
	cfg.AdminToken = "test-admin-token"
	cfg.Now = clock.Now
	cfg.Entropy = ent
	cfg.Seed = 1
	return cfg
}

type httpResult struct {
	status int
	header http.Header
	body   []byte
	doc    map[string]any
}

func do(t testing.TB, client *http.Client, method, url string, header map[string]string, body string) httpResult {
	t.Helper()
	req, err := http.NewRequest(method, url, strings.NewReader(body))
	if err != nil {
		t.Fatal(err)
	}
	for k, v := range header {
		req.Header.Set(k, v)
	}
	resp, err := client.Do(req)
	if err != nil {
		t.Fatalf("%s %s: %v", method, url, err)
	}
	defer resp.Body.Close()
	b, err := io.ReadAll(resp.Body)
	if err != nil {
		t.Fatalf("%s %s: read body: %v", method, url, err)
	}
	res := httpResult{status: resp.StatusCode, header: resp.Header, body: b}
	if len(bytes.TrimSpace(b)) > 0 {
		_ = json.Unmarshal(b, &res.doc)
	}
	return res
}

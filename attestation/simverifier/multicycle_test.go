package simverifier

import (
	"bytes"
	"encoding/base64"
	"encoding/json"
	"fmt"
	"log/slog"
	"net/http"
	"strings"
	"sync"
	"testing"
	"time"

	"github.com/attestload/attestload/attestation/evidence"
	"github.com/attestload/attestload/attestation/softtpm"
)

// imaAgent enrolls an IMA agent with a synthetic profile's policy (optionally edited) and wires its log.
func imaAgent(t *testing.T, v *Verifier, base, id string, profile evidence.Profile, editPolicy func(map[string]any)) (*simAgent, *evidence.AgentLog) {
	t.Helper()
	policy := profile.PolicyJSON()
	if editPolicy != nil {
		var m map[string]any
		if err := json.Unmarshal(policy, &m); err != nil {
			t.Fatal(err)
		}
		editPolicy(m)
		policy = []byte(mustJSON(t, m))
	}
	k := vectorKey(t, "vec-agent-1")
	if err := v.EnrollAgent(AgentSpec{ID: id, AKPublic: k.Public, TPMPolicy: profile.TPMPolicy(),
		IMAPolicyJSON: policy, IMAGenerator: profile.Generator()}); err != nil {
		t.Fatal(err)
	}
	return sessionIMAAgent(t, base, id, k, profile)
}

// sessionIMAAgent makes an agent of an enrolled id that sends its profile's IMA log incrementally, and opens its
// session.
func sessionIMAAgent(t *testing.T, base, id string, k *softtpm.Key, profile evidence.Profile) (*simAgent, *evidence.AgentLog) {
	t.Helper()
	log := profile.NewAgentLog()
	a := newSimAgent(t, base, id, k)
	a.imaEntries = func(from int) (string, int) {
		text, _, err := log.Entries(from)
		if err != nil {
			t.Fatal(err)
		}
		return text, log.EntryCount()
	}
	wantStatus(t, "PoP", a.startSession(), http.StatusOK, "")
	return a, log
}

// imaCycle runs POST + PATCH with PCR 10 taken from the log, returning the index and the starting offset chosen.
func imaCycle(t *testing.T, a *simAgent, log *evidence.AgentLog, clock *fakeClock, mutate func(*quote)) (index, offset int) {
	t.Helper()
	clock.Advance(3 * time.Second)
	if err := a.tpm.SetPCR(10, log.PCR10()); err != nil {
		t.Fatal(err)
	}
	c := a.create()
	wantStatus(t, "create", c, http.StatusCreated, "")
	offset = int(dig(t, c.doc, "data", "attributes", "evidence_requested", 1, "chosen_parameters", "starting_offset").(float64))
	wantStatus(t, "update", a.update("latest", a.evidenceFor(c, mutate)), http.StatusAccepted, "")
	return atoiSuffix(t, c.header.Get("Location")), offset
}

func TestMultiCycleIMA(t *testing.T) {
	v, srv, clock := newTestServer(t, nil)
	profile, err := evidence.NewSynthetic(4, 1, 10)
	if err != nil {
		t.Fatal(err)
	}
	a, log := imaAgent(t, v, srv.URL, "ima-1", profile, nil)

	verdict := func(i int, wantEval, wantReason string) {
		t.Helper()
		if ev, fr := waitVerdict(t, v, a.id, i); ev != wantEval || fr != wantReason {
			t.Fatalf("attestation %d: %s/%q, want %s/%q", i, ev, fr, wantEval, wantReason)
		}
	}
	// Offsets advance with the certified entries: 0 -> 4 -> 5 -> 6.
	for n, want := range []int{0, 4, 5, 6} {
		if n > 0 {
			log.Grow()
		}
		i, off := imaCycle(t, a, log, clock, nil)
		if off != want {
			t.Fatalf("cycle %d: starting_offset %d, want %d", n, off, want)
		}
		verdict(i, evalPass, "")
	}
	// Nothing new in the log: zero entries sent, still a pass, offset stays.
	i, off := imaCycle(t, a, log, clock, nil)
	if off != 7 {
		t.Fatalf("starting_offset %d, want 7", off)
	}
	verdict(i, evalPass, "")

	// A replayed quote (old nonce and clock) breaks the evidence chain.
	var old quote
	log.Grow()
	i, _ = imaCycle(t, a, log, clock, func(q *quote) {
		var err error
		q.message, q.signature, q.subject, err = a.tpm.Quote(q.extraData, q.pcrs)
		if err != nil {
			t.Fatal(err)
		}
		old = *q
	})
	verdict(i, evalPass, "")
	i, off = imaCycle(t, a, log, clock, func(q *quote) { q.message, q.signature, q.subject = old.message, old.signature, old.subject })
	verdict(i, evalFail, FailureBrokenEvidenceChain)
	if off != 8 {
		t.Fatalf("after the replay the offset is %d, want 8 (from the last pass)", off)
	}
	// A wrong nonce, whatever the encoding.
	i, _ = imaCycle(t, a, log, clock, func(q *quote) { q.extraData = []byte("0123456789abcdef") })
	verdict(i, evalFail, FailureBrokenEvidenceChain)
	// The base64 text of the challenge is accepted as well as the raw bytes.
	log.Grow()
	i, _ = imaCycle(t, a, log, clock, func(q *quote) { q.extraData = []byte(b64text(q.extraData)) })
	verdict(i, evalPass, "")
	// A PCR 10 the log does not replay to is a broken chain too.
	log.Grow()
	clock.Advance(3 * time.Second)
	c := a.create()
	wantStatus(t, "create", c, http.StatusCreated, "")
	if err := a.tpm.SetPCR(10, bytesOf(0x42)); err != nil {
		t.Fatal(err)
	}
	wantStatus(t, "update", a.update("latest", a.evidenceFor(c, nil)), http.StatusAccepted, "")
	verdict(atoiSuffix(t, c.header.Get("Location")), evalFail, FailureBrokenEvidenceChain)
	// The chain resumes from the last passed PCR 10.
	i, _ = imaCycle(t, a, log, clock, nil)
	verdict(i, evalPass, "")

	// A forged quote: the genuine message (right nonce, PCRs and clock) signed by a key that is not the agent's
	// AK, and the genuine signature with one bit flipped. Both are broken chains and move no baseline.
	forger := vectorKey(t, "vec-agent-2")
	forge := func(q *quote) {
		var err error
		q.message, q.signature, q.subject, err = a.tpm.Quote(q.extraData, q.pcrs)
		if err != nil {
			t.Fatal(err)
		}
		if q.signature, err = softtpm.Sign(forger, q.message); err != nil {
			t.Fatal(err)
		}
	}
	log.Grow()
	i, _ = imaCycle(t, a, log, clock, forge)
	verdict(i, evalFail, FailureBrokenEvidenceChain)
	i, _ = imaCycle(t, a, log, clock, func(q *quote) {
		var err error
		q.message, q.signature, q.subject, err = a.tpm.Quote(q.extraData, q.pcrs)
		if err != nil {
			t.Fatal(err)
		}
		q.signature[len(q.signature)-1] ^= 0x01
	})
	verdict(i, evalFail, FailureBrokenEvidenceChain)
	i, _ = imaCycle(t, a, log, clock, nil)
	verdict(i, evalPass, "")

	// A measured file missing from the runtime policy is a policy violation.
	b, blog := imaAgent(t, v, srv.URL, "ima-2", profile, func(m map[string]any) {
		delete(m["digests"].(map[string]any), "/usr/bin/lt-file-1")
	})
	i, _ = imaCycle(t, b, blog, clock, nil)
	if ev, fr := waitVerdict(t, v, "ima-2", i); ev != evalFail || fr != FailurePolicyViolation {
		t.Fatalf("unlisted file: %s/%q", ev, fr)
	}
	// IMA-specific 422s: too few lines sent, an entry_count below the next offset, a boot_time going back.
	log.Grow()
	clock.Advance(3 * time.Second)
	c = a.create()
	full := a.imaEntries
	a.imaEntries = func(int) (string, int) { return "", log.EntryCount() }
	wantStatus(t, "too few IMA lines", a.update("latest", a.evidenceFor(c, nil)), http.StatusUnprocessableEntity, "invalid_resource_data")
	a.imaEntries = full
	for name, edit := range map[string]func(string) string{
		"entry_count below offset": func(s string) string {
			return strings.Replace(s, fmt.Sprintf(`"entry_count":%d`, log.EntryCount()), `"entry_count":1`, 1)
		},
		"boot_time going back": func(s string) string {
			return strings.Replace(s, "2026-01-01T00:00:00Z", "2025-01-01T00:00:00Z", 1)
		},
	} {
		r := do(t, http.DefaultClient, "POST", srv.URL+"/v3/agents/ima-1/attestations", a.auth(), edit(a.capabilities()))
		wantStatus(t, name, r, http.StatusUnprocessableEntity, "invalid_resource_data")
	}
	// A later boot_time restarts the log from offset 0.
	a.boot = "2026-02-01T00:00:00Z"
	if c := a.create(); int(dig(t, c.doc, "data", "attributes", "evidence_requested", 1, "chosen_parameters", "starting_offset").(float64)) != 0 {
		t.Errorf("offset after a reboot: %s", c.body)
	}

	// A failed first attestation leaves the offset at 0.
	if _, off := imaCycle(t, b, blog, clock, nil); off != 0 {
		t.Fatalf("offset after a failed first attestation: %d", off)
	}
}

func b64text(b []byte) string { return base64.StdEncoding.EncodeToString(b) }

// A passing attestation is logged at DEBUG, so a verifier-sim under load does not print a line per pass at INFO;
// a failing one stays at INFO.
func TestPassesLoggedAtDebug(t *testing.T) {
	var buf syncBuf
	v, srv, clock := newTestServer(t, func(c *Config) {
		c.Logger = slog.New(slog.NewTextHandler(&buf, &slog.HandlerOptions{Level: slog.LevelInfo}))
	})
	profile, err := evidence.NewSynthetic(4, 1, 10)
	if err != nil {
		t.Fatal(err)
	}
	a, log := imaAgent(t, v, srv.URL, "ima-debug", profile, nil)
	i, _ := imaCycle(t, a, log, clock, nil)
	if ev, _ := waitVerdict(t, v, a.id, i); ev != evalPass {
		t.Fatalf("verdict %s, want pass", ev)
	}
	if strings.Contains(buf.String(), "attestation passed") {
		t.Errorf("a pass was logged at INFO:\n%s", buf.String())
	}
}

// syncBuf is a bytes.Buffer safe for the verifier's goroutines.
type syncBuf struct {
	mu sync.Mutex
	b  bytes.Buffer
}

func (s *syncBuf) Write(p []byte) (int, error) { s.mu.Lock(); defer s.mu.Unlock(); return s.b.Write(p) }
func (s *syncBuf) String() string              { s.mu.Lock(); defer s.mu.Unlock(); return s.b.String() }

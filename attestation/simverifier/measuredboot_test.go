package simverifier

import (
	"bytes"
	"encoding/base64"
	"strings"
	"testing"

	"github.com/attestload/attestload/attestation/measuredboot"
)

// checkMeasuredBoot judges like check_pcrs with the default accept-all policy: the quoted PCRs 0-9 and 11-15 must
// be the log's replay (broken_evidence_chain otherwise, even for a log tampered in one digest), an unparsable log
// or reference state is a policy_violation, and a reference state of {} compares nothing.
func TestCheckMeasuredBoot(t *testing.T) {
	b, err := measuredboot.Captured()
	if err != nil {
		t.Fatal(err)
	}
	quote := &quoteData{values: map[int][]byte{}}
	for n := range 16 {
		quote.values[n] = make([]byte, 32)
	}
	for n, v := range b.PCRs() {
		quote.values[n] = v
	}
	raw, _ := base64.StdEncoding.DecodeString(b.LogBase64())
	tampered := bytes.Clone(raw)
	pcr4 := b.PCRs()[4]
	l, _ := measuredboot.Parse(raw)
	for _, e := range l.Events {
		if e.PCR == 4 {
			i := bytes.Index(tampered, e.Digests[measuredboot.AlgSHA256])
			tampered[i] ^= 1
			break
		}
	}
	ref := string(b.Refstate())
	empty, notJSON := "{}", "not json"
	v := &Verifier{}
	for _, tc := range []struct {
		name      string
		policy    *string
		entries   string
		quote     *quoteData
		broken    bool
		violation string
	}{
		{"captured log", &ref, b.LogBase64(), quote, false, ""},
		{"tampered digest", &ref, base64.StdEncoding.EncodeToString(tampered), quote, true, ""},
		{"PCR 12 not zero", &ref, b.LogBase64(), withPCR(quote, 12, pcr4), true, ""},
		{"cut log", &ref, base64.StdEncoding.EncodeToString(raw[:len(raw)-9]), quote, false, "could not be parsed"},
		{"no log", &ref, "", quote, false, "no measurement list"},
		{"empty refstate", &empty, base64.StdEncoding.EncodeToString(tampered), quote, false, ""},
		{"refstate not JSON", &notJSON, b.LogBase64(), quote, false, "invalid measured boot policy"},
		{"no refstate", nil, base64.StdEncoding.EncodeToString(tampered), quote, false, ""},
	} {
		a := &agent{mb: v.mbPolicies.state(tc.policy)}
		item := &evidenceItem{typ: "uefi_log", data: map[string]any{"entries": tc.entries}}
		got := v.checkMeasuredBoot(a, item, tc.quote)
		if (got.broken != "") != tc.broken || (tc.violation == "") != (got.violation == "") ||
			!strings.Contains(got.violation, tc.violation) {
			t.Errorf("%s: %+v, want broken %v, violation %q", tc.name, got, tc.broken, tc.violation)
		}
	}
	if s := v.mbPolicies.state(&empty); !s.requested || !s.valid || s.nonEmpty {
		t.Errorf("{} gives %+v: requested and valid, compares nothing", s)
	}
	if s := v.mbPolicies.state(new(string)); s.requested {
		t.Error("an empty mb_policy string requests a UEFI log; the verifier treats it as no policy")
	}
}

func withPCR(q *quoteData, n int, v []byte) *quoteData {
	c := &quoteData{values: map[int][]byte{}}
	for k, x := range q.values {
		c.values[k] = x
	}
	c.values[n] = v
	return c
}

// A reference state is compared with the log when its JSON is truthy in Python's sense (bool(json.loads(text))), the
// rule the simulator models (truthy): empty containers, "", 0 and false are not.
func TestMeasuredBootRefStateTruthiness(t *testing.T) {
	var m mbPolicies
	for text, want := range map[string]bool{
		`{}`: false, `{"a": 1}`: true, `[]`: false, `[0]`: true, `""`: false, `"0"`: true,
		`0`: false, `0.0`: false, `1.5`: true, `-1`: true, `false`: false, `true`: true,
	} {
		s := m.state(&text)
		if !s.requested || !s.valid {
			t.Errorf("%s: requested %v, valid %v; want both", text, s.requested, s.valid)
		}
		if s.nonEmpty != want {
			t.Errorf("%s: compared with the log %v, want %v (Python's bool of the value)", text, s.nonEmpty, want)
		}
	}
	null := "null"
	if s := m.state(&null); !s.requested || s.valid || s.nonEmpty {
		t.Errorf("null: %+v, want requested, not valid, not compared", s)
	}
}

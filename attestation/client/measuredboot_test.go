package client

import (
	"context"
	"fmt"
	"testing"

	"github.com/attestload/attestload/attestation/evidence"
	"github.com/attestload/attestload/attestation/measuredboot"
	"github.com/attestload/attestload/attestation/record"
	"github.com/attestload/attestload/attestation/softtpm"
)

// With measured boot, an agent of any profile sends the captured UEFI log in the order the verifier asks for
// it (another order is a 422), and the simulator, replaying the log, passes every attestation; a TPM whose PCR 4 differs from the log fails
// as broken_evidence_chain, as the stock verifier judges it.
func TestSimMeasuredBoot(t *testing.T) {
	b, err := measuredboot.Captured()
	if err != nil {
		t.Fatal(err)
	}
	e := startSim(t, false, nil, nil)
	for k, base := range []evidence.Profile{imaProfile(t, 4), evidence.NewQuoteOnly()} {
		p := evidence.WithMeasuredBoot(base, b)
		id := fmt.Sprintf("mb-%s", base.Name())
		e.enroll(t, id, testKey(t, k), p)
		a := NewAgent(id, k, softtpm.NewTPM(testKey(t, k)), p)
		for i := range 3 {
			r := e.c.Cycle(context.Background(), a, i, 0)
			if r.Outcome != record.OutcomeSuccess {
				t.Fatalf("%s cycle %d: %s %s", id, i, r.Outcome, errOf(r))
			}
			if ev, reason := e.verdict(t, id, r); ev != "pass" {
				t.Fatalf("%s cycle %d: verdict %s (%s)", id, i, ev, reason)
			}
		}
		bad := fmt.Sprintf("mb-%s-pcr4", base.Name())
		e.enroll(t, bad, testKey(t, k+2), p)
		a = NewAgent(bad, k+2, softtpm.NewTPM(testKey(t, k+2)), p)
		if err := a.TPM.SetPCR(4, make([]byte, 32)); err != nil {
			t.Fatal(err)
		}
		r := e.c.Cycle(context.Background(), a, 0, 0)
		if ev, reason := e.verdict(t, bad, r); ev != "fail" || reason != "broken_evidence_chain" {
			t.Errorf("%s: PCR 4 off the log judged %s (%s), want fail (broken_evidence_chain)", bad, ev, reason)
		}
	}
}

package evidence

import (
	"bytes"
	"encoding/hex"
	"testing"

	"github.com/attestload/attestload/attestation/measuredboot"
)

func TestWithMeasuredBoot(t *testing.T) {
	b, err := measuredboot.Captured()
	if err != nil {
		t.Fatal(err)
	}
	log := b.PCRs()
	ima, err := NewSynthetic(4, 1, 10)
	if err != nil {
		t.Fatal(err)
	}
	for _, base := range []Profile{ima, NewQuoteOnly()} {
		if base.MeasuredBoot() != nil {
			t.Errorf("%s: measured boot without WithMeasuredBoot", base.Name())
		}
		p := WithMeasuredBoot(base, b)
		if p.MeasuredBoot() != b || p.Name() != base.Name() || p.HasIMA() != base.HasIMA() {
			t.Errorf("%s: wrapper changed the profile (name %q, IMA %v)", base.Name(), p.Name(), p.HasIMA())
		}
		static := p.StaticPCRs()
		for _, n := range MeasuredBootPCRs {
			want, inLog := log[n]
			if got, ok := static[n]; ok != inLog || (ok && !bytes.Equal(got, want)) {
				t.Errorf("%s: static PCR %d = %x (set %v), the log replays to %x (in log %v)", base.Name(), n, got, ok, want, inLog)
			}
		}
		for k, vals := range p.TPMPolicy() {
			n := map[string]int{"0": 0, "7": 7}[k]
			if len(vals) != 1 || vals[0] != hex.EncodeToString(log[n]) {
				t.Errorf("%s: PCR policy %s = %v, want the log's value %x", base.Name(), k, vals, log[n])
			}
		}
	}
	if got := len(WithMeasuredBoot(NewQuoteOnly(), b).TPMPolicy()); got != 2 {
		t.Errorf("quote-only with measured boot has %d PCR policy entries, want 2", got)
	}
}

package evidence

import (
	"bytes"
	"encoding/hex"
	"strconv"

	"github.com/attestload/attestload/attestation/measuredboot"
)

// MeasuredBootPCRs are the PCRs the verifier quotes and compares with the UEFI log's replay when an agent has a
// measured-boot policy (keylime config.MEASUREDBOOT_PCRS).
var MeasuredBootPCRs = []int{0, 1, 2, 3, 4, 5, 6, 7, 8, 9, 11, 12, 13, 14, 15}

// withMeasuredBoot is a profile whose agents also booted with a UEFI event log: they send it (uefi_log) with
// every attestation, their TPMs hold the PCR values it replays to, and the verifier gets its reference state.
type withMeasuredBoot struct {
	Profile
	boot      *measuredboot.Boot
	static    map[int][]byte
	tpmPolicy map[string][]string
}

// WithMeasuredBoot adds measured boot to p. The measured-boot PCRs take the log's values (zero where the log does
// not extend them), replacing p's static values for them; a PCR policy entry of p on such a PCR (quote-only's
// PCR 0 and 7) then allows the log's value, since the verifier compares those PCRs with both the log and the
// policy.
func WithMeasuredBoot(p Profile, b *measuredboot.Boot) Profile {
	static := p.StaticPCRs()
	log := b.PCRs()
	for _, n := range MeasuredBootPCRs {
		if v, ok := log[n]; ok {
			static[n] = v
		} else {
			delete(static, n) // a fresh TPM's zero
		}
	}
	policy := p.TPMPolicy()
	for k := range policy {
		n, err := strconv.Atoi(k)
		if err != nil {
			continue
		}
		for _, m := range MeasuredBootPCRs {
			if m == n {
				v, ok := static[n]
				if !ok {
					v = make([]byte, 32)
				}
				policy[k] = []string{hex.EncodeToString(v)}
			}
		}
	}
	return &withMeasuredBoot{Profile: p, boot: b, static: static, tpmPolicy: policy}
}

func (w *withMeasuredBoot) MeasuredBoot() *measuredboot.Boot { return w.boot }

func (w *withMeasuredBoot) StaticPCRs() map[int][]byte {
	out := make(map[int][]byte, len(w.static))
	for k, v := range w.static {
		out[k] = bytes.Clone(v)
	}
	return out
}

func (w *withMeasuredBoot) TPMPolicy() map[string][]string {
	out := make(map[string][]string, len(w.tpmPolicy))
	for k, v := range w.tpmPolicy {
		out[k] = append([]string(nil), v...)
	}
	return out
}

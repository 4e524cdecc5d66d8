package stockverifier

import (
	"encoding/json"
	"os"
	"strings"
	"testing"

	"github.com/attestload/attestload/exporter/results"
)

// Measured boot with the ima profile: every attestation also carries the captured UEFI event log, which the
// verifier parses (tpm2_eventlog) and replays against PCRs 0-9 and 11-15 of the quote, with the captured reference
// state in the run's mbpolicies row. Every cycle passes (but those the evidence-order defect takes), each verdict
// equals the verifier's row, the sidecar says the run had measured boot, and the mbpolicies row is gone after
// exit (finish counts the prefix's rows).
func TestMeasuredBoot(t *testing.T) {
	w := newWorld(t, "mb", 1)
	d := w.passingRun(6, 4, w.env(), "--measured-boot")
	var info struct {
		Profile      string `json:"profile"`
		MeasuredBoot bool   `json:"measured_boot"`
	}
	b, err := os.ReadFile(results.SidecarPath(d.results))
	if err != nil {
		t.Fatal(err)
	}
	if err := json.Unmarshal(b, &info); err != nil || info.Profile != "ima" || !info.MeasuredBoot {
		t.Errorf("sidecar %s: profile %q measured_boot %v (%v), want ima with measured boot", b, info.Profile,
			info.MeasuredBoot, err)
	}
	const compared = "Compared PCRs 0, 1, 2, 3, 4, 5, 6, 7, 8, 9, 11, 12, 13, 14, 15 against measured boot log"
	if !strings.Contains(w.k.LogTail(4<<20), compared) {
		t.Errorf("the verifier's log never says %q: it did not check the UEFI log", compared)
	}
}

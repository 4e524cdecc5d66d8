package conformance

import (
	"fmt"
	"strings"
)

// KnownDefect is a way the stock verifier is wrong that a load run can meet, besides those the table shows.
type KnownDefect struct {
	Name      string
	Symptom   string // what a user sees
	Simulator string // how the simulator reproduces it
	Reported  string // how attestload reports it
}

// KnownDefects are the stock verifier's known defects (commit 9b1f6e6).
var KnownDefects = []KnownDefect{
	{
		Name: "Evidence order",
		Symptom: "Under load an evidence PATCH whose items are in exactly the requested order is refused with 422 " +
			"invalid_resource_data, \"evidence must appear in the same order as the evidence requested\": the " +
			"verifier reloads the requested items from its database without an ORDER BY, and PostgreSQL may return " +
			"them in another order. Seen in bursts, up to 10 % of a run's cycles (7 % of 300 in the stock-verifier " +
			"suite's 30-agent run).",
		Simulator: "not by default (it is random); `verifier-sim --fault update:evidence-order-rate=0.05` answers that " +
			"share of PATCHes with the verifier's exact 422.",
		Reported: "the cycle fails with error class `evidence_order` (never retried away); the run summary and " +
			"`attestload report` print one line naming the defect with its count.",
	},
	{
		Name:      "Reboot",
		Symptom:   rebootDefect,
		Simulator: "on by default (`simulator.reboot_defect`, `verifier-sim --reboot-defect`); see the reboot cases above.",
		Reported: "the cycles' verdicts are `fail` with `broken_evidence_chain`, marked `rebooted` in the JSONL; " +
			"the run summary and `attestload report` print one line naming the defect with the count of failures " +
			"after a reboot.",
	},
	{
		Name: "Verification stuck in pending",
		Symptom: "The verifier answers the evidence with 202 and then never records a verdict: verification runs " +
			"after the answer and an exception there (e.g. a NULL ima_policy_id, mb_policy_id or attestation_count " +
			"in verifiermain) leaves the attestation in `evaluating_evidence` with evaluation `pending` for good.",
		Simulator: "does not occur (attestload enrolls complete rows).",
		Reported: "the record's verdict is `unknown` after verdict.timeout; the run summary and `attestload report` " +
			"print one line naming the defect with the count of accepted cycles whose verdict never came.",
	},
}

// Markdown renders docs/verifier-conformance.md from the table.
func Markdown() string {
	var b strings.Builder
	b.WriteString(`# Conformance of the simulator to the stock Keylime verifier

<!-- Generated from test/conformance (cases.go, doc.go) by
     go test ./test/conformance -run TestConformanceDoc -update
     Do not edit by hand: TestConformanceDoc fails when this file differs from the table. -->

Each row is a scripted exchange (raw requests from a software TPM, test/conformance/exchange.go) run against the
stock Keylime verifier (commit 9b1f6e6, push mode, PostgreSQL; ` + "`make verifier-test`" + `) and against
attestload's simulator (` + "`go test ./test/conformance`" + `). Both must give the answer in the table to the step
under test: the same HTTP status, the same JSON:API error code, and, for accepted evidence, the same verdict and
failure_reason (read from the verifier's attestations table). The table holds the stock verifier's answers; where
that answer is a defect of the verifier it says so, and the simulator reproduces it by default.

| Case | Exchange | Answer (status, code, verdict) |
|---|---|---|
`)
	for _, c := range Cases {
		ans := c.Want.String()
		if c.Defect != "" {
			ans += " **(verifier defect, below)**"
		}
		fmt.Fprintf(&b, "| `%s` | %s | %s |\n", c.Name, escape(c.Checks), escape(ans))
	}
	b.WriteString(measuredBootSection)
	b.WriteString("\n## Known verifier defects\n\nHow attestload meets them in a load run, and how it says so.\n")
	for _, d := range KnownDefects {
		fmt.Fprintf(&b, "\n### %s\n\n- **Symptom:** %s\n- **Simulator:** %s\n- **attestload:** %s\n", d.Name, d.Symptom, d.Simulator, d.Reported)
	}
	return b.String()
}

// measuredBootSection says what the measured-boot rows exercise, what the simulator checks and what it costs.
const measuredBootSection = `
## Measured boot

With an agent's ` + "`mbpolicies.mb_policy`" + ` set (attestload: ` + "`--measured-boot`" + `, the captured reference state in
attestation/measuredboot/captured) the verifier requests a ` + "`uefi_log`" + ` between the quote and the IMA log, quotes PCRs
0-15, parses the log with ` + "`tpm2_eventlog`" + ` (a subprocess per attestation) and, with its default
` + "`measured_boot_policy_name = accept-all`" + `, checks:

- every quoted PCR of 0-9 and 11-15 equals the log's SHA-256 replay (zero for a PCR the log does not extend); a
  difference is ` + "`broken_evidence_chain`" + `, whatever else failed (rows above);
- a log it cannot parse is ` + "`policy_violation`" + ` (row above); so, from its code, are an empty log and a reference
  state that is not JSON;
- the boot aggregates the log implies (hash of PCRs 0-7 and of PCRs 0-9, per bank) count as allowed digests of
  the IMA log's boot_aggregate entry (row above);
- from its code: a reference state of ` + "`{}`" + ` still requests the log but compares nothing, and accept-all
  evaluates nothing in a non-empty one.

The simulator does the same (attestation/simverifier/measuredboot.go), with a Go replay that gives the values
` + "`tpm2_eventlog`" + ` reports. It does not evaluate reference states for other configured policies, and accepts a structurally
sound log that the verifier's UEFI-variable enrichment might still reject.

Cost on the stock verifier (2 workers, PostgreSQL, this 2-core machine shared with other work, load average 10 to
25): verifier CPU (utime+stime of the verifier's processes, including the ` + "`tpm2_eventlog`" + ` children) per
attestation, from the difference between runs of 8 agents × 12 and × 2 cycles (so sessions and enrolment cancel
out): ima 0.16 and 0.23 CPU-s in two rounds, ima with measured boot 0.36 and 0.42 CPU-s: measured boot adds
about 0.19 CPU-s per attestation, 1.8 to 2.2 times the ima cost. On an idle machine the ima figure was 0.13 CPU-s
(issue 11).
`

func escape(s string) string { return strings.ReplaceAll(s, "|", `\|`) }

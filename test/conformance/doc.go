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
	b.WriteString("\n## Known verifier defects\n\nHow attestload meets them in a load run, and how it says so.\n")
	for _, d := range KnownDefects {
		fmt.Fprintf(&b, "\n### %s\n\n- **Symptom:** %s\n- **Simulator:** %s\n- **attestload:** %s\n", d.Name, d.Symptom, d.Simulator, d.Reported)
	}
	return b.String()
}

func escape(s string) string { return strings.ReplaceAll(s, "|", `\|`) }

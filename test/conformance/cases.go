// Package conformance is the differential conformance table: scripted exchanges, each run against the stock
// Keylime verifier (test/stockverifier) and against the simulator (this package's tests), which must give the
// same HTTP status, the same JSON:API error code and the same verdict and failure_reason. The table records the
// stock verifier's answers, including those that are its own defects (marked, and reproduced by the simulator
// behind an option that is on by default). docs/verifier-conformance.md is generated from it.
package conformance

import (
	"context"
	"crypto/rand"
	"fmt"
	"net/http"
	"strings"
)

// Case is one scripted exchange.
type Case struct {
	Name string
	// Checks says what the exchange does and what the answer means (one or two sentences, for the doc).
	Checks string
	// Want is the stock verifier's answer to the step under test.
	Want Answer
	// Defect, when set, says how Want is the stock verifier being wrong (the symptom a user sees); the
	// simulator reproduces it by default.
	Defect string
	agent  agentOptions
	run    func(x *exchange) (Answer, error)
}

// Prefix starts the ids of the agents the exchanges enroll.
const Prefix = "conformance-"

// Run runs c against t and returns the answer to the step under test.
func (c Case) Run(ctx context.Context, t Target) (Answer, error) {
	x, cleanup, err := newExchange(ctx, t, Prefix, c.agent)
	if err != nil {
		return Answer{}, err
	}
	defer cleanup()
	return c.run(x)
}

// then runs steps in order, each of which must succeed, and returns the last one's answer.
func then(x *exchange, steps ...func() error) error {
	for _, s := range steps {
		if err := s(); err != nil {
			return err
		}
	}
	return nil
}

func (x *exchange) mustSession() error {
	a, err := x.session(nil)
	if err == nil && a.Evaluation != "pass" {
		err = fmt.Errorf("session: %v", a)
	}
	return err
}

func (x *exchange) mustCreate() error {
	a, err := x.create()
	if err == nil && a.Status != http.StatusCreated {
		err = fmt.Errorf("create: %v (%q)", a, a.Detail)
	}
	return err
}

func (x *exchange) wait() error { x.waitInterval(); return nil }

// Cases is the table.
var Cases = []Case{
	{
		Name:   "baseline",
		Checks: "A correct session, negotiation and evidence (quote over the selected PCRs, IMA log from starting_offset).",
		Want:   Answer{Status: 202, Evaluation: "pass"},
		run: func(x *exchange) (Answer, error) {
			if err := then(x, x.mustSession, x.mustCreate); err != nil {
				return Answer{}, err
			}
			return x.evidence(evidenceMods{})
		},
	},
	{
		Name:   "pop-other-key",
		Checks: "The session's proof of possession (TPM2_Certify) is signed by a key other than the enrolled AK.",
		Want:   Answer{Status: 401, Evaluation: "fail"},
		run:    func(x *exchange) (Answer, error) { return x.session(x.t.Keys[1]) },
	},
	{
		Name:   "replayed-quote-clock",
		Checks: "After a passing attestation, a fresh quote over the new challenge that carries the previous quote's TPM clock.",
		Want:   Answer{Status: 202, Evaluation: "fail", FailureReason: "broken_evidence_chain"},
		run: func(x *exchange) (Answer, error) {
			if err := then(x, x.pass, x.wait, x.mustCreate); err != nil {
				return Answer{}, err
			}
			return x.evidence(evidenceMods{sameClock: true})
		},
	},
	{
		Name:   "wrong-nonce",
		Checks: "The quote's extraData is 16 random bytes, not the negotiated challenge.",
		Want:   Answer{Status: 202, Evaluation: "fail", FailureReason: "broken_evidence_chain"},
		run: func(x *exchange) (Answer, error) {
			if err := then(x, x.mustSession, x.mustCreate); err != nil {
				return Answer{}, err
			}
			nonce := make([]byte, 16)
			_, _ = rand.Read(nonce)
			return x.evidence(evidenceMods{nonce: nonce})
		},
	},
	{
		Name:   "evidence-order",
		Checks: "evidence_collected holds the requested items in reverse order (IMA log before the quote).",
		Want:   Answer{Status: 422, Code: "invalid_resource_data"},
		run: func(x *exchange) (Answer, error) {
			if err := then(x, x.mustSession, x.mustCreate); err != nil {
				return Answer{}, err
			}
			return x.evidence(evidenceMods{reorder: true})
		},
	},
	{
		Name:   "ima-entry-not-in-policy",
		Checks: "The IMA log holds a file the runtime policy does not list.",
		Want:   Answer{Status: 202, Evaluation: "fail", FailureReason: "policy_violation"},
		run: func(x *exchange) (Answer, error) {
			x.log.add(fileName(policyFiles + 1))
			if err := then(x, x.mustSession, x.mustCreate); err != nil {
				return Answer{}, err
			}
			return x.evidence(evidenceMods{})
		},
	},
	{
		Name:   "pcr-outside-policy",
		Checks: "The agent's tpm_policy allows one value of PCR 16; the quote carries another.",
		Want:   Answer{Status: 202, Evaluation: "fail", FailureReason: "policy_violation"},
		agent:  agentOptions{tpmPolicy: map[string][]string{"16": {strings.Repeat("ab", 32)}}},
		run: func(x *exchange) (Answer, error) {
			if err := then(x, x.mustSession, x.mustCreate); err != nil {
				return Answer{}, err
			}
			return x.evidence(evidenceMods{})
		},
	},
	{
		Name:   "unknown-token",
		Checks: "A negotiation with a bearer token the verifier never issued.",
		Want:   Answer{Status: 401},
		run: func(x *exchange) (Answer, error) {
			x.token = "00000000-0000-4000-8000-000000000000.bm90LWEtdG9rZW4"
			return x.create()
		},
	},
	{
		Name:   "unknown-agent",
		Checks: "A session (PoP) for an agent id that is not enrolled.",
		Want:   Answer{Status: 200, Evaluation: "fail"},
		run: func(x *exchange) (Answer, error) {
			x.id += "-not-enrolled"
			return x.session(nil)
		},
	},
	{
		Name:   "premature-negotiation",
		Checks: "A negotiation right after accepted evidence, before quote_interval has passed.",
		Want:   Answer{Status: 429, Code: "premature_attestation"},
		run: func(x *exchange) (Answer, error) {
			// No waiting for the verdict: on a loaded machine it can take longer than quote_interval.
			if err := then(x, x.mustSession, x.mustCreate); err != nil {
				return Answer{}, err
			}
			a, err := x.evidence(evidenceMods{noVerdict: true})
			if err != nil || a.Status != http.StatusAccepted {
				return Answer{}, fmt.Errorf("evidence: %v (%q) %v", a, a.Detail, err)
			}
			return x.create()
		},
	},
	{
		Name:   "second-negotiation",
		Checks: "A second negotiation while the first one still awaits its evidence.",
		Want:   Answer{Status: 201},
		run: func(x *exchange) (Answer, error) {
			if err := then(x, x.mustSession, x.mustCreate); err != nil {
				return Answer{}, err
			}
			return x.create()
		},
	},
	{
		Name: "offset-beyond-log",
		Checks: "After a pass with 8 IMA entries the agent reports 4 (same boot_time) in its capabilities: the " +
			"starting_offset the verifier would choose (8) lies beyond the log, and the negotiation is refused.",
		Want: Answer{Status: 422, Code: "invalid_resource_data"},
		run: func(x *exchange) (Answer, error) {
			if err := then(x, x.pass, x.wait); err != nil {
				return Answer{}, err
			}
			x.log.lines, x.log.after = x.log.lines[:4], x.log.after[:4]
			return x.create()
		},
	},
	{
		Name: "reboot-shorter-log",
		Checks: "After passes with a 12-entry log the agent reboots (later boot_time, TPM reset, log restarted with " +
			"4 entries) and attests.",
		Want:   Answer{Status: 202, Evaluation: "fail", FailureReason: "broken_evidence_chain"},
		Defect: rebootDefect,
		run: func(x *exchange) (Answer, error) {
			if err := x.pass(); err != nil {
				return Answer{}, err
			}
			for i := 8; i < 12; i++ {
				x.log.add(fileName(i))
			}
			if err := then(x, x.wait, x.pass, x.wait); err != nil {
				return Answer{}, err
			}
			x.reboot(4)
			if err := x.mustCreate(); err != nil {
				return Answer{}, err
			}
			return x.evidence(evidenceMods{})
		},
	},
	{
		Name: "reboot-longer-log",
		Checks: "After a pass with an 8-entry log the agent reboots and its new log already holds 12 entries " +
			"when it attests.",
		Want:   Answer{Status: 202, Evaluation: "fail", FailureReason: "broken_evidence_chain"},
		Defect: rebootDefect,
		run: func(x *exchange) (Answer, error) {
			if err := then(x, x.pass, x.wait); err != nil {
				return Answer{}, err
			}
			x.reboot(12)
			if err := x.mustCreate(); err != nil {
				return Answer{}, err
			}
			return x.evidence(evidenceMods{})
		},
	},
	{
		Name: "reboot-same-log",
		Checks: "After a pass with an 8-entry log the agent reboots and its new log holds the same 8 measurements " +
			"in the same order (so PCR 10 has the old value again), as attestload's synthetic log does once it has " +
			"regrown to its old length.",
		Want: Answer{Status: 202, Evaluation: "pass"},
		run: func(x *exchange) (Answer, error) {
			if err := then(x, x.pass, x.wait); err != nil {
				return Answer{}, err
			}
			x.reboot(8)
			if err := x.mustCreate(); err != nil {
				return Answer{}, err
			}
			return x.evidence(evidenceMods{})
		},
	},
	{
		Name: "measured-boot",
		Checks: "The agent's mbpolicies row holds the captured reference state and it sends the captured UEFI event " +
			"log (attestation/measuredboot/captured) with its IMA log; its quote covers PCRs 0-15, those of the " +
			"boot as the log replays them (PCRs the log does not extend are zero).",
		Want:  Answer{Status: 202, Evaluation: "pass"},
		agent: agentOptions{measuredBoot: true},
		run: func(x *exchange) (Answer, error) {
			if err := then(x, x.mustSession, x.mustCreate); err != nil {
				return Answer{}, err
			}
			return x.evidence(evidenceMods{})
		},
	},
	{
		Name: "measured-boot-boot-aggregate",
		Checks: "As measured-boot, but the IMA log starts with a boot_aggregate entry whose digest, the UEFI log's " +
			"sha256 aggregate of PCRs 0-9, the runtime policy does not list: the verifier adds the aggregates the " +
			"UEFI log implies to the policy.",
		Want:  Answer{Status: 202, Evaluation: "pass"},
		agent: agentOptions{measuredBoot: true},
		run: func(x *exchange) (Answer, error) {
			if err := then(x, x.bootAggregateFirst, x.mustSession, x.mustCreate); err != nil {
				return Answer{}, err
			}
			return x.evidence(evidenceMods{})
		},
	},
	{
		Name: "measured-boot-log-tampered",
		Checks: "As measured-boot, but one byte of a PCR 4 event's sha256 digest in the sent log is changed: the " +
			"log still parses, and no longer replays to the quoted PCR 4.",
		Want:  Answer{Status: 202, Evaluation: "fail", FailureReason: "broken_evidence_chain"},
		agent: agentOptions{measuredBoot: true},
		run: func(x *exchange) (Answer, error) {
			if err := then(x, x.mustSession, x.mustCreate, x.tamperUEFILog); err != nil {
				return Answer{}, err
			}
			return x.evidence(evidenceMods{})
		},
	},
	{
		Name: "measured-boot-log-unparsable",
		Checks: "As measured-boot, but the sent log is cut short inside its last event, so the verifier's parser " +
			"(tpm2_eventlog) rejects it.",
		Want:  Answer{Status: 202, Evaluation: "fail", FailureReason: "policy_violation"},
		agent: agentOptions{measuredBoot: true},
		run: func(x *exchange) (Answer, error) {
			if err := then(x, x.mustSession, x.mustCreate, x.cutUEFILog); err != nil {
				return Answer{}, err
			}
			return x.evidence(evidenceMods{})
		},
	},
	{
		Name:   "measured-boot-log-not-offered",
		Checks: "The agent has a measured-boot reference state but its capabilities offer no UEFI log.",
		Want:   Answer{Status: 422, Code: "invalid_resource_data"},
		agent:  agentOptions{measuredBoot: true},
		run: func(x *exchange) (Answer, error) {
			x.offerUEFI = false
			if err := x.mustSession(); err != nil {
				return Answer{}, err
			}
			return x.create()
		},
	},
}

// rebootDefect is the stock verifier's reboot defect as a user sees it.
const rebootDefect = "After a reboot (a later boot_time) the verifier asks for the IMA log from offset 0 but replays it " +
	"from the PCR 10 value of the agent's last passed attestation, from the previous boot: the quote never " +
	"matches, and every attestation fails with broken_evidence_chain (\"IMA measurement list does not match TPM " +
	"PCR\") until PCR 10 happens to reach its old value again (only when the new boot measures exactly the same " +
	"files in the same order, as attestload's synthetic log does once it has regrown to the old length). A real " +
	"machine's agent fails until it is re-enrolled."

package simverifier

import (
	"encoding/json"
	"sync"
	"time"
)

// Stages and evaluations, as stored in attestations.stage / attestations.evaluation.
const (
	stageAwaiting   = "awaiting_evidence"
	stageEvaluating = "evaluating_evidence"
	stageComplete   = "verification_complete"

	evalPending = "pending"
	evalPass    = "pass"
	evalFail    = "fail"

	// FailureBrokenEvidenceChain is the failure reason for evidence that could not be authenticated (signature,
	// nonce, PCR digest, clock) or whose IMA log does not replay to the quoted PCR 10.
	FailureBrokenEvidenceChain = "broken_evidence_chain"
	// FailurePolicyViolation is the failure reason for authenticated evidence that violates a policy.
	FailurePolicyViolation = "policy_violation"
)

// agent is the per-agent state: enrolment, counters, the latest attestation, and what the next attestation needs
// from earlier ones. Nothing grows with the number of attestations.
type agent struct {
	mu sync.Mutex

	id        string
	akPub     []byte    // an ECC AK's TPM2B_PUBLIC (publicKey and akName parse it); nil with rsaAK
	rsaAK     *parsedAK // an RSA AK, parsed once and shared by the agents holding it
	hashAlgs  []string
	signAlgs  []string
	tpmPolicy map[int][]string // non-empty lists of lowercase hex values; shared between agents, never changed
	ima       *sharedPolicy    // nil: IMA not requested
	mb        mbPolicyState

	attestationCount    int
	consecutiveFailures int
	accept              bool

	nextIndex int
	rows      int // attestation rows the real verifier would still hold (for the list GET quirk)
	creating  int // POSTs between state read and commit (409 detection)
	latest    *attestation

	passed      *passedState // last passed attestation
	prevAuth    clockInfo    // clock of the last authenticated quote
	hasPrevAuth bool

	verdicts []verdictEntry // ring, newest last
}

type clockInfo struct {
	Clock        uint64 `json:"clock"`
	ResetCount   uint32 `json:"reset_count"`
	RestartCount uint32 `json:"restart_count"`
	Safe         int    `json:"safe"`
}

// passedState is what the next attestation's IMA offset and replay need from the last passed one.
type passedState struct {
	index          int
	bootTime       time.Time
	startingOffset int
	certified      int
	pcr10          []byte
	hadPrev        bool // a passed attestation preceded it (rolling deletion condition)
}

// bankSelection is one entry of selected_subjects (a slice, not a map: it is kept per agent).
type bankSelection struct {
	bank string
	pcrs []int
}

type verdictEntry struct {
	index         int
	evaluation    string
	failureReason string
}

// attestation is the latest attestation of an agent.
type attestation struct {
	index                  int
	stage                  string
	evaluation             string
	failureReason          string
	bootTime               time.Time
	capabilitiesReceivedAt time.Time
	challengesExpireAt     time.Time
	evidenceReceivedAt     time.Time
	items                  []*evidenceItem
	selfPath               string // the POST path, for links
}

// evidenceItem is one requested item, with the agent's capabilities and, once sent, its data.
type evidenceItem struct {
	class        string
	typ          string
	capabilities json.RawMessage // compact JSON: far smaller than the decoded map; dropped after verification

	// tpm_quote
	challenge  []byte
	hashAlg    string
	signScheme string
	selected   []bankSelection // every offered bank, in name order; PCRs nil when not selected
	certKey    json.RawMessage

	// ima_log
	startingOffset int
	entryCount     int // capabilities entry_count

	// submitted data (dropped after verification to keep memory small)
	data      map[string]any
	sentLines int             // IMA lines sent, kept after data is dropped
	meta      json.RawMessage // data.meta after parsing the quote
	certified int             // results.certified_entry_count
}

func (a *agent) recordVerdict(index int, evaluation, reason string, keep int) {
	for i := range a.verdicts {
		if a.verdicts[i].index == index {
			a.verdicts[i].evaluation, a.verdicts[i].failureReason = evaluation, reason
			return
		}
	}
	a.verdicts = append(a.verdicts, verdictEntry{index: index, evaluation: evaluation, failureReason: reason})
	if len(a.verdicts) > keep {
		// Shift in place so the backing array never grows beyond keep+1.
		copy(a.verdicts, a.verdicts[len(a.verdicts)-keep:])
		a.verdicts = a.verdicts[:keep]
	}
}

// requiredPCRs is the union the verifier derives: policy PCRs, the measured-boot PCRs when MB is on, and PCR 10
// when IMA is on.
func (a *agent) requiredPCRs() []int {
	set := map[int]bool{}
	for n := range a.tpmPolicy {
		set[n] = true
	}
	if a.mb.requested {
		for _, n := range measuredBootPCRs {
			set[n] = true
		}
	}
	if a.ima != nil {
		set[10] = true
	}
	out := make([]int, 0, len(set))
	for n := 0; n < 24; n++ {
		if set[n] {
			out = append(out, n)
		}
	}
	return out
}

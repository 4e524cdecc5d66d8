package simverifier

import (
	"bytes"
	"context"
	"crypto/sha1"
	"crypto/sha256"
	"crypto/sha512"
	"encoding/base64"
	"encoding/hex"
	"encoding/json"
	"fmt"
	"hash"
	"net/http"
	"strconv"
	"strings"

	"github.com/attestload/attestload/attestation/evidence"
	"github.com/attestload/attestload/attestation/softtpm"
)

const (
	tpmGeneratedValue  = softtpm.AttestMagic
	tpmSTAttestCertify = softtpm.AttestCertify
	tpmSTAttestQuote   = softtpm.AttestQuote
)

// checkSigAlgs checks the TPMT_SIGNATURE header: RSASSA or ECDSA (which one the key allows is checked with the
// signature) with the expected hash.
func checkSigAlgs(sig []byte, hashAlg string) error {
	sigAlg, h, _, err := softtpm.ParseSignature(sig)
	if err != nil {
		return err
	}
	if sigAlg != softtpm.AlgRSASSA && sigAlg != softtpm.AlgECDSA {
		return fmt.Errorf("signature scheme %#04x is neither RSASSA nor ECDSA", sigAlg)
	}
	if want := bankID(hashAlg); h != want {
		return fmt.Errorf("signature hash %#04x is not the chosen %s", h, hashAlg)
	}
	return nil
}

func newHash(alg uint16) hash.Hash {
	switch alg {
	case softtpm.AlgSHA1:
		return sha1.New()
	case softtpm.AlgSHA384:
		return sha512.New384()
	case softtpm.AlgSHA512:
		return sha512.New()
	default:
		return sha256.New()
	}
}

// quoteMeta is the data.meta the verifier reports for a quote: the PCRs it parsed and the clock info.
func quoteMeta(q *quoteData, hashAlg string) json.RawMessage {
	pcrs := map[string]string{}
	for _, n := range q.order {
		pcrs[strconv.Itoa(n)] = "0x" + hex.EncodeToString(q.values[n])
	}
	meta := map[string]any{"pcrs": map[string]any{hashAlg: pcrs}}
	if att, err := softtpm.ParseAttest(q.message); err == nil {
		safe := 0
		if att.Clock.Safe {
			safe = 1
		}
		meta["clock_info"] = clockInfo{Clock: att.Clock.Clock, ResetCount: att.Clock.ResetCount, RestartCount: att.Clock.RestartCount, Safe: safe}
	}
	b, _ := json.Marshal(meta)
	return b
}

// outcome is the result of evaluating evidence.
type outcome struct {
	reason    string // "" on pass
	detail    string // for logs
	clock     clockInfo
	authed    bool   // the quote was authenticated (clock becomes the next baseline)
	pcr10     []byte // PCR 10 the IMA replay reached
	certified int
}

func fail(reason, format string, args ...any) outcome {
	return outcome{reason: reason, detail: fmt.Sprintf(format, args...)}
}

// evaluate runs the checks of TPMEngine.verify_evidence in the real order: quote signature, nonce, PCR digest,
// clock (failures: broken_evidence_chain); then the measured-boot PCRs against the UEFI log (broken_evidence_chain,
// which outranks any other failure), IMA replay (a PCR 10 mismatch is broken_evidence_chain, entries outside the
// policy are policy_violation), the PCR policy and the measured-boot policy (policy_violation). Called with a.mu
// held.
func (v *Verifier) evaluate(a *agent, att *attestation, q *quoteData) outcome {
	var quoteItem, imaItem, uefiItem *evidenceItem
	for _, it := range att.items {
		switch it.typ {
		case "tpm_quote":
			quoteItem = it
		case "ima_log":
			imaItem = it
		case "uefi_log":
			uefiItem = it
		}
	}
	if quoteItem == nil || q == nil {
		return fail(FailurePolicyViolation, "no quote in the evidence")
	}
	ci, bad := checkQuote(a, quoteItem, q)
	if bad != nil {
		return *bad
	}
	out := outcome{clock: ci, authed: true}
	failAuthed := func(o outcome) outcome {
		o.clock, o.authed = ci, true
		return o
	}
	mb := v.checkMeasuredBoot(a, uefiItem, q)
	if mb.broken != "" {
		return failAuthed(fail(FailureBrokenEvidenceChain, "%s", mb.broken))
	}
	if a.ima != nil && imaItem != nil {
		pcr10, certified, bad := v.replayIMA(a, imaItem, q, mb.bootAggregates)
		if bad != nil {
			return failAuthed(*bad)
		}
		out.pcr10 = pcr10
		out.certified = certified
	}
	if bad := checkPCRPolicy(a, q); bad != nil {
		return failAuthed(*bad)
	}
	if mb.violation != "" {
		return failAuthed(fail(FailurePolicyViolation, "%s", mb.violation))
	}
	return out
}

// checkQuote authenticates the quote: its structure, signature, nonce, PCR digest and clock against the last
// authenticated one. It returns the quote's clock, or the failure.
func checkQuote(a *agent, quoteItem *evidenceItem, q *quoteData) (clockInfo, *outcome) {
	failed := func(format string, args ...any) (clockInfo, *outcome) {
		o := fail(FailureBrokenEvidenceChain, format, args...)
		return clockInfo{}, &o
	}
	tpmAtt, err := softtpm.ParseAttest(q.message)
	if err != nil {
		return failed("quote message: %v", err)
	}
	if tpmAtt.Magic != tpmGeneratedValue || tpmAtt.Type != tpmSTAttestQuote {
		return failed("quote message is not a TPM2_Quote (magic %#x, type %#x)", tpmAtt.Magic, tpmAtt.Type)
	}
	if err := checkSigAlgs(q.signature, quoteItem.hashAlg); err != nil {
		return failed("quote signature: %v", err)
	}
	pub, err := a.publicKey()
	if err != nil {
		return failed("enrolled AK: %v", err)
	}
	if err := softtpm.VerifySignature(pub, q.message, q.signature); err != nil {
		return failed("quote signature: %v", err)
	}
	b64 := []byte(base64.StdEncoding.EncodeToString(quoteItem.challenge))
	if !equalAny(tpmAtt.ExtraData, quoteItem.challenge, b64) {
		return failed("the nonce from the attestation differs from the expected nonce")
	}
	h := newHash(bankID(quoteItem.hashAlg))
	for _, n := range q.order {
		h.Write(q.values[n])
	}
	if !bytes.Equal(h.Sum(nil), tpmAtt.PCRDigest) {
		return failed("pcrDigest does not match the PCR values in subject_data")
	}
	c := tpmAtt.Clock
	ci := clockInfo{Clock: c.Clock, ResetCount: c.ResetCount, RestartCount: c.RestartCount}
	if c.Safe {
		ci.Safe = 1
	}
	if !c.Safe {
		return failed("clock is not safe")
	}
	prev := clockInfo{Safe: 1}
	if a.hasPrevAuth {
		prev = a.prevAuth
	}
	if ci.ResetCount < prev.ResetCount || ci.RestartCount < prev.RestartCount {
		return failed("resetCount or restartCount decreased")
	}
	if !(ci.ResetCount > prev.ResetCount && ci.RestartCount > prev.RestartCount) && ci.Clock <= prev.Clock {
		return failed("clock timestamp issued by TPM did not increase between two consecutive quotes")
	}
	return ci, nil
}

// replayIMA replays the IMA entries sent to the quoted PCR 10 and checks the certified ones against the policy.
// It returns PCR 10 and how many entries it certified, or the failure.
// bootAggregates are boot_aggregate digests the UEFI log implies, which the verifier adds to the policy's.
func (v *Verifier) replayIMA(a *agent, imaItem *evidenceItem, q *quoteData, bootAggregates []string) ([]byte, int, *outcome) {
	failed := func(reason, format string, args ...any) ([]byte, int, *outcome) {
		o := fail(reason, format, args...)
		return nil, 0, &o
	}
	pcr10, ok := q.values[10]
	if !ok {
		return failed(FailurePolicyViolation, "PCR 10 is not in the quote")
	}
	// The replay resumes from the last passed attestation's PCR 10. Keylime does so even when it asked for the
	// log from offset 0 after a reboot (RebootIMADefect); a fixed verifier would start from zero then.
	running := make([]byte, len(pcr10))
	if (imaItem.startingOffset > 0 || v.cfg.RebootIMADefect) && a.passed != nil && len(a.passed.pcr10) == len(pcr10) {
		copy(running, a.passed.pcr10)
	}
	entriesText, _ := asString(imaItem.data["entries"])
	lines := strings.SplitAfter(entriesText, "\n")
	if n := len(lines); n > 0 && lines[n-1] == "" {
		lines = lines[:n-1]
	}
	certified := -1
	if bytes.Equal(running, pcr10) {
		certified = 0
	}
	entries := make([]evidence.Entry, 0, len(lines))
	for i := 0; certified < 0 && i < len(lines); i++ {
		e, err := evidence.ParseLine(strings.TrimSuffix(lines[i], "\n"))
		if err != nil {
			return failed(FailurePolicyViolation, "IMA entry %d: %v", imaItem.startingOffset+i, err)
		}
		entries = append(entries, e)
		hh := newHash(q.bank)
		hh.Write(running)
		hh.Write(evidence.ExtendValue(e))
		running = hh.Sum(nil)
		if bytes.Equal(running, pcr10) {
			certified = i + 1
		}
	}
	if certified < 0 {
		return failed(FailureBrokenEvidenceChain, "IMA log does not replay to the quoted PCR 10")
	}
	for i, e := range entries[:certified] {
		if err := a.ima.policy.Check(e); err != nil && !isBootAggregate(e, bootAggregates) {
			return failed(FailurePolicyViolation, "IMA entry %d: %v", imaItem.startingOffset+i, err)
		}
	}
	return append([]byte(nil), pcr10...), certified, nil
}

// checkPCRPolicy checks every PCR of the agent's TPM policy against the quoted values.
func checkPCRPolicy(a *agent, q *quoteData) *outcome {
	for _, n := range sortedKeys(a.tpmPolicy) {
		val, ok := q.values[n]
		if !ok {
			o := fail(FailurePolicyViolation, "PCR %d is in the policy but not in the quote", n)
			return &o
		}
		got := hex.EncodeToString(val)
		match := false
		for _, want := range a.tpmPolicy[n] {
			// Entries of the wrong length are dropped, as tpm_engine does.
			if len(want) == len(got) && want == got {
				match = true
			}
		}
		if !match {
			o := fail(FailurePolicyViolation, "PCR %d value %s is not allowed by the policy", n, got)
			return &o
		}
	}
	return nil
}

// verify runs after the 202 on the same goroutine (and worker slot), like the real worker, then commits the
// verdict and the agent's counters.
func (v *Verifier) verify(r *http.Request, a *agent, att *attestation, q *quoteData) {
	if v.beforeVerify != nil {
		v.beforeVerify()
	}
	f := v.faults.Load()
	burnCPU(f.VerifyCPU, f.VerifyHashIterations)
	spendCPU(v.verificationCost(att))

	a.mu.Lock()
	o := v.evaluate(a, att, q)
	now := v.now()
	att.stage = stageComplete
	var imaItem *evidenceItem
	for _, it := range att.items {
		if it.typ == "ima_log" {
			imaItem = it
			it.certified = o.certified
		}
	}
	deletePrev, deleteIndex := false, -1
	if o.reason == "" {
		att.evaluation = evalPass
		a.attestationCount++
		// consecutive_attestation_failures is deliberately left alone: the real verifier only "resets" it when it
		// already is 0 (auto_recover_attestation_failures off).
		a.accept = true
		ps := &passedState{index: att.index, bootTime: att.bootTime, pcr10: o.pcr10, certified: o.certified, hadPrev: a.passed != nil}
		if imaItem != nil {
			ps.startingOffset = imaItem.startingOffset
		}
		// Rolling deletion (engine_driver): the previous passed attestation goes once a newer one passes on the
		// same boot, if it itself had a passed predecessor.
		if p := a.passed; p != nil && p.hadPrev && p.bootTime.Equal(att.bootTime) {
			a.rows--
			deletePrev = true
		}
		if deletePrev {
			deleteIndex = a.passed.index
		}
		a.passed = ps
	} else {
		att.evaluation = evalFail
		att.failureReason = o.reason
		a.consecutiveFailures++
		a.accept = true
	}
	if o.authed {
		a.prevAuth, a.hasPrevAuth = o.clock, true
	}
	// Keep the meta for the admin GET but drop the submitted blobs, the capabilities and the key echo: memory per
	// agent stays small and flat over long runs.
	for _, it := range att.items {
		it.capabilities, it.certKey, it.data = nil, nil, nil
	}
	if v.db != nil {
		// Written under the agent lock, before the verdict becomes visible: whoever sees the verdict (Verdict, the
		// next request of this agent) also finds the rows.
		ctx := context.WithoutCancel(r.Context())
		v.db.saveVerdict(ctx, a.id, att, o, a.attestationCount, a.consecutiveFailures, now)
		if deleteIndex >= 0 {
			v.db.deleteAttestation(ctx, a.id, deleteIndex)
		}
	}
	if o.reason == "" && v.cfg.ExtendTokenOnAttestation {
		v.sessions.extend(a.id, now.Add(v.cfg.SessionLifetime))
	}
	a.recordVerdict(att.index, att.evaluation, att.failureReason, v.cfg.VerdictHistory)
	a.mu.Unlock()
	v.scheduleTimeout(processFrom(r.Context()), a.id)
	if o.reason == "" {
		v.log.Debug("attestation passed", "agent_id", a.id, "index", att.index)
	} else {
		v.log.Info("attestation failed", "agent_id", a.id, "index", att.index, "failure_reason", o.reason, "detail", o.detail)
	}
	v.notifyVerdict()
}

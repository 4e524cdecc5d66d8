package simverifier

import (
	"bytes"
	"encoding/base64"
	"encoding/json"
	"errors"
	"fmt"
	"net/http"
	"sort"
	"strconv"
	"strings"
	"time"

	"github.com/attestload/attestload/attestation/softtpm"
)

const evidencePointer = "/data/attributes/evidence_supported"

func isVndAPI(ct string) bool {
	return strings.HasPrefix(strings.ToLower(strings.TrimSpace(ct)), "application/vnd.api+json")
}

// attestationBody applies the controller's framework checks: 415 for the content type, 400 for a document that is
// not JSON:API, 500 for a missing data.type.
func attestationBody(r *http.Request, body []byte) (data map[string]any, typ string, resp *response) {
	if !isVndAPI(r.Header.Get("Content-Type")) {
		return nil, "", emptyResponse(http.StatusUnsupportedMediaType)
	}
	data, typ, err := decodeDocument(body, true)
	switch {
	case errors.Is(err, errNoType):
		return nil, "", emptyResponse(http.StatusInternalServerError)
	case err != nil:
		return nil, "", emptyResponse(http.StatusBadRequest)
	}
	return data, typ, nil
}

func invalid(self, pointer, format string, args ...any) *response {
	return apiErrorResponse(http.StatusUnprocessableEntity, "invalid_resource_data", fmt.Sprintf(format, args...), self, pointer)
}

// agentAttestationBody runs the checks both attestation calls share, in the real verifier's order: the bearer
// token, its agent owning agentID, then the JSON:API body (content type and shape).
func (v *Verifier) agentAttestationBody(r *http.Request, body []byte, agentID string) (map[string]any, string, *response) {
	ident, resp := v.authenticate(r)
	if resp != nil {
		return nil, "", resp
	}
	if resp := authorizeAgent(ident, agentID); resp != nil {
		return nil, "", resp
	}
	return attestationBody(r, body)
}

// createAttestation is POST /v3/agents/{id}/attestations (phase 1, capabilities → chosen parameters).
func (v *Verifier) createAttestation(r *http.Request, body []byte, agentID, self string) *response {
	data, typ, resp := v.agentAttestationBody(r, body, agentID)
	if resp != nil {
		return resp
	}
	if typ != "attestation" {
		return emptyResponse(http.StatusBadRequest)
	}
	a := v.agent(agentID)
	if a == nil {
		return apiErrorResponse(http.StatusNotFound, "not_found", fmt.Sprintf("Agent '%s' not found", agentID), self, "")
	}
	now := v.now()
	a.mu.Lock()
	if resp := v.pacingRefusal(a, agentID, now, self); resp != nil {
		a.mu.Unlock()
		return resp
	}
	expected := a.nextIndex
	var passed *passedState
	if a.passed != nil {
		p := *a.passed
		passed = &p
	}
	a.mu.Unlock()

	attrs, _ := asObject(data["attributes"])
	att, resp := v.negotiate(a, attrs, passed, now, self)
	if resp != nil {
		return resp
	}
	spendCPU(v.cfg.Costs.Create)
	if v.beforeCommit != nil {
		v.beforeCommit()
	}
	a.mu.Lock()
	if a.nextIndex != expected {
		a.mu.Unlock()
		return apiErrorResponse(http.StatusConflict, "conflict",
			fmt.Sprintf("A concurrent attestation was created for agent '%s'.", agentID), self, "")
	}
	att.index = a.nextIndex
	a.nextIndex++
	a.rows++
	a.latest = att
	a.recordVerdict(att.index, evalPending, "", v.cfg.VerdictHistory)
	a.mu.Unlock()
	if v.db != nil {
		v.db.saveCreated(r.Context(), agentID, att)
	}
	return createdResponse(att, self)
}

// pacingRefusal is the 503 for a verification still in progress or the 429 for an attestation created before the
// quote interval elapsed, or nil. Called with a.mu held.
func (v *Verifier) pacingRefusal(a *agent, agentID string, now time.Time, self string) *response {
	latest := a.latest
	if latest == nil {
		return nil
	}
	if v.cfg.VerificationTimeout > 0 && latest.stage == stageEvaluating {
		if left := latest.evidenceReceivedAt.Add(v.cfg.VerificationTimeout).Sub(now); left > 0 {
			return apiErrorResponse(http.StatusServiceUnavailable, "verification_in_progress",
				fmt.Sprintf("Verification of the previous attestation for agent '%s' is still in progress.", agentID), self, "").
				set("Retry-After", retryAfter(left))
		}
	}
	if v.cfg.QuoteInterval > 0 && !latest.evidenceReceivedAt.IsZero() {
		next := latest.evidenceReceivedAt.Add(time.Duration(v.cfg.QuoteInterval) * time.Second)
		if left := next.Sub(now); left > 0 {
			return apiErrorResponse(http.StatusTooManyRequests, "premature_attestation",
				fmt.Sprintf("Cannot create attestation for agent '%s' before the configured interval has elapsed. Wait %d seconds before trying again.", agentID, ceilSeconds(left)),
				self, "").set("Retry-After", retryAfter(left))
		}
	}
	return nil
}

// createdResponse is the 201 of a created attestation: the evidence requested and its location.
func createdResponse(att *attestation, self string) *response {
	loc := self + "/" + strconv.Itoa(att.index)
	doc := map[string]any{
		"data": map[string]any{
			"type": "attestation",
			"attributes": map[string]any{
				"stage":                    stageAwaiting,
				"evidence_requested":       requestedJSON(att.items),
				"system_info":              map[string]any{"boot_time": timestamp(att.bootTime)},
				"capabilities_received_at": timestamp(att.capabilitiesReceivedAt),
				"challenges_expire_at":     timestamp(att.challengesExpireAt),
			},
			"links": map[string]any{"self": loc},
		},
		"links":   map[string]any{"self": self},
		"jsonapi": map[string]any{"version": "1.1"},
	}
	return jsonResponse(http.StatusCreated, ctJSONAPIOut, doc, false).set("Location", loc)
}

// negotiate validates capabilities and chooses what to request, following tpm_engine's selection rules.
func (v *Verifier) negotiate(a *agent, attrs map[string]any, passed *passedState, now time.Time, self string) (*attestation, *response) {
	supported, ok := asList(attrs["evidence_supported"])
	if !ok || len(supported) == 0 {
		return nil, invalid(self, evidencePointer, "evidence_supported is required and must be a non-empty list")
	}
	quoteAt, imaAt, uefiAt, resp := scanSupported(supported, self)
	if resp != nil {
		return nil, resp
	}
	sysInfo, _ := asObject(attrs["system_info"])
	bootRaw, hasBoot := sysInfo["boot_time"]
	var bootTime time.Time
	if hasBoot {
		var err error
		if bootTime, err = parseBootTime(bootRaw); err != nil {
			return nil, invalid(self, "/data/attributes/system_info/boot_time", "%v", err)
		}
	}
	att := &attestation{
		stage: stageAwaiting, evaluation: evalPending, bootTime: bootTime,
		capabilitiesReceivedAt: now, challengesExpireAt: now.Add(v.cfg.ChallengeLifetime), selfPath: self,
	}
	if required := a.requiredPCRs(); len(required) > 0 {
		if quoteAt < 0 {
			return nil, invalid(self, evidencePointer, "evidence_supported must include a tpm_quote with component_version 2.0")
		}
		item, resp := v.selectQuote(a, supported[quoteAt].(map[string]any), required, fmt.Sprintf("%s/%d/capabilities", evidencePointer, quoteAt), self)
		if resp != nil {
			return nil, resp
		}
		att.items = append(att.items, item)
	}
	if a.mb.requested {
		if uefiAt < 0 {
			return nil, invalid(self, evidencePointer, "evidence_supported must include a uefi_log")
		}
		item, resp := uefiItem(supported[uefiAt].(map[string]any), fmt.Sprintf("%s/%d/capabilities", evidencePointer, uefiAt), self)
		if resp != nil {
			return nil, resp
		}
		att.items = append(att.items, item)
	}
	if a.ima != nil {
		if imaAt < 0 {
			return nil, invalid(self, evidencePointer, "evidence_supported must include an ima_log")
		}
		item, resp := imaItem(supported[imaAt].(map[string]any), fmt.Sprintf("%s/%d/capabilities", evidencePointer, imaAt), self, hasBoot, bootTime, passed)
		if resp != nil {
			return nil, resp
		}
		att.items = append(att.items, item)
	}
	if !hasBoot {
		// attestations.system_info__boot_time is NOT NULL: the real verifier fails the commit with a 500.
		return nil, emptyResponse(http.StatusInternalServerError)
	}
	return att, nil
}

// scanSupported checks every evidence_supported item's class and type and finds the first usable tpm_quote
// (component_version 2.0), ima_log and uefi_log (-1 where there is none).
func scanSupported(supported []any, self string) (quoteAt, imaAt, uefiAt int, resp *response) {
	quoteAt, imaAt, uefiAt = -1, -1, -1
	for i, it := range supported {
		m, ok := asObject(it)
		if !ok {
			return 0, 0, 0, invalid(self, fmt.Sprintf("%s/%d", evidencePointer, i), "evidence item must be an object")
		}
		class, _ := asString(m["evidence_class"])
		if class != "certification" && class != "log" {
			return 0, 0, 0, invalid(self, fmt.Sprintf("%s/%d/evidence_class", evidencePointer, i), "evidence_class must be 'certification' or 'log'")
		}
		typ, ok := asString(m["evidence_type"])
		if !ok {
			return 0, 0, 0, invalid(self, fmt.Sprintf("%s/%d/evidence_type", evidencePointer, i), "evidence_type is required")
		}
		switch {
		case typ == "tpm_quote" && quoteAt < 0:
			if caps, _ := asObject(m["capabilities"]); caps != nil && caps["component_version"] == "2.0" {
				quoteAt = i
			}
		case typ == "ima_log" && imaAt < 0:
			imaAt = i
		case typ == "uefi_log" && uefiAt < 0:
			uefiAt = i
		}
	}
	return quoteAt, imaAt, uefiAt, nil
}

// uefiItem validates a uefi_log's capabilities (ptr points at them) and requests the log.
func uefiItem(m map[string]any, ptr, self string) (*evidenceItem, *response) {
	caps, _ := asObject(m["capabilities"])
	if formats, _ := stringList(caps["formats"]); !contains(formats, "application/octet-stream") {
		return nil, invalid(self, ptr+"/formats", "formats must include application/octet-stream")
	}
	return &evidenceItem{class: "log", typ: "uefi_log", capabilities: compact(caps)}, nil
}

// imaItem validates an ima_log's capabilities (ptr points at them) and the boot time, and requests the entries
// from where the last passed attestation of the same boot left off.
func imaItem(m map[string]any, ptr, self string, hasBoot bool, bootTime time.Time, passed *passedState) (*evidenceItem, *response) {
	caps, _ := asObject(m["capabilities"])
	count, ok := asInt(caps["entry_count"])
	if !ok || count < 0 {
		return nil, invalid(self, ptr+"/entry_count", "entry_count is required and must be a non-negative integer")
	}
	if formats, _ := stringList(caps["formats"]); !contains(formats, "text/plain") {
		return nil, invalid(self, ptr+"/formats", "formats must include text/plain")
	}
	if partial, _ := asBool(caps["supports_partial_access"]); !partial {
		return nil, invalid(self, ptr+"/supports_partial_access", "supports_partial_access must be true")
	}
	if !hasBoot {
		return nil, invalid(self, "/data/attributes/system_info/boot_time", "boot_time is required when an IMA log is expected")
	}
	offset := 0
	if passed != nil {
		switch {
		case bootTime.Before(passed.bootTime):
			return nil, invalid(self, "/data/attributes/system_info/boot_time", "boot_time must not be earlier than that of the last successful attestation")
		case bootTime.Equal(passed.bootTime):
			offset = passed.startingOffset + passed.certified
		}
	}
	if offset > count {
		return nil, invalid(self, ptr+"/entry_count", "entry_count %d is lower than the next expected entry %d", count, offset)
	}
	return &evidenceItem{class: "log", typ: "ima_log", capabilities: compact(caps), startingOffset: offset, entryCount: count}, nil
}

// selectQuote validates tpm_quote capabilities and picks the banks, hash, scheme and key.
func (v *Verifier) selectQuote(a *agent, m map[string]any, required []int, ptr, self string) (*evidenceItem, *response) {
	caps, _ := asObject(m["capabilities"])
	schemes, ok := stringList(caps["signature_schemes"])
	if !ok {
		return nil, invalid(self, ptr+"/signature_schemes", "signature_schemes is required and must be a list of strings")
	}
	hashes, ok := stringList(caps["hash_algorithms"])
	if !ok {
		return nil, invalid(self, ptr+"/hash_algorithms", "hash_algorithms is required and must be a list of strings")
	}
	subjects, ok := asObject(caps["available_subjects"])
	if !ok {
		return nil, invalid(self, ptr+"/available_subjects", "available_subjects must map bank names to PCR lists")
	}
	selected, resp := selectBanks(a, subjects, hashes, required, ptr, self)
	if resp != nil {
		return nil, resp
	}
	hashAlg := ""
	for _, h := range a.hashAlgs {
		if selectedPCRs(selected, h) != nil {
			hashAlg = h
			break
		}
	}
	cands, resp := rankKeys(a, caps, ptr, self)
	if resp != nil {
		return nil, resp
	}
	for _, key := range cands {
		alg, _ := asString(key["key_algorithm"])
		allowed, restricted := stringList(key["allowable_signature_schemes"])
		if hs, ok := stringList(key["allowable_hash_algorithms"]); ok && !contains(hs, hashAlg) {
			continue
		}
		for _, s := range a.signAlgs {
			// A scheme goes with the key algorithm Keylime's algorithms.Sign.key_algorithm gives it (rs* for rsa,
			// ec* for ecc). Keylime 7.14.3's capability check compares scheme.startswith(key_algorithm) instead, so
			// it refuses every ECC key ("ecdsa" does not start with "ecc"); the simulator models the intended check
			// (docs/ecc.md lists the stock verifier's ECC defects).
			if !contains(schemes, s) || alg == "" || schemeKeyAlgorithm(s) != alg || (restricted && !contains(allowed, s)) {
				continue
			}
			challenge, err := v.entropy.Challenge()
			if err != nil || len(challenge) != 16 {
				v.log.Error("challenge generation failed", "err", err)
				return nil, emptyResponse(http.StatusInternalServerError)
			}
			return &evidenceItem{
				class: "certification", typ: "tpm_quote", capabilities: compact(caps),
				challenge: challenge, hashAlg: hashAlg, signScheme: s, selected: selected, certKey: compact(key),
			}, nil
		}
	}
	return nil, invalid(self, ptr+"/certification_keys", "must have a key usable with a signature algorithm allowable for agent")
}

// selectedPCRs is the PCR list chosen for bank, nil when none is.
func selectedPCRs(selected []bankSelection, bank string) []int {
	for _, b := range selected {
		if b.bank == bank {
			return b.pcrs
		}
	}
	return nil
}

// selectBanks validates available_subjects and chooses, bank by bank in name order, the required PCRs where the
// agent allows the bank and it offers them all (an empty selection otherwise).
func selectBanks(a *agent, subjects map[string]any, hashes []string, required []int, ptr, self string) ([]bankSelection, *response) {
	banks := make([]string, 0, len(subjects))
	for b := range subjects {
		banks = append(banks, b)
	}
	sort.Strings(banks)
	var selected []bankSelection
	anyAccepted, anySelected := false, false
	for _, bank := range banks {
		if !contains(hashes, bank) {
			return nil, invalid(self, ptr+"/available_subjects", "bank %q is not listed in hash_algorithms", bank)
		}
		list, ok := asList(subjects[bank])
		if !ok {
			return nil, invalid(self, ptr+"/available_subjects/"+bank, "must be a list of PCR numbers")
		}
		have := map[int]bool{}
		for _, x := range list {
			n, ok := asInt(x)
			if !ok || n < 0 || n > 23 {
				return nil, invalid(self, ptr+"/available_subjects/"+bank, "PCR numbers must be integers from 0 to 23")
			}
			have[n] = true
		}
		if !contains(a.hashAlgs, bank) {
			selected = append(selected, bankSelection{bank: bank})
			continue
		}
		anyAccepted = true
		all := true
		for _, n := range required {
			all = all && have[n]
		}
		if all {
			selected = append(selected, bankSelection{bank: bank, pcrs: append([]int(nil), required...)})
			anySelected = true
		} else {
			selected = append(selected, bankSelection{bank: bank})
		}
	}
	if !anyAccepted {
		return nil, invalid(self, ptr+"/available_subjects", "available_subjects must include a bank allowable for agent (%s)", strings.Join(a.hashAlgs, ", "))
	}
	if !anySelected {
		return nil, invalid(self, ptr+"/available_subjects", "available_subjects must include the PCRs required for agent %v", required)
	}
	return selected, nil
}

// rankKeys validates certification_keys and orders them as the verifier tries them: the agent's AK given by value
// first, then server_identifier "ak", then the rest, each group in the order offered.
func rankKeys(a *agent, caps map[string]any, ptr, self string) ([]map[string]any, *response) {
	keys, ok := asList(caps["certification_keys"])
	if !ok || len(keys) == 0 {
		return nil, invalid(self, ptr+"/certification_keys", "certification_keys is required and must be a non-empty list")
	}
	type candidate struct {
		key  map[string]any
		rank int
	}
	var cands []candidate
	for i, k := range keys {
		km, ok := asObject(k)
		kptr := fmt.Sprintf("%s/certification_keys/%d", ptr, i)
		if !ok {
			return nil, invalid(self, kptr, "certification key must be an object")
		}
		class, _ := asString(km["key_class"])
		if class != "asymmetric" && class != "symmetric" {
			return nil, invalid(self, kptr+"/key_class", "key_class must be 'asymmetric' or 'symmetric'")
		}
		if _, ok := asInt(km["key_size"]); !ok {
			return nil, invalid(self, kptr+"/key_size", "key_size is required")
		}
		if _, ok := asString(km["key_algorithm"]); class == "asymmetric" && !ok {
			return nil, invalid(self, kptr+"/key_algorithm", "key_algorithm is required for asymmetric keys")
		}
		_, hasSrv := km["server_identifier"]
		_, hasLocal := km["local_identifier"]
		pub, hasPub := asString(km["public"])
		if !hasSrv && !hasLocal && !hasPub {
			return nil, invalid(self, kptr, "a certification key needs server_identifier, local_identifier or public")
		}
		rank := 2
		if hasPub && a.isAK(pub) {
			rank = 0
		} else if km["server_identifier"] == "ak" {
			rank = 1
		}
		cands = append(cands, candidate{km, rank})
	}
	sort.SliceStable(cands, func(i, j int) bool { return cands[i].rank < cands[j].rank })
	out := make([]map[string]any, len(cands))
	for i, c := range cands {
		out[i] = c.key
	}
	return out, nil
}

// schemeKeyAlgorithm is the key algorithm a signature scheme needs: rsa for rsassa and rsapss, ecc for ecdsa,
// ecdaa and ecschnorr, "" for a scheme Keylime does not know.
func schemeKeyAlgorithm(scheme string) string {
	switch scheme {
	case "rsassa", "rsapss":
		return "rsa"
	case "ecdsa", "ecdaa", "ecschnorr":
		return "ecc"
	}
	return ""
}

func requestedJSON(items []*evidenceItem) []any {
	out := make([]any, 0, len(items))
	for _, it := range items {
		out = append(out, map[string]any{
			"evidence_class": it.class, "evidence_type": it.typ, "chosen_parameters": it.chosenParameters(),
		})
	}
	return out
}

func (it *evidenceItem) chosenParameters() map[string]any {
	switch it.typ {
	case "tpm_quote":
		sel := map[string]any{}
		for _, b := range it.selected {
			if b.pcrs == nil {
				sel[b.bank] = nil
			} else {
				sel[b.bank] = b.pcrs
			}
		}
		return map[string]any{
			"challenge": base64.StdEncoding.EncodeToString(it.challenge), "signature_scheme": it.signScheme,
			"hash_algorithm": it.hashAlg, "selected_subjects": sel, "certification_key": it.certKey,
		}
	case "ima_log":
		return map[string]any{"starting_offset": it.startingOffset, "format": "text/plain"}
	default:
		return map[string]any{"format": "application/octet-stream"}
	}
}

// quoteData is a submitted tpm_quote, decoded at PATCH time.
type quoteData struct {
	message   []byte
	signature []byte
	bank      uint16
	values    map[int][]byte
	order     []int
}

// updateAttestation is PATCH /v3/agents/{id}/attestations/{latest|index} (phase 2, evidence).
func (v *Verifier) updateAttestation(r *http.Request, body []byte, agentID string, index int, self string) *response {
	data, typ, resp := v.agentAttestationBody(r, body, agentID)
	if resp != nil {
		return resp
	}
	if typ != "attestation" {
		return apiErrorResponse(http.StatusBadRequest, "invalid_request", "data.type must be 'attestation'", self, "/data/type")
	}
	a := v.agent(agentID)
	if a == nil {
		return apiErrorResponse(http.StatusNotFound, "not_found", fmt.Sprintf("Agent '%s' not found", agentID), self, "")
	}
	now := v.now()
	a.mu.Lock()
	defer a.mu.Unlock()
	att, resp := awaitingAttestation(a, agentID, index, now, self)
	if resp != nil {
		return resp
	}
	attrs, _ := asObject(data["attributes"])
	datas, quote, resp := collectEvidence(att, attrs, self)
	if resp != nil {
		return resp
	}
	spendCPU(v.cfg.Costs.Evidence)
	att.stage = stageEvaluating
	att.evidenceReceivedAt = now
	for i, it := range att.items {
		it.data = datas[i]
		if s, ok := asString(datas[i]["entries"]); ok && it.typ == "ima_log" {
			it.sentLines = strings.Count(s, "\n")
		}
		if it.typ == "tpm_quote" && quote != nil {
			it.meta = quoteMeta(quote, it.hashAlg)
		}
	}
	if v.db != nil {
		v.db.saveEvidence(r.Context(), agentID, att)
	}
	next := 0
	if v.cfg.QuoteInterval > 0 {
		next = v.cfg.QuoteInterval
	}
	doc := attestationDoc(att, agentID, self, true)
	doc["meta"] = map[string]any{"seconds_to_next_attestation": next}
	resp = jsonResponse(http.StatusAccepted, ctJSONAPIOut, doc, false).
		set("Location", fmt.Sprintf("/3/agents/%s/attestations/%d", agentID, att.index))
	resp.after = func() { v.verify(r, a, att, quote) }
	return resp
}

// awaitingAttestation is the attestation a PATCH of index (-1 for latest) may fill in: the latest, still awaiting
// evidence, its challenges unexpired; otherwise the 404 or 403 to answer. Called with a.mu held.
func awaitingAttestation(a *agent, agentID string, index int, now time.Time, self string) (*attestation, *response) {
	att := a.latest
	if att == nil || index > att.index {
		return nil, apiErrorResponse(http.StatusNotFound, "not_found", fmt.Sprintf("Attestation for agent '%s' not found", agentID), self, "")
	}
	if index >= 0 && index != att.index {
		return nil, apiErrorResponse(http.StatusForbidden, "old_attestation",
			fmt.Sprintf("Attestation %d is not the latest attestation of agent '%s' and cannot be changed.", index, agentID), self, "")
	}
	if att.stage != stageAwaiting {
		return nil, apiErrorResponse(http.StatusForbidden, "evidence_immutable",
			"Evidence has already been received for this attestation and cannot be changed.", self, "")
	}
	if !now.Before(att.challengesExpireAt) {
		return nil, apiErrorResponse(http.StatusForbidden, "challenges_expired",
			"The challenges of this attestation have expired; create a new attestation.", self, "")
	}
	return att, nil
}

// collectEvidence validates evidence_collected against the evidence requested (same items, same order) and
// decodes the quote.
func collectEvidence(att *attestation, attrs map[string]any, self string) ([]map[string]any, *quoteData, *response) {
	collected, ok := asList(attrs["evidence_collected"])
	if attrs == nil || !ok || len(att.items) == 0 {
		return nil, nil, invalid(self, "/data/attributes/evidence_collected", "evidence is required")
	}
	if len(collected) != len(att.items) {
		return nil, nil, invalid(self, "/data/attributes/evidence_collected", "evidence_collected must contain the %d requested items, in the same order as the evidence requested", len(att.items))
	}
	datas := make([]map[string]any, len(att.items))
	var quote *quoteData
	for i, it := range att.items {
		ptr := fmt.Sprintf("/data/attributes/evidence_collected/%d", i)
		m, _ := asObject(collected[i])
		if m == nil || m["evidence_class"] != it.class || m["evidence_type"] != it.typ {
			return nil, nil, invalid(self, ptr, "evidence_collected items must appear in the same order as the evidence requested")
		}
		d, _ := asObject(m["data"])
		if d == nil {
			return nil, nil, invalid(self, ptr+"/data", "data is required")
		}
		datas[i] = d
		switch it.typ {
		case "tpm_quote":
			q, resp := parseQuoteData(d, it, ptr, self)
			if resp != nil {
				return nil, nil, resp
			}
			quote = q
		case "ima_log", "uefi_log":
			if resp := checkLogData(d, it, ptr, self); resp != nil {
				return nil, nil, resp
			}
		}
	}
	return datas, quote, nil
}

// checkLogData checks a log item's entries: IMA text with at least the lines expected, or a base64 UEFI log.
func checkLogData(d map[string]any, it *evidenceItem, ptr, self string) *response {
	entries, ok := asString(d["entries"])
	if it.typ == "uefi_log" {
		if !ok {
			return invalid(self, ptr+"/data/entries", "entries is required")
		}
		if _, err := base64.StdEncoding.DecodeString(entries); err != nil {
			return invalid(self, ptr+"/data/entries", "entries must be base64")
		}
		return nil
	}
	if !ok {
		return invalid(self, ptr+"/data/entries", "entries is required and must be text")
	}
	if lines := strings.Count(entries, "\n"); lines < it.entryCount-it.startingOffset {
		return invalid(self, ptr+"/data/entries", "entries has %d lines, fewer than the %d expected from starting_offset %d", lines, it.entryCount-it.startingOffset, it.startingOffset)
	}
	return nil
}

func parseQuoteData(d map[string]any, it *evidenceItem, ptr, self string) (*quoteData, *response) {
	field := func(name string) ([]byte, *response) {
		s, _ := asString(d[name])
		if s == "" {
			return nil, invalid(self, ptr+"/data/"+name, "%s is required", name)
		}
		b, err := decodeBinary(s)
		if err != nil {
			return nil, invalid(self, ptr+"/data/"+name, "%s must be base64 or hex", name)
		}
		return b, nil
	}
	msg, resp := field("message")
	if resp != nil {
		return nil, resp
	}
	sig, resp := field("signature")
	if resp != nil {
		return nil, resp
	}
	blob, resp := field("subject_data")
	if resp != nil {
		return nil, resp
	}
	bank, values, order, err := softtpm.ParsePCRBlob(blob)
	if err != nil {
		return nil, invalid(self, ptr+"/data/subject_data", "subject_data is not a valid PCR blob: %v", err)
	}
	for _, b := range it.selected {
		name, pcrs := b.bank, b.pcrs
		if pcrs == nil {
			continue
		}
		if bankID(name) != bank {
			return nil, invalid(self, ptr+"/data/subject_data", "subject_data must contain at least the PCRs requested (bank %s missing)", name)
		}
		for _, n := range pcrs {
			if _, ok := values[n]; !ok {
				return nil, invalid(self, ptr+"/data/subject_data", "subject_data must contain at least the PCRs requested (PCR %d missing)", n)
			}
		}
	}
	return &quoteData{message: msg, signature: sig, bank: bank, values: values, order: order}, nil
}

func bankID(name string) uint16 {
	switch name {
	case "sha1":
		return softtpm.AlgSHA1
	case "sha256":
		return softtpm.AlgSHA256
	case "sha384":
		return softtpm.AlgSHA384
	case "sha512":
		return softtpm.AlgSHA512
	}
	return 0
}

// attestationDoc renders an attestation resource the way the 202 and the admin GET do: no data.id, self link
// under "/3/" (the Controller.version bug), and no failure_reason.
func attestationDoc(att *attestation, agentID, self string, withData bool) map[string]any {
	evidence := make([]any, 0, len(att.items))
	for _, it := range att.items {
		e := map[string]any{"evidence_class": it.class, "evidence_type": it.typ, "chosen_parameters": it.chosenParameters()}
		if it.capabilities != nil {
			e["capabilities"] = it.capabilities
		}
		d := map[string]any{}
		if withData {
			for k, val := range it.data {
				d[k] = val
			}
		}
		if it.meta != nil {
			d["meta"] = it.meta
		}
		if it.typ == "ima_log" && !att.evidenceReceivedAt.IsZero() {
			d["entry_count"] = it.sentLines
		}
		if len(d) > 0 {
			e["data"] = d
		}
		evidence = append(evidence, e)
	}
	attrs := map[string]any{
		"stage":                    att.stage,
		"evidence":                 evidence,
		"system_info":              map[string]any{"boot_time": timestamp(att.bootTime)},
		"capabilities_received_at": timestamp(att.capabilitiesReceivedAt),
		"challenges_expire_at":     timestamp(att.challengesExpireAt),
	}
	if !att.evidenceReceivedAt.IsZero() {
		attrs["evidence_received_at"] = timestamp(att.evidenceReceivedAt)
	}
	if att.stage == stageComplete || att.evaluation != evalPending {
		attrs["evaluation"] = att.evaluation
	}
	return map[string]any{
		"data": map[string]any{
			"type": "attestation", "attributes": attrs,
			"links": map[string]any{"self": fmt.Sprintf("/3/agents/%s/attestations/%d", agentID, att.index)},
		},
		"links":   map[string]any{"self": self},
		"jsonapi": map[string]any{"version": "1.1"},
	}
}

// adminAgent authorizes an admin read of agentID's attestations and finds the agent; a non-nil response is
// the refusal (401, 403 or 404) to send instead.
func (v *Verifier) adminAgent(r *http.Request, agentID string) (*agent, *response) {
	ident, resp := v.authenticate(r)
	if resp != nil {
		return nil, resp
	}
	if resp := authorizeAdmin(ident); resp != nil {
		return nil, resp
	}
	a := v.agent(agentID)
	if a == nil {
		return nil, apiErrorResponse(http.StatusNotFound, "not_found", fmt.Sprintf("Agent '%s' not found", agentID),
			r.URL.Path, "")
	}
	return a, nil
}

// getAttestation is the admin GET of latest or {index}. It answers 201, a quirk of the real controller.
func (v *Verifier) getAttestation(r *http.Request, agentID string, index int) *response {
	a, resp := v.adminAgent(r, agentID)
	if resp != nil {
		return resp
	}
	self := r.URL.Path
	a.mu.Lock()
	defer a.mu.Unlock()
	att := a.latest
	if att != nil && (index < 0 || index == att.index) {
		return jsonResponse(http.StatusCreated, ctJSONAPIOut, attestationDoc(att, agentID, self, true), false).
			set("Location", fmt.Sprintf("/3/agents/%s/attestations/%d", agentID, att.index))
	}
	// Older attestations: only their verdict is kept in memory.
	for _, e := range a.verdicts {
		if e.index == index {
			stage := stageComplete
			if e.evaluation == evalPending {
				stage = stageAwaiting
			}
			doc := map[string]any{
				"data": map[string]any{"type": "attestation",
					"attributes": map[string]any{"stage": stage, "evaluation": e.evaluation},
					"links":      map[string]any{"self": fmt.Sprintf("/3/agents/%s/attestations/%d", agentID, index)}},
				"links": map[string]any{"self": self}, "jsonapi": map[string]any{"version": "1.1"},
			}
			return jsonResponse(http.StatusCreated, ctJSONAPIOut, doc, false).
				set("Location", fmt.Sprintf("/3/agents/%s/attestations/%d", agentID, index))
		}
	}
	return apiErrorResponse(http.StatusNotFound, "not_found", fmt.Sprintf("Attestation for agent '%s' not found", agentID), self, "")
}

// listAttestations is the admin list GET, which fails with 500 as soon as the agent has more than one
// attestation row (a bug of the real verifier).
func (v *Verifier) listAttestations(r *http.Request, agentID string) *response {
	a, resp := v.adminAgent(r, agentID)
	if resp != nil {
		return resp
	}
	self := r.URL.Path
	a.mu.Lock()
	defer a.mu.Unlock()
	if a.rows > 1 {
		return emptyResponse(http.StatusInternalServerError)
	}
	list := []any{}
	if a.latest != nil {
		list = append(list, attestationDoc(a.latest, agentID, self, false)["data"])
	}
	return jsonResponse(http.StatusOK, ctJSONAPIOut, map[string]any{
		"data": list, "links": map[string]any{"self": self}, "jsonapi": map[string]any{"version": "1.1"},
	}, false)
}

// equalAny reports whether b equals any of the candidates.
func equalAny(b []byte, candidates ...[]byte) bool {
	for _, c := range candidates {
		if bytes.Equal(b, c) {
			return true
		}
	}
	return false
}

// compact re-encodes a decoded JSON object; it cannot fail for values that came from the JSON decoder.
func compact(m map[string]any) json.RawMessage {
	if m == nil {
		return nil
	}
	b, err := json.Marshal(m)
	if err != nil {
		return nil
	}
	return b
}

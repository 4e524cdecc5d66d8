package simverifier

import (
	"bytes"
	"crypto/sha256"
	"encoding/base64"
	"encoding/hex"
	"encoding/json"
	"fmt"
	"maps"
	"slices"
	"sync"

	"github.com/attestload/attestload/attestation/evidence"
	"github.com/attestload/attestload/attestation/measuredboot"
)

// Measured boot as the stock verifier checks it with its default configuration (measured_boot_policy_name
// accept-all, measured_boot_evaluate once): tpm_engine.expects_uefi_log, tpm_main.check_pcrs and the
// tpm2_tools_elparser. What is reproduced:
//
//   - A UEFI log is requested when mbpolicies.mb_policy is a non-empty string ({} included).
//   - The log is parsed (base64, then a TCG2 crypto-agile log with a sha256 bank). A log that does not parse fails
//     the attestation with policy_violation (the verifier's measured_boot.parser events), and its PCRs are then
//     compared with nothing but the PCR policy.
//   - When the reference state is valid JSON and not empty, every quoted PCR of 0-9 and 11-15 must equal the log's
//     replay (zero for a PCR the log does not extend); a difference is broken_evidence_chain, whatever else
//     failed ("the UEFI log could not be authenticated against the TPM quote").
//   - A reference state that is not JSON (or JSON null) fails with policy_violation (invalid_mb_policy).
//
//   - The boot aggregates a parsed log implies (the hash of PCRs 0-7 and of PCRs 0-9, for each bank of the log) are
//     accepted as digests of the IMA log's boot_aggregate entry, besides those the runtime policy lists.
//
// What is not: the accept-all policy evaluates nothing in the reference state, so neither does the simulator (a
// verifier configured with another measured_boot_policy_name would check the refstate's digests against the log's
// events); and a log the Python parser would reject for reasons beyond its structure (e.g. a malformed UEFI
// variable event that tpm_bootlog_enrich chokes on) passes here.

// measuredBootPCRs are keylime's config.MEASUREDBOOT_PCRS.
var measuredBootPCRs = []int{0, 1, 2, 3, 4, 5, 6, 7, 8, 9, 11, 12, 13, 14, 15}

// mbPolicyState is what verification needs from an agent's mbpolicies.mb_policy; the text itself (100 KB for a
// real reference state) is not kept per agent.
type mbPolicyState struct {
	requested bool // a non-empty string: the verifier asks for a UEFI log
	valid     bool // JSON and not null (elchecker.policy_is_valid)
	nonEmpty  bool // JSON whose value is truthy: the PCRs are compared with the log
}

// mbPolicies caches the state of each distinct reference state, so that a fleet sharing one is parsed once.
type mbPolicies struct {
	mu    sync.Mutex
	known map[[32]byte]mbPolicyState
}

func (m *mbPolicies) state(text *string) mbPolicyState {
	if text == nil || *text == "" {
		return mbPolicyState{}
	}
	key := sha256.Sum256([]byte(*text))
	m.mu.Lock()
	defer m.mu.Unlock()
	if s, ok := m.known[key]; ok {
		return s
	}
	s := mbPolicyState{requested: true}
	var doc any
	if json.Unmarshal([]byte(*text), &doc) == nil && doc != nil {
		s.valid = true
		s.nonEmpty = truthy(doc)
	}
	if m.known == nil {
		m.known = map[[32]byte]mbPolicyState{}
	}
	if len(m.known) >= 64 {
		clear(m.known) // distinct reference states are few; bound the cache anyway
	}
	m.known[key] = s
	return s
}

// truthy is Python's bool() of a decoded JSON value.
func truthy(v any) bool {
	switch x := v.(type) {
	case map[string]any:
		return len(x) > 0
	case []any:
		return len(x) > 0
	case string:
		return x != ""
	case float64:
		return x != 0
	case bool:
		return x
	}
	return false
}

// uefiReplay is a parsed UEFI log's sha256 replay and the boot aggregates of all its banks, or why it did not
// parse.
type uefiReplay struct {
	pcrs       map[int][]byte
	aggregates []string
	err        error
}

// uefiLogs caches the replay of the last log seen: a fleet sends the same log with every attestation, and parsing
// 73 KB each time would make the simulator's cost depend on its own parser rather than on its calibration.
type uefiLogs struct {
	mu   sync.Mutex
	key  [32]byte
	last *uefiReplay
}

func (u *uefiLogs) replay(entries string) *uefiReplay {
	key := sha256.Sum256([]byte(entries))
	u.mu.Lock()
	if u.last != nil && u.key == key {
		r := u.last
		u.mu.Unlock()
		return r
	}
	u.mu.Unlock()
	r := &uefiReplay{}
	raw, err := base64.StdEncoding.DecodeString(entries)
	if err != nil {
		r.err = fmt.Errorf("the UEFI log is not base64: %w", err)
	} else if l, err := measuredboot.Parse(raw); err != nil {
		r.err = err
	} else if r.pcrs, r.err = l.Replay(measuredboot.AlgSHA256); r.err == nil {
		for _, alg := range slices.Sorted(maps.Keys(l.DigestSizes)) {
			if pcrs, err := l.Replay(alg); err == nil {
				r.aggregates = append(r.aggregates, measuredboot.BootAggregates(alg, pcrs)...)
			}
		}
	}
	u.mu.Lock()
	u.key, u.last = key, r
	u.mu.Unlock()
	return r
}

// mbVerdict is the measured-boot part of a verification: broken names a measured-boot PCR the log does not
// replay to (broken_evidence_chain), violation a policy failure (policy_violation); both empty means it passed.
// bootAggregates are the log's, for the IMA check.
type mbVerdict struct {
	broken, violation string
	bootAggregates    []string
}

// isBootAggregate reports whether e is the IMA log's boot_aggregate entry with one of the given digests.
func isBootAggregate(e evidence.Entry, aggregates []string) bool {
	return e.Path == "boot_aggregate" && slices.Contains(aggregates, hex.EncodeToString(e.FileDigest))
}

// checkMeasuredBoot checks the agent's UEFI log item against the quote, as check_pcrs does with the default
// accept-all policy. Called with a.mu held.
func (v *Verifier) checkMeasuredBoot(a *agent, item *evidenceItem, q *quoteData) mbVerdict {
	if !a.mb.requested || item == nil {
		return mbVerdict{}
	}
	entries, _ := asString(item.data["entries"])
	var out mbVerdict
	var r *uefiReplay
	if entries != "" {
		r = v.uefiLogs.replay(entries)
		if r.err != nil {
			out.violation = "measured boot: the UEFI log could not be parsed: " + r.err.Error()
		}
		out.bootAggregates = r.aggregates
	}
	if !a.mb.valid {
		out.violation = "invalid measured boot policy"
		return out
	}
	if !a.mb.nonEmpty || (r != nil && r.err != nil) {
		return out
	}
	if r == nil {
		out.violation = "measured boot PCRs in policy, but no measurement list provided"
		return out
	}
	zero := make([]byte, sha256.Size)
	for _, n := range measuredBootPCRs {
		got, quoted := q.values[n]
		if !quoted {
			continue
		}
		want, ok := r.pcrs[n]
		if !ok {
			want = zero
		}
		if !bytes.Equal(got, want) {
			out.broken = fmt.Sprintf("PCR %d: the UEFI log replays to %x, the quote has %x", n, want, got)
			return out
		}
	}
	return out
}

package measuredboot

import (
	"bytes"
	_ "embed" // the captured log and reference state are compiled in
	"encoding/base64"
	"encoding/json"
	"errors"
	"fmt"
	"strings"
	"sync"
)

// The captured pair (see captured/NOTICE): a real machine's UEFI event log, base64, and its reference state.
var (
	//go:embed captured/uefi_log.txt
	capturedLog string
	//go:embed captured/uefi_refstate.json
	capturedRefstate []byte
)

// Boot is what one booted machine shows a Keylime verifier: the UEFI event log its agent sends (uefi_log entries),
// the reference state enrolled for it (mbpolicies.mb_policy) and the SHA-256 PCR values the log replays to, which
// its TPM holds. A Boot is immutable and shared by every agent of a run.
type Boot struct {
	logBase64 string
	refstate  []byte
	pcrs      map[int][]byte
	events    int
}

// New checks a UEFI event log (binary) and a reference state (a non-empty JSON object) and replays the log's
// SHA-256 bank.
func New(rawLog, refstate []byte) (*Boot, error) {
	l, err := Parse(rawLog)
	if err != nil {
		return nil, err
	}
	pcrs, err := l.Replay(AlgSHA256)
	if err != nil {
		return nil, err
	}
	var doc map[string]any
	if err := json.Unmarshal(refstate, &doc); err != nil {
		return nil, fmt.Errorf("measuredboot: reference state is not a JSON object: %w", err)
	}
	if len(doc) == 0 {
		// The verifier treats {} as "request the log but compare nothing", which would measure a cheaper path.
		return nil, errors.New("measuredboot: reference state is empty ({}): the verifier would not check the log")
	}
	return &Boot{logBase64: base64.StdEncoding.EncodeToString(rawLog), refstate: bytes.TrimSpace(refstate),
		pcrs: pcrs, events: len(l.Events)}, nil
}

var captured = sync.OnceValues(func() (*Boot, error) {
	raw, err := base64.StdEncoding.DecodeString(strings.TrimSpace(capturedLog))
	if err != nil {
		return nil, fmt.Errorf("measuredboot: captured log: %w", err)
	}
	return New(raw, capturedRefstate)
})

// Captured returns the Boot of the captured pair compiled into the binary (152 events after its header, 73 KB: a
// server's firmware, shim, GRUB and kernel, extending PCRs 0-9 and 14).
func Captured() (*Boot, error) { return captured() }

// LogBase64 is the uefi_log entries an agent sends: the whole binary log, base64.
func (b *Boot) LogBase64() string { return b.logBase64 }

// Refstate is the reference state to store in mbpolicies.mb_policy.
func (b *Boot) Refstate() []byte { return bytes.Clone(b.refstate) }

// PCRs are the SHA-256 values of the PCRs the log extends; every other PCR of the booted TPM is zero.
func (b *Boot) PCRs() map[int][]byte {
	out := make(map[int][]byte, len(b.pcrs))
	for k, v := range b.pcrs {
		out[k] = bytes.Clone(v)
	}
	return out
}

// Events is the number of events after the log's header.
func (b *Boot) Events() int { return b.events }

package softtpm

import (
	"bytes"
	"errors"
	"fmt"
	"time"
)

// DefaultFirmwareVersion is the firmwareVersion every TPM reports, the one the reference vectors use. The verifier
// does not check it.
const DefaultFirmwareVersion uint64 = 0x20191023

// TPM is the stateful software TPM of one agent: its AK, a SHA-256 PCR bank and the clock state that the verifier
// checks for monotonicity. It is not safe for concurrent use; an agent runs one cycle at a time.
type TPM struct {
	key          *Key
	pcrs         *PCRBank // shared with other TPMs until this one changes a PCR (then owned is set)
	owned        bool
	clock        uint64
	resetCount   uint32
	restartCount uint32
	now          func() time.Time
}

// PCRBank is a SHA-256 bank of PCR values. TPMs can start from one shared bank (WithPCRBank): a fleet of agents
// whose PCRs hold the same values then keeps one bank instead of 768 bytes per agent, and a TPM copies the bank
// only when it changes a PCR to a different value.
type PCRBank [NumPCRs][32]byte

// zeroBank is the bank of a TPM that nothing has written to: all PCRs zero. It is never written.
var zeroBank PCRBank

// NewPCRBank returns a bank with the given PCR values and every other PCR zero.
func NewPCRBank(values map[int][]byte) (*PCRBank, error) {
	b := new(PCRBank)
	for i, v := range values {
		if i < 0 || i >= NumPCRs {
			return nil, fmt.Errorf("softtpm: PCR %d out of range 0..%d", i, NumPCRs-1)
		}
		if len(v) != 32 {
			return nil, fmt.Errorf("softtpm: PCR %d value is %d bytes, the SHA-256 bank needs 32", i, len(v))
		}
		copy(b[i][:], v)
	}
	return b, nil
}

// WithPCRBank starts the TPM from a shared bank instead of all-zero PCRs. The bank must not be changed afterwards;
// the TPM copies it before its first change of a PCR.
func WithPCRBank(b *PCRBank) Option {
	return func(t *TPM) {
		if b != nil {
			t.pcrs, t.owned = b, false
		}
	}
}

// Option configures a TPM.
type Option func(*TPM)

// WithClock sets the initial clock state, e.g. to replay recorded vectors. A zero Clock is raised to 1 because the
// verifier's baseline is 0 and the first quote's clock must exceed it.
func WithClock(c ClockInfo) Option {
	return func(t *TPM) {
		t.clock, t.resetCount, t.restartCount = max(c.Clock, 1), c.ResetCount, c.RestartCount
	}
}

// WithNow replaces the wall clock the TPM clock follows (tests use a frozen or stepped clock).
func WithNow(now func() time.Time) Option {
	return func(t *TPM) { t.now = now }
}

// NewTPM returns a TPM holding k with all PCRs zero, resetCount and restartCount 0 and safe set.
//
// The clock follows Unix time in milliseconds (but never stands still) instead of starting near zero: the verifier
// remembers the last authenticated clock of every agent across runs of this tool, so a clock that restarted at a
// small value on each run would make every first quote fail as broken_evidence_chain.
func NewTPM(k *Key, opts ...Option) *TPM {
	t := new(TPM)
	t.Init(k, opts...)
	return t
}

// Init prepares t in place as NewTPM does, so that a fleet can keep its TPMs in one slice.
func (t *TPM) Init(k *Key, opts ...Option) {
	*t = TPM{key: k, now: time.Now, pcrs: &zeroBank}
	for _, o := range opts {
		o(t)
	}
	if t.clock == 0 {
		t.clock = max(uint64(max(t.now().UnixMilli(), 0)), 1)
	}
}

// Key returns the TPM's attestation key.
func (t *TPM) Key() *Key { return t.key }

// SetPCR sets PCR i of the SHA-256 bank to v, as if the platform had extended it to that value.
func (t *TPM) SetPCR(i int, v []byte) error {
	if i < 0 || i >= NumPCRs {
		return fmt.Errorf("softtpm: PCR %d out of range 0..%d", i, NumPCRs-1)
	}
	if len(v) != 32 {
		return fmt.Errorf("softtpm: PCR %d value is %d bytes, the SHA-256 bank needs 32", i, len(v))
	}
	if bytes.Equal(t.pcrs[i][:], v) {
		return nil // the shared bank already holds it: no copy
	}
	if !t.owned {
		own := *t.pcrs
		t.pcrs, t.owned = &own, true
	}
	copy(t.pcrs[i][:], v)
	return nil
}

// PCR returns a copy of PCR i of the SHA-256 bank, or nil when i is out of range.
func (t *TPM) PCR(i int) []byte {
	if i < 0 || i >= NumPCRs {
		return nil
	}
	return append([]byte(nil), t.pcrs[i][:]...)
}

// ResetPCRs sets every PCR to zero.
func (t *TPM) ResetPCRs() { t.pcrs, t.owned = &zeroBank, false }

// Reboot models a TPM Reset: resetCount increases and the PCRs are cleared. restartCount is left alone because the
// verifier rejects any decrease of either counter. The clock keeps increasing (a real TPM's clock does not reset
// either; only its time does).
func (t *TPM) Reboot() {
	t.resetCount++
	t.ResetPCRs()
	t.tick()
}

// ClockInfo returns the current clock state.
func (t *TPM) ClockInfo() ClockInfo {
	return ClockInfo{Clock: t.clock, ResetCount: t.resetCount, RestartCount: t.restartCount, Safe: true}
}

// tick advances the clock to the wall clock, and by at least 1 ms, so every attestation carries a clock strictly
// greater than the previous one even when the wall clock stalls or steps back.
func (t *TPM) tick() {
	t.clock = max(t.clock+1, uint64(max(t.now().UnixMilli(), 0)))
}

// Quote advances the clock and returns a signed TPM2_Quote over the given SHA-256 PCRs (strictly ascending):
// the TPMS_ATTEST message, its TPMT_SIGNATURE and the tpm2-tools PCR blob (subject_data).
func (t *TPM) Quote(extraData []byte, pcrs []int) (message, signature, subjectData []byte, err error) {
	if t.key == nil {
		return nil, nil, nil, errors.New("softtpm: quote: TPM has no key")
	}
	values := make([][]byte, len(pcrs))
	for i, p := range pcrs {
		if p < 0 || p >= NumPCRs {
			return nil, nil, nil, fmt.Errorf("softtpm: quote: PCR %d out of range 0..%d", p, NumPCRs-1)
		}
		values[i] = t.pcrs[p][:]
	}
	t.tick()
	message, err = BuildQuoteAttest(QuoteParams{
		QualifiedSigner: t.key.Name,
		ExtraData:       extraData,
		Clock:           t.ClockInfo(),
		FirmwareVersion: DefaultFirmwareVersion,
		Bank:            AlgSHA256,
		PCRs:            pcrs,
		PCRValues:       values,
	})
	if err != nil {
		return nil, nil, nil, err
	}
	subjectData, err = EncodePCRBlob(AlgSHA256, pcrs, values)
	if err != nil {
		return nil, nil, nil, err
	}
	signature, err = Sign(t.key, message)
	if err != nil {
		return nil, nil, nil, err
	}
	return message, signature, subjectData, nil
}

// Certify returns the session proof of possession: a TPM2_Certify of the AK by itself with the raw session
// challenge as qualifying data, and its signature.
func (t *TPM) Certify(nonce []byte) (message, signature []byte, err error) {
	if t.key == nil {
		return nil, nil, errors.New("softtpm: certify: TPM has no key")
	}
	t.tick()
	message, err = BuildCertifyAttest(CertifyParams{
		QualifiedSigner: t.key.Name,
		ExtraData:       nonce,
		Clock:           t.ClockInfo(),
		FirmwareVersion: DefaultFirmwareVersion,
		CertifiedName:   t.key.Name,
		QualifiedName:   t.key.Name,
	})
	if err != nil {
		return nil, nil, err
	}
	signature, err = Sign(t.key, message)
	if err != nil {
		return nil, nil, err
	}
	return message, signature, nil
}

package softtpm

import (
	"crypto/sha256"
	"encoding/binary"
	"errors"
	"fmt"

	"github.com/google/go-tpm/tpm2"
)

// TPMS_ATTEST constants.
const (
	AttestMagic   uint32 = 0xff544347 // TPM_GENERATED_VALUE
	AttestCertify uint16 = 0x8017     // TPM_ST_ATTEST_CERTIFY
	AttestQuote   uint16 = 0x8018     // TPM_ST_ATTEST_QUOTE
)

// Hash algorithm identifiers (TPM_ALG_ID) used for PCR banks and signatures.
const (
	AlgSHA1   uint16 = 0x0004
	AlgSHA256 uint16 = 0x000b
	AlgSHA384 uint16 = 0x000c
	AlgSHA512 uint16 = 0x000d
)

// NumPCRs is the number of PCRs per bank on a PC-client TPM.
const NumPCRs = 24

// maxExtraData is sizeof(TPMU_HA): a TPM rejects longer qualifying data, so the software TPM does too.
const maxExtraData = 64

// ClockInfo is TPMS_CLOCK_INFO.
type ClockInfo struct {
	Clock        uint64
	ResetCount   uint32
	RestartCount uint32
	Safe         bool
}

// QuoteParams are the inputs of a TPM2_Quote TPMS_ATTEST over a single PCR bank.
type QuoteParams struct {
	QualifiedSigner []byte
	ExtraData       []byte
	Clock           ClockInfo
	FirmwareVersion uint64
	Bank            uint16   // PCR bank, 0x000b for SHA-256
	PCRs            []int    // strictly ascending, 0..23
	PCRValues       [][]byte // one per PCR, digest-sized for Bank
}

// CertifyParams are the inputs of a TPM2_Certify TPMS_ATTEST.
type CertifyParams struct {
	QualifiedSigner []byte
	ExtraData       []byte
	Clock           ClockInfo
	FirmwareVersion uint64
	CertifiedName   []byte
	QualifiedName   []byte
}

// Attest is a decoded TPMS_ATTEST of type quote or certify.
type Attest struct {
	Magic           uint32
	Type            uint16
	QualifiedSigner []byte
	ExtraData       []byte
	Clock           ClockInfo
	FirmwareVersion uint64
	CertifiedName   []byte // certify only
	QualifiedName   []byte // certify only
	PCRSelectBank   uint16 // quote only
	PCRSelect       []int  // quote only, ascending
	PCRDigest       []byte // quote only
}

// DigestSize returns the digest length of a hash algorithm identifier, or 0 when it is not supported.
func DigestSize(alg uint16) int {
	switch alg {
	case AlgSHA1:
		return 20
	case AlgSHA256:
		return 32
	case AlgSHA384:
		return 48
	case AlgSHA512:
		return 64
	}
	return 0
}

// pcrSelectBits encodes PCR numbers as the 3-byte TPMS_PCR_SELECTION bitmap (byte 0 = PCRs 0-7, bit n%8).
func pcrSelectBits(pcrs []int) ([3]byte, error) {
	var sel [3]byte
	if len(pcrs) == 0 {
		return sel, errors.New("no PCRs selected")
	}
	prev := -1
	for _, p := range pcrs {
		if p < 0 || p >= NumPCRs {
			return sel, fmt.Errorf("PCR %d out of range 0..%d", p, NumPCRs-1)
		}
		if p <= prev {
			return sel, fmt.Errorf("PCRs must be strictly ascending, got %d after %d", p, prev)
		}
		prev = p
		sel[p/8] |= 1 << (p % 8)
	}
	return sel, nil
}

func pcrsFromBits(sel []byte) []int {
	var pcrs []int
	for i := 0; i < len(sel)*8; i++ {
		if sel[i/8]&(1<<(i%8)) != 0 {
			pcrs = append(pcrs, i)
		}
	}
	return pcrs
}

func checkPCRValues(bank uint16, pcrs []int, values [][]byte) error {
	size := DigestSize(bank)
	if size == 0 {
		return fmt.Errorf("unsupported PCR bank 0x%04x", bank)
	}
	if len(values) != len(pcrs) {
		return fmt.Errorf("%d PCR values for %d PCRs", len(values), len(pcrs))
	}
	for i, v := range values {
		if len(v) != size {
			return fmt.Errorf("PCR %d value is %d bytes, bank 0x%04x needs %d", pcrs[i], len(v), bank, size)
		}
	}
	return nil
}

func checkCommon(qualifiedSigner, extraData []byte) error {
	if len(extraData) > maxExtraData {
		return fmt.Errorf("extraData is %d bytes, a TPM accepts at most %d", len(extraData), maxExtraData)
	}
	if len(qualifiedSigner) > 0xffff {
		return fmt.Errorf("qualifiedSigner is %d bytes, too long for a TPM2B", len(qualifiedSigner))
	}
	return nil
}

// BuildQuoteAttest marshals the TPMS_ATTEST a TPM2_Quote returns: type 0x8018, one PCR selection for Bank, and
// pcrDigest = SHA-256 of the PCR values concatenated in ascending PCR order (the digest the verifier recomputes from
// subject_data for a SHA-256 signing scheme).
func BuildQuoteAttest(p QuoteParams) ([]byte, error) {
	if err := checkCommon(p.QualifiedSigner, p.ExtraData); err != nil {
		return nil, fmt.Errorf("softtpm: quote: %w", err)
	}
	sel, err := pcrSelectBits(p.PCRs)
	if err != nil {
		return nil, fmt.Errorf("softtpm: quote: %w", err)
	}
	if err := checkPCRValues(p.Bank, p.PCRs, p.PCRValues); err != nil {
		return nil, fmt.Errorf("softtpm: quote: %w", err)
	}
	h := sha256.New()
	for _, v := range p.PCRValues {
		h.Write(v)
	}
	b := appendAttestHeader(make([]byte, 0, 64+len(p.QualifiedSigner)+len(p.ExtraData)), AttestQuote,
		p.QualifiedSigner, p.ExtraData, p.Clock, p.FirmwareVersion)
	// TPMS_QUOTE_INFO: TPML_PCR_SELECTION with one TPMS_PCR_SELECTION (hash, sizeofSelect 3, pcrSelect), then
	// pcrDigest as a TPM2B_DIGEST.
	b = binary.BigEndian.AppendUint32(b, 1)
	b = binary.BigEndian.AppendUint16(b, p.Bank)
	b = append(b, byte(len(sel)))
	b = append(b, sel[:]...)
	b = binary.BigEndian.AppendUint16(b, sha256.Size)
	return h.Sum(b), nil
}

// appendAttestHeader appends the fields every TPMS_ATTEST starts with (TPM 2.0 Part 2, 10.12.12): magic, type,
// qualifiedSigner and extraData as TPM2Bs, TPMS_CLOCK_INFO and firmwareVersion. The structures are appended by
// hand because go-tpm's reflection cost as much as the rest of a cycle's encoding; the tests compare them with
// go-tpm's marshalling and the recorded vectors.
func appendAttestHeader(b []byte, typ uint16, signer, extra []byte, c ClockInfo, fw uint64) []byte {
	b = binary.BigEndian.AppendUint32(b, AttestMagic)
	b = binary.BigEndian.AppendUint16(b, typ)
	b = appendTPM2B(b, signer)
	b = appendTPM2B(b, extra)
	b = binary.BigEndian.AppendUint64(b, c.Clock)
	b = binary.BigEndian.AppendUint32(b, c.ResetCount)
	b = binary.BigEndian.AppendUint32(b, c.RestartCount)
	safe := byte(0)
	if c.Safe {
		safe = 1
	}
	b = append(b, safe)
	return binary.BigEndian.AppendUint64(b, fw)
}

// appendTPM2B appends v with its 2-byte size (callers check that it fits).
func appendTPM2B(b, v []byte) []byte {
	b = binary.BigEndian.AppendUint16(b, uint16(len(v)))
	return append(b, v...)
}

// BuildCertifyAttest marshals the TPMS_ATTEST a TPM2_Certify returns (type 0x8017), as used for the session PoP.
func BuildCertifyAttest(p CertifyParams) ([]byte, error) {
	if err := checkCommon(p.QualifiedSigner, p.ExtraData); err != nil {
		return nil, fmt.Errorf("softtpm: certify: %w", err)
	}
	if len(p.CertifiedName) == 0 {
		return nil, errors.New("softtpm: certify: certified name is empty")
	}
	if len(p.CertifiedName) > 0xffff || len(p.QualifiedName) > 0xffff {
		return nil, errors.New("softtpm: certify: name too long for a TPM2B")
	}
	b := appendAttestHeader(make([]byte, 0, 48+len(p.QualifiedSigner)+len(p.ExtraData)+len(p.CertifiedName)+
		len(p.QualifiedName)), AttestCertify, p.QualifiedSigner, p.ExtraData, p.Clock, p.FirmwareVersion)
	// TPMS_CERTIFY_INFO: name and qualifiedName as TPM2B_NAMEs.
	b = appendTPM2B(b, p.CertifiedName)
	return appendTPM2B(b, p.QualifiedName), nil
}

// ParseAttest decodes a quote or certify TPMS_ATTEST. It rejects a wrong magic, any other attestation type, a
// safe byte other than 0 or 1, more than one PCR bank, and trailing bytes.
func ParseAttest(b []byte) (*Attest, error) {
	if len(b) < 6 {
		return nil, fmt.Errorf("softtpm: TPMS_ATTEST is %d bytes, too short for magic and type", len(b))
	}
	if m := binary.BigEndian.Uint32(b); m != AttestMagic {
		return nil, fmt.Errorf("softtpm: TPMS_ATTEST magic 0x%08x, want 0x%08x", m, AttestMagic)
	}
	typ := binary.BigEndian.Uint16(b[4:])
	if typ != AttestQuote && typ != AttestCertify {
		return nil, fmt.Errorf("softtpm: TPMS_ATTEST type 0x%04x is neither quote (0x8018) nor certify (0x8017)", typ)
	}
	a, err := unmarshal[tpm2.TPMSAttest](b)
	if err != nil {
		return nil, fmt.Errorf("softtpm: TPMS_ATTEST: %w", err)
	}
	if n := len(tpm2.Marshal(*a)); n != len(b) {
		return nil, fmt.Errorf("softtpm: TPMS_ATTEST has %d trailing bytes", len(b)-n)
	}
	// go-tpm reads the safe byte as a bool, so check its raw value at its fixed position after the two TPM2Bs.
	safeAt := 6 + 2 + len(a.QualifiedSigner.Buffer) + 2 + len(a.ExtraData.Buffer) + 16
	if s := b[safeAt]; s > 1 {
		return nil, fmt.Errorf("softtpm: TPMS_ATTEST clockInfo.safe is %d, want 0 or 1", s)
	}
	out := &Attest{
		Magic:           AttestMagic,
		Type:            typ,
		QualifiedSigner: a.QualifiedSigner.Buffer,
		ExtraData:       a.ExtraData.Buffer,
		Clock: ClockInfo{
			Clock:        a.ClockInfo.Clock,
			ResetCount:   a.ClockInfo.ResetCount,
			RestartCount: a.ClockInfo.RestartCount,
			Safe:         a.ClockInfo.Safe,
		},
		FirmwareVersion: a.FirmwareVersion,
	}
	switch typ {
	case AttestQuote:
		q, err := a.Attested.Quote()
		if err != nil {
			return nil, fmt.Errorf("softtpm: TPMS_ATTEST quote info: %w", err)
		}
		sels := q.PCRSelect.PCRSelections
		if len(sels) != 1 {
			return nil, fmt.Errorf("softtpm: TPMS_ATTEST selects %d PCR banks, only one is supported", len(sels))
		}
		out.PCRSelectBank = uint16(sels[0].Hash)
		out.PCRSelect = pcrsFromBits(sels[0].PCRSelect)
		out.PCRDigest = q.PCRDigest.Buffer
	case AttestCertify:
		c, err := a.Attested.Certify()
		if err != nil {
			return nil, fmt.Errorf("softtpm: TPMS_ATTEST certify info: %w", err)
		}
		out.CertifiedName = c.Name.Buffer
		out.QualifiedName = c.QualifiedName.Buffer
	}
	return out, nil
}

package softtpm

import (
	"bytes"
	"crypto/sha256"
	"math/rand/v2"
	"testing"

	"github.com/google/go-tpm/tpm2"
)

// The hand-appended TPMS_ATTESTs are byte for byte what go-tpm marshals for the same structures, for any sizes
// and values.
func TestAttestEqualsGoTPM(t *testing.T) {
	rng := rand.New(rand.NewPCG(1, 2))
	bytesN := func(n int) []byte {
		b := make([]byte, n)
		for i := range b {
			b[i] = byte(rng.IntN(256))
		}
		return b
	}
	for i := range 200 {
		c := ClockInfo{Clock: rng.Uint64(), ResetCount: rng.Uint32(), RestartCount: rng.Uint32(), Safe: i%2 == 0}
		ci := tpm2.TPMSClockInfo{Clock: c.Clock, ResetCount: c.ResetCount, RestartCount: c.RestartCount, Safe: c.Safe}
		signer, extra, fw := bytesN(rng.IntN(70)), bytesN(rng.IntN(65)), rng.Uint64()

		var pcrs []int
		var values [][]byte
		for p := range NumPCRs {
			if rng.IntN(3) == 0 {
				pcrs = append(pcrs, p)
				values = append(values, bytesN(32))
			}
		}
		if len(pcrs) == 0 {
			pcrs, values = []int{10}, [][]byte{bytesN(32)}
		}
		got, err := BuildQuoteAttest(QuoteParams{QualifiedSigner: signer, ExtraData: extra, Clock: c,
			FirmwareVersion: fw, Bank: AlgSHA256, PCRs: pcrs, PCRValues: values})
		if err != nil {
			t.Fatal(err)
		}
		sel, _ := pcrSelectBits(pcrs)
		h := sha256.New()
		for _, v := range values {
			h.Write(v)
		}
		want := tpm2.Marshal(tpm2.TPMSAttest{Magic: tpm2.TPMGeneratedValue, Type: tpm2.TPMSTAttestQuote,
			QualifiedSigner: tpm2.TPM2BName{Buffer: signer}, ExtraData: tpm2.TPM2BData{Buffer: extra}, ClockInfo: ci,
			FirmwareVersion: fw, Attested: tpm2.NewTPMUAttest(tpm2.TPMSTAttestQuote, &tpm2.TPMSQuoteInfo{
				PCRSelect: tpm2.TPMLPCRSelection{PCRSelections: []tpm2.TPMSPCRSelection{
					{Hash: tpm2.TPMAlgSHA256, PCRSelect: sel[:]}}},
				PCRDigest: tpm2.TPM2BDigest{Buffer: h.Sum(nil)}})})
		if !bytes.Equal(got, want) {
			t.Fatalf("quote %d:\n got %x\nwant %x", i, got, want)
		}

		name, qname := bytesN(34), bytesN(rng.IntN(50))
		got, err = BuildCertifyAttest(CertifyParams{QualifiedSigner: signer, ExtraData: extra, Clock: c,
			FirmwareVersion: fw, CertifiedName: name, QualifiedName: qname})
		if err != nil {
			t.Fatal(err)
		}
		want = tpm2.Marshal(tpm2.TPMSAttest{Magic: tpm2.TPMGeneratedValue, Type: tpm2.TPMSTAttestCertify,
			QualifiedSigner: tpm2.TPM2BName{Buffer: signer}, ExtraData: tpm2.TPM2BData{Buffer: extra}, ClockInfo: ci,
			FirmwareVersion: fw, Attested: tpm2.NewTPMUAttest(tpm2.TPMSTAttestCertify, &tpm2.TPMSCertifyInfo{
				Name: tpm2.TPM2BName{Buffer: name}, QualifiedName: tpm2.TPM2BName{Buffer: qname}})})
		if !bytes.Equal(got, want) {
			t.Fatalf("certify %d:\n got %x\nwant %x", i, got, want)
		}
	}
}

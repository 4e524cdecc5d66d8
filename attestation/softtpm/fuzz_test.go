package softtpm

import (
	"bytes"
	"crypto/ecdsa"
	"crypto/elliptic"
	"crypto/rsa"
	"maps"
	"slices"
	"testing"
)

func FuzzParseAttest(f *testing.F) {
	for _, name := range []string{"02-agent1-cycle1.json", "05-agent2-quoteonly.json", "01-agent1-session-pop.json"} {
		v := loadVector(f, name)
		if v.Outputs.MessageB64 != "" {
			f.Add(mustB64(f, v.Outputs.MessageB64))
		}
		if v.Cycle1 != nil {
			f.Add(mustB64(f, v.Cycle1.Outputs.MessageB64))
		}
	}
	f.Add([]byte{0xff, 0x54, 0x43, 0x47, 0x80, 0x18})
	f.Fuzz(func(t *testing.T, b []byte) {
		a, err := ParseAttest(b)
		if err != nil {
			return
		}
		// Whatever parses must rebuild to the same bytes: the parser accepts exactly one encoding.
		if a.Type == AttestQuote {
			// pcrDigest cannot be rebuilt without the PCR values, so check that it is the structure's last field.
			tail := append([]byte{byte(len(a.PCRDigest) >> 8), byte(len(a.PCRDigest))}, a.PCRDigest...)
			if !bytes.HasSuffix(b, tail) {
				t.Fatalf("quote pcrDigest %x is not the final TPM2B of %x", a.PCRDigest, b)
			}
			return
		}
		rebuilt, err := BuildCertifyAttest(CertifyParams{
			QualifiedSigner: a.QualifiedSigner, ExtraData: a.ExtraData, Clock: a.Clock,
			FirmwareVersion: a.FirmwareVersion, CertifiedName: a.CertifiedName, QualifiedName: a.QualifiedName,
		})
		if err != nil {
			return // e.g. extraData longer than a TPM accepts, or an empty name
		}
		if !bytes.Equal(rebuilt, b) {
			t.Fatalf("certify parsed as %+v but rebuilds differently:\n in %x\nout %x", a, b, rebuilt)
		}
	})
}

func FuzzParsePCRBlob(f *testing.F) {
	v := loadVector(f, "05-agent2-quoteonly.json")
	f.Add(mustB64(f, v.Cycle1.Outputs.SubjectDataB64))
	f.Add(mustB64(f, loadVector(f, "02-agent1-cycle1.json").Outputs.SubjectDataB64))
	// The recorded blobs were written by tpm2-tools; EncodePCRBlob must give them back byte for byte.
	recorded := map[string]bool{}
	for _, name := range []string{"05-agent2-quoteonly.json", "02-agent1-cycle1.json"} {
		v := loadVector(f, name)
		b := v.Outputs.SubjectDataB64
		if name == "05-agent2-quoteonly.json" {
			b = v.Cycle1.Outputs.SubjectDataB64
		}
		recorded[string(mustB64(f, b))] = true
	}
	f.Fuzz(func(t *testing.T, b []byte) {
		bank, values, order, err := ParsePCRBlob(b)
		if err != nil {
			return
		}
		if !slices.IsSorted(order) || len(values) != len(order) {
			t.Fatalf("PCR order %v (%d values) is not ascending and one to one", order, len(values))
		}
		vals := make([][]byte, len(order))
		for i, p := range order {
			vals[i] = values[p]
		}
		re, err := EncodePCRBlob(bank, order, vals)
		if err != nil {
			t.Fatalf("parsed blob (bank %04x, PCRs %v) cannot be re-encoded: %v", bank, order, err)
		}
		if recorded[string(b)] && !bytes.Equal(re, b) {
			t.Fatalf("a recorded tpm2-tools blob re-encodes differently:\n%x\nwant\n%x", re, b)
		}
		// The parser may ignore bytes the verifier ignores (padding, unused slots, TPML_DIGEST.count), so an
		// arbitrary accepted blob need not come back byte for byte; but what it means must: the re-encoding parses
		// to the same bank, PCRs and values, and is its own re-encoding.
		bank2, values2, order2, err := ParsePCRBlob(re)
		if err != nil || bank2 != bank || !slices.Equal(order2, order) ||
			!maps.EqualFunc(values2, values, bytes.Equal) {
			t.Fatalf("re-encoded blob parses as bank %04x PCRs %v (%v), want bank %04x PCRs %v", bank2, order2, err,
				bank, order)
		}
		for i, p := range order {
			vals[i] = values2[p]
		}
		if re2, err := EncodePCRBlob(bank2, order2, vals); err != nil || !bytes.Equal(re2, re) {
			t.Fatalf("re-encoding is not stable: %v", err)
		}
	})
}

func FuzzParsePublic(f *testing.F) {
	v := loadVector(f, "00-enrollment.json")
	for _, k := range v.Keys {
		f.Add(mustB64(f, k.PubB64))
	}
	if k, err := GenerateECCKey(nil); err == nil {
		f.Add(k.Public)
	}
	f.Fuzz(func(t *testing.T, b []byte) {
		parsed, err := ParsePublic(b)
		if err != nil {
			return
		}
		pub, ok := parsed.(*rsa.PublicKey)
		if !ok {
			ec, ok := parsed.(*ecdsa.PublicKey)
			if !ok || ec.Curve != elliptic.P256() {
				t.Fatalf("accepted a key that is neither RSA nor P-256: %T", parsed)
			}
			if _, err := NameOf(b); err != nil && bytes.Equal(b[4:6], []byte{0, 0x0b}) {
				t.Fatalf("parsable SHA-256 public has no name: %v", err)
			}
			return
		}
		if pub.N.BitLen()%8 != 0 || pub.E < 3 {
			t.Fatalf("accepted an odd key: %d bits, e=%d", pub.N.BitLen(), pub.E)
		}
		if _, err := NameOf(b); err != nil && pub.N.BitLen() == 2048 && bytes.Equal(b[4:6], []byte{0, 0x0b}) {
			t.Fatalf("parsable SHA-256 public has no name: %v", err)
		}
	})
}

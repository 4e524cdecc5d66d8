package softtpm

import (
	"bytes"
	"crypto/ecdsa"
	"crypto/sha256"
	"encoding/hex"
	"math/big"
	"strings"
	"testing"

	"github.com/google/go-tpm/tpm2"
)

// fixedECCKey is a P-256 AK from a fixed scalar, so its encodings can be compared byte for byte.
func fixedECCKey(t testing.TB) *Key {
	t.Helper()
	k, err := GenerateECCKey(bytes.NewReader(bytes.Repeat([]byte{0x5a}, 32)))
	if err != nil {
		t.Fatal(err)
	}
	return k
}

// The TPM2B_PUBLIC of a P-256 AK, derived by hand from TPM 2.0 Part 2 (TPMT_PUBLIC 12.2.4, TPMS_ECC_PARMS
// 12.2.3.6, TPMS_ECC_POINT 11.2.5.2): size, type ECC, nameAlg SHA-256, the AK attributes, an empty authPolicy,
// symmetric NULL, scheme ECDSA with SHA-256, curve NIST P-256, KDF NULL, then X and Y as 32-byte TPM2Bs.
func TestECCPublicLayout(t *testing.T) {
	k := fixedECCKey(t)
	point, err := k.ECDSA().PublicKey.Bytes()
	if err != nil {
		t.Fatal(err)
	}
	want := "0058" + "0023" + "000b" + "00050072" + "0000" + "0010" + "0018" + "000b" + "0003" + "0010" +
		"0020" + hex.EncodeToString(point[1:33]) + "0020" + hex.EncodeToString(point[33:])
	if got := hex.EncodeToString(k.Public); got != want {
		t.Fatalf("TPM2B_PUBLIC\n got %s\nwant %s", got, want)
	}
	if len(k.Public) != ECCPublicSize || len(k.PublicBase64()) != 120 {
		t.Fatalf("TPM2B_PUBLIC is %d bytes (%d base64), want %d (120)", len(k.Public), len(k.PublicBase64()), ECCPublicSize)
	}
	sum := sha256.Sum256(k.Public[2:])
	if got, want := hex.EncodeToString(k.Name), "000b"+hex.EncodeToString(sum[:]); got != want {
		t.Fatalf("name %s, want %s", got, want)
	}
	if k.Type() != ECCP256 || k.SignatureScheme() != "ecdsa" || k.KeyAlgorithm() != "ecc" || k.KeySize() != 256 {
		t.Fatalf("type %s scheme %s algorithm %s size %d", k.Type(), k.SignatureScheme(), k.KeyAlgorithm(), k.KeySize())
	}

	// go-tpm reads the same structure back.
	pub2b, err := tpm2.Unmarshal[tpm2.TPM2BPublic](k.Public)
	if err != nil {
		t.Fatal(err)
	}
	pub, err := pub2b.Contents()
	if err != nil {
		t.Fatal(err)
	}
	parms, err := pub.Parameters.ECCDetail()
	if err != nil || parms.CurveID != tpm2.TPMECCNistP256 || parms.Scheme.Scheme != tpm2.TPMAlgECDSA {
		t.Fatalf("go-tpm reads parameters %+v, %v", parms, err)
	}
	pt, err := pub.Unique.ECC()
	if err != nil || !bytes.Equal(pt.X.Buffer, point[1:33]) || !bytes.Equal(pt.Y.Buffer, point[33:]) {
		t.Fatalf("go-tpm reads the point as %+v, %v", pt, err)
	}

	if again := tpm2.Marshal(tpm2.New2B(*pub)); !bytes.Equal(again, k.Public) {
		t.Fatalf("go-tpm marshals the structure it read as %x, not %x", again, k.Public)
	}

	parsed, err := ParsePublic(k.Public)
	if err != nil {
		t.Fatal(err)
	}
	if ec, ok := parsed.(*ecdsa.PublicKey); !ok || !ec.Equal(&k.ECDSA().PublicKey) {
		t.Fatalf("ParsePublic gives %T, not the key's public half", parsed)
	}
	// The same scalar gives the same key: generation from a seeded source is reproducible.
	if again := fixedECCKey(t); !bytes.Equal(again.Public, k.Public) {
		t.Fatal("the same seed gave a different key")
	}
}

// TPMT_SIGNATURE of ECDSA (Part 2, 11.3.4 and 11.2.5.1 TPMS_SIGNATURE_ECC): 0018, hash 000b, r and s as 32-byte
// TPM2Bs; it verifies with the standard library against SHA-256 of the message, and go-tpm reads it.
func TestECDSASignatureLayout(t *testing.T) {
	k := fixedECCKey(t)
	msg := []byte("a TPMS_ATTEST")
	sig, err := Sign(k, msg)
	if err != nil {
		t.Fatal(err)
	}
	if len(sig) != 72 || hex.EncodeToString(sig[:6]) != "0018000b0020" || hex.EncodeToString(sig[38:40]) != "0020" {
		t.Fatalf("signature %x: want 0018 000b 0020 <r> 0020 <s>, 72 bytes", sig)
	}
	digest := sha256.Sum256(msg)
	r, s := new(big.Int).SetBytes(sig[6:38]), new(big.Int).SetBytes(sig[40:])
	if !ecdsa.Verify(&k.ECDSA().PublicKey, digest[:], r, s) {
		t.Fatal("r and s do not verify against SHA-256 of the message")
	}
	ts, err := tpm2.Unmarshal[tpm2.TPMTSignature](sig)
	if err != nil {
		t.Fatal(err)
	}
	ecc, err := ts.Signature.ECDSA()
	if err != nil || ts.SigAlg != tpm2.TPMAlgECDSA || ecc.Hash != tpm2.TPMAlgSHA256 ||
		!bytes.Equal(ecc.SignatureR.Buffer, sig[6:38]) || !bytes.Equal(ecc.SignatureS.Buffer, sig[40:]) {
		t.Fatalf("go-tpm reads %+v %+v, %v", ts, ecc, err)
	}
	// go-tpm marshals the same structure to the same bytes.
	if again := tpm2.Marshal(tpm2.TPMTSignature{SigAlg: tpm2.TPMAlgECDSA, Signature: tpm2.NewTPMUSignature(
		tpm2.TPMAlgECDSA, &tpm2.TPMSSignatureECC{Hash: tpm2.TPMAlgSHA256,
			SignatureR: tpm2.TPM2BECCParameter{Buffer: sig[6:38]}, SignatureS: tpm2.TPM2BECCParameter{Buffer: sig[40:]}})}); !bytes.Equal(again, sig) {
		t.Fatalf("go-tpm marshals %x, Sign gave %x", again, sig)
	}

	if err := VerifySignature(&k.ECDSA().PublicKey, msg, sig); err != nil {
		t.Fatal(err)
	}
	// A TPM may strip leading zeros of r and s; the verifier accepts 1..32 bytes, so do we.
	short := append(append(append([]byte{0, 0x18, 0, 0x0b, 0, 32}, sig[6:38]...), 0, byte(len(s.Bytes()))), s.Bytes()...)
	if err := VerifySignature(&k.ECDSA().PublicKey, msg, short); err != nil {
		t.Fatalf("s without leading zeros: %v", err)
	}
	other, err := GenerateECCKey(nil)
	if err != nil {
		t.Fatal(err)
	}
	rsaSig, err := Sign(testKey(t), msg)
	if err != nil {
		t.Fatal(err)
	}
	tampered := bytes.Clone(sig)
	tampered[20] ^= 1
	for _, c := range []struct {
		name string
		pub  any
		msg  []byte
		sig  []byte
		want string
	}{
		{"other key", &other.ECDSA().PublicKey, msg, sig, "does not verify"},
		{"other message", &k.ECDSA().PublicKey, []byte("x"), sig, "does not verify"},
		{"tampered r", &k.ECDSA().PublicKey, msg, tampered, "does not verify"},
		{"RSASSA for an EC key", &k.ECDSA().PublicKey, msg, rsaSig, "only ECDSA"},
		{"sha1", &k.ECDSA().PublicKey, msg, append([]byte{0, 0x18, 0, 0x04}, sig[4:]...), "not SHA-256"},
		{"trailing byte", &k.ECDSA().PublicKey, msg, append(bytes.Clone(sig), 0), "trailing"},
		{"r of 33 bytes", &k.ECDSA().PublicKey, msg, append(append([]byte{0, 0x18, 0, 0x0b, 0, 33, 0}, sig[6:38]...), sig[38:]...), "want 1..32"},
		{"empty s", &k.ECDSA().PublicKey, msg, append(bytes.Clone(sig[:38]), 0, 0), "want 1..32"},
		{"s cut short", &k.ECDSA().PublicKey, msg, sig[:60], "size field"},
		{"no key", nil, msg, sig, "no usable public key"},
	} {
		if err := VerifySignature(c.pub, c.msg, c.sig); err == nil || !strings.Contains(err.Error(), c.want) {
			t.Errorf("%s: %v, want an error containing %q", c.name, err, c.want)
		}
	}
}

// An ECC TPM quotes and certifies like an RSA one: the qualifiedSigner and the certified name are the ECC AK's
// name, and both signatures verify against the parsed TPM2B_PUBLIC.
func TestECCQuoteAndCertify(t *testing.T) {
	k := fixedECCKey(t)
	tpm := NewTPM(k)
	if err := tpm.SetPCR(10, bytes.Repeat([]byte{7}, 32)); err != nil {
		t.Fatal(err)
	}
	pub, err := ParsePublic(k.Public)
	if err != nil {
		t.Fatal(err)
	}
	msg, sig, _, err := tpm.Quote([]byte("nonce"), []int{10})
	if err != nil {
		t.Fatal(err)
	}
	if err := VerifySignature(pub, msg, sig); err != nil {
		t.Fatalf("quote: %v", err)
	}
	att, err := ParseAttest(msg)
	if err != nil || !bytes.Equal(att.QualifiedSigner, k.Name) {
		t.Fatalf("quote signer %x, %v; want %x", att.QualifiedSigner, err, k.Name)
	}
	msg, sig, err = tpm.Certify([]byte("challenge"))
	if err != nil {
		t.Fatal(err)
	}
	if err := VerifySignature(pub, msg, sig); err != nil {
		t.Fatalf("certify: %v", err)
	}
	att, err = ParseAttest(msg)
	if err != nil || !bytes.Equal(att.CertifiedName, k.Name) || !bytes.Equal(att.QualifiedName, k.Name) {
		t.Fatalf("certified %x / %x, %v; want %x", att.CertifiedName, att.QualifiedName, err, k.Name)
	}
}

func TestECCParsePublicRejects(t *testing.T) {
	good := fixedECCKey(t).Public
	mod := func(f func([]byte) []byte) []byte { return f(bytes.Clone(good)) }
	offCurve := mod(func(b []byte) []byte { b[len(b)-1] ^= 1; return b })
	for _, c := range []struct {
		name string
		in   []byte
		want string
	}{
		{"curve P-384", mod(func(b []byte) []byte { b[19] = 0x04; return b }), "not NIST P-256"},
		{"symmetric AES", mod(func(b []byte) []byte { b[12], b[13] = 0, 0x06; return b }), ""},
		{"point off the curve", offCurve, "ECC point"},
		{"empty X", append(append(append([]byte{0, 56}, good[2:22]...), 0, 0), good[56:]...), "coordinates"},
		{"truncated", good[:len(good)-1], "size field"},
	} {
		if _, err := ParsePublic(c.in); err == nil || !strings.Contains(err.Error(), c.want) {
			t.Errorf("%s: %v, want an error containing %q", c.name, err, c.want)
		}
	}
	if _, err := NewECCKey(nil); err == nil {
		t.Error("NewECCKey(nil) succeeded")
	}
}

func BenchmarkSignECCP256(b *testing.B) {
	benchSign(b, fixedECCKey(b))
}

func BenchmarkGenerateECCKey(b *testing.B) {
	b.ReportAllocs()
	for b.Loop() {
		if _, err := GenerateECCKey(nil); err != nil {
			b.Fatal(err)
		}
	}
}

// TPMs started from one bank share it until one of them changes a PCR to a different value; that TPM then has a
// copy, and neither the bank nor the other TPMs see its change. Reset returns to the all-zero bank.
func TestSharedPCRBankCopyOnWrite(t *testing.T) {
	seven := bytes.Repeat([]byte{7}, 32)
	bank, err := NewPCRBank(map[int][]byte{7: seven})
	if err != nil {
		t.Fatal(err)
	}
	a, b := NewTPM(fixedECCKey(t), WithPCRBank(bank)), NewTPM(fixedECCKey(t), WithPCRBank(bank))
	if err := a.SetPCR(7, seven); err != nil || a.owned || a.pcrs != bank {
		t.Fatalf("setting a PCR to the value it holds copied the bank (owned %v, err %v)", a.owned, err)
	}
	if err := a.SetPCR(10, bytes.Repeat([]byte{1}, 32)); err != nil || !a.owned || a.pcrs == bank {
		t.Fatalf("a change did not give the TPM its own bank (owned %v, err %v)", a.owned, err)
	}
	if !bytes.Equal(a.PCR(7), seven) || !bytes.Equal(a.PCR(10), bytes.Repeat([]byte{1}, 32)) {
		t.Fatal("the copy lost a value")
	}
	if !bytes.Equal(b.PCR(10), make([]byte, 32)) || !bytes.Equal(bank[10][:], make([]byte, 32)) || !bytes.Equal(b.PCR(7), seven) {
		t.Fatal("one TPM's change reached the shared bank or another TPM")
	}
	a.ResetPCRs()
	if a.owned || !bytes.Equal(a.PCR(7), make([]byte, 32)) {
		t.Fatal("reset did not return to all-zero PCRs")
	}
	if _, err := NewPCRBank(map[int][]byte{24: seven}); err == nil {
		t.Error("PCR 24 accepted")
	}
	if _, err := NewPCRBank(map[int][]byte{0: seven[:20]}); err == nil {
		t.Error("a 20-byte value accepted in the SHA-256 bank")
	}
}

// ParsePublic and NameOf read this tool's P-256 layout without go-tpm; for many keys they must give what the go-tpm
// path gives for the same bytes, and a point off the curve in that layout is still refused.
func TestECCCanonicalFastPathMatchesGoTPM(t *testing.T) {
	for i := range 50 {
		k, err := GenerateECCKey(nil)
		if err != nil {
			t.Fatal(err)
		}
		if !isCanonicalECCPublic(k.Public) {
			t.Fatalf("key %d: its own TPM2B_PUBLIC is not the canonical layout", i)
		}
		fast, err := ParsePublic(k.Public)
		if err != nil {
			t.Fatal(err)
		}
		pub, inner, err := splitPublic(k.Public)
		if err != nil {
			t.Fatal(err)
		}
		slow, err := parseECCPublic(pub)
		if err != nil {
			t.Fatal(err)
		}
		if !fast.(*ecdsa.PublicKey).Equal(slow) || !slow.Equal(&k.ECDSA().PublicKey) {
			t.Fatalf("key %d: fast path %v, go-tpm %v", i, fast, slow)
		}
		sum := sha256.Sum256(inner)
		name, err := NameOf(k.Public)
		if err != nil || !bytes.Equal(name, append([]byte{0, 0x0b}, sum[:]...)) || !bytes.Equal(name, k.Name) {
			t.Fatalf("key %d: NameOf %x (%v), want 000b%x", i, name, err, sum)
		}
	}
	off := bytes.Clone(fixedECCKey(t).Public)
	off[len(off)-1] ^= 1
	if !isCanonicalECCPublic(off) {
		t.Fatal("flipping a bit of Y left the canonical layout")
	}
	if _, err := ParsePublic(off); err == nil || !strings.Contains(err.Error(), "ECC point") {
		t.Fatalf("a point off the curve in the canonical layout: %v", err)
	}
	for _, n := range []int{23, 57} { // a coordinate size field other than 32 leaves the fast path
		b := bytes.Clone(fixedECCKey(t).Public)
		b[n] = 31
		if isCanonicalECCPublic(b) {
			t.Fatalf("size byte %d changed, still canonical", n)
		}
	}
}

// A P-256 key holds its scalar and encodings only: no expanded private key stays with it.
func TestECCKeyIsCompact(t *testing.T) {
	k := fixedECCKey(t)
	if cap(k.Public) != ECCPublicSize || len(k.Name) != 34 {
		t.Fatalf("Public cap %d (want %d: Name must not be appendable into), Name %d bytes", cap(k.Public), ECCPublicSize, len(k.Name))
	}
	if d := k.ECDSA().D.FillBytes(make([]byte, 32)); !bytes.Equal(d, k.ecD[:]) || k.ECDSA() == k.ECDSA() {
		t.Fatal("ECDSA does not expand the stored scalar afresh")
	}
	if (&Key{}).ECDSA() != nil {
		t.Fatal("ECDSA of a key without a P-256 scalar is not nil")
	}
}

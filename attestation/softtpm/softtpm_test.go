package softtpm

import (
	"bytes"
	"crypto/rand"
	"crypto/rsa"
	"encoding/hex"
	"fmt"
	"os"
	"path/filepath"
	"strconv"
	"strings"
	"testing"
	"time"

	"github.com/attestload/attestload/internal/sharedtest"
)

func TestVectorKeys(t *testing.T) {
	v := loadVector(t, "00-enrollment.json")
	if len(v.Keys) != 3 {
		t.Fatalf("want 3 keys in 00-enrollment.json, got %d", len(v.Keys))
	}
	for name, ak := range v.Keys {
		t.Run(name, func(t *testing.T) {
			k := keyFromPEM(t, ak.PEM)
			if got := hex.EncodeToString(k.Public); got != ak.PubHex {
				t.Errorf("TPM2B_PUBLIC\n got %s\nwant %s", got, ak.PubHex)
			}
			if len(k.Public) != PublicSize {
				t.Errorf("TPM2B_PUBLIC is %d bytes, want %d", len(k.Public), PublicSize)
			}
			if got := k.PublicBase64(); got != ak.PubB64 {
				t.Errorf("ak_tpm\n got %s\nwant %s", got, ak.PubB64)
			}
			if got := hex.EncodeToString(k.Name); got != ak.NameHex {
				t.Errorf("name got %s want %s", got, ak.NameHex)
			}
			name, err := NameOf(mustB64(t, ak.PubB64))
			if err != nil || hex.EncodeToString(name) != ak.NameHex {
				t.Errorf("NameOf = %x, %v; want %s", name, err, ak.NameHex)
			}
			pub, err := ParsePublic(mustB64(t, ak.PubB64))
			if err != nil {
				t.Fatal(err)
			}
			if rsaPub, ok := pub.(*rsa.PublicKey); !ok || !rsaPub.Equal(&k.Private.PublicKey) {
				t.Error("ParsePublic does not give back the private key's public half")
			}
		})
	}
}

type quoteCase struct {
	name string
	key  string // PEM
	ex   vecExchange
}

func quoteCases(t *testing.T) []quoteCase {
	var cs []quoteCase
	for _, f := range []string{"02-agent1-cycle1.json", "03-agent1-cycle2.json", "04-agent1-cycle3.json", "06-neg-quote-clock-not-increasing.json"} {
		v := loadVector(t, f)
		cs = append(cs, quoteCase{f, v.AK.PEM, vecExchange{v.Inputs, v.Outputs}})
	}
	v := loadVector(t, "05-agent2-quoteonly.json")
	cs = append(cs, quoteCase{"05-agent2-quoteonly.json/cycle1", v.AK.PEM, *v.Cycle1})
	return cs
}

func TestVectorQuotes(t *testing.T) {
	for _, c := range quoteCases(t) {
		t.Run(c.name, func(t *testing.T) {
			k := keyFromPEM(t, c.key)
			in, out := c.ex.Inputs, c.ex.Outputs
			var values [][]byte
			for _, p := range in.PCRNumbers {
				values = append(values, mustHex(t, in.PCRValuesHex[strconv.Itoa(p)]))
			}
			msg, err := BuildQuoteAttest(QuoteParams{
				QualifiedSigner: mustHex(t, in.QualifiedSignerHex),
				ExtraData:       mustHex(t, in.ExtraDataHex),
				Clock:           in.clock(),
				FirmwareVersion: firmware(t, in.FirmwareVersionHex),
				Bank:            AlgSHA256,
				PCRs:            in.PCRNumbers,
				PCRValues:       values,
			})
			if err != nil {
				t.Fatal(err)
			}
			if got := hex.EncodeToString(msg); got != out.MessageHex {
				t.Fatalf("message\n got %s\nwant %s", got, out.MessageHex)
			}
			if !bytes.Equal(msg, mustB64(t, out.MessageB64)) {
				t.Fatal("message_hex and message_b64 disagree")
			}
			sig, err := Sign(k, msg)
			if err != nil {
				t.Fatal(err)
			}
			if !bytes.Equal(sig, mustB64(t, out.SignatureB64)) {
				t.Errorf("signature differs from the vector")
			}
			blob, err := EncodePCRBlob(AlgSHA256, in.PCRNumbers, values)
			if err != nil {
				t.Fatal(err)
			}
			if !bytes.Equal(blob, mustB64(t, out.SubjectDataB64)) {
				t.Errorf("subject_data differs:\n got %x\nwant %x", blob, mustB64(t, out.SubjectDataB64))
			}

			// Parse everything back.
			a, err := ParseAttest(msg)
			if err != nil {
				t.Fatal(err)
			}
			if a.Type != AttestQuote || a.Clock != in.clock() || a.PCRSelectBank != AlgSHA256 ||
				fmt.Sprint(a.PCRSelect) != fmt.Sprint(in.PCRNumbers) ||
				hex.EncodeToString(a.PCRDigest) != out.PCRDigestHex ||
				hex.EncodeToString(a.ExtraData) != in.ExtraDataHex ||
				hex.EncodeToString(a.QualifiedSigner) != in.QualifiedSignerHex ||
				a.FirmwareVersion != firmware(t, in.FirmwareVersionHex) {
				t.Errorf("ParseAttest = %+v", a)
			}
			bank, vals, order, err := ParsePCRBlob(blob)
			if err != nil {
				t.Fatal(err)
			}
			if bank != AlgSHA256 || fmt.Sprint(order) != fmt.Sprint(in.PCRNumbers) {
				t.Errorf("ParsePCRBlob bank %04x order %v", bank, order)
			}
			for i, p := range in.PCRNumbers {
				if !bytes.Equal(vals[p], values[i]) {
					t.Errorf("PCR %d parsed back as %x", p, vals[p])
				}
			}
			pub, err := ParsePublic(k.Public)
			if err != nil {
				t.Fatal(err)
			}
			if err := VerifySignature(pub, msg, sig); err != nil {
				t.Errorf("VerifySignature: %v", err)
			}
			tampered := bytes.Clone(msg)
			tampered[len(tampered)-1] ^= 1
			if err := VerifySignature(pub, tampered, sig); err == nil {
				t.Error("VerifySignature accepted a tampered message")
			}
		})
	}
}

func TestVectorPCRSelect(t *testing.T) {
	for _, c := range quoteCases(t) {
		sel, err := pcrSelectBits(c.ex.Inputs.PCRNumbers)
		if err != nil {
			t.Fatal(err)
		}
		if got := hex.EncodeToString(sel[:]); got != c.ex.Outputs.PCRSelectHex {
			t.Errorf("%s: pcrSelect %s, want %s", c.name, got, c.ex.Outputs.PCRSelectHex)
		}
	}
}

func TestVectorCertify(t *testing.T) {
	v01 := loadVector(t, "01-agent1-session-pop.json")
	v05 := loadVector(t, "05-agent2-quoteonly.json")
	v08 := loadVector(t, "08-neg-pop-wrong-key.json")
	agent1 := keyFromPEM(t, v01.AK.PEM)
	wrong := keyFromPEM(t, v08.WrongKey.PEM)
	cases := []struct {
		name      string
		signer    *Key
		ex        vecExchange
		verifyKey *Key // the enrolled AK the verifier would check against
		wantOK    bool
	}{
		{"01", agent1, vecExchange{v01.Inputs, v01.Outputs}, agent1, true},
		{"05/session", keyFromPEM(t, v05.AK.PEM), *v05.Session, keyFromPEM(t, v05.AK.PEM), true},
		{"08/variant1", wrong, v08.Variants[0], agent1, false},
		{"08/variant2", wrong, v08.Variants[1], agent1, true}, // signature good; rejected for the name mismatch
	}
	for _, c := range cases {
		t.Run(c.name, func(t *testing.T) {
			in, out := c.ex.Inputs, c.ex.Outputs
			msg, err := BuildCertifyAttest(CertifyParams{
				QualifiedSigner: mustHex(t, in.QualifiedSignerHex),
				ExtraData:       mustHex(t, in.ExtraDataHex),
				Clock:           in.clock(),
				FirmwareVersion: firmware(t, in.FirmwareVersionHex),
				CertifiedName:   mustHex(t, in.CertifiedNameHex),
				QualifiedName:   mustHex(t, in.QualifiedNameHex),
			})
			if err != nil {
				t.Fatal(err)
			}
			if got := hex.EncodeToString(msg); got != out.MessageHex {
				t.Fatalf("message\n got %s\nwant %s", got, out.MessageHex)
			}
			sig, err := Sign(c.signer, msg)
			if err != nil {
				t.Fatal(err)
			}
			if !bytes.Equal(sig, mustB64(t, out.SignatureB64)) {
				t.Error("signature differs from the vector")
			}
			a, err := ParseAttest(msg)
			if err != nil {
				t.Fatal(err)
			}
			if a.Type != AttestCertify || hex.EncodeToString(a.CertifiedName) != in.CertifiedNameHex ||
				hex.EncodeToString(a.QualifiedName) != in.QualifiedNameHex || a.PCRSelect != nil || a.PCRDigest != nil {
				t.Errorf("ParseAttest = %+v", a)
			}
			verifyAs := c.verifyKey
			if c.name == "08/variant2" {
				verifyAs = wrong
				if bytes.Equal(a.CertifiedName, agent1.Name) {
					t.Error("variant 2 should name the wrong key, not the enrolled AK")
				}
			}
			err = VerifySignature(&verifyAs.Private.PublicKey, msg, sig)
			if (err == nil) != c.wantOK {
				t.Errorf("VerifySignature err = %v, want ok=%v", err, c.wantOK)
			}
		})
	}
}

// TestTPMReproducesVectors drives the stateful TPM with the vector's clock and PCR values and expects the exact
// recorded bytes, so the TPM wires the same builders together as the verified client did.
func TestTPMReproducesVectors(t *testing.T) {
	frozen := func() time.Time { return time.UnixMilli(0) }
	for _, c := range quoteCases(t) {
		t.Run(c.name, func(t *testing.T) {
			in, out := c.ex.Inputs, c.ex.Outputs
			tpm := NewTPM(keyFromPEM(t, c.key), WithNow(frozen),
				WithClock(ClockInfo{Clock: in.Clock - 1, ResetCount: in.ResetCount, RestartCount: in.RestartCount}))
			for _, p := range in.PCRNumbers {
				if err := tpm.SetPCR(p, mustHex(t, in.PCRValuesHex[strconv.Itoa(p)])); err != nil {
					t.Fatal(err)
				}
			}
			msg, sig, blob, err := tpm.Quote(mustHex(t, in.ExtraDataHex), in.PCRNumbers)
			if err != nil {
				t.Fatal(err)
			}
			if hex.EncodeToString(msg) != out.MessageHex || !bytes.Equal(sig, mustB64(t, out.SignatureB64)) ||
				!bytes.Equal(blob, mustB64(t, out.SubjectDataB64)) {
				t.Errorf("TPM.Quote differs from the vector")
			}
		})
	}
	v := loadVector(t, "01-agent1-session-pop.json")
	tpm := NewTPM(keyFromPEM(t, v.AK.PEM), WithNow(frozen), WithClock(ClockInfo{Clock: v.Inputs.Clock - 1}))
	msg, sig, err := tpm.Certify(mustHex(t, v.Inputs.ExtraDataHex))
	if err != nil {
		t.Fatal(err)
	}
	if hex.EncodeToString(msg) != v.Outputs.MessageHex || !bytes.Equal(sig, mustB64(t, v.Outputs.SignatureB64)) {
		t.Error("TPM.Certify differs from vector 01")
	}
}

func TestVectorReplayIsOldQuote(t *testing.T) {
	v04 := loadVector(t, "04-agent1-cycle3.json")
	b := sharedtest.Vector(t, "07-neg-quote-exact-replay.json")
	if !strings.Contains(string(b), v04.Outputs.MessageB64) || !strings.Contains(string(b), v04.Outputs.SignatureB64) {
		t.Fatal("vector 07 should resend cycle 3's message and signature")
	}
}

func testKey(t testing.TB) *Key {
	t.Helper()
	v := loadVector(t, "00-enrollment.json")
	return keyFromPEM(t, v.Keys["vec-agent-1"].PEM)
}

func TestTPMClockAndReboot(t *testing.T) {
	now := time.UnixMilli(5_000)
	tpm := NewTPM(testKey(t), WithNow(func() time.Time { return now }))
	if c := tpm.ClockInfo(); c.Clock != 5_000 || c.ResetCount != 0 || c.RestartCount != 0 || !c.Safe {
		t.Fatalf("initial clock info %+v", c)
	}
	var last uint64
	for i := 0; i < 5; i++ {
		msg, _, _, err := tpm.Quote([]byte("nonce"), []int{10})
		if err != nil {
			t.Fatal(err)
		}
		a, err := ParseAttest(msg)
		if err != nil {
			t.Fatal(err)
		}
		if a.Clock.Clock <= last {
			t.Fatalf("quote %d clock %d not above %d", i, a.Clock.Clock, last)
		}
		last = a.Clock.Clock
		if i == 2 {
			now = now.Add(-time.Hour) // a wall clock stepping back must not move the TPM clock back
		}
	}
	now = time.UnixMilli(int64(last) + 10_000)
	msg, _, err := tpm.Certify([]byte("0123456789abcdef"))
	if err != nil {
		t.Fatal(err)
	}
	a, _ := ParseAttest(msg)
	if a.Clock.Clock != last+10_000 {
		t.Errorf("clock should follow the wall clock forward: got %d want %d", a.Clock.Clock, last+10_000)
	}
	last = a.Clock.Clock

	if err := tpm.SetPCR(10, bytes.Repeat([]byte{7}, 32)); err != nil {
		t.Fatal(err)
	}
	tpm.Reboot()
	c := tpm.ClockInfo()
	if c.ResetCount != 1 || c.RestartCount != 0 || c.Clock <= last || !c.Safe {
		t.Errorf("after reboot %+v (last clock %d)", c, last)
	}
	if !bytes.Equal(tpm.PCR(10), make([]byte, 32)) {
		t.Error("reboot did not clear PCR 10")
	}
}

func TestTPMPCRErrors(t *testing.T) {
	tpm := NewTPM(testKey(t))
	for _, c := range []struct {
		i    int
		v    []byte
		want string
	}{
		{-1, make([]byte, 32), "PCR -1 out of range"},
		{24, make([]byte, 32), "PCR 24 out of range"},
		{3, make([]byte, 20), "needs 32"},
	} {
		if err := tpm.SetPCR(c.i, c.v); err == nil || !strings.Contains(err.Error(), c.want) {
			t.Errorf("SetPCR(%d, %d bytes) = %v, want %q", c.i, len(c.v), err, c.want)
		}
	}
	if tpm.PCR(24) != nil {
		t.Error("PCR(24) should be nil")
	}
	// A quote or PCR blob over a PCR outside the bank names it and the valid range.
	for _, pcrs := range [][]int{{0, 24}, {-1}} {
		want := fmt.Sprintf("PCR %d out of range 0..23", pcrs[len(pcrs)-1])
		if _, _, _, err := tpm.Quote(make([]byte, 16), pcrs); err == nil || !strings.Contains(err.Error(), want) {
			t.Errorf("Quote over PCRs %v = %v, want %q", pcrs, err, want)
		}
		values := make([][]byte, len(pcrs))
		for i := range values {
			values[i] = make([]byte, 32)
		}
		if _, err := EncodePCRBlob(AlgSHA256, pcrs, values); err == nil || !strings.Contains(err.Error(), want) {
			t.Errorf("EncodePCRBlob over PCRs %v = %v, want %q", pcrs, err, want)
		}
	}
	v := bytes.Repeat([]byte{1}, 32)
	_ = tpm.SetPCR(0, v)
	got := tpm.PCR(0)
	got[0] = 9
	if !bytes.Equal(tpm.PCR(0), v) {
		t.Error("PCR returned an alias of internal state")
	}
	tpm.ResetPCRs()
	if !bytes.Equal(tpm.PCR(0), make([]byte, 32)) {
		t.Error("ResetPCRs left PCR 0 set")
	}
	for _, pcrs := range [][]int{{}, {10, 10}, {7, 0}, {24}, {-1}} {
		if _, _, _, err := tpm.Quote(nil, pcrs); err == nil {
			t.Errorf("Quote over %v succeeded", pcrs)
		}
	}
	if _, _, _, err := tpm.Quote(make([]byte, 65), []int{10}); err == nil || !strings.Contains(err.Error(), "extraData") {
		t.Errorf("65-byte extraData: %v", err)
	}
	if _, _, _, err := NewTPM(nil).Quote(nil, []int{10}); err == nil {
		t.Error("Quote without a key succeeded")
	}
}

func TestNewKeyRejects(t *testing.T) {
	if _, err := NewKey(nil); err == nil {
		t.Error("nil key accepted")
	}
	small, err := rsa.GenerateKey(rand.Reader, 1024)
	if err != nil {
		t.Fatal(err)
	}
	if _, err := NewKey(small); err == nil || !strings.Contains(err.Error(), "1024-bit") {
		t.Errorf("1024-bit key: %v", err)
	}
}

func TestParsePublicRejects(t *testing.T) {
	good := testKey(t).Public
	mod := func(f func(b []byte) []byte) []byte { return f(bytes.Clone(good)) }
	cases := []struct {
		name string
		in   []byte
		want string
	}{
		{"empty", nil, "too short"},
		{"size mismatch", mod(func(b []byte) []byte { b[1]++; return b }), "size field"},
		{"trailing", mod(func(b []byte) []byte { b[1]++; return append(b, 0) }), "trailing"},
		{"truncated", good[:100], "size field"},
		{"ecc type", mod(func(b []byte) []byte { b[3] = 0x23; return b }), ""},
		{"keyedhash type", mod(func(b []byte) []byte { b[3] = 0x08; return b }), ""},
		{"symmetric aes", mod(func(b []byte) []byte { b[12] = 0x00; b[13] = 0x06; return b }), ""},
		{"keyBits 1024", mod(func(b []byte) []byte { b[18] = 0x04; return b }), "keyBits 1024"},
	}
	for _, c := range cases {
		_, err := ParsePublic(c.in)
		if err == nil || !strings.Contains(err.Error(), c.want) {
			t.Errorf("%s: err = %v, want containing %q", c.name, err, c.want)
		}
	}
	if _, err := NameOf(mod(func(b []byte) []byte { b[5] = 0x04; return b })); err == nil || !strings.Contains(err.Error(), "nameAlg") {
		t.Errorf("NameOf sha1 nameAlg: %v", err)
	}
	// Exponent 0 means 65537; an explicit exponent round-trips.
	if pub, err := ParsePublic(good); err != nil || pub.(*rsa.PublicKey).E != 65537 {
		t.Errorf("exponent: %v %v", pub, err)
	}
}

func TestParseAttestRejects(t *testing.T) {
	k := testKey(t)
	tpm := NewTPM(k)
	quote, _, _, err := tpm.Quote([]byte("abc"), []int{0, 7, 10})
	if err != nil {
		t.Fatal(err)
	}
	cert, _, err := tpm.Certify([]byte("0123456789abcdef"))
	if err != nil {
		t.Fatal(err)
	}
	for name, msg := range map[string][]byte{"quote": quote, "certify": cert} {
		for n := 0; n < len(msg); n++ {
			if _, err := ParseAttest(msg[:n]); err == nil {
				t.Errorf("%s truncated to %d bytes parsed", name, n)
			}
		}
		if _, err := ParseAttest(append(bytes.Clone(msg), 0)); err == nil || !strings.Contains(err.Error(), "trailing") {
			t.Errorf("%s with a trailing byte: %v", name, err)
		}
		bad := bytes.Clone(msg)
		bad[0] = 0
		if _, err := ParseAttest(bad); err == nil || !strings.Contains(err.Error(), "magic") {
			t.Errorf("%s bad magic: %v", name, err)
		}
		bad = bytes.Clone(msg)
		bad[5] = 0x14 // 0x8014 TPM_ST_ATTEST_COMMAND_AUDIT
		if _, err := ParseAttest(bad); err == nil || !strings.Contains(err.Error(), "0x8014") {
			t.Errorf("%s unknown type: %v", name, err)
		}
		bad = bytes.Clone(msg)
		safeAt := 6 + 2 + len(k.Name) + 2 + 16 + 16
		if name == "quote" {
			safeAt = 6 + 2 + len(k.Name) + 2 + 3 + 16
		}
		if bad[safeAt] != 1 {
			t.Fatalf("%s: safe byte not where expected", name)
		}
		bad[safeAt] = 2
		if _, err := ParseAttest(bad); err == nil || !strings.Contains(err.Error(), "safe") {
			t.Errorf("%s safe=2: %v", name, err)
		}
	}
	a, err := ParseAttest(quote)
	if err != nil || fmt.Sprint(a.PCRSelect) != "[0 7 10]" {
		t.Errorf("round trip: %+v %v", a, err)
	}
}

func TestSignatureParsing(t *testing.T) {
	k := testKey(t)
	sig, err := Sign(k, []byte("m"))
	if err != nil {
		t.Fatal(err)
	}
	alg, h, raw, err := ParseSignature(sig)
	if err != nil || alg != AlgRSASSA || h != AlgSHA256 || len(raw) != 256 {
		t.Fatalf("ParseSignature = %x %x %d %v", alg, h, len(raw), err)
	}
	for n := 0; n < len(sig); n++ {
		if _, _, _, err := ParseSignature(sig[:n]); err == nil {
			t.Errorf("truncated to %d parsed", n)
		}
	}
	pub := &k.Private.PublicKey
	eck, err := GenerateECCKey(nil)
	if err != nil {
		t.Fatal(err)
	}
	eccSig, err := Sign(eck, []byte("m"))
	if err != nil {
		t.Fatal(err)
	}
	withHeader := func(alg, hash uint16) []byte {
		b := bytes.Clone(sig)
		b[0], b[1], b[2], b[3] = byte(alg>>8), byte(alg), byte(hash>>8), byte(hash)
		return b
	}
	for _, c := range []struct {
		name string
		sig  []byte
		want string
	}{
		{"pss", withHeader(AlgRSAPSS, AlgSHA256), "only RSASSA"},
		{"ecdsa header on an RSA signature", withHeader(0x0018, AlgSHA256), "ECDSA signature"},
		{"ecdsa signature for an RSA key", eccSig, "not accepted for RSA keys"},
		{"sha1", withHeader(AlgRSASSA, AlgSHA1), "not SHA-256"},
		{"trailing", append(bytes.Clone(sig), 0), "size field"},
	} {
		if err := VerifySignature(pub, []byte("m"), c.sig); err == nil || !strings.Contains(err.Error(), c.want) {
			t.Errorf("%s: %v, want %q", c.name, err, c.want)
		}
	}
	if err := VerifySignature(pub, []byte("m"), sig); err != nil {
		t.Error(err)
	}
	if err := VerifySignature(pub, []byte("n"), sig); err == nil {
		t.Error("wrong message verified")
	}
}

func TestPCRBlob(t *testing.T) {
	var pcrs []int
	var values [][]byte
	for i := 0; i < NumPCRs; i++ {
		pcrs = append(pcrs, i)
		values = append(values, bytes.Repeat([]byte{byte(i + 1)}, 32))
	}
	for _, n := range []int{1, 8, 9, 24} {
		blob, err := EncodePCRBlob(AlgSHA256, pcrs[:n], values[:n])
		if err != nil {
			t.Fatal(err)
		}
		lists := (n + 7) / 8
		if len(blob) != 4+128+4+532*lists {
			t.Errorf("%d PCRs: %d bytes", n, len(blob))
		}
		bank, got, order, err := ParsePCRBlob(blob)
		if err != nil || bank != AlgSHA256 || len(order) != n {
			t.Fatalf("%d PCRs: %x %v %v", n, bank, order, err)
		}
		for i := 0; i < n; i++ {
			if !bytes.Equal(got[i], values[i]) {
				t.Errorf("%d PCRs: PCR %d = %x", n, i, got[i])
			}
		}
		for cut := 0; cut < len(blob); cut += 7 {
			if _, _, _, err := ParsePCRBlob(blob[:cut]); err == nil {
				t.Errorf("%d PCRs truncated to %d parsed", n, cut)
			}
		}
	}
	blob, _ := EncodePCRBlob(AlgSHA256, []int{0, 7}, values[:2])
	mutate := func(f func(b []byte)) []byte { b := bytes.Clone(blob); f(b); return b }
	for _, c := range []struct {
		name string
		in   []byte
		want string
	}{
		{"count 2", mutate(func(b []byte) { b[0] = 2 }), "selection count is 2"},
		{"sizeofSelect 4", mutate(func(b []byte) { b[6] = 4 }), "sizeofSelect 4"},
		{"no selection", mutate(func(b []byte) { b[7], b[8], b[9] = 0, 0, 0 }), "no PCRs selected"},
		{"second bank", mutate(func(b []byte) { b[12], b[14], b[15] = 0x04, 3, 1 }), "second bank"},
		{"too many lists", mutate(func(b []byte) { b[132] = 2 }), "2 digest lists"},
		{"value count", mutate(func(b []byte) { b[7] = 0x07 }), "2 values for 3 selected PCRs"},
		{"value size", mutate(func(b []byte) { b[140] = 20 }), "20 bytes"},
		{"trailing", append(bytes.Clone(blob), 0), "blob has"},
		{"unknown bank", mutate(func(b []byte) { b[4] = 0x99 }), "unsupported bank"},
	} {
		if _, _, _, err := ParsePCRBlob(c.in); err == nil || !strings.Contains(err.Error(), c.want) {
			t.Errorf("%s: %v, want %q", c.name, err, c.want)
		}
	}
	for _, c := range []struct {
		bank   uint16
		pcrs   []int
		values [][]byte
	}{
		{AlgSHA256, []int{10}, nil},
		{AlgSHA256, []int{10}, [][]byte{make([]byte, 20)}},
		{0x1234, []int{10}, [][]byte{make([]byte, 32)}},
		{AlgSHA256, []int{10, 3}, [][]byte{make([]byte, 32), make([]byte, 32)}},
	} {
		if _, err := EncodePCRBlob(c.bank, c.pcrs, c.values); err == nil {
			t.Errorf("EncodePCRBlob(%x, %v, %d values) succeeded", c.bank, c.pcrs, len(c.values))
		}
	}
}

func TestKeyPool(t *testing.T) {
	dir := t.TempDir()
	path := filepath.Join(dir, "aks.pem")
	keys, err := LoadOrCreateKeyPool(path, 2, nil)
	if err != nil {
		t.Fatal(err)
	}
	if len(keys) != 2 {
		t.Fatalf("got %d keys", len(keys))
	}
	st, err := os.Stat(path)
	if err != nil {
		t.Fatal(err)
	}
	if st.Mode().Perm() != 0o600 {
		t.Errorf("mode %v, want 0600", st.Mode().Perm())
	}
	again, err := LoadOrCreateKeyPool(path, 1, nil)
	if err != nil || len(again) != 1 || !bytes.Equal(again[0].Public, keys[0].Public) {
		t.Fatalf("reload: %v", err)
	}
	grown, err := LoadOrCreateKeyPool(path, 3, nil)
	if err != nil || len(grown) != 3 {
		t.Fatalf("grow: %d %v", len(grown), err)
	}
	for i := range keys {
		if !bytes.Equal(grown[i].Public, keys[i].Public) {
			t.Errorf("key %d changed when the pool grew", i)
		}
	}
	if bytes.Equal(grown[2].Public, grown[1].Public) {
		t.Error("new key equals an old one")
	}
	reread, err := LoadOrCreateKeyPool(path, 3, nil)
	if err != nil || !bytes.Equal(reread[2].Public, grown[2].Public) {
		t.Errorf("grown pool not persisted: %v", err)
	}
	mem, err := LoadOrCreateKeyPool("", 1, nil)
	if err != nil || len(mem) != 1 {
		t.Errorf("in-memory pool: %v", err)
	}
	if _, err := LoadOrCreateKeyPool(path, -1, nil); err == nil {
		t.Error("negative size accepted")
	}
	entries, _ := os.ReadDir(dir)
	if len(entries) != 1 {
		t.Errorf("temporary files left behind: %v", entries)
	}

	bad := filepath.Join(dir, "bad.pem")
	for _, c := range []struct {
		content, want string
	}{
		{"garbage", "not a PEM block"},
		{"-----BEGIN RSA PRIVATE KEY-----\nAAAA\n-----END RSA PRIVATE KEY-----\n", `"RSA PRIVATE KEY"`},
		{"-----BEGIN PRIVATE KEY-----\nAAAA\n-----END PRIVATE KEY-----\n", "key 0"},
	} {
		if err := os.WriteFile(bad, []byte(c.content), 0o600); err != nil {
			t.Fatal(err)
		}
		if _, err := LoadOrCreateKeyPool(bad, 1, nil); err == nil || !strings.Contains(err.Error(), c.want) {
			t.Errorf("%q: %v, want %q", c.content, err, c.want)
		}
	}
}

// TestDefaultClockFollowsWallTime guards the cross-run property: a new TPM for an agent the verifier already knows
// must start above any clock an earlier run reported, which holds because the clock is Unix milliseconds.
func TestDefaultClockFollowsWallTime(t *testing.T) {
	before := uint64(time.Now().UnixMilli())
	c := NewTPM(testKey(t)).ClockInfo()
	if c.Clock < before {
		t.Errorf("initial clock %d is below the wall clock %d", c.Clock, before)
	}
}

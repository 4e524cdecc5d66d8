package softtpm

import (
	"crypto/rsa"
	"crypto/x509"
	"encoding/base64"
	"encoding/hex"
	"encoding/pem"
	"strconv"
	"testing"

	"github.com/attestload/attestload/internal/sharedtest"
)

type vecAK struct {
	PEM     string `json:"private_key_pem"`
	PubB64  string `json:"tpm2b_public_b64 (= verifiermain.ak_tpm)"`
	NameHex string `json:"name_hex (nameAlg || SHA256(TPMT_PUBLIC))"`
	PubHex  string `json:"tpm2b_public_hex"`
}

type vecInputs struct {
	ExtraDataHex       string            `json:"extraData_hex"`
	Clock              uint64            `json:"clock"`
	ResetCount         uint32            `json:"reset_count"`
	RestartCount       uint32            `json:"restart_count"`
	Safe               int               `json:"safe"`
	FirmwareVersionHex string            `json:"firmware_version_hex"`
	QualifiedSignerHex string            `json:"qualifiedSigner_hex"`
	CertifiedNameHex   string            `json:"certified_name_hex"`
	QualifiedNameHex   string            `json:"qualifiedName_hex"`
	PCRNumbers         []int             `json:"pcr_numbers"`
	PCRValuesHex       map[string]string `json:"pcr_values_hex"`
}

type vecOutputs struct {
	MessageB64     string `json:"message_b64"`
	MessageHex     string `json:"message_hex"`
	SignatureB64   string `json:"signature_b64"`
	SubjectDataB64 string `json:"subject_data_b64"`
	PCRSelectHex   string `json:"pcrSelect_hex"`
	PCRDigestHex   string `json:"pcrDigest_hex"`
}

type vecExchange struct {
	Inputs  vecInputs  `json:"inputs"`
	Outputs vecOutputs `json:"outputs"`
}

type vecFile struct {
	AK       vecAK            `json:"ak"`
	WrongKey vecAK            `json:"wrong_key"`
	Keys     map[string]vecAK `json:"keys"`
	Inputs   vecInputs        `json:"inputs"`
	Outputs  vecOutputs       `json:"outputs"`
	Session  *vecExchange     `json:"session"`
	Cycle1   *vecExchange     `json:"cycle1"`
	Variants []vecExchange    `json:"variants"`
}

func loadVector(t testing.TB, name string) *vecFile {
	t.Helper()
	var v vecFile
	sharedtest.DecodeVector(t, name, &v)
	return &v
}

func mustHex(t testing.TB, s string) []byte {
	t.Helper()
	b, err := hex.DecodeString(s)
	if err != nil {
		t.Fatalf("hex %q: %v", s, err)
	}
	return b
}

func mustB64(t testing.TB, s string) []byte {
	t.Helper()
	b, err := base64.StdEncoding.DecodeString(s)
	if err != nil {
		t.Fatalf("base64 %q: %v", s, err)
	}
	return b
}

func keyFromPEM(t testing.TB, p string) *Key {
	t.Helper()
	block, _ := pem.Decode([]byte(p))
	if block == nil {
		t.Fatal("no PEM block")
	}
	parsed, err := x509.ParsePKCS8PrivateKey(block.Bytes)
	if err != nil {
		t.Fatal(err)
	}
	k, err := NewKey(parsed.(*rsa.PrivateKey))
	if err != nil {
		t.Fatal(err)
	}
	return k
}

func (in vecInputs) clock() ClockInfo {
	return ClockInfo{Clock: in.Clock, ResetCount: in.ResetCount, RestartCount: in.RestartCount, Safe: in.Safe == 1}
}

func firmware(t testing.TB, h string) uint64 {
	t.Helper()
	v, err := strconv.ParseUint(h, 16, 64)
	if err != nil {
		t.Fatal(err)
	}
	return v
}

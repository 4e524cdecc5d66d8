package softtpm

import (
	"bytes"
	"testing"
)

func BenchmarkQuote(b *testing.B) {
	tpm := NewTPM(testKey(b))
	if err := tpm.SetPCR(10, bytes.Repeat([]byte{1}, 32)); err != nil {
		b.Fatal(err)
	}
	nonce := []byte("0123456789abcdef")
	pcrs := []int{10}
	b.ReportAllocs()
	for b.Loop() {
		if _, _, _, err := tpm.Quote(nonce, pcrs); err != nil {
			b.Fatal(err)
		}
	}
}

func BenchmarkCertify(b *testing.B) {
	tpm := NewTPM(testKey(b))
	nonce := []byte("0123456789abcdef")
	b.ReportAllocs()
	for b.Loop() {
		if _, _, err := tpm.Certify(nonce); err != nil {
			b.Fatal(err)
		}
	}
}

func BenchmarkSignRSA2048(b *testing.B) {
	k := testKey(b)
	msg := bytes.Repeat([]byte{0xab}, 145)
	b.ReportAllocs()
	for b.Loop() {
		if _, err := Sign(k, msg); err != nil {
			b.Fatal(err)
		}
	}
}

func BenchmarkGenerateKey(b *testing.B) {
	b.ReportAllocs()
	for b.Loop() {
		if _, err := GenerateKey(nil); err != nil {
			b.Fatal(err)
		}
	}
}

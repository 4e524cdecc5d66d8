package softtpm

import (
	"bytes"
	"syscall"
	"testing"
	"time"
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
	benchSign(b, testKey(b))
}

// benchSign signs a quote-sized message and reports, beside the wall time, the process's CPU time per signature
// (cpu-ns/op): on a shared machine that is the figure to compare with a run's CPU per cycle.
func benchSign(b *testing.B, k *Key) {
	msg := bytes.Repeat([]byte{0xab}, 145)
	b.ReportAllocs()
	cpu0 := cpuTime(b)
	n := 0
	for b.Loop() {
		if _, err := Sign(k, msg); err != nil {
			b.Fatal(err)
		}
		n++
	}
	b.ReportMetric(float64(cpuTime(b)-cpu0)/float64(n), "cpu-ns/op")
}

// cpuTime is the process's user+system CPU time so far.
func cpuTime(b *testing.B) time.Duration {
	var ru syscall.Rusage
	if err := syscall.Getrusage(syscall.RUSAGE_SELF, &ru); err != nil {
		b.Fatal(err)
	}
	return time.Duration(ru.Utime.Nano() + ru.Stime.Nano())
}

func BenchmarkGenerateKey(b *testing.B) {
	b.ReportAllocs()
	for b.Loop() {
		if _, err := GenerateKey(nil); err != nil {
			b.Fatal(err)
		}
	}
}

package client

import (
	"context"
	"crypto/sha256"
	"testing"

	"github.com/attestload/attestload/attestation/evidence"
	"github.com/attestload/attestload/attestation/record"
	"github.com/attestload/attestload/attestation/softtpm"
)

// Benchmarks of the client's CPU per cycle. "sim" runs the simulated verifier in the same process over loopback
// HTTP, so its ns/op includes the verifier's verification; "canned" answers with the real verifier's recorded
// responses and costs almost nothing itself, so its ns/op is close to the client's own cost. RSA-2048 signing is
// benchmarked alongside because a cycle costs one signature (two with a PoP) plus everything else.

func BenchmarkRSASign(b *testing.B) {
	k := testKey(b, 0)
	msg := make([]byte, 145) // a TPMS_ATTEST quote over one PCR is about this size
	b.ReportAllocs()
	for b.Loop() {
		if _, err := softtpm.Sign(k, msg); err != nil {
			b.Fatal(err)
		}
	}
}

func BenchmarkSHA256Line(b *testing.B) {
	// For scale: hashing one ima-ng line, the unit of IMA work on both sides.
	line := []byte("10 39f405ac00bda22094d53a55a8910a515f96e450 ima-ng sha256:3eb2f9ca0103cb26115016ad5682535a77d5e47a0ac4449223eb436b7a74fd23 /usr/bin/lt-file-1\n")
	for b.Loop() {
		sha256.Sum256(line)
	}
}

func mustSucceed(b *testing.B, r *record.Record) {
	if r.Outcome != record.OutcomeSuccess {
		b.Fatalf("cycle %s: %s", r.Outcome, errOf(r))
	}
}

// BenchmarkPoP is one session phase (POST /sessions, TPM2_Certify, PATCH) against canned answers.
func BenchmarkPoP(b *testing.B) {
	f := newFakeVerifier(b, false)
	c, _ := newFakeClient(b, f, nil)
	a := newIMAAgent(b, "vec-agent-1", 0, 4)
	ctx := context.Background()
	b.ReportAllocs()
	for b.Loop() {
		a.DropToken()
		cy := &cycle{c: c, a: a, rec: &record.Record{}, urls: a.urlsFor(c.base, c.prefix)}
		if !cy.session(ctx) {
			b.Fatal(cy.failure)
		}
	}
}

func BenchmarkCycleQuoteOnly(b *testing.B) {
	b.Run("canned", func(b *testing.B) {
		f := newFakeVerifier(b, false)
		f.useQuoteOnlyVector(b)
		c, _ := newFakeClient(b, f, nil)
		a := NewAgent("vec-agent-2", 0, softtpm.NewTPM(testKey(b, 0)), evidence.NewQuoteOnly())
		ctx := context.Background()
		mustSucceed(b, c.Cycle(ctx, a, 0, 0)) // session outside the measurement: the token is reused
		b.ReportAllocs()
		for b.Loop() {
			mustSucceed(b, c.Cycle(ctx, a, 0, 0))
		}
	})
	b.Run("sim", func(b *testing.B) {
		e := startSim(b, false, nil, nil)
		p := evidence.NewQuoteOnly()
		e.enroll(b, "bench-q", testKey(b, 0), p)
		a := NewAgent("bench-q", 0, softtpm.NewTPM(testKey(b, 0)), p)
		ctx := context.Background()
		mustSucceed(b, e.c.Cycle(ctx, a, 0, 0))
		b.ReportAllocs()
		for b.Loop() {
			mustSucceed(b, e.c.Cycle(ctx, a, 0, 0))
		}
	})
}

// BenchmarkCycleIMA1000 is the "ima" profile with a 1,000-entry log. "incremental" is the steady state (one new
// entry per cycle); "full" sends all 1,000 entries every cycle (the canned verifier always asks from offset 0; on
// the simulator the agent reboots before each cycle, which makes the verifier ask for the whole log again).
func BenchmarkCycleIMA1000(b *testing.B) {
	profile := func(b *testing.B) evidence.Profile {
		p, err := evidence.NewSynthetic(1000, 1, 1000)
		if err != nil {
			b.Fatal(err)
		}
		return p
	}
	b.Run("canned-full", func(b *testing.B) {
		f := newFakeVerifier(b, false)
		c, _ := newFakeClient(b, f, nil)
		a := NewAgent("vec-agent-1", 0, softtpm.NewTPM(testKey(b, 0)), profile(b))
		ctx := context.Background()
		mustSucceed(b, c.Cycle(ctx, a, 0, 0))
		b.ReportAllocs()
		for b.Loop() {
			a.Log.Reboot() // back to 1,000 entries, all of which the canned 201 asks for
			mustSucceed(b, c.Cycle(ctx, a, 0, 0))
		}
	})
	b.Run("sim-incremental", func(b *testing.B) {
		e := startSim(b, false, nil, nil)
		p := profile(b)
		e.enroll(b, "bench-i", testKey(b, 0), p)
		a := NewAgent("bench-i", 0, softtpm.NewTPM(testKey(b, 0)), p)
		ctx := context.Background()
		r := e.c.Cycle(ctx, a, 0, 0)
		mustSucceed(b, r)
		if ev, _ := e.verdict(b, "bench-i", r); ev != "pass" {
			b.Fatalf("verdict %s", ev)
		}
		b.ReportAllocs()
		for b.Loop() {
			mustSucceed(b, e.c.Cycle(ctx, a, 0, 0))
		}
	})
	b.Run("sim-full", func(b *testing.B) {
		e := startSim(b, false, nil, nil)
		p := profile(b)
		e.enroll(b, "bench-f", testKey(b, 0), p)
		a := NewAgent("bench-f", 0, softtpm.NewTPM(testKey(b, 0)), p)
		ctx := context.Background()
		mustSucceed(b, e.c.Cycle(ctx, a, 0, 0))
		b.ReportAllocs()
		for b.Loop() {
			a.Reboot()
			mustSucceed(b, e.c.Cycle(ctx, a, 0, 0))
		}
	})
}

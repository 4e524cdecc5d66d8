package simverifier

import (
	"crypto/sha256"
	"errors"
	"fmt"
	"runtime"
	"strings"
	"time"
)

// Costs is the CPU time the modelled verifier spends on each kind of work, on top of what the simulator's own
// handling costs. Calibrated returns the costs measured from the stock Keylime verifier (docs/simulator.md says
// how). Each is spent on the goroutine doing the work, inside its worker process when the process model is on.
type Costs struct {
	// Request is spent on every request (Tornado's and the controller's framework, the database reads).
	Request time.Duration
	// Session is spent on a session creation on top of the PBKDF2 hashing (SessionHashIterations) the simulator
	// really does.
	Session time.Duration
	// PoP is spent on a session's proof of possession (TPM2_Certify check, session rows).
	PoP time.Duration
	// Create is spent on an attestation POST (negotiation, attestation and evidence rows).
	Create time.Duration
	// Evidence is spent on an attestation PATCH before its 202 (evidence checks and rows).
	Evidence time.Duration
	// Quote is spent verifying a quote (signature, PCRs, clock) and committing the verdict.
	Quote time.Duration
	// IMALog is spent per IMA log evaluated, whatever its length (the runtime policy loaded and prepared).
	IMALog time.Duration
	// IMAEntry is spent per IMA log entry replayed and checked against the policy.
	IMAEntry time.Duration
	// UEFILog is spent evaluating a UEFI event log against the measured-boot policy.
	UEFILog time.Duration
	// Timeout is spent when the push-agent timeout monitor marks an agent timed out (a database update).
	Timeout time.Duration
}

// spendCPU burns d of CPU time on the calling goroutine. It counts the thread's own CPU time, so on a loaded
// machine it takes longer in wall time but costs the same CPU, as a real verifier's work would; where thread CPU
// time cannot be read it burns d of wall time instead.
func spendCPU(d time.Duration) byte {
	if d <= 0 {
		return 0
	}
	runtime.LockOSThread()
	defer runtime.UnlockOSThread()
	var h [32]byte
	start, ok := threadCPU()
	wallEnd := time.Now().Add(d)
	for {
		for range 256 {
			h = sha256.Sum256(h[:])
		}
		if ok {
			if now, _ := threadCPU(); now-start >= d {
				return h[0]
			}
		} else if !time.Now().Before(wallEnd) {
			return h[0]
		}
	}
}

func (c Costs) validate() error {
	var errs []error
	for _, f := range []struct {
		name string
		d    time.Duration
	}{{"request", c.Request}, {"session", c.Session}, {"pop", c.PoP}, {"create", c.Create}, {"evidence", c.Evidence}, {"quote", c.Quote},
		{"ima log", c.IMALog}, {"ima entry", c.IMAEntry}, {"uefi log", c.UEFILog}, {"timeout", c.Timeout}} {
		if f.d < 0 {
			errs = append(errs, fmt.Errorf("%s cost %v: must not be negative", f.name, f.d))
		}
	}
	return errors.Join(errs...)
}

// verificationCost is the calibrated CPU of verifying att's evidence: the quote, each IMA entry sent, the UEFI
// log.
func (v *Verifier) verificationCost(att *attestation) time.Duration {
	c := v.cfg.Costs
	var d time.Duration
	for _, it := range att.items {
		switch it.typ {
		case "tpm_quote":
			d += c.Quote
		case "ima_log":
			d += c.IMALog
			if s, ok := asString(it.data["entries"]); ok {
				d += time.Duration(strings.Count(s, "\n")) * c.IMAEntry
			}
		case "uefi_log":
			d += c.UEFILog
		}
	}
	return d
}

// CalibratedCosts are the stock Keylime verifier's CPU costs (commit 9b1f6e6a917f, two worker processes,
// PostgreSQL 15, Debian 12's Python 3.11), measured on a 2-core machine as docs/simulator.md describes: the
// verifier's CPU time (all its processes, from /proc/PID/stat) over runs that differ in sessions, cycles and IMA
// entries. The session cost excludes the PBKDF2 hashing, which the simulator really does (SessionHashIterations).
func CalibratedCosts() Costs {
	return Costs{
		Session:  calibratedSession,
		PoP:      calibratedPoP,
		Create:   calibratedCreate,
		Evidence: calibratedEvidence,
		Quote:    calibratedQuote,
		IMALog:   calibratedIMALog,
		IMAEntry: calibratedIMAEntry,
		UEFILog:  calibratedUEFILog,
		Timeout:  calibratedTimeout,
	}
}

// Calibrate makes c behave like the stock verifier on this machine: one worker process per CPU unless Processes is
// set (Keylime's num_workers = 0), the calibrated costs, and the push-agent timeout monitor. The rate limits and
// the PBKDF2 cost are DefaultConfig's already.
func (c *Config) Calibrate() {
	if c.Processes == 0 {
		c.Processes = runtime.NumCPU()
	}
	c.Costs = CalibratedCosts()
	c.TimeoutMonitor = true
}

// The measured costs (docs/simulator.md has the runs and the arithmetic): a session 0.227 CPU-s in all (0.112 of
// it the PBKDF2 the simulator does itself), a quote-only cycle 0.092, a cycle with the synthetic IMA log 0.203
// whatever the number of entries (1,000 entries cost no more than 200 within the runs' noise), measured boot 0.19
// more (docs/verifier-conformance.md). The split of a cycle between its POST, its PATCH and the verification
// follows their shortest latencies.
const (
	calibratedSession  = 85 * time.Millisecond
	calibratedPoP      = 30 * time.Millisecond
	calibratedCreate   = 30 * time.Millisecond
	calibratedEvidence = 30 * time.Millisecond
	calibratedQuote    = 32 * time.Millisecond
	calibratedIMALog   = 110 * time.Millisecond
	calibratedIMAEntry = 10 * time.Microsecond
	calibratedUEFILog  = 190 * time.Millisecond
	calibratedTimeout  = 5 * time.Millisecond
)

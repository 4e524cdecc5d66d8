package simverifier

import (
	"crypto/rand"
	"encoding/base64"
	"errors"
	"fmt"
	"log/slog"
	"time"

	"github.com/google/uuid"
)

// Config configures a Verifier. Start from DefaultConfig, which carries the real verifier's defaults.
type Config struct {
	// QuoteInterval is the minimum number of whole seconds between an agent's evidence and its next attestation
	// POST (429 premature_attestation otherwise). It is an integer because the real verifier reads it with getint.
	// 0 disables the check.
	QuoteInterval int
	// ChallengeLifetime is how long a quote challenge stays valid (403 challenges_expired after).
	ChallengeLifetime time.Duration
	// NonceLifetime is how long a session's PoP nonce stays valid (session PATCH then answers 200 "fail").
	NonceLifetime time.Duration
	// SessionLifetime is how long a bearer token stays valid after the PoP, and after each passing attestation
	// when ExtendTokenOnAttestation is set.
	SessionLifetime time.Duration
	// ExtendTokenOnAttestation slides the token expiry on every passing attestation (real default: true).
	ExtendTokenOnAttestation bool
	// VerificationTimeout, when > 0, makes a POST answer 503 verification_in_progress while the latest attestation
	// is still being verified and less than this long has passed since its evidence arrived. Real default 0.
	VerificationTimeout time.Duration
	// RateLimits for session creation; a zero limit switches that limit off (load tests from one IP need that).
	RateLimits RateLimits
	// SessionHashIterations is the PBKDF2-SHA256 cost spent on each session POST (the real verifier uses 600000,
	// about 0.3 s of CPU). 0 skips the hashing; the token hash written in database mode then uses 1 iteration.
	SessionHashIterations int
	// Workers bounds how many requests (and the verifications that run after a 202) execute at once, a coarser
	// stand-in for the real verifier's worker processes without their pinned connections (Processes models
	// those). 0 means no bound.
	Workers int
	// Processes models the real verifier's forked worker processes (Keylime: one per core): the listener is shared
	// by this many processes, a connection stays with the process that accepted it, a process serves one request at
	// a time and runs the verification after a 202 before its next request, and only an idle process accepts. 0
	// switches the model off.
	Processes int
	// Costs is the CPU the modelled verifier spends per kind of work (CalibratedCosts: measured from the stock
	// verifier); zero costs nothing beyond the simulator's own handling.
	Costs Costs
	// TimeoutMonitor runs the real push-agent timeout monitor: after each verification, a timer in the process
	// that verified marks the agent timed out (accept_attestations false) unless it is verified again within
	// 5 × QuoteInterval. Timeouts counts the marks.
	TimeoutMonitor bool
	// VerdictHistory is how many recent verdicts per agent stay readable through Verdict (at least 1; default 4).
	VerdictHistory int
	// AdminToken, if set, grants admin identity to a request carrying "Authorization: Bearer <AdminToken>". It
	// exists for plain-HTTP tests, where no client certificate can be presented; the real verifier has no such
	// token. Over TLS, a client certificate chaining to the simulator's CA (and no Authorization header) is admin.
	AdminToken string
	// PlainHTTP serves plain HTTP instead of HTTPS.
	PlainHTTP bool
	// TLSDir, if set, receives the generated ca.crt, server.crt, server.key, client-cert.crt and
	// client-private.pem (like the real verifier's cv_ca directory).
	TLSDir string
	// DatabaseURL switches on PostgreSQL mode: agents and policies are read from verifiermain, allowlists and
	// mbpolicies, and attestations, evidence_items and sessions rows are written as the real verifier does.
	DatabaseURL string
	// InitSchema creates the verifier tables (enroll.InitSchema) before loading agents in PostgreSQL mode.
	InitSchema bool
	// RebootIMADefect reproduces the stock verifier's reboot defect (on in DefaultConfig): after a reboot (a later
	// boot_time) the IMA log is requested from offset 0 but replayed from the PCR 10 value of the agent's last
	// passed attestation, from the previous boot, so the agent's attestations fail with broken_evidence_chain
	// until PCR 10 happens to reach that value again. Off, the replay starts from zero as a fixed verifier's would.
	// docs/verifier-conformance.md lists it.
	RebootIMADefect bool
	// Faults are the initial injected faults; SetFaults changes them at run time.
	Faults Faults
	// Entropy supplies challenges, nonces, session ids and tokens; nil means crypto/rand. Tests inject recorded
	// values through it.
	Entropy Entropy
	// Now is the clock; nil means time.Now. Tests advance a fake clock instead of sleeping.
	Now func() time.Time
	// Seed seeds the fault-injection random source; 0 picks a random seed.
	Seed uint64
	// Logger receives verification results and setup messages; nil discards them. Tokens are never logged.
	Logger *slog.Logger
}

// RateLimits are the session-creation limits of the real verifier (session_create_rate_limit_*). Each limit counts
// POST /v3/sessions within a sliding window; a breach blocks the key for 60 s, doubling with each further breach up
// to an hour, and the breach count never decays (as in the real RateLimiter).
type RateLimits struct {
	PerIP       int           // requests per WindowIP per client IP; 0 = off
	WindowIP    time.Duration // default 60 s
	PerAgent    int           // requests per WindowAgent per agent id; 0 = off
	WindowAgent time.Duration // default 60 s
}

// DefaultConfig returns the real verifier's template defaults: quote_interval 2, challenge_lifetime 1800 s,
// nonce_lifetime 60 s, session_lifetime 180 s with extension, verification_timeout 0, rate limits 50/IP and
// 15/agent per minute, PBKDF2 with 600000 iterations, HTTPS, and its known defects reproduced.
func DefaultConfig() Config {
	return Config{
		QuoteInterval:            2,
		ChallengeLifetime:        1800 * time.Second,
		NonceLifetime:            60 * time.Second,
		SessionLifetime:          180 * time.Second,
		ExtendTokenOnAttestation: true,
		RateLimits:               RateLimits{PerIP: 50, WindowIP: time.Minute, PerAgent: 15, WindowAgent: time.Minute},
		SessionHashIterations:    600000,
		VerdictHistory:           4,
		RebootIMADefect:          true,
	}
}

func (c *Config) validate() error {
	var errs []error
	if c.QuoteInterval < 0 {
		errs = append(errs, fmt.Errorf("quote interval %d: must be >= 0 seconds", c.QuoteInterval))
	}
	for _, d := range []struct {
		name string
		v    *time.Duration
		def  time.Duration
	}{
		{"challenge lifetime", &c.ChallengeLifetime, 1800 * time.Second},
		{"nonce lifetime", &c.NonceLifetime, 60 * time.Second},
		{"session lifetime", &c.SessionLifetime, 180 * time.Second},
		{"rate limit window per IP", &c.RateLimits.WindowIP, time.Minute},
		{"rate limit window per agent", &c.RateLimits.WindowAgent, time.Minute},
	} {
		switch {
		case *d.v < 0:
			errs = append(errs, fmt.Errorf("%s %v: must not be negative", d.name, *d.v))
		case *d.v == 0:
			*d.v = d.def
		}
	}
	if c.VerificationTimeout < 0 {
		errs = append(errs, fmt.Errorf("verification timeout %v: must not be negative", c.VerificationTimeout))
	}
	if c.RateLimits.PerIP < 0 || c.RateLimits.PerAgent < 0 {
		errs = append(errs, errors.New("rate limits must be >= 0 (0 switches a limit off)"))
	}
	if c.SessionHashIterations < 0 {
		errs = append(errs, fmt.Errorf("session hash iterations %d: must be >= 0", c.SessionHashIterations))
	}
	if c.Workers < 0 {
		errs = append(errs, fmt.Errorf("workers %d: must be >= 0", c.Workers))
	}
	if c.Processes < 0 {
		errs = append(errs, fmt.Errorf("processes %d: must be >= 0", c.Processes))
	}
	if err := c.Costs.validate(); err != nil {
		errs = append(errs, err)
	}
	if c.VerdictHistory < 0 {
		errs = append(errs, fmt.Errorf("verdict history %d: must be >= 0", c.VerdictHistory))
	} else if c.VerdictHistory == 0 {
		c.VerdictHistory = 4
	}
	if err := c.Faults.validate(); err != nil {
		errs = append(errs, err)
	}
	return errors.Join(errs...)
}

// Entropy supplies the random values the verifier hands out. The default reads crypto/rand.
type Entropy interface {
	// Challenge returns the 16 raw bytes of a new quote challenge.
	Challenge() ([]byte, error)
	// SessionNonce returns the 16 raw bytes of a new PoP session nonce.
	SessionNonce() ([]byte, error)
	// SessionID returns a new session id (a UUID string).
	SessionID() (string, error)
	// TokenSecret returns the secret part of a bearer token, which becomes "<session id>.<secret>".
	TokenSecret() (string, error)
}

type cryptoEntropy struct{}

func (cryptoEntropy) Challenge() ([]byte, error)    { return randomBytes(16) }
func (cryptoEntropy) SessionNonce() ([]byte, error) { return randomBytes(16) }
func (cryptoEntropy) SessionID() (string, error) {
	id, err := uuid.NewRandom()
	if err != nil {
		return "", err
	}
	return id.String(), nil
}

// TokenSecret mirrors Python's secrets.token_urlsafe(32).
func (cryptoEntropy) TokenSecret() (string, error) {
	b, err := randomBytes(32)
	if err != nil {
		return "", err
	}
	return base64.RawURLEncoding.EncodeToString(b), nil
}

func randomBytes(n int) ([]byte, error) {
	b := make([]byte, n)
	if _, err := rand.Read(b); err != nil {
		return nil, fmt.Errorf("read random bytes: %w", err)
	}
	return b, nil
}

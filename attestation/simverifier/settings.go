package simverifier

import "time"

// Settings are the simulator section of the configuration (the keys under "simulator."; internal/conf describes
// the tags): the in-process simulated verifier a run starts when verifier.url is empty.
type Settings struct {
	QuoteInterval int           `key:"quote_interval" check:">=0"` // seconds between an agent's evidence and its next POST
	Latency       time.Duration `key:"latency" check:">=0"`        // added to every request, as a slow verifier would
	// SessionHashIterations is the PBKDF2 cost of a session (the real verifier's is 600000).
	SessionHashIterations int `key:"session_hash_iterations" check:">=1"`
	// RateLimits turns on the real verifier's session-creation limits (50 per minute per client IP, 15 per agent,
	// a breach blocking 60 s, doubling up to an hour). On by default, as on the real verifier; the run spreads its
	// agents over several loopback source addresses so that it is not throttled (verifier.local_addrs).
	RateLimits bool `key:"rate_limits"`
	// Calibrated makes the simulated verifier behave like the stock Keylime verifier on this machine: worker
	// processes with pinned connections, its CPU cost per request and evidence kind, and its push-agent timeout
	// monitor (docs/simulator.md). On by default; off, it answers as fast as it can.
	Calibrated bool `key:"calibrated"`
	// Processes is how many worker processes the calibrated simulator has (0: one per CPU, as Keylime's
	// num_workers = 0).
	Processes int `key:"processes" check:">=0"`
	// RebootDefect reproduces the stock Keylime verifier's reboot defect (docs/verifier-conformance.md): after a
	// simulated reboot an agent's attestations fail with broken_evidence_chain until its IMA log has regrown to
	// the length it had. On by default, so that the simulator answers as the real verifier does.
	RebootDefect bool `key:"reboot_defect"`
}

// DefaultSettings are the simulator section's defaults: the stock verifier's behaviour.
func DefaultSettings() Settings {
	return Settings{QuoteInterval: 2, SessionHashIterations: 600000, RebootDefect: true, RateLimits: true,
		Calibrated: true}
}

// Config is the simulator's configuration from its section, on DefaultConfig. Some settings switch whole parts
// of it (the rate limits, the calibration, a latency fault on every endpoint), so it is derived here rather than
// copied field by field. extendToken is verifier.extend_token_on_attestation (the simulator answers as the
// verifier the run describes); poll is verdict.poll_interval, which sizes the verdict history.
func (s Settings) Config(extendToken bool, poll time.Duration) Config {
	c := DefaultConfig()
	c.QuoteInterval = s.QuoteInterval
	c.SessionHashIterations = s.SessionHashIterations
	c.ExtendTokenOnAttestation = extendToken
	c.RebootIMADefect = s.RebootDefect
	c.VerdictHistory = verdictHistory(s.QuoteInterval, poll)
	if !s.RateLimits {
		c.RateLimits = RateLimits{}
	}
	if s.Calibrated {
		c.Processes = s.Processes
		c.Calibrate()
	}
	if s.Latency > 0 {
		c.Faults.Rules = map[Endpoint]FaultRule{EndpointAll: {Latency: Latency{Fixed: s.Latency}}}
	}
	return c
}

// verdictHistory is how many verdicts per agent the simulator keeps readable: enough that an agent attesting
// once per quote interval cannot push a verdict out of the history before the watcher's next poll reads it.
// Without a quote interval an agent attests back to back, many times per poll, so a larger fixed history is kept.
func verdictHistory(quoteInterval int, poll time.Duration) int {
	if quoteInterval <= 0 {
		return 32
	}
	n := int(poll/(time.Duration(quoteInterval)*time.Second)) + 3
	return min(max(n, 4), 32)
}

package daemon

import (
	"fmt"
	"os"
	"path/filepath"
	"time"

	"github.com/attestload/attestload/attestation/softtpm"
	"github.com/attestload/attestload/internal/conf"

	"github.com/attestload/attestload/daemon/engine"
)

// RunConfig sizes and bounds the run.
type RunConfig struct {
	Workers      int           `key:"workers" check:">=0" flag:"workers,w" usage:"most cycles in flight (default: one per CPU thread)"`
	Agents       int           `key:"agents" check:">=0" flag:"agents,a" usage:"number of mock agents (default: as many as workers)"`
	Tasks        int           `key:"tasks" check:">=0" flag:"tasks,t" usage:"attestations per agent (default: until stopped)"`
	Duration     time.Duration `key:"duration" check:">=0" flag:"duration" usage:"stop starting cycles after this long, e.g. 30s or 1h (default: no limit)"`
	DrainTimeout time.Duration `key:"drain_timeout" check:">=0" flag:"drain-timeout" usage:"after stopping, how long running cycles may finish (default 30s)"`
	Instance     string        `key:"instance" flag:"instance" usage:"instance name written into every record (default: host name)"`
	Verbose      bool          `key:"verbose" flag:"verbose,v" usage:"log every request"`
	// KeyPool "" is DefaultKeyPool(); KeyPoolNone keeps the keys in memory only.
	KeyPool      string `key:"key_pool" flag:"key-pool" usage:"file of reusable RSA attestation keys, or none to keep them in memory (default: ak-pool.bin in the user cache directory, ~/.cache/attestload)"`
	DistinctKeys int    `key:"distinct_keys" check:">=1"` // RSA agents share this many AKs round-robin
	// KeyType is rsa2048, ecc-p256 or a mix by share (ParseKeyType).
	KeyType        string        `key:"key_type" flag:"key-type" usage:"attestation keys: rsa2048, ecc-p256, or a mix such as rsa2048=30%,ecc-p256=70% (default rsa2048)"`
	FirstIndex     int           `key:"first_index" check:">=0"`
	StatusInterval time.Duration `key:"status_interval" check:">0"`
}

func defaultRun() RunConfig {
	return RunConfig{DrainTimeout: 30 * time.Second, DistinctKeys: 100, KeyType: string(softtpm.RSA2048),
		StatusInterval: 10 * time.Second}
}

func (c RunConfig) validate() error {
	if _, err := ParseKeyType(c.KeyType); err != nil {
		return conf.Errorf("run.key_type", "%v", err)
	}
	return nil
}

// KeyPoolNone as run.key_pool keeps the RSA attestation keys in memory only: every run generates them afresh.
const KeyPoolNone = "none"

// DefaultKeyPool is where the RSA attestation keys are kept when run.key_pool is empty: ak-pool.bin in the user's
// cache directory ($XDG_CACHE_HOME/attestload, by default ~/.cache/attestload on Linux), so that no run writes into
// the directory it was started from. It fails only when there is no home directory to put a cache in.
func DefaultKeyPool() (string, error) {
	dir, err := os.UserCacheDir()
	if err != nil {
		return "", fmt.Errorf("no user cache directory for the attestation keys (%w): set run.key_pool to a file, "+
			"or to %q to keep them in memory", err, KeyPoolNone)
	}
	return filepath.Join(dir, "attestload", "ak-pool.bin"), nil
}

// KeyPoolPath resolves run.key_pool: the file the RSA attestation keys are kept in, or "" for memory only.
func (c RunConfig) KeyPoolPath() (string, error) {
	switch c.KeyPool {
	case "":
		return DefaultKeyPool()
	case KeyPoolNone:
		return "", nil
	}
	return c.KeyPool, nil
}

// SchedulerConfig chooses the model and its parameters.
type SchedulerConfig struct {
	Model   string        `key:"model" flag:"model" usage:"scheduler: closed, fleet or rate (default closed)"`
	Fleet   FleetConfig   `key:"fleet"`
	Rate    RateConfig    `key:"rate"`
	Backoff BackoffConfig `key:"backoff"`
}

// BackoffConfig is how long an agent waits after a failed cycle (every model): Initial after the first failure,
// doubling up to Max, each wait drawn from its upper half; a success resets it. Max 0 turns it off.
type BackoffConfig struct {
	Initial time.Duration `key:"initial"`
	Max     time.Duration `key:"max"`
}

// FleetConfig is the fleet model: every agent once per interval.
type FleetConfig struct {
	Interval time.Duration `key:"interval" check:">0" flag:"interval" usage:"fleet model: each agent's attestation interval (default 60s)"`
	Jitter   float64       `key:"jitter" check:"0..1"`
}

// RateConfig is the rate model: a global arrival rate with ramp stages.
type RateConfig struct {
	Start  float64       `key:"start" check:">=0" flag:"rate-start" usage:"rate model: cycles per second at the start (default 10)"`
	Stages []StageConfig `key:"stages" flag:"rate-stages" usage:"rate model: ramp stages DURATION:TARGET,... e.g. 1m:10,5m:200,30m:200"`
}

// StageConfig is one ramp stage: reach Target cycles per second linearly over Duration.
type StageConfig struct {
	Duration time.Duration `key:"duration"`
	Target   float64       `key:"target"`
}

func defaultScheduler() SchedulerConfig {
	return SchedulerConfig{Model: engine.ModelClosed, Fleet: FleetConfig{Interval: 60 * time.Second, Jitter: 0.1},
		Rate:    RateConfig{Start: 10, Stages: []StageConfig{{Duration: time.Minute, Target: 10}}},
		Backoff: BackoffConfig{Initial: 2 * time.Second, Max: time.Minute}}
}

func (c SchedulerConfig) validate() error {
	switch c.Model {
	case engine.ModelClosed, engine.ModelFleet, engine.ModelRate:
	default:
		return conf.Errorf("scheduler.model", "must be closed, fleet or rate, got %q", c.Model)
	}
	if len(c.Rate.Stages) == 0 {
		return conf.Errorf("scheduler.rate.stages", "must have at least one stage")
	}
	for i, s := range c.Rate.Stages {
		if s.Duration <= 0 {
			return conf.Errorf(fmt.Sprintf("scheduler.rate.stages[%d].duration", i), "must be > 0, got %s", s.Duration)
		}
		if s.Target < 0 {
			return conf.Errorf(fmt.Sprintf("scheduler.rate.stages[%d].target", i), "must be >= 0, got %v", s.Target)
		}
	}
	if b := c.Backoff; b.Max < 0 {
		return conf.Errorf("scheduler.backoff.max", "must be >= 0 (0 turns backoff off), got %s", b.Max)
	} else if b.Max > 0 && (b.Initial <= 0 || b.Initial > b.Max) {
		return conf.Errorf("scheduler.backoff.initial", "must be > 0 and at most scheduler.backoff.max (%s), got %s", b.Max, b.Initial)
	}
	return nil
}

// PacerStages converts the configured rate stages for engine.NewStagedPacer.
func (c RateConfig) PacerStages() []engine.Stage {
	out := make([]engine.Stage, len(c.Stages))
	for i, s := range c.Stages {
		out[i] = engine.Stage{Duration: s.Duration, Target: s.Target}
	}
	return out
}

// EvidenceConfig chooses what the agents send.
type EvidenceConfig struct {
	Profile     string `key:"profile" flag:"profile" usage:"evidence: ima, quote-only or captured (default ima)"`
	IMAInitial  int    `key:"ima_initial" check:">=1"`
	IMAGrow     int    `key:"ima_grow" check:">=0"`
	IMAUniverse int    `key:"ima_universe"`
	CapturedLog string `key:"captured_log"`
	// MeasuredBoot adds measured boot to the profile: the run's mbpolicies row holds the captured reference state
	// and every attestation sends the captured UEFI event log (compiled into the binary), with the TPM's PCRs 0-15
	// as that log leaves them.
	MeasuredBoot bool `key:"measured_boot" flag:"measured-boot" usage:"also send a UEFI event log with every attestation, against an mbpolicies reference state (any profile)"`
	// Reboot simulation: before a cycle, an agent reboots (new boot_time, TPM reset count + 1, IMA log back to
	// its first entries) every RebootEvery cycles and/or with probability RebootProbability.
	RebootEvery       int     `key:"reboot_every" check:">=0"`
	RebootProbability float64 `key:"reboot_probability" check:"0..1"`
}

func defaultEvidence() EvidenceConfig {
	return EvidenceConfig{Profile: "ima", IMAInitial: 200, IMAGrow: 2, IMAUniverse: 1000}
}

func (c EvidenceConfig) validate() error {
	switch c.Profile {
	case "ima", "quote-only":
	case "captured":
		if c.CapturedLog == "" {
			return conf.Errorf("evidence.captured_log", "must name an IMA log file when evidence.profile is captured")
		}
	default:
		return conf.Errorf("evidence.profile", "must be ima, quote-only or captured, got %q", c.Profile)
	}
	if c.IMAUniverse < c.IMAInitial {
		return conf.Errorf("evidence.ima_universe", "must be >= evidence.ima_initial (%d), got %d", c.IMAInitial,
			c.IMAUniverse)
	}
	return nil
}

// SimulatorConfig shapes the in-process simulated verifier used when verifier.url is empty.
type SimulatorConfig struct {
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

func defaultSimulator() SimulatorConfig {
	return SimulatorConfig{QuoteInterval: 2, SessionHashIterations: 600000, RebootDefect: true, RateLimits: true,
		Calibrated: true}
}

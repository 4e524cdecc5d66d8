package daemon

import (
	"os"
	"runtime"
	"strings"

	"github.com/attestload/attestload/daemon/engine"
	"github.com/attestload/attestload/internal/conf"
)

// EnvPrefix prefixes every environment variable attestload reads: ATTESTLOAD_<KEY> with the key's dots as
// underscores, e.g. ATTESTLOAD_SCHEDULER_FLEET_INTERVAL.
const EnvPrefix = "ATTESTLOAD_"

// Config is a run's whole configuration, one section per part of the run; each section's struct, defaults and
// checks sit together (config_*.go). The fields' tags are the one table of the keys:
//
//	key:"name"            the config key (YAML path, environment suffix, error messages)
//	check:">=0"           a range every value must be in: >=0, >=1 or >0 (integers, durations, numbers), 0..1
//	flag:"name[,x][,default]"  also settable as the run command's --name (-x), help text from usage:"..."
//
// config.example.yaml documents every key with its default (a test holds it to DefaultConfig).
type Config struct {
	Verifier   VerifierConfig   `key:"verifier"`
	Database   DatabaseConfig   `key:"database"`
	Run        RunConfig        `key:"run"`
	Scheduler  SchedulerConfig  `key:"scheduler"`
	Evidence   EvidenceConfig   `key:"evidence"`
	Results    ResultsConfig    `key:"results"`
	Metrics    MetricsConfig    `key:"metrics"`
	Tracing    TracingConfig    `key:"tracing"`
	Verdict    VerdictConfig    `key:"verdict"`
	PGActivity PGActivityConfig `key:"pgactivity"`
	Simulator  SimulatorConfig  `key:"simulator"`
	Thresholds []string         `key:"thresholds" flag:"threshold" usage:"pass/fail check on the summary, e.g. 'evidence.p99<2s' (repeatable; durations need a unit); crossed → a line on stderr and exit 99. Metrics: "`
}

// DefaultConfig is the configuration with nothing set: the old tool's defaults.
func DefaultConfig() Config {
	return Config{Verifier: defaultVerifier(), Database: defaultDatabase(), Run: defaultRun(),
		Scheduler: defaultScheduler(), Evidence: defaultEvidence(), Results: defaultResults(), Metrics: defaultMetrics(),
		Tracing: defaultTracing(), Verdict: defaultVerdict(), PGActivity: defaultPGActivity(), Simulator: defaultSimulator()}
}

// Validate checks ranges and combinations. Errors name the key.
func (c *Config) Validate() error {
	if err := conf.CheckRanges(c); err != nil {
		return err
	}
	for _, check := range []func() error{c.Verifier.validate, c.Run.validate, c.Metrics.validate, c.Database.validate,
		c.crossChecks, c.Scheduler.validate, c.Evidence.validate, c.Results.validate,
		func() error { return validateThresholds(c.Thresholds) }, c.Tracing.validate,
		func() error { return c.Verdict.validate(c.Verifier, c.Database) }} {
		if err := check(); err != nil {
			return err
		}
	}
	if c.PGActivity.Enabled && c.Database.URL == "" {
		return conf.Errorf("pgactivity.enabled", "needs database.url: the activity sampled is the verifier's PostgreSQL")
	}
	return nil
}

// crossChecks are the combinations of keys of different sections.
func (c *Config) crossChecks() error {
	if c.Verifier.URL != "" && c.Database.URL == "" {
		return conf.Errorf("database.url", "must be set with verifier.url: the mock agents are enrolled in the verifier's PostgreSQL")
	}
	return nil
}

// DefaultOpenWorkers bounds cycles in flight in the fleet and rate models when run.workers is 0: enough that the
// tool does not throttle a fleet, few enough that a stalled verifier cannot make it hold unbounded connections.
const DefaultOpenWorkers = 1000

// Resolved returns a copy with the automatic values filled in: workers from the CPU count, agents from workers,
// instance from the host name.
func (c Config) Resolved() Config {
	if v := urlAPIVersion(c.Verifier.URL); v != "" && v == c.Verifier.APIPrefix {
		// …/v3.0 pasted from a request path: the client adds the version itself.
		u := strings.TrimSuffix(c.Verifier.URL, "/")
		c.Verifier.URL = strings.TrimSuffix(u[:len(u)-len(v)], "/")
	}
	if c.Run.Workers == 0 {
		c.Run.Workers = runtime.NumCPU()
		if c.Scheduler.Model != engine.ModelClosed && c.Run.Agents > 0 {
			// In the open models workers only bound concurrency; one per CPU would throttle the fleet itself.
			c.Run.Workers = min(c.Run.Agents, DefaultOpenWorkers)
		}
	}
	if c.Run.Agents == 0 {
		c.Run.Agents = c.Run.Workers
	}
	if c.Run.Instance == "" {
		h, err := os.Hostname()
		if err != nil || h == "" {
			h = "attestload"
		}
		c.Run.Instance = h
	}
	return c
}

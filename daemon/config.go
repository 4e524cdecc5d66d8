package daemon

import (
	"errors"
	"fmt"
	"os"
	"path/filepath"
	"runtime"
	"strings"
	"time"

	"github.com/attestload/attestload/attestation/client"
	"github.com/attestload/attestload/attestation/enroll"
	"github.com/attestload/attestload/attestation/evidence"
	"github.com/attestload/attestload/attestation/simverifier"
	"github.com/attestload/attestload/attestation/softtpm"
	"github.com/attestload/attestload/daemon/engine"
	"github.com/attestload/attestload/exporter/metrics"
	"github.com/attestload/attestload/exporter/pgactivity"
	"github.com/attestload/attestload/exporter/results"
	"github.com/attestload/attestload/exporter/threshold"
	"github.com/attestload/attestload/exporter/tracing"
	"github.com/attestload/attestload/exporter/verdict"
	"github.com/attestload/attestload/internal/conf"
)

// EnvPrefix prefixes every environment variable attestload reads: ATTESTLOAD_<KEY> with the key's dots as
// underscores, e.g. ATTESTLOAD_SCHEDULER_FLEET_INTERVAL.
const EnvPrefix = "ATTESTLOAD_"

// Config is a run's whole configuration: one section per part of the run, each section's struct, defaults and
// checks owned by the package it configures; the run section is the daemon's own. The fields' tags are the one
// table of the keys (internal/conf). config.example.yaml documents every key with its default (a test holds it to
// DefaultConfig).
type Config struct {
	Verifier   client.Settings      `key:"verifier"`
	Database   enroll.Settings      `key:"database"`
	Run        RunConfig            `key:"run"`
	Scheduler  engine.Settings      `key:"scheduler"`
	Evidence   evidence.Settings    `key:"evidence"`
	Results    results.Settings     `key:"results"`
	Metrics    metrics.Settings     `key:"metrics"`
	Tracing    tracing.Settings     `key:"tracing"`
	Verdict    verdict.Settings     `key:"verdict"`
	PGActivity pgactivity.Settings  `key:"pgactivity"`
	Simulator  simverifier.Settings `key:"simulator"`
	Thresholds []string             `key:"thresholds" flag:"threshold" usage:"pass/fail check on the summary, e.g. 'evidence.p99<2s' (repeatable; durations need a unit); crossed → a line on stderr and exit 99. Metrics: "`
}

// DefaultConfig is the configuration with nothing set: the old tool's defaults.
func DefaultConfig() Config {
	return Config{Verifier: client.DefaultSettings(), Database: enroll.DefaultSettings(), Run: defaultRun(),
		Scheduler: engine.DefaultSettings(), Evidence: evidence.DefaultSettings(), Results: results.DefaultSettings(),
		Metrics: metrics.DefaultSettings(), Tracing: tracing.DefaultSettings(), Verdict: verdict.DefaultSettings(),
		PGActivity: pgactivity.DefaultSettings(), Simulator: simverifier.DefaultSettings()}
}

// Validate checks the ranges (check tags), each section, and the combinations of keys of different sections.
// Errors name the key.
func (c *Config) Validate() error {
	if err := conf.CheckRanges(c); err != nil {
		return err
	}
	for _, check := range []func() error{c.verifierURL, c.Verifier.Validate, c.Run.validate, c.Metrics.Validate,
		c.Database.Validate, c.crossChecks, func() error { return fromEngine(c.Scheduler.Validate()) },
		c.Evidence.Validate, c.Results.Validate, c.thresholds, c.Tracing.Validate, c.Verdict.Validate,
		c.verdictNeeds} {
		if err := check(); err != nil {
			return err
		}
	}
	if c.PGActivity.Enabled && c.Database.URL == "" {
		return conf.Errorf("pgactivity.enabled", "needs database.url: the activity sampled is the verifier's PostgreSQL")
	}
	return nil
}

// verifierURL checks verifier.url's syntax here rather than in client.Settings: the message shows the URL with
// its password redacted by enroll.RedactURL, and the client does not import the database side.
func (c *Config) verifierURL() error {
	if u := c.Verifier.URL; u != "" && !conf.HTTPURL(u) {
		return conf.Errorf("verifier.url", "must be an http:// or https:// URL with a host, got %q", enroll.RedactURL(u))
	}
	return nil
}

// crossChecks are the combinations of the verifier's and the database's keys.
func (c *Config) crossChecks() error {
	if c.Verifier.URL != "" && c.Database.URL == "" {
		return conf.Errorf("database.url", "must be set with verifier.url: the mock agents are enrolled in the verifier's PostgreSQL")
	}
	return nil
}

// fromEngine reports the engine's *engine.SettingError as the configuration's own error, so that the loader can
// say where the value came from.
func fromEngine(err error) error {
	if se, ok := errors.AsType[*engine.SettingError](err); ok {
		return &conf.Error{Key: se.Key, Msg: se.Msg}
	}
	return err
}

// thresholds checks the thresholds' expressions (exporter/threshold's syntax).
func (c *Config) thresholds() error {
	for i, expr := range c.Thresholds {
		if _, err := threshold.Parse(expr); err != nil {
			return conf.Errorf(fmt.Sprintf("thresholds[%d]", i), "%v", err)
		}
	}
	return nil
}

// verdictNeeds checks what verdict.source needs of the verifier's and the database's keys.
func (c *Config) verdictNeeds() error {
	v, verifier := c.Verdict, c.Verifier
	switch v.Source {
	case verdict.SourceSimulator:
		if verifier.URL != "" {
			return conf.Errorf("verdict.source", "simulator needs the in-process simulated verifier, but verifier.url is set")
		}
	case verdict.SourceDatabase:
		if c.Database.URL == "" {
			return conf.Errorf("verdict.source", "database needs database.url")
		}
	case verdict.SourceAdminAPI:
		u := v.AdminURL
		if u == "" {
			u = verifier.URL
		}
		if u == "" {
			return conf.Errorf("verdict.admin_url", "must be set (or verifier.url) when verdict.source is admin_api")
		}
		if strings.HasPrefix(strings.ToLower(u), "https://") && v.AdminCertFile == "" && verifier.CertFile == "" {
			return conf.Errorf("verdict.admin_cert_file", "must be set (or verifier.cert_file): the verifier's admin API "+
				"requires its client certificate and key")
		}
	}
	return nil
}

// RunConfig is the run section, the daemon's own: the schedule's size (engine.Sizing, inlined: run.workers,
// run.agents, run.tasks, run.duration, run.drain_timeout) and what the run itself needs.
type RunConfig struct {
	engine.Sizing
	Instance string `key:"instance" flag:"instance" usage:"instance name written into every record (default: host name)"`
	Verbose  bool   `key:"verbose" flag:"verbose,v" usage:"log every request"`
	// KeyPool "" is DefaultKeyPool(); KeyPoolNone keeps the keys in memory only.
	KeyPool      string `key:"key_pool" flag:"key-pool" usage:"file of reusable RSA attestation keys, or none to keep them in memory (default: ak-pool.bin in the user cache directory, ~/.cache/attestload)"`
	DistinctKeys int    `key:"distinct_keys" check:">=1"` // RSA agents share this many AKs round-robin
	// KeyType is rsa2048, ecc-p256 or a mix by share (ParseKeyType).
	KeyType        string        `key:"key_type" flag:"key-type" usage:"attestation keys: rsa2048, ecc-p256, or a mix such as rsa2048=30%,ecc-p256=70% (default rsa2048)"`
	FirstIndex     int           `key:"first_index" check:">=0"`
	StatusInterval time.Duration `key:"status_interval" check:">0"`
}

func defaultRun() RunConfig {
	return RunConfig{Sizing: engine.Sizing{DrainTimeout: 30 * time.Second}, DistinctKeys: 100,
		KeyType: string(softtpm.RSA2048), StatusInterval: 10 * time.Second}
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

// DefaultOpenWorkers bounds cycles in flight in the fleet and rate models when run.workers is 0: enough that the
// tool does not throttle a fleet, few enough that a stalled verifier cannot make it hold unbounded connections.
const DefaultOpenWorkers = 1000

// Resolved returns a copy with the automatic values filled in: workers from the CPU count, agents from workers,
// instance from the host name, and a verifier URL that ends in the API version cut back to the verifier's root.
func (c Config) Resolved() Config {
	c.Verifier = c.Verifier.Resolved()
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

package daemon

import (
	"errors"
	"fmt"
	"math"
	"net"
	"net/url"
	"os"
	"path/filepath"
	"reflect"
	"regexp"
	"runtime"
	"slices"
	"sort"
	"strconv"
	"strings"
	"time"

	"github.com/spf13/pflag"
	"github.com/spf13/viper"

	"github.com/attestload/attestload/attestation/enroll"
	"github.com/attestload/attestload/attestation/softtpm"
	"github.com/attestload/attestload/daemon/engine"
	"github.com/attestload/attestload/exporter/threshold"
	"github.com/attestload/attestload/internal/suggest"
)

// EnvPrefix prefixes every environment variable attestload reads: ATTESTLOAD_<KEY> with the key's dots as
// underscores, e.g. ATTESTLOAD_SCHEDULER_FLEET_INTERVAL.
const EnvPrefix = "ATTESTLOAD_"

// Config is a run's whole configuration. Each field's `key` tag is its config key (YAML path, environment suffix,
// error messages); the defaults are those of DefaultConfig and config.example.yaml documents them.
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

// VerifierConfig is where the load goes and how the client talks to it.
type VerifierConfig struct {
	URL                string        `key:"url"` // empty: start the simulated verifier in-process
	APIPrefix          string        `key:"api_prefix"`
	CAFile             string        `key:"ca_file" flag:"verifier-ca" usage:"CA certificate file of the verifier (default: the system roots)"`
	CertFile           string        `key:"cert_file"`
	KeyFile            string        `key:"key_file"`
	InsecureSkipVerify bool          `key:"insecure_skip_verify" flag:"insecure-skip-verify" usage:"do not verify the verifier's certificate (testing only)"`
	RequestTimeout     time.Duration `key:"request_timeout"`
	ConnectTimeout     time.Duration `key:"connect_timeout"`
	MaxRetries         int           `key:"max_retries"`
	MaxRetryAfter      time.Duration `key:"max_retry_after"`
	MaxConnsPerHost    int           `key:"max_conns_per_host"`
	LocalAddrs         []string      `key:"local_addrs"`
	// ExtendTokenOnAttestation mirrors the verifier's option of that name (default true): whether a passing
	// attestation slides the agent's token expiry. With it, agents keep their session while they pass, as real
	// agents do; without it, they renew just before expiry.
	ExtendTokenOnAttestation bool `key:"extend_token_on_attestation"`
}

// DatabaseConfig is the verifier's PostgreSQL, where mock agents are enrolled.
type DatabaseConfig struct {
	URL              string `key:"url"`
	Prefix           string `key:"prefix" flag:"prefix" usage:"agent id prefix in the database (default attestload-)"`
	CleanupLeftovers bool   `key:"cleanup_leftovers" flag:"cleanup-leftovers" usage:"remove rows of earlier crashed runs with the same prefix before starting"`
}

// RunConfig sizes and bounds the run.
type RunConfig struct {
	Workers      int           `key:"workers" flag:"workers,w" usage:"most cycles in flight (default: one per CPU thread)"`
	Agents       int           `key:"agents" flag:"agents,a" usage:"number of mock agents (default: as many as workers)"`
	Tasks        int           `key:"tasks" flag:"tasks,t" usage:"attestations per agent (default: until stopped)"`
	Duration     time.Duration `key:"duration" flag:"duration" usage:"stop starting cycles after this long, e.g. 30s or 1h (default: no limit)"`
	DrainTimeout time.Duration `key:"drain_timeout" flag:"drain-timeout" usage:"after stopping, how long running cycles may finish (default 30s)"`
	Instance     string        `key:"instance" flag:"instance" usage:"instance name written into every record (default: host name)"`
	Verbose      bool          `key:"verbose" flag:"verbose,v" usage:"log every request"`
	// KeyPool "" is DefaultKeyPool(); KeyPoolNone keeps the keys in memory only.
	KeyPool      string `key:"key_pool" flag:"key-pool" usage:"file of reusable RSA attestation keys, or none to keep them in memory (default: ak-pool.bin in the user cache directory, ~/.cache/attestload)"`
	DistinctKeys int    `key:"distinct_keys"` // RSA agents share this many AKs round-robin
	// KeyType is rsa2048, ecc-p256 or a mix by share (ParseKeyType).
	KeyType        string        `key:"key_type" flag:"key-type" usage:"attestation keys: rsa2048, ecc-p256, or a mix such as rsa2048=30%,ecc-p256=70% (default rsa2048)"`
	FirstIndex     int           `key:"first_index"`
	StatusInterval time.Duration `key:"status_interval"`
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
	Interval time.Duration `key:"interval" flag:"interval" usage:"fleet model: each agent's attestation interval (default 60s)"`
	Jitter   float64       `key:"jitter"`
}

// RateConfig is the rate model: a global arrival rate with ramp stages.
type RateConfig struct {
	Start  float64       `key:"start" flag:"rate-start" usage:"rate model: cycles per second at the start (default 10)"`
	Stages []StageConfig `key:"stages" flag:"rate-stages" usage:"rate model: ramp stages DURATION:TARGET,... e.g. 1m:10,5m:200,30m:200"`
}

// StageConfig is one ramp stage: reach Target cycles per second linearly over Duration.
type StageConfig struct {
	Duration time.Duration `key:"duration"`
	Target   float64       `key:"target"`
}

// EvidenceConfig chooses what the agents send.
type EvidenceConfig struct {
	Profile     string `key:"profile" flag:"profile" usage:"evidence: ima, quote-only or captured (default ima)"`
	IMAInitial  int    `key:"ima_initial"`
	IMAGrow     int    `key:"ima_grow"`
	IMAUniverse int    `key:"ima_universe"`
	CapturedLog string `key:"captured_log"`
	// MeasuredBoot adds measured boot to the profile: the run's mbpolicies row holds the captured reference state
	// and every attestation sends the captured UEFI event log (compiled into the binary), with the TPM's PCRs 0-15
	// as that log leaves them.
	MeasuredBoot bool `key:"measured_boot" flag:"measured-boot" usage:"also send a UEFI event log with every attestation, against an mbpolicies reference state (any profile)"`
	// Reboot simulation: before a cycle, an agent reboots (new boot_time, TPM reset count + 1, IMA log back to
	// its first entries) every RebootEvery cycles and/or with probability RebootProbability.
	RebootEvery       int     `key:"reboot_every"`
	RebootProbability float64 `key:"reboot_probability"`
}

// ResultsConfig is the results file.
type ResultsConfig struct {
	Dir           string        `key:"dir" flag:"results-dir" usage:"directory of results files (default results)"`
	FlushInterval time.Duration `key:"flush_interval"`
	OnError       string        `key:"on_error"` // stop or continue
	Buffer        int           `key:"buffer"`   // fan-out input bound, in records
	// Compression is none (plain JSONL, what the old report_results reads) or zstd (one frame per flush).
	Compression string `key:"compression"`
	// RotateSize and RotateInterval start a new part <stamp>.partNNNN.jsonl[.zst] when the current one reaches
	// that size on disk or age; 0 turns each off, and with both off the run writes one file.
	RotateSize     ByteSize      `key:"rotate_size"`
	RotateInterval time.Duration `key:"rotate_interval"`
	// MinFreeDisk stops the run cleanly when the results file system has less free space; 0 turns the guard off.
	MinFreeDisk ByteSize `key:"min_free_disk"`
}

// ByteSize is a size in bytes; config values take an integer or a number with a unit (KB, MB, GB, TB powers of
// 1000; KiB, MiB, GiB, TiB powers of 1024; B).
type ByteSize int64

// ParseByteSize reads "64MiB", "1.5 GB", "4096".
func ParseByteSize(s string) (ByteSize, error) {
	t := strings.TrimSpace(s)
	i := 0
	for i < len(t) && (t[i] >= '0' && t[i] <= '9' || t[i] == '.') {
		i++
	}
	num, unit := t[:i], strings.TrimSpace(t[i:])
	x, err := strconv.ParseFloat(num, 64)
	if num == "" || err != nil || x < 0 {
		return 0, fmt.Errorf("must be a size such as \"512MiB\" or \"20GB\", got %q", s)
	}
	mult := map[string]float64{"": 1, "B": 1, "KB": 1e3, "MB": 1e6, "GB": 1e9, "TB": 1e12,
		"K": 1 << 10, "M": 1 << 20, "G": 1 << 30, "T": 1 << 40,
		"KIB": 1 << 10, "MIB": 1 << 20, "GIB": 1 << 30, "TIB": 1 << 40}[strings.ToUpper(unit)]
	if mult == 0 {
		return 0, fmt.Errorf("unknown size unit %q in %q (use B, KB, MB, GB, TB, KiB, MiB, GiB or TiB)", unit, s)
	}
	v := x * mult
	if v >= math.MaxInt64 {
		return 0, fmt.Errorf("size %q is too large", s)
	}
	return ByteSize(v), nil
}

// SimulatorConfig shapes the in-process simulated verifier used when verifier.url is empty.
type SimulatorConfig struct {
	QuoteInterval int           `key:"quote_interval"` // seconds between an agent's evidence and its next POST
	Latency       time.Duration `key:"latency"`        // added to every request, as a slow verifier would
	// SessionHashIterations is the PBKDF2 cost of a session (the real verifier's is 600000).
	SessionHashIterations int `key:"session_hash_iterations"`
	// RateLimits turns on the real verifier's session-creation limits (50 per minute per client IP, 15 per agent).
	// Off by default: with more than 50 agents on one IP they throttle the load generator itself, which hides
	// everything else the built-in verifier is there to show. Turn it on to rehearse a real verifier's limits.
	RateLimits bool `key:"rate_limits"`
	// RebootDefect reproduces the stock Keylime verifier's reboot defect (docs/verifier-conformance.md): after a
	// simulated reboot an agent's attestations fail with broken_evidence_chain until its IMA log has regrown to
	// the length it had. On by default, so that the simulator answers as the real verifier does.
	RebootDefect bool `key:"reboot_defect"`
}

// MetricsConfig is the Prometheus endpoint.
type MetricsConfig struct {
	// Listen is where /metrics is served (default DefaultMetricsListen); empty: no endpoint.
	Listen string `key:"listen" flag:"metrics-listen,default" usage:"serve Prometheus /metrics, /healthz and /readyz on this address; '' serves nothing"`
	// FinalScrapeWait is how long the run waits, after its last record, for one more scrape, so that Prometheus
	// holds the final counts (its sums then equal the results file); 0 does not wait.
	FinalScrapeWait time.Duration `key:"final_scrape_wait"`
	// Pprof also serves Go's net/http/pprof profiles under /debug/pprof/ on the metrics listener (off by default:
	// profiles show the process's internals to whoever reaches the listener).
	Pprof bool `key:"pprof" flag:"pprof" usage:"also serve Go's profiles (net/http/pprof) under /debug/pprof/ on the metrics listener"`
}

// TracingConfig is the OpenTelemetry trace export. With Endpoint empty the exporter reads the standard
// OTEL_EXPORTER_OTLP_ENDPOINT (or OTEL_EXPORTER_OTLP_TRACES_ENDPOINT); OTEL_EXPORTER_OTLP_INSECURE,
// OTEL_EXPORTER_OTLP_HEADERS and OTEL_EXPORTER_OTLP_CERTIFICATE apply when the matching key is not set.
type TracingConfig struct {
	Enabled          bool              `key:"enabled"`
	Protocol         string            `key:"protocol"` // grpc or http
	Endpoint         string            `key:"endpoint"` // host:port or URL
	Headers          map[string]string `key:"headers"`  // sent with every export; never logged
	Insecure         bool              `key:"insecure"`
	CAFile           string            `key:"ca_file"`
	SampleRatio      float64           `key:"sample_ratio"`   // share of ordinary cycles exported
	SlowThreshold    time.Duration     `key:"slow_threshold"` // cycles at least this long are always exported; 0: rule off
	MaxTraces        int               `key:"max_traces"`
	MaxSpansPerTrace int               `key:"max_spans_per_trace"`
}

// Verdict sources.
const (
	VerdictAuto      = "auto"      // simulator when it runs in-process, else database when configured, else none
	VerdictSimulator = "simulator" // the in-process simulated verifier
	VerdictDatabase  = "database"  // the verifier's attestations table
	VerdictAdminAPI  = "admin_api" // the verifier's GET .../attestations/latest with its client certificate
	VerdictNone      = "none"      // every verdict unknown
)

// VerdictConfig is where each cycle's verdict is learned and how long a record waits for it.
type VerdictConfig struct {
	Source        string        `key:"source"`
	Timeout       time.Duration `key:"timeout"`
	PollInterval  time.Duration `key:"poll_interval"`
	MaxPending    int           `key:"max_pending"`
	AdminURL      string        `key:"admin_url"`       // empty: verifier.url
	AdminCertFile string        `key:"admin_cert_file"` // empty: verifier.cert_file
	AdminKeyFile  string        `key:"admin_key_file"`  // empty: verifier.key_file
	AdminCAFile   string        `key:"admin_ca_file"`   // empty: verifier.ca_file
}

// PGActivityConfig is the sampler of the verifier's PostgreSQL activity.
type PGActivityConfig struct {
	Enabled  bool          `key:"enabled"`
	Interval time.Duration `key:"interval"`
}

// DefaultConfig is the configuration with nothing set: the old tool's defaults.
// DefaultMetricsListen is where /metrics, /healthz and /readyz are served unless metrics.listen says otherwise:
// loopback only, on the port OpenTelemetry's Prometheus exporters use (the deployment files use it too).
const DefaultMetricsListen = "127.0.0.1:9464"

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

func DefaultConfig() Config {
	return Config{
		Verifier: VerifierConfig{APIPrefix: "v3.0", RequestTimeout: 30 * time.Second, ConnectTimeout: 10 * time.Second,
			MaxRetries: 3, MaxRetryAfter: 60 * time.Second, ExtendTokenOnAttestation: true},
		Database: DatabaseConfig{Prefix: "attestload-"},
		Run:      RunConfig{DrainTimeout: 30 * time.Second, DistinctKeys: 100, KeyType: string(softtpm.RSA2048), StatusInterval: 10 * time.Second},
		Scheduler: SchedulerConfig{Model: engine.ModelClosed, Fleet: FleetConfig{Interval: 60 * time.Second, Jitter: 0.1},
			Rate:    RateConfig{Start: 10, Stages: []StageConfig{{Duration: time.Minute, Target: 10}}},
			Backoff: BackoffConfig{Initial: 2 * time.Second, Max: time.Minute}},
		Evidence: EvidenceConfig{Profile: "ima", IMAInitial: 200, IMAGrow: 2, IMAUniverse: 1000},
		Results: ResultsConfig{Dir: "results", FlushInterval: time.Second, OnError: "stop", Buffer: 8192,
			Compression: "none", MinFreeDisk: 1 << 30},
		Simulator: SimulatorConfig{QuoteInterval: 2, SessionHashIterations: 600000, RebootDefect: true},
		Tracing: TracingConfig{Protocol: "grpc", SampleRatio: 0.01, SlowThreshold: 5 * time.Second,
			MaxTraces: 10000, MaxSpansPerTrace: 64},
		Verdict: VerdictConfig{Source: VerdictAuto, Timeout: 30 * time.Second, PollInterval: 500 * time.Millisecond,
			MaxPending: 100000},
		PGActivity: PGActivityConfig{Interval: 5 * time.Second},
		Metrics:    MetricsConfig{Listen: DefaultMetricsListen},
	}
}

// ConfigError names the config key at fault and, when the value came from the command line or the environment,
// what the user typed there (Source: "flag --model", "environment variable ATTESTLOAD_SCHEDULER_MODEL").
type ConfigError struct {
	Key    string
	Msg    string
	Source string
}

func (e *ConfigError) Error() string {
	s := fmt.Sprintf("config key %q: %s", e.Key, e.Msg)
	if e.Source != "" {
		s = e.Source + ": " + s
	}
	return s
}

func keyErr(key, format string, args ...any) error {
	return &ConfigError{Key: key, Msg: fmt.Sprintf(format, args...)}
}

// leaf is one settable config key, the field it fills and the field's tags.
type leaf struct {
	key   string
	field reflect.Value
	tag   reflect.StructTag
}

func leaves(prefix string, v reflect.Value, out *[]leaf) {
	t := v.Type()
	for i := range t.NumField() {
		f := t.Field(i)
		k := f.Tag.Get("key")
		if prefix != "" {
			k = prefix + "." + k
		}
		fv := v.Field(i)
		if f.Type.Kind() == reflect.Struct && f.Type != reflect.TypeFor[time.Duration]() {
			leaves(k, fv, out)
			continue
		}
		*out = append(*out, leaf{key: k, field: fv, tag: f.Tag})
	}
}

// Keys lists every config key, sorted.
func Keys() []string {
	var c Config
	var ls []leaf
	leaves("", reflect.ValueOf(&c).Elem(), &ls)
	keys := make([]string, len(ls))
	for i, l := range ls {
		keys[i] = l.key
	}
	sort.Strings(keys)
	return keys
}

// EnvName is the environment variable for a config key.
func EnvName(key string) string {
	return EnvPrefix + strings.ToUpper(strings.ReplaceAll(key, ".", "_"))
}

// Loader loads a Config from its layers: defaults < config file < environment < flags.
type Loader struct {
	File    string            // YAML config file; empty for none
	Environ []string          // os.Environ() form; only ATTESTLOAD_ entries are read
	Flags   *pflag.FlagSet    // parsed flags; only flags the user set override
	FlagKey map[string]string // flag name → config key; nil: FlagKeys(), the flags BindFlags defines
	// Override, when set, changes the decoded configuration before it is validated: the command line's positional
	// arguments (VERIFIER_URL, DB_URL) outrank every other source, and checks that depend on them (e.g.
	// pgactivity.enabled needs database.url) must see them.
	Override func(*Config)
}

// Load reads, decodes and validates the configuration. Unknown keys (in the file or the environment), values of
// the wrong type and out-of-range values are errors naming the key.
func (l Loader) Load() (*Config, error) {
	v := viper.New()
	v.SetEnvKeyReplacer(strings.NewReplacer(".", "_"))
	if l.File != "" {
		v.SetConfigFile(l.File)
		v.SetConfigType("yaml")
		if err := v.ReadInConfig(); err != nil {
			return nil, fmt.Errorf("config file %s: %w", l.File, err)
		}
	}
	known := map[string]bool{}
	prefixes := map[string]bool{}
	for _, k := range Keys() {
		known[k] = true
		for p := k; strings.Contains(p, "."); {
			p = p[:strings.LastIndex(p, ".")]
			prefixes[p] = true
		}
		if err := v.BindEnv(k, EnvName(k)); err != nil {
			return nil, fmt.Errorf("bind %s: %w", EnvName(k), err)
		}
	}
	envKnown := map[string]bool{}
	for k := range known {
		envKnown[EnvName(k)] = true
	}
	for _, kv := range l.Environ {
		name, _, _ := strings.Cut(kv, "=")
		if strings.HasPrefix(name, EnvPrefix) && !envKnown[name] && !reservedEnv(name) {
			if name == EnvPrefix+"ARGS" {
				// What the systemd unit's EnvironmentFile held before the unit expanded RUN_ARGS instead.
				return nil, fmt.Errorf("environment variable %s: unknown config key; extra arguments for the systemd "+
					"unit go in RUN_ARGS, the URLs in ATTESTLOAD_VERIFIER_URL and ATTESTLOAD_DATABASE_URL "+
					"(deploy/systemd/attestload.env)", name)
			}
			envNames := make([]string, 0, len(envKnown))
			for n := range envKnown {
				envNames = append(envNames, n)
			}
			return nil, fmt.Errorf("environment variable %s: unknown config key%s (config.example.yaml lists the keys)",
				name, didYouMean(name, envNames))
		}
	}
	if l.Flags != nil {
		for name, key := range l.flagKeys() {
			f := l.Flags.Lookup(name)
			if f == nil {
				return nil, fmt.Errorf("flag --%s is not defined", name)
			}
			if !known[key] {
				return nil, fmt.Errorf("flag --%s is bound to unknown config key %q", name, key)
			}
			if err := v.BindPFlag(key, f); err != nil {
				return nil, fmt.Errorf("bind flag --%s: %w", name, err)
			}
		}
	}
	// A mapping-valued key (tracing.headers) has free-form names under it; viper flattens them into keys.
	var mapKeys []string
	var all []leaf
	var zero Config
	leaves("", reflect.ValueOf(&zero).Elem(), &all)
	for _, lf := range all {
		if lf.field.Kind() == reflect.Map {
			mapKeys = append(mapKeys, lf.key+".")
		}
	}
	var unknown []string
	for _, k := range v.AllKeys() {
		if !known[k] && !slices.ContainsFunc(mapKeys, func(p string) bool { return strings.HasPrefix(k, p) }) {
			unknown = append(unknown, k)
		}
	}
	sort.Strings(unknown)
	for _, k := range unknown {
		if prefixes[k] {
			return nil, keyErr(k, "must be a mapping of keys, got %v", describe(v.Get(k)))
		}
		return nil, l.attribute(keyErr(k, "unknown key%s", didYouMean(k, Keys())))
	}

	cfg := DefaultConfig()
	var ls []leaf
	leaves("", reflect.ValueOf(&cfg).Elem(), &ls)
	for _, lf := range ls {
		if !v.IsSet(lf.key) {
			continue
		}
		if err := setValue(lf.key, lf.field, v.Get(lf.key)); err != nil {
			return nil, l.attribute(err)
		}
	}
	if l.Override != nil {
		l.Override(&cfg)
	}
	if cfg.Verifier.URL == "" && cfg.Database.URL == "" {
		// The demo (`make run`: nothing configured, the built-in simulated verifier): a few dozen agents and a
		// shorter quote interval, so that a 2-core laptop shows a lively pipeline instead of 2 agents doing a cycle
		// a second. Whatever the user set wins; against a real verifier the old defaults hold.
		if !v.IsSet("run.agents") && !v.IsSet("run.workers") {
			cfg.Run.Agents, cfg.Run.Workers = DemoAgents, DemoWorkers
		}
		if !v.IsSet("simulator.quote_interval") {
			cfg.Simulator.QuoteInterval = DemoQuoteInterval
		}
		if !v.IsSet("simulator.session_hash_iterations") {
			cfg.Simulator.SessionHashIterations = DemoSessionHashIterations
		}
	}
	if err := cfg.Validate(); err != nil {
		return nil, l.attribute(err)
	}
	return &cfg, nil
}

// The demo's defaults, in a run with no verifier.url and no database.url: agents and workers when neither
// run.agents nor run.workers is set; the simulated verifier's quote interval (seconds) and session PBKDF2 cost
// when simulator.quote_interval and simulator.session_hash_iterations are not set (the real verifier's 600000
// rounds would make the demo's first minute nothing but session set-up on 2 cores).
const (
	DemoAgents                = 32
	DemoWorkers               = 8
	DemoQuoteInterval         = 1
	DemoSessionHashIterations = 10000
)

// attribute completes a ConfigError with where its value came from (a flag or an environment variable; a file's
// keys are what the user typed already) and, for a value outside a list of choices, the nearest choice.
func (l Loader) attribute(err error) error {
	ce, ok := errors.AsType[*ConfigError](err)
	if !ok {
		return err
	}
	key := ce.Key
	if i := strings.IndexByte(key, '['); i >= 0 {
		key = key[:i] // thresholds[0]
	}
	if ce.Source == "" && l.Flags != nil {
		for name, k := range l.flagKeys() {
			if f := l.Flags.Lookup(name); k == key && f != nil && f.Changed {
				ce.Source = "flag --" + name
			}
		}
	}
	if ce.Source == "" {
		for _, kv := range l.Environ {
			if name, val, _ := strings.Cut(kv, "="); name == EnvName(key) && val != "" {
				ce.Source = "environment variable " + name
			}
		}
	}
	if m := choices.FindStringSubmatch(ce.Msg); m != nil {
		ce.Msg += didYouMean(m[3], append(strings.Split(m[1], ", "), m[2]))
	}
	return ce
}

// choices matches the "must be a, b or c, got "x"" messages of the keys that take one of a few values.
var choices = regexp.MustCompile(`must be ([a-z0-9_-]+(?:, [a-z0-9_-]+)*) or ([a-z0-9_-]+), got "([^"]*)"$`)

// didYouMean is `; did you mean "x"?` for the candidate nearest to s, when one is close enough to be a typo of
// it, else "".
func didYouMean(s string, candidates []string) string {
	best, d := suggest.Nearest(s, candidates)
	if d <= 0 || d > max(2, len(s)/4) {
		return ""
	}
	return fmt.Sprintf("; did you mean %q?", best)
}

// DidYouMean is didYouMean for the command line's unknown flags and commands.
func DidYouMean(s string, candidates []string) string { return didYouMean(s, candidates) }

// reservedPrefixes name the ATTESTLOAD_* variables of the repository's test and CI scripts (the database tests,
// scripts/pg-start.sh, the end-to-end script, the fault suite, the soak, scripts/keylime-verifier.sh and the
// stock-verifier suite). They are no config keys, and a shell that has them set must still run attestload, so they
// are ignored rather than rejected as typos.
var reservedPrefixes = []string{"TEST_", "PG_", "E2E_", "FAULTS", "SOAK_", "KEYLIME_"}

func reservedEnv(name string) bool {
	for _, p := range reservedPrefixes {
		if strings.HasPrefix(name, EnvPrefix+p) {
			return true
		}
	}
	return false
}

func describe(x any) string {
	switch x := x.(type) {
	case string:
		return strconv.Quote(x)
	case nil:
		return "nothing"
	default:
		return fmt.Sprintf("%v", x)
	}
}

func setValue(key string, f reflect.Value, raw any) error {
	switch f.Interface().(type) {
	case string:
		s, ok := raw.(string)
		if !ok {
			if _, isMap := raw.(map[string]any); isMap || raw == nil {
				return keyErr(key, "must be a string, got %s", describe(raw))
			}
			if _, isList := raw.([]any); isList {
				return keyErr(key, "must be a string, got a list")
			}
			s = fmt.Sprint(raw)
		}
		f.SetString(s)
	case bool:
		b, err := toBool(raw)
		if err != nil {
			return keyErr(key, "%v", err)
		}
		f.SetBool(b)
	case int:
		n, err := toInt(raw)
		if err != nil {
			return keyErr(key, "%v", err)
		}
		f.SetInt(int64(n))
	case float64:
		x, err := toFloat(raw)
		if err != nil {
			return keyErr(key, "%v", err)
		}
		f.SetFloat(x)
	case time.Duration:
		d, err := toDuration(raw)
		if err != nil {
			return keyErr(key, "%v", err)
		}
		f.SetInt(int64(d))
	case []string:
		ss, err := toStrings(raw)
		if err != nil {
			return keyErr(key, "%v", err)
		}
		if len(ss) == 0 {
			ss = nil // "[]" in a file means the same as the default
		}
		f.Set(reflect.ValueOf(ss))
	case map[string]string:
		m, err := toStringMap(raw)
		if err != nil {
			return keyErr(key, "%v", err)
		}
		if len(m) == 0 {
			m = nil // "{}" in a file means the same as the default
		}
		f.Set(reflect.ValueOf(m))
	case ByteSize:
		var b ByteSize
		switch x := raw.(type) {
		case int:
			if x < 0 {
				return keyErr(key, "must not be negative, got %d", x)
			}
			b = ByteSize(x)
		case int64:
			if x < 0 {
				return keyErr(key, "must not be negative, got %d", x)
			}
			b = ByteSize(x)
		case string:
			var err error
			if b, err = ParseByteSize(x); err != nil {
				return keyErr(key, "%v", err)
			}
		default:
			return keyErr(key, "must be a size such as \"512MiB\" or \"20GB\", got %s", describe(raw))
		}
		f.SetInt(int64(b))
	case []StageConfig:
		st, err := toStages(key, raw)
		if err != nil {
			return err
		}
		f.Set(reflect.ValueOf(st))
	default:
		return keyErr(key, "internal: unsupported field type %s", f.Type())
	}
	return nil
}

func toBool(raw any) (bool, error) {
	switch x := raw.(type) {
	case bool:
		return x, nil
	case string:
		b, err := strconv.ParseBool(strings.TrimSpace(x))
		if err == nil {
			return b, nil
		}
	}
	return false, fmt.Errorf("must be true or false, got %s", describe(raw))
}

func toInt(raw any) (int, error) {
	switch x := raw.(type) {
	case int:
		return x, nil
	case int64:
		return int(x), nil
	case int32:
		return int(x), nil
	case uint64:
		if x <= math.MaxInt32 {
			return int(x), nil
		}
	case float64:
		if x == math.Trunc(x) && math.Abs(x) <= math.MaxInt32 {
			return int(x), nil
		}
	case string:
		n, err := strconv.Atoi(strings.TrimSpace(x))
		if err == nil {
			return n, nil
		}
	}
	return 0, fmt.Errorf("must be an integer, got %s", describe(raw))
}

func toFloat(raw any) (float64, error) {
	switch x := raw.(type) {
	case int:
		return float64(x), nil
	case int64:
		return float64(x), nil
	case float64:
		if !math.IsNaN(x) && !math.IsInf(x, 0) {
			return x, nil
		}
	case float32:
		return float64(x), nil
	case string:
		f, err := strconv.ParseFloat(strings.TrimSpace(x), 64)
		if err == nil && !math.IsNaN(f) && !math.IsInf(f, 0) {
			return f, nil
		}
	}
	return 0, fmt.Errorf("must be a number, got %s", describe(raw))
}

// toDuration accepts Go durations ("90s", "1m30s"); a bare number is refused because its unit would be a guess.
func toDuration(raw any) (time.Duration, error) {
	switch x := raw.(type) {
	case time.Duration:
		return x, nil
	case string:
		d, err := time.ParseDuration(strings.TrimSpace(x))
		if err == nil {
			return d, nil
		}
	case int:
		if x == 0 {
			return 0, nil
		}
	}
	return 0, fmt.Errorf("must be a duration such as \"30s\" or \"5m\", got %s", describe(raw))
}

func toStrings(raw any) ([]string, error) {
	switch x := raw.(type) {
	case []string:
		return x, nil
	case []any:
		out := make([]string, 0, len(x))
		for i, e := range x {
			s, ok := e.(string)
			if !ok {
				return nil, fmt.Errorf("item %d must be a string, got %s", i, describe(e))
			}
			out = append(out, s)
		}
		return out, nil
	case string:
		// Environment form: comma-separated.
		var out []string
		for _, s := range strings.Split(x, ",") {
			if s = strings.TrimSpace(s); s != "" {
				out = append(out, s)
			}
		}
		return out, nil
	}
	return nil, fmt.Errorf("must be a list of strings, got %s", describe(raw))
}

// toStringMap reads a mapping of names to strings: a YAML mapping, or the environment form "name=value,..." (the
// form of OTEL_EXPORTER_OTLP_HEADERS).
func toStringMap(raw any) (map[string]string, error) {
	switch x := raw.(type) {
	case map[string]string:
		return x, nil
	case map[string]any:
		out := make(map[string]string, len(x))
		for k, e := range x {
			switch e := e.(type) {
			case string:
				out[k] = e
			case int, int64, float64, bool:
				out[k] = fmt.Sprint(e)
			default:
				return nil, fmt.Errorf("value of %q must be a string", k)
			}
		}
		return out, nil
	case string:
		out := map[string]string{}
		for i, part := range strings.Split(x, ",") {
			if strings.TrimSpace(part) == "" {
				continue
			}
			k, val, ok := strings.Cut(part, "=")
			if !ok {
				// Never echo the part: it may be an API key.
				return nil, fmt.Errorf("item %d must be name=value", i)
			}
			out[strings.TrimSpace(k)] = strings.TrimSpace(val)
		}
		return out, nil
	case nil:
		return nil, nil
	}
	return nil, fmt.Errorf("must be a mapping of names to strings, got %s", describeShape(raw))
}

// describeShape names a value's kind without its content, for keys whose values may be secrets.
func describeShape(x any) string {
	switch x.(type) {
	case []any:
		return "a list"
	case bool:
		return "a boolean"
	case int, int64, float64:
		return "a number"
	default:
		return fmt.Sprintf("%T", x)
	}
}

// ParseStages reads the compact stage form used in the environment and on the command line:
// "DURATION:TARGET,..." e.g. "1m:10,5m:200,30m:200".
func ParseStages(s string) ([]StageConfig, error) {
	var out []StageConfig
	for i, part := range strings.Split(s, ",") {
		part = strings.TrimSpace(part)
		ds, ts, ok := strings.Cut(part, ":")
		if !ok {
			return nil, fmt.Errorf("stage %d %q: want DURATION:TARGET, e.g. 5m:200", i, part)
		}
		d, err := time.ParseDuration(strings.TrimSpace(ds))
		if err != nil {
			return nil, fmt.Errorf("stage %d %q: bad duration: %v", i, part, err)
		}
		t, err := strconv.ParseFloat(strings.TrimSpace(ts), 64)
		if err != nil {
			return nil, fmt.Errorf("stage %d %q: bad target: %v", i, part, err)
		}
		out = append(out, StageConfig{Duration: d, Target: t})
	}
	return out, nil
}

func toStages(key string, raw any) ([]StageConfig, error) {
	if s, ok := raw.(string); ok {
		st, err := ParseStages(s)
		if err != nil {
			return nil, keyErr(key, "%v", err)
		}
		return st, nil
	}
	list, ok := raw.([]any)
	if !ok {
		return nil, keyErr(key, "must be a list of {duration, target}, got %s", describe(raw))
	}
	out := make([]StageConfig, 0, len(list))
	for i, item := range list {
		ik := fmt.Sprintf("%s[%d]", key, i)
		m, ok := item.(map[string]any)
		if !ok {
			return nil, keyErr(ik, "must be a mapping {duration, target}, got %s", describe(item))
		}
		var st StageConfig
		seen := map[string]bool{}
		names := make([]string, 0, len(m))
		for k := range m {
			names = append(names, k)
		}
		sort.Strings(names)
		for _, k := range names {
			val := m[k]
			switch strings.ToLower(k) {
			case "duration":
				d, err := toDuration(val)
				if err != nil {
					return nil, keyErr(ik+".duration", "%v", err)
				}
				st.Duration = d
			case "target":
				x, err := toFloat(val)
				if err != nil {
					return nil, keyErr(ik+".target", "%v", err)
				}
				st.Target = x
			default:
				return nil, keyErr(ik+"."+k, "unknown key")
			}
			seen[strings.ToLower(k)] = true
		}
		if !seen["duration"] {
			return nil, keyErr(ik+".duration", "missing")
		}
		if !seen["target"] {
			return nil, keyErr(ik+".target", "missing")
		}
		out = append(out, st)
	}
	return out, nil
}

// sqliteExplanation is why a SQLite database URL is refused (the old tool's explanation), shared with enroll.
var sqliteExplanation = enroll.ErrSQLiteUnsupported.Error()

// Validate checks ranges and combinations. Errors name the key.
func (c *Config) Validate() error {
	nonNeg := func(key string, n int) error {
		if n < 0 {
			return keyErr(key, "must be >= 0, got %d", n)
		}
		return nil
	}
	positive := func(key string, n int) error {
		if n < 1 {
			return keyErr(key, "must be >= 1, got %d", n)
		}
		return nil
	}
	posDur := func(key string, d time.Duration) error {
		if d <= 0 {
			return keyErr(key, "must be > 0, got %s", d)
		}
		return nil
	}
	nonNegDur := func(key string, d time.Duration) error {
		if d < 0 {
			return keyErr(key, "must be >= 0, got %s", d)
		}
		return nil
	}
	if c.Verifier.URL != "" {
		u, err := url.Parse(c.Verifier.URL)
		if err != nil || (u.Scheme != "http" && u.Scheme != "https") || u.Host == "" {
			return keyErr("verifier.url", "must be an http:// or https:// URL with a host, got %q", enroll.RedactURL(c.Verifier.URL))
		}
	}
	if strings.Contains(c.Verifier.APIPrefix, "/") || c.Verifier.APIPrefix == "" {
		return keyErr("verifier.api_prefix", "must be an API version such as \"v3.0\", got %q", c.Verifier.APIPrefix)
	}
	if v := urlAPIVersion(c.Verifier.URL); v != "" && v != c.Verifier.APIPrefix {
		return keyErr("verifier.url", "ends in the API version /%s, but verifier.api_prefix is %q: give the "+
			"verifier's root URL (the version is added to every request path) and set verifier.api_prefix to %q "+
			"if that version is meant", v, c.Verifier.APIPrefix, v)
	}
	if (c.Verifier.CertFile == "") != (c.Verifier.KeyFile == "") {
		return keyErr("verifier.cert_file", "cert_file and key_file must be set together")
	}
	errs := []error{
		posDur("verifier.request_timeout", c.Verifier.RequestTimeout),
		posDur("verifier.connect_timeout", c.Verifier.ConnectTimeout),
		nonNeg("verifier.max_retries", c.Verifier.MaxRetries),
		nonNegDur("verifier.max_retry_after", c.Verifier.MaxRetryAfter),
		nonNeg("verifier.max_conns_per_host", c.Verifier.MaxConnsPerHost),
		nonNeg("run.workers", c.Run.Workers),
		nonNeg("run.agents", c.Run.Agents),
		nonNeg("run.tasks", c.Run.Tasks),
		nonNegDur("run.duration", c.Run.Duration),
		nonNegDur("run.drain_timeout", c.Run.DrainTimeout),
		nonNeg("run.first_index", c.Run.FirstIndex),
		positive("run.distinct_keys", c.Run.DistinctKeys),
		posDur("run.status_interval", c.Run.StatusInterval),
		nonNeg("simulator.quote_interval", c.Simulator.QuoteInterval),
		nonNegDur("simulator.latency", c.Simulator.Latency),
		positive("simulator.session_hash_iterations", c.Simulator.SessionHashIterations),
	}
	for _, e := range errs {
		if e != nil {
			return e
		}
	}
	if c.Metrics.Pprof && c.Metrics.Listen == "" {
		return keyErr("metrics.pprof", "profiles are served on the metrics listener, but metrics.listen is empty: "+
			"give it an address (e.g. %s)", DefaultMetricsListen)
	}
	if _, err := ParseKeyType(c.Run.KeyType); err != nil {
		return keyErr("run.key_type", "%v", err)
	}
	for i, a := range c.Verifier.LocalAddrs {
		if net.ParseIP(a) == nil {
			return keyErr(fmt.Sprintf("verifier.local_addrs[%d]", i), "must be an IP address, got %q", a)
		}
	}
	if d := c.Database.URL; d != "" {
		low := strings.ToLower(d)
		switch {
		case enroll.IsSQLite(d):
			return keyErr("database.url", "%s", sqliteExplanation)
		case strings.HasPrefix(low, "postgres://"), strings.HasPrefix(low, "postgresql://"),
			strings.HasPrefix(low, "postgresql+psycopg2://"), strings.Contains(low, "host="), strings.Contains(low, "dbname="):
		default:
			return keyErr("database.url", "must be a PostgreSQL URL (postgresql://user:password@host:5432/verifierdb)")
		}
		if err := enroll.CheckURL(d); err != nil {
			return keyErr("database.url", "%v", err)
		}
	}
	if c.Verifier.URL != "" && c.Database.URL == "" {
		return keyErr("database.url", "must be set with verifier.url: the mock agents are enrolled in the verifier's PostgreSQL")
	}
	if !validPrefix(c.Database.Prefix) {
		return keyErr("database.prefix", "must be 1 to 32 letters, digits, '.', '_' or '-', got %q", c.Database.Prefix)
	}
	switch c.Scheduler.Model {
	case engine.ModelClosed, engine.ModelFleet, engine.ModelRate:
	default:
		return keyErr("scheduler.model", "must be closed, fleet or rate, got %q", c.Scheduler.Model)
	}
	if err := posDur("scheduler.fleet.interval", c.Scheduler.Fleet.Interval); err != nil {
		return err
	}
	if j := c.Scheduler.Fleet.Jitter; j < 0 || j > 1 {
		return keyErr("scheduler.fleet.jitter", "must be within [0, 1], got %v", j)
	}
	if c.Scheduler.Rate.Start < 0 {
		return keyErr("scheduler.rate.start", "must be >= 0, got %v", c.Scheduler.Rate.Start)
	}
	if len(c.Scheduler.Rate.Stages) == 0 {
		return keyErr("scheduler.rate.stages", "must have at least one stage")
	}
	for i, s := range c.Scheduler.Rate.Stages {
		if s.Duration <= 0 {
			return keyErr(fmt.Sprintf("scheduler.rate.stages[%d].duration", i), "must be > 0, got %s", s.Duration)
		}
		if s.Target < 0 {
			return keyErr(fmt.Sprintf("scheduler.rate.stages[%d].target", i), "must be >= 0, got %v", s.Target)
		}
	}
	switch c.Evidence.Profile {
	case "ima", "quote-only":
	case "captured":
		if c.Evidence.CapturedLog == "" {
			return keyErr("evidence.captured_log", "must name an IMA log file when evidence.profile is captured")
		}
	default:
		return keyErr("evidence.profile", "must be ima, quote-only or captured, got %q", c.Evidence.Profile)
	}
	if c.Evidence.IMAInitial < 1 {
		return keyErr("evidence.ima_initial", "must be >= 1, got %d", c.Evidence.IMAInitial)
	}
	if err := nonNeg("evidence.ima_grow", c.Evidence.IMAGrow); err != nil {
		return err
	}
	if c.Evidence.IMAUniverse < c.Evidence.IMAInitial {
		return keyErr("evidence.ima_universe", "must be >= evidence.ima_initial (%d), got %d", c.Evidence.IMAInitial,
			c.Evidence.IMAUniverse)
	}
	if err := nonNeg("evidence.reboot_every", c.Evidence.RebootEvery); err != nil {
		return err
	}
	if p := c.Evidence.RebootProbability; p < 0 || p > 1 {
		return keyErr("evidence.reboot_probability", "must be within [0, 1], got %v", p)
	}
	if c.Results.Dir == "" {
		return keyErr("results.dir", "must not be empty")
	}
	if f := c.Results.FlushInterval; f <= 0 || f > time.Second {
		return keyErr("results.flush_interval", "must be > 0 and at most 1s, got %s", f)
	}
	if c.Results.OnError != "stop" && c.Results.OnError != "continue" {
		return keyErr("results.on_error", "must be stop or continue, got %q", c.Results.OnError)
	}
	if c.Results.Buffer < 1 || c.Results.Buffer > 1<<20 {
		return keyErr("results.buffer", "must be within [1, 1048576], got %d", c.Results.Buffer)
	}
	if b := c.Scheduler.Backoff; b.Max < 0 {
		return keyErr("scheduler.backoff.max", "must be >= 0 (0 turns backoff off), got %s", b.Max)
	} else if b.Max > 0 && (b.Initial <= 0 || b.Initial > b.Max) {
		return keyErr("scheduler.backoff.initial", "must be > 0 and at most scheduler.backoff.max (%s), got %s", b.Max, b.Initial)
	}
	if c.Results.Compression != "none" && c.Results.Compression != "zstd" {
		return keyErr("results.compression", "must be none or zstd, got %q", c.Results.Compression)
	}
	if r := c.Results.RotateSize; r != 0 && r < 1<<20 {
		return keyErr("results.rotate_size", "must be 0 (off) or at least 1MiB, got %d bytes", r)
	}
	if r := c.Results.RotateInterval; r != 0 && r < time.Second {
		return keyErr("results.rotate_interval", "must be 0 (off) or at least 1s, got %s", r)
	}
	if c.Results.MinFreeDisk < 0 {
		return keyErr("results.min_free_disk", "must not be negative")
	}
	for i, expr := range c.Thresholds {
		if _, err := threshold.Parse(expr); err != nil {
			return keyErr(fmt.Sprintf("thresholds[%d]", i), "%v", err)
		}
	}
	if a := c.Metrics.Listen; a != "" {
		if _, port, err := net.SplitHostPort(a); err != nil || port == "" {
			return keyErr("metrics.listen", "must be host:port (e.g. 127.0.0.1:9400 or :9400), got %q", a)
		}
	}
	if err := nonNegDur("metrics.final_scrape_wait", c.Metrics.FinalScrapeWait); err != nil {
		return err
	}
	if err := c.Tracing.validate(); err != nil {
		return err
	}
	if err := c.validateVerdict(); err != nil {
		return err
	}
	if err := posDur("pgactivity.interval", c.PGActivity.Interval); err != nil {
		return err
	}
	if c.PGActivity.Enabled && c.Database.URL == "" {
		return keyErr("pgactivity.enabled", "needs database.url: the activity sampled is the verifier's PostgreSQL")
	}
	return nil
}

// otelEndpointEnv are the standard variables the OTLP exporters read when no endpoint is configured.
var otelEndpointEnv = []string{"OTEL_EXPORTER_OTLP_TRACES_ENDPOINT", "OTEL_EXPORTER_OTLP_ENDPOINT"}

// OTLPEndpointFromEnv reports whether the standard OpenTelemetry environment names an OTLP endpoint.
func OTLPEndpointFromEnv() bool {
	for _, name := range otelEndpointEnv {
		if os.Getenv(name) != "" {
			return true
		}
	}
	return false
}

func (t TracingConfig) validate() error {
	if t.Protocol != "grpc" && t.Protocol != "http" {
		return keyErr("tracing.protocol", "must be grpc or http, got %q", t.Protocol)
	}
	if r := t.SampleRatio; r < 0 || r > 1 {
		return keyErr("tracing.sample_ratio", "must be within [0, 1], got %v", r)
	}
	if t.SlowThreshold < 0 {
		return keyErr("tracing.slow_threshold", "must be >= 0, got %s", t.SlowThreshold)
	}
	if t.MaxTraces < 1 {
		return keyErr("tracing.max_traces", "must be >= 1, got %d", t.MaxTraces)
	}
	if t.MaxSpansPerTrace < 1 {
		return keyErr("tracing.max_spans_per_trace", "must be >= 1, got %d", t.MaxSpansPerTrace)
	}
	if e := t.Endpoint; e != "" {
		if strings.Contains(e, "://") {
			u, err := url.Parse(e)
			if err != nil || (u.Scheme != "http" && u.Scheme != "https") || u.Host == "" {
				return keyErr("tracing.endpoint", "must be host:port or an http:// or https:// URL, got %q", e)
			}
		} else if host, port, err := net.SplitHostPort(e); err != nil || host == "" || port == "" {
			return keyErr("tracing.endpoint", "must be host:port or an http:// or https:// URL, got %q", e)
		}
	}
	if t.Insecure && t.CAFile != "" {
		return keyErr("tracing.ca_file", "cannot be combined with tracing.insecure")
	}
	names := make([]string, 0, len(t.Headers))
	for k := range t.Headers {
		names = append(names, k)
	}
	sort.Strings(names)
	for _, k := range names {
		if !validHeaderName(k) {
			return keyErr("tracing.headers", "header name %q is not a valid HTTP header name", k)
		}
		if strings.ContainsAny(t.Headers[k], "\r\n") {
			// The value may be an API key: name the header, never the value.
			return keyErr("tracing.headers."+k, "value must not contain a line break")
		}
	}
	if t.Enabled && t.Endpoint == "" && !OTLPEndpointFromEnv() {
		return keyErr("tracing.endpoint", "must be set when tracing.enabled is true (or set OTEL_EXPORTER_OTLP_ENDPOINT)")
	}
	return nil
}

func validHeaderName(s string) bool {
	if s == "" {
		return false
	}
	for _, r := range s {
		ok := r >= 'a' && r <= 'z' || r >= 'A' && r <= 'Z' || r >= '0' && r <= '9' || strings.ContainsRune("!#$%&'*+-.^_`|~", r)
		if !ok {
			return false
		}
	}
	return true
}

func (c *Config) validateVerdict() error {
	v := c.Verdict
	if v.Timeout <= 0 {
		return keyErr("verdict.timeout", "must be > 0, got %s", v.Timeout)
	}
	if v.PollInterval <= 0 {
		return keyErr("verdict.poll_interval", "must be > 0, got %s", v.PollInterval)
	}
	if v.MaxPending < 1 {
		return keyErr("verdict.max_pending", "must be >= 1, got %d", v.MaxPending)
	}
	if v.AdminURL != "" {
		u, err := url.Parse(v.AdminURL)
		if err != nil || (u.Scheme != "http" && u.Scheme != "https") || u.Host == "" {
			return keyErr("verdict.admin_url", "must be an http:// or https:// URL with a host, got %q", v.AdminURL)
		}
	}
	if (v.AdminCertFile == "") != (v.AdminKeyFile == "") {
		return keyErr("verdict.admin_cert_file", "admin_cert_file and admin_key_file must be set together")
	}
	switch v.Source {
	case VerdictAuto, VerdictNone:
	case VerdictSimulator:
		if c.Verifier.URL != "" {
			return keyErr("verdict.source", "simulator needs the in-process simulated verifier, but verifier.url is set")
		}
	case VerdictDatabase:
		if c.Database.URL == "" {
			return keyErr("verdict.source", "database needs database.url")
		}
	case VerdictAdminAPI:
		u := v.AdminURL
		if u == "" {
			u = c.Verifier.URL
		}
		if u == "" {
			return keyErr("verdict.admin_url", "must be set (or verifier.url) when verdict.source is admin_api")
		}
		if strings.HasPrefix(strings.ToLower(u), "https://") && v.AdminCertFile == "" && c.Verifier.CertFile == "" {
			return keyErr("verdict.admin_cert_file", "must be set (or verifier.cert_file): the verifier's admin API "+
				"requires its client certificate and key")
		}
	default:
		return keyErr("verdict.source", "must be auto, simulator, database, admin_api or none, got %q", v.Source)
	}
	return nil
}

// apiVersionSegment is a push API version as it appears in request paths (v3, v3.0).
var apiVersionSegment = regexp.MustCompile(`^v[0-9]+(\.[0-9]+)?$`)

// urlAPIVersion is the API version a verifier URL ends in ("https://v:8881/v3.0/" → "v3.0"), or "".
func urlAPIVersion(raw string) string {
	u, err := url.Parse(raw)
	if err != nil || u.Path == "" {
		return ""
	}
	p := strings.TrimSuffix(u.Path, "/")
	last := p[strings.LastIndex(p, "/")+1:]
	if u.RawQuery != "" || u.Fragment != "" || !apiVersionSegment.MatchString(last) {
		return ""
	}
	return last
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

// PacerStages converts the configured rate stages for NewStagedPacer.
func (c RateConfig) PacerStages() []engine.Stage {
	out := make([]engine.Stage, len(c.Stages))
	for i, s := range c.Stages {
		out[i] = engine.Stage{Duration: s.Duration, Target: s.Target}
	}
	return out
}

func validPrefix(p string) bool {
	if p == "" || len(p) > 32 {
		return false
	}
	for _, r := range p {
		ok := r >= 'a' && r <= 'z' || r >= 'A' && r <= 'Z' || r >= '0' && r <= '9' || r == '.' || r == '_' || r == '-'
		if !ok {
			return false
		}
	}
	return true
}

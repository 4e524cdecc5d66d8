package daemon

import (
	"os"
	"path/filepath"
	"reflect"
	"runtime"
	"slices"
	"sort"
	"strings"
	"testing"
	"time"

	"github.com/spf13/pflag"
	"github.com/spf13/viper"

	"github.com/attestload/attestload/daemon/engine"
	"github.com/attestload/attestload/exporter/tracing"
	"github.com/attestload/attestload/internal/sharedtest"
)

func TestInvalidConfigs(t *testing.T) {
	cases := map[string]string{
		"invalid-negative-workers.yaml":     `config key "run.workers": must be >= 0, got -1`,
		"invalid-unknown-key.yaml":          `config key "run.wokers": unknown key; did you mean "run.workers"?`,
		"invalid-workers-type.yaml":         `config key "run.workers": must be an integer, got "many"`,
		"invalid-duration-number.yaml":      `config key "run.duration": must be a duration such as "30s" or "5m", got 30`,
		"invalid-model.yaml":                `config key "scheduler.model": must be closed, fleet or rate, got "open"`,
		"invalid-stage-target.yaml":         `config key "scheduler.rate.stages[1].target": must be >= 0, got -3`,
		"invalid-stage-key.yaml":            `config key "scheduler.rate.stages[0].tagret": unknown key`,
		"invalid-stages-empty.yaml":         `config key "scheduler.rate.stages": must have at least one stage`,
		"invalid-fleet-scalar.yaml":         `config key "scheduler.fleet": must be a mapping of keys, got "60s"`,
		"invalid-jitter.yaml":               `config key "scheduler.fleet.jitter": must be within [0, 1], got 2`,
		"invalid-reboot-probability.yaml":   `config key "evidence.reboot_probability": must be within [0, 1], got 1.5`,
		"invalid-reboot-every.yaml":         `config key "evidence.reboot_every": must be >= 0, got -2`,
		"invalid-sqlite.yaml":               `config key "database.url": ` + sqliteExplanation,
		"invalid-verifier-url.yaml":         `config key "verifier.url": must be an http:// or https:// URL with a host, got "ftp://verifier:8881"`,
		"invalid-on-error.yaml":             `config key "results.on_error": must be stop or continue, got "ignore"`,
		"invalid-flush-interval.yaml":       `config key "results.flush_interval": must be > 0 and at most 1s, got 5s`,
		"invalid-threshold.yaml":            `config key "thresholds[0]": `,
		"invalid-verbose.yaml":              `config key "run.verbose": must be true or false, got "maybe"`,
		"invalid-run-list.yaml":             `config key "run": must be a mapping of keys, got [1 2]`,
		"invalid-yaml.yaml":                 `config file testdata/invalid-yaml.yaml: `,
		"invalid-tracing-protocol.yaml":     `config key "tracing.protocol": must be grpc or http, got "thrift"`,
		"invalid-tracing-sample-ratio.yaml": `config key "tracing.sample_ratio": must be within [0, 1], got 1.5`,
		"invalid-tracing-no-endpoint.yaml": `config key "tracing.endpoint": must be set when tracing.enabled is true ` +
			`(or set OTEL_EXPORTER_OTLP_ENDPOINT)`,
		"invalid-tracing-endpoint.yaml":       `config key "tracing.endpoint": must be host:port or an http:// or https:// URL, got "jaeger"`,
		"invalid-tracing-header-name.yaml":    `config key "tracing.headers": header name "bad header" is not a valid HTTP header name`,
		"invalid-tracing-headers-list.yaml":   `config key "tracing.headers": must be a mapping of names to strings, got a list`,
		"invalid-tracing-insecure-ca.yaml":    `config key "tracing.ca_file": cannot be combined with tracing.insecure`,
		"invalid-tracing-max-traces.yaml":     `config key "tracing.max_traces": must be >= 1, got 0`,
		"invalid-final-scrape-wait.yaml":      `config key "metrics.final_scrape_wait": must be >= 0, got -1s`,
		"invalid-verdict-source.yaml":         `config key "verdict.source": must be auto, simulator, database, admin_api or none, got "jaeger"`,
		"invalid-verdict-database.yaml":       `config key "verdict.source": database needs database.url`,
		"invalid-verdict-timeout.yaml":        `config key "verdict.timeout": must be > 0, got 0s`,
		"invalid-verdict-max-pending.yaml":    `config key "verdict.max_pending": must be >= 1, got 0`,
		"invalid-verdict-simulator.yaml":      `config key "verdict.source": simulator needs the in-process simulated verifier, but verifier.url is set`,
		"invalid-pgactivity-no-database.yaml": `config key "pgactivity.enabled": needs database.url: the activity sampled is the verifier's PostgreSQL`,
		"invalid-pgactivity-interval.yaml":    `config key "pgactivity.interval": must be > 0, got 0s`,
		"invalid-verdict-admin-cert.yaml": `config key "verdict.admin_cert_file": must be set (or verifier.cert_file): ` +
			`the verifier's admin API requires its client certificate and key`,
	}
	// The standard OpenTelemetry variables would satisfy tracing.endpoint; these cases must not see them.
	for _, name := range tracing.OTLPEndpointEnv() {
		t.Setenv(name, "")
	}
	files, _ := filepath.Glob("testdata/invalid-*.yaml")
	if len(files) != len(cases) {
		t.Errorf("%d invalid-*.yaml files but %d cases: every file needs its expected error", len(files), len(cases))
	}
	for _, f := range files {
		t.Run(filepath.Base(f), func(t *testing.T) {
			want, ok := cases[filepath.Base(f)]
			if !ok {
				t.Fatalf("no expected error for %s", f)
			}
			_, err := Loader{File: f}.Load()
			if err == nil {
				t.Fatalf("loaded without error; want %q", want)
			}
			// Prefix cases (ending in ": ") carry a message from another package, checked there.
			if strings.HasSuffix(want, ": ") {
				if !strings.HasPrefix(err.Error(), want) {
					t.Fatalf("error %q\nwant prefix %q", err, want)
				}
				return
			}
			if err.Error() != want {
				t.Fatalf("error %q\nwant       %q", err, want)
			}
		})
	}
}

func TestExampleConfigIsTheDefaults(t *testing.T) {
	path := filepath.Join(sharedtest.RepoRoot(t), "config.example.yaml")
	cfg, err := Loader{File: path}.Load()
	if err != nil {
		t.Fatal(err)
	}
	if def := DefaultConfig(); !reflect.DeepEqual(*cfg, def) {
		t.Fatalf("config.example.yaml differs from DefaultConfig:\n got %+v\nwant %+v", *cfg, def)
	}
	// Every key is documented in the example, and it has no key the loader does not know.
	v := viper.New()
	v.SetConfigFile(path)
	if err := v.ReadInConfig(); err != nil {
		t.Fatal(err)
	}
	got := v.AllKeys()
	// viper lists no key for an empty mapping ("headers: {}"); such keys count when the file has them.
	if !slices.Contains(got, "tracing.headers") && v.InConfig("tracing.headers") {
		got = append(got, "tracing.headers")
	}
	sort.Strings(got)
	if want := Keys(); !reflect.DeepEqual(got, want) {
		t.Fatalf("example keys\n %v\nwant\n %v", got, want)
	}
}

func TestPrecedenceFlagsEnvFile(t *testing.T) {
	dir := t.TempDir()
	file := filepath.Join(dir, "c.yaml")
	os.WriteFile(file, []byte("run:\n  workers: 3\n  agents: 7\n  tasks: 2\nscheduler:\n  model: fleet\n"), 0o644)
	fs := pflag.NewFlagSet("run", pflag.ContinueOnError)
	fs.IntP("workers", "w", 0, "")
	fs.IntP("agents", "a", 0, "")
	fs.Duration("duration", 0, "")
	if err := fs.Parse([]string{"-w", "9"}); err != nil {
		t.Fatal(err)
	}
	t.Setenv("ATTESTLOAD_RUN_WORKERS", "5")
	t.Setenv("ATTESTLOAD_RUN_TASKS", "4")
	t.Setenv("ATTESTLOAD_SCHEDULER_RATE_STAGES", "1m:10, 5m:200")
	t.Setenv("ATTESTLOAD_THRESHOLDS", "evidence.p99<2s,verdict.pass_rate>0.999")
	cfg, err := Loader{File: file, Environ: os.Environ(), Flags: fs,
		FlagKey: map[string]string{"workers": "run.workers", "agents": "run.agents", "duration": "run.duration"}}.Load()
	if err != nil {
		t.Fatal(err)
	}
	if cfg.Run.Workers != 9 || cfg.Run.Agents != 7 || cfg.Run.Tasks != 4 || cfg.Scheduler.Model != engine.ModelFleet ||
		cfg.Run.Duration != 0 {
		t.Fatalf("precedence wrong: %+v", cfg.Run)
	}
	if want := (engine.Stages{{Duration: time.Minute, Target: 10}, {Duration: 5 * time.Minute, Target: 200}}); !reflect.DeepEqual(cfg.Scheduler.Rate.Stages, want) {
		t.Fatalf("stages from env = %v", cfg.Scheduler.Rate.Stages)
	}
	if len(cfg.Thresholds) != 2 {
		t.Fatalf("thresholds from env = %q", cfg.Thresholds)
	}
}

func TestTracingHeaders(t *testing.T) {
	file := filepath.Join(t.TempDir(), "c.yaml")
	os.WriteFile(file, []byte("tracing:\n  headers:\n    Authorization: Bearer abc\n    x-tenant: 7\n"), 0o644)
	cfg, err := Loader{File: file}.Load()
	if err != nil {
		t.Fatal(err)
	}
	// viper folds key case; HTTP header names are case-insensitive, so that is harmless.
	if want := map[string]string{"authorization": "Bearer abc", "x-tenant": "7"}; !reflect.DeepEqual(cfg.Tracing.Headers, want) {
		t.Fatalf("headers from file = %v, want %v", cfg.Tracing.Headers, want)
	}
	t.Setenv("ATTESTLOAD_TRACING_HEADERS", "authorization=Bearer xyz, x-tenant=9")
	cfg, err = Loader{Environ: os.Environ()}.Load()
	if err != nil {
		t.Fatal(err)
	}
	if want := map[string]string{"authorization": "Bearer xyz", "x-tenant": "9"}; !reflect.DeepEqual(cfg.Tracing.Headers, want) {
		t.Fatalf("headers from env = %v, want %v", cfg.Tracing.Headers, want)
	}
	t.Setenv("ATTESTLOAD_TRACING_HEADERS", "Bearer-secret-token")
	_, err = Loader{Environ: os.Environ()}.Load()
	if err == nil || err.Error() != `environment variable ATTESTLOAD_TRACING_HEADERS: config key "tracing.headers": item 0 must be name=value` {
		t.Fatalf("error %v", err)
	}
	if strings.Contains(err.Error(), "secret") {
		t.Fatalf("error echoes the header value: %v", err)
	}
	t.Setenv("ATTESTLOAD_TRACING_HEADERS", "")
	os.WriteFile(file, []byte("tracing:\n  headers:\n    authorization: \"a\\nb\"\n"), 0o644)
	_, err = Loader{File: file}.Load()
	if err == nil || err.Error() != `config key "tracing.headers.authorization": value must not contain a line break` {
		t.Fatalf("error %v", err)
	}
}

func TestTracingEndpointFromOTELEnv(t *testing.T) {
	for _, name := range tracing.OTLPEndpointEnv() {
		t.Setenv(name, "")
	}
	c := DefaultConfig()
	c.Tracing.Enabled = true
	if err := c.Validate(); err == nil {
		t.Fatal("tracing enabled with no endpoint anywhere validated")
	}
	t.Setenv("OTEL_EXPORTER_OTLP_ENDPOINT", "http://127.0.0.1:4317")
	if err := c.Validate(); err != nil {
		t.Fatalf("OTEL_EXPORTER_OTLP_ENDPOINT should satisfy tracing.endpoint: %v", err)
	}
}

func TestEnvErrorsNameTheKey(t *testing.T) {
	for _, c := range []struct{ name, val, want string }{
		{"ATTESTLOAD_RUN_WOKERS", "4", "environment variable ATTESTLOAD_RUN_WOKERS: unknown config key"},
		{"ATTESTLOAD_RUN_WORKERS", "four", `environment variable ATTESTLOAD_RUN_WORKERS: config key "run.workers": must be an integer, got "four"`},
		{"ATTESTLOAD_SCHEDULER_RATE_STAGES", "1m", `environment variable ATTESTLOAD_SCHEDULER_RATE_STAGES: config key "scheduler.rate.stages": stage 0 "1m": want DURATION:TARGET`},
	} {
		t.Run(c.name, func(t *testing.T) {
			// The scripts' own variables are never an error.
			for _, v := range []string{"ATTESTLOAD_TEST_DATABASE_URL", "ATTESTLOAD_PG_ROLE", "ATTESTLOAD_E2E_CACHE",
				"ATTESTLOAD_FAULTS", "ATTESTLOAD_FAULTS_PG_RESTART", "ATTESTLOAD_SOAK_DURATION"} {
				t.Setenv(v, "x")
			}
			t.Setenv(c.name, c.val)
			_, err := Loader{Environ: os.Environ()}.Load()
			if err == nil || !strings.HasPrefix(err.Error(), c.want) {
				t.Fatalf("error %v, want prefix %q", err, c.want)
			}
		})
	}
}

func TestResolvedDefaults(t *testing.T) {
	c := DefaultConfig().Resolved()
	if c.Run.Workers != runtime.NumCPU() || c.Run.Agents != c.Run.Workers || c.Run.Instance == "" {
		t.Fatalf("resolved run = %+v", c.Run)
	}
	c = DefaultConfig()
	c.Run.Workers = 5
	if r := c.Resolved(); r.Run.Agents != 5 {
		t.Fatalf("agents default to workers: got %d", r.Run.Agents)
	}
	c = DefaultConfig()
	c.Scheduler.Model = engine.ModelFleet
	c.Run.Agents = 5000
	if r := c.Resolved(); r.Run.Workers != DefaultOpenWorkers {
		t.Fatalf("fleet workers default = %d, want %d", r.Run.Workers, DefaultOpenWorkers)
	}
}

func FuzzLoadConfig(f *testing.F) {
	f.Add([]byte("run:\n  workers: 3\n"))
	f.Add([]byte("scheduler:\n  rate:\n    stages:\n      - {duration: 1m, target: 2}\n"))
	f.Fuzz(func(t *testing.T, b []byte) {
		p := filepath.Join(t.TempDir(), "c.yaml")
		if err := os.WriteFile(p, b, 0o644); err != nil {
			t.Fatal(err)
		}
		cfg, err := Loader{File: p}.Load()
		if err == nil {
			if verr := cfg.Validate(); verr != nil {
				t.Fatalf("Load accepted a config that does not validate: %v", verr)
			}
		}
	})
}

// The deployment files are configs too: every key they set must be one the loader knows, with a valid value.
func TestDeployConfigsLoad(t *testing.T) {
	for _, rel := range []string{"deploy/attestload/config.yaml", "deploy/kubernetes/config.yaml"} {
		t.Run(rel, func(t *testing.T) {
			if _, err := (Loader{File: filepath.Join(sharedtest.RepoRoot(t), rel)}).Load(); err != nil {
				t.Fatal(err)
			}
		})
	}
}

// A malformed URL's error never quotes its password (verifier.url) and names the fix (database.url).
func TestURLErrorsRedactPasswords(t *testing.T) {
	for _, tc := range []struct{ env, value, want string }{
		{"ATTESTLOAD_VERIFIER_URL", "ftp://admin:Tr0ub4dor@verifier:8881", "verifier.url"},
		{"ATTESTLOAD_DATABASE_URL", "postgres://kl:Tr0ub4dor@horse@127.0.0.1/verifierdb", "%40"},
	} {
		t.Setenv("ATTESTLOAD_VERIFIER_URL", "")
		t.Setenv("ATTESTLOAD_DATABASE_URL", "")
		t.Setenv(tc.env, tc.value)
		_, err := Loader{Environ: os.Environ()}.Load()
		if err == nil {
			t.Fatalf("%s=%s: no error", tc.env, tc.value)
		}
		if strings.Contains(err.Error(), "Tr0ub4dor") || strings.Contains(err.Error(), "horse") {
			t.Errorf("%s: error leaks the password: %v", tc.env, err)
		}
		if !strings.Contains(err.Error(), tc.want) {
			t.Errorf("%s: error %v does not mention %s", tc.env, err, tc.want)
		}
	}
}

// The systemd unit's EnvironmentFile used to hold ATTESTLOAD_ARGS; such a file names the new variables.
func TestOldSystemdArgsVariable(t *testing.T) {
	_, err := Loader{Environ: []string{"ATTESTLOAD_ARGS=--shard 0/2"}}.Load()
	if err == nil || !strings.Contains(err.Error(), "RUN_ARGS") {
		t.Fatalf("got %v, want an error naming RUN_ARGS", err)
	}
}

// A verifier URL given with the API version on it (…/v3.0, as in the verifier's own request paths) is normalised
// to the verifier's root, so requests do not go to …/v3.0/v3.0/sessions; a different version there than
// verifier.api_prefix is refused, naming both keys.
func TestVerifierURLWithAPIVersion(t *testing.T) {
	t.Setenv("ATTESTLOAD_DATABASE_URL", "postgres://u:p@127.0.0.1/db")
	for in, want := range map[string]string{
		"https://127.0.0.1:8881/v3.0":         "https://127.0.0.1:8881",
		"https://127.0.0.1:8881/v3.0/":        "https://127.0.0.1:8881",
		"https://127.0.0.1:8881/keylime/v3.0": "https://127.0.0.1:8881/keylime",
		"https://127.0.0.1:8881/":             "https://127.0.0.1:8881/",
		"https://127.0.0.1:8881/keylime":      "https://127.0.0.1:8881/keylime",
	} {
		t.Setenv("ATTESTLOAD_VERIFIER_URL", in)
		cfg, err := Loader{Environ: os.Environ()}.Load()
		if err != nil {
			t.Fatalf("%s: %v", in, err)
		}
		if got := cfg.Resolved().Verifier.URL; got != want {
			t.Errorf("%s: resolved to %s, want %s", in, got, want)
		}
	}
	t.Setenv("ATTESTLOAD_VERIFIER_URL", "https://127.0.0.1:8881/v3")
	_, err := Loader{Environ: os.Environ()}.Load()
	if err == nil || !strings.Contains(err.Error(), "verifier.api_prefix") || !strings.Contains(err.Error(), "verifier.url") {
		t.Errorf("…/v3 with api_prefix v3.0: got %v, want an error naming verifier.url and verifier.api_prefix", err)
	}
}

func TestPprofNeedsTheMetricsListener(t *testing.T) {
	cfg := DefaultConfig()
	cfg.Metrics.Pprof = true
	if err := cfg.Validate(); err != nil {
		t.Fatalf("pprof on the default listener: %v", err)
	}
	cfg.Metrics.Listen = ""
	if err := cfg.Validate(); err == nil || !strings.Contains(err.Error(), "metrics.pprof") {
		t.Fatalf("pprof without a listener: %v, want an error naming metrics.pprof", err)
	}
}

// Errors name what the user typed (the flag or the environment variable) next to the config key, and suggest the
// nearest valid key or value.
func TestConfigErrorsNameSourceAndSuggest(t *testing.T) {
	t.Setenv("ATTESTLOAD_SCHEDULER_MODEL", "")
	fs := pflag.NewFlagSet("run", pflag.ContinueOnError)
	fs.String("model", "", "")
	if err := fs.Parse([]string{"--model", "closd"}); err != nil {
		t.Fatal(err)
	}
	_, err := Loader{Flags: fs, FlagKey: map[string]string{"model": "scheduler.model"}}.Load()
	want := `flag --model: config key "scheduler.model": must be closed, fleet or rate, got "closd"; did you mean "closed"?`
	if err == nil || err.Error() != want {
		t.Errorf("--model closd: got %v\nwant %s", err, want)
	}

	t.Setenv("ATTESTLOAD_SCHEDULER_MODEL", "rat")
	_, err = Loader{Environ: os.Environ()}.Load()
	if err == nil || !strings.HasPrefix(err.Error(), "environment variable ATTESTLOAD_SCHEDULER_MODEL: ") ||
		!strings.HasSuffix(err.Error(), `did you mean "rate"?`) {
		t.Errorf("ATTESTLOAD_SCHEDULER_MODEL=rat: got %v", err)
	}
	t.Setenv("ATTESTLOAD_SCHEDULER_MODEL", "")

	_, err = Loader{Environ: []string{"ATTESTLOAD_RUN_WORKERZ=3"}}.Load()
	if err == nil || !strings.Contains(err.Error(), `did you mean "ATTESTLOAD_RUN_WORKERS"?`) {
		t.Errorf("ATTESTLOAD_RUN_WORKERZ: got %v", err)
	}
	file := filepath.Join(t.TempDir(), "c.yaml")
	if err := os.WriteFile(file, []byte("run:\n  workerz: 3\n"), 0o644); err != nil {
		t.Fatal(err)
	}
	_, err = Loader{File: file}.Load()
	if err == nil || err.Error() != `config key "run.workerz": unknown key; did you mean "run.workers"?` {
		t.Errorf("run.workerz: got %v", err)
	}
	// Nothing close: no suggestion.
	if err := os.WriteFile(file, []byte("run:\n  colour: blue\n"), 0o644); err != nil {
		t.Fatal(err)
	}
	if _, err = (Loader{File: file}).Load(); err == nil || strings.Contains(err.Error(), "did you mean") {
		t.Errorf("run.colour: got %v, want no suggestion", err)
	}
}

// The demo (no verifier, no database, size left to the defaults) is a few dozen agents on a shorter quote
// interval; anything the user sets wins, and against a real verifier the old defaults hold.
func TestDemoDefaults(t *testing.T) {
	for _, k := range []string{"ATTESTLOAD_VERIFIER_URL", "ATTESTLOAD_DATABASE_URL", "ATTESTLOAD_RUN_AGENTS",
		"ATTESTLOAD_RUN_WORKERS", "ATTESTLOAD_SIMULATOR_QUOTE_INTERVAL", "ATTESTLOAD_SIMULATOR_SESSION_HASH_ITERATIONS"} {
		t.Setenv(k, "")
	}
	load := func(env ...string) *Config {
		t.Helper()
		for i := 0; i < len(env); i += 2 {
			t.Setenv(env[i], env[i+1])
		}
		cfg, err := Loader{Environ: os.Environ()}.Load()
		if err != nil {
			t.Fatal(err)
		}
		for i := 0; i < len(env); i += 2 {
			t.Setenv(env[i], "")
		}
		return cfg
	}
	c := load()
	if c.Run.Agents != DemoAgents || c.Run.Workers != DemoWorkers || c.Simulator.QuoteInterval != DemoQuoteInterval ||
		c.Simulator.SessionHashIterations != DemoSessionHashIterations {
		t.Errorf("demo: agents %d workers %d quote interval %d hash %d", c.Run.Agents, c.Run.Workers,
			c.Simulator.QuoteInterval, c.Simulator.SessionHashIterations)
	}
	c = load("ATTESTLOAD_RUN_AGENTS", "5", "ATTESTLOAD_SIMULATOR_QUOTE_INTERVAL", "2")
	if c.Run.Agents != 5 || c.Run.Workers != 0 || c.Simulator.QuoteInterval != 2 {
		t.Errorf("user's size: agents %d workers %d quote interval %d", c.Run.Agents, c.Run.Workers, c.Simulator.QuoteInterval)
	}
	c = load("ATTESTLOAD_VERIFIER_URL", "https://127.0.0.1:8881", "ATTESTLOAD_DATABASE_URL", "postgres://u:p@127.0.0.1/db")
	d := DefaultConfig()
	if c.Run.Agents != 0 || c.Run.Workers != 0 || c.Simulator != d.Simulator {
		t.Errorf("real verifier: agents %d workers %d simulator %+v, want the old defaults", c.Run.Agents, c.Run.Workers, c.Simulator)
	}
}

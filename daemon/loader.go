package daemon

import (
	"errors"
	"fmt"
	"reflect"
	"regexp"
	"slices"
	"sort"
	"strings"

	"github.com/spf13/pflag"
	"github.com/spf13/viper"

	"github.com/attestload/attestload/internal/conf"
	"github.com/attestload/attestload/internal/suggest"
)

// Keys lists every config key, sorted.
func Keys() []string {
	ls := conf.Leaves(&Config{})
	keys := make([]string, len(ls))
	for i, l := range ls {
		keys[i] = l.Key
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
	v, err := l.sources()
	if err != nil {
		return nil, err
	}
	if err := l.checkKeys(v); err != nil {
		return nil, err
	}
	cfg := DefaultConfig()
	for _, lf := range conf.Leaves(&cfg) {
		if !v.IsSet(lf.Key) {
			continue
		}
		if err := conf.Set(lf.Key, lf.Field, v.Get(lf.Key)); err != nil {
			return nil, l.attribute(err)
		}
	}
	if l.Override != nil {
		l.Override(&cfg)
	}
	demoDefaults(&cfg, v.IsSet)
	if err := cfg.Validate(); err != nil {
		return nil, l.attribute(err)
	}
	return &cfg, nil
}

// sources layers the file, the environment and the flags in viper. An ATTESTLOAD_ variable that names no key is
// an error here, before anything is decoded.
func (l Loader) sources() (*viper.Viper, error) {
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
	envKnown := map[string]bool{}
	for _, k := range Keys() {
		known[k] = true
		envKnown[EnvName(k)] = true
		if err := v.BindEnv(k, EnvName(k)); err != nil {
			return nil, fmt.Errorf("bind %s: %w", EnvName(k), err)
		}
	}
	if err := l.checkEnviron(envKnown); err != nil {
		return nil, err
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
	return v, nil
}

// checkEnviron refuses an ATTESTLOAD_ variable that is no config key (and none of the scripts' reserved ones).
func (l Loader) checkEnviron(envKnown map[string]bool) error {
	for _, kv := range l.Environ {
		name, _, _ := strings.Cut(kv, "=")
		if !strings.HasPrefix(name, EnvPrefix) || envKnown[name] || reservedEnv(name) {
			continue
		}
		if name == EnvPrefix+"ARGS" {
			// What the systemd unit's EnvironmentFile held before the unit expanded RUN_ARGS instead.
			return fmt.Errorf("environment variable %s: unknown config key; extra arguments for the systemd "+
				"unit go in RUN_ARGS, the URLs in ATTESTLOAD_VERIFIER_URL and ATTESTLOAD_DATABASE_URL "+
				"(deploy/systemd/attestload.env)", name)
		}
		envNames := make([]string, 0, len(envKnown))
		for n := range envKnown {
			envNames = append(envNames, n)
		}
		return fmt.Errorf("environment variable %s: unknown config key%s (config.example.yaml lists the keys)",
			name, didYouMean(name, envNames))
	}
	return nil
}

// checkKeys refuses a key in the file that is no config key, and a scalar where a section's mapping belongs.
func (l Loader) checkKeys(v *viper.Viper) error {
	known := map[string]bool{}
	prefixes := map[string]bool{}
	for _, k := range Keys() {
		known[k] = true
		for p := k; strings.Contains(p, "."); {
			p = p[:strings.LastIndex(p, ".")]
			prefixes[p] = true
		}
	}
	// A mapping-valued key (tracing.headers) has free-form names under it; viper flattens them into keys.
	var mapKeys []string
	for _, lf := range conf.Leaves(&Config{}) {
		if lf.Field.Kind() == reflect.Map {
			mapKeys = append(mapKeys, lf.Key+".")
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
			return conf.Errorf(k, "must be a mapping of keys, got %v", conf.Describe(v.Get(k)))
		}
		return l.attribute(conf.Errorf(k, "unknown key%s", didYouMean(k, Keys())))
	}
	return nil
}

// demoDefaults applies the demo's defaults (`make run`: nothing configured, the built-in simulated verifier): a
// few dozen agents and a shorter quote interval, so that a 2-core laptop shows a lively pipeline instead of 2
// agents doing a cycle a second. Whatever the user set wins; against a real verifier the old defaults hold.
func demoDefaults(cfg *Config, isSet func(key string) bool) {
	if cfg.Verifier.URL != "" || cfg.Database.URL != "" {
		return
	}
	if !isSet("run.agents") && !isSet("run.workers") {
		cfg.Run.Agents, cfg.Run.Workers = DemoAgents, DemoWorkers
	}
	if !isSet("simulator.quote_interval") {
		cfg.Simulator.QuoteInterval = DemoQuoteInterval
	}
	if !isSet("simulator.session_hash_iterations") {
		cfg.Simulator.SessionHashIterations = DemoSessionHashIterations
	}
}

// The demo's defaults, in a run with no verifier.url and no database.url: agents and workers when neither
// run.agents nor run.workers is set; the simulated verifier's quote interval (seconds) and session PBKDF2 cost
// when simulator.quote_interval and simulator.session_hash_iterations are not set (the real verifier's 600000
// rounds would make the demo's first minute nothing but session set-up on 2 cores).
const (
	DemoAgents                = 32
	DemoWorkers               = 8
	DemoQuoteInterval         = 2
	DemoSessionHashIterations = 10000
)

// attribute completes a conf.Error with where its value came from (a flag or an environment variable; a file's
// keys are what the user typed already) and, for a value outside a list of choices, the nearest choice.
func (l Loader) attribute(err error) error {
	ce, ok := errors.AsType[*conf.Error](err)
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

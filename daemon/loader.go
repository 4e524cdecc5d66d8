package daemon

import (
	"errors"
	"fmt"
	"math"
	"reflect"
	"regexp"
	"slices"
	"sort"
	"strconv"
	"strings"
	"time"

	"github.com/spf13/pflag"
	"github.com/spf13/viper"

	"github.com/attestload/attestload/internal/suggest"
)

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
	v, err := l.sources()
	if err != nil {
		return nil, err
	}
	if err := l.checkKeys(v); err != nil {
		return nil, err
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
			return keyErr(k, "must be a mapping of keys, got %v", describe(v.Get(k)))
		}
		return l.attribute(keyErr(k, "unknown key%s", didYouMean(k, Keys())))
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
		b, err := toByteSize(raw)
		if err != nil {
			return keyErr(key, "%v", err)
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

// toByteSize reads a size: a non-negative integer of bytes or a number with a unit (ParseByteSize).
func toByteSize(raw any) (ByteSize, error) {
	switch x := raw.(type) {
	case int:
		if x < 0 {
			return 0, fmt.Errorf("must not be negative, got %d", x)
		}
		return ByteSize(x), nil
	case int64:
		if x < 0 {
			return 0, fmt.Errorf("must not be negative, got %d", x)
		}
		return ByteSize(x), nil
	case string:
		return ParseByteSize(x)
	}
	return 0, fmt.Errorf("must be a size such as \"512MiB\" or \"20GB\", got %s", describe(raw))
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

package daemon

import (
	"fmt"
	"reflect"
	"strings"
	"time"

	"github.com/spf13/pflag"

	"github.com/attestload/attestload/daemon/engine"
	"github.com/attestload/attestload/exporter/threshold"
	"github.com/attestload/attestload/internal/conf"
)

// The run command's flags come from the same struct tags as the config keys: a field with a `flag:"name"` tag
// (`flag:"name,w"` adds the shorthand -w) is settable as --name, with its `usage` tag as the help text. A flag
// outranks the environment, the file and the defaults. Its default is the zero value, so that only a flag the
// user set overrides (the usage text names the real default), except with the option `default` (`flag:"name,default"`),
// which shows the configuration's default in the help.

// flagSpec is one flag declared by a config field's tags.
type flagSpec struct {
	name, short, usage, key string
	showDefault             bool
	field                   reflect.Value // in a DefaultConfig
}

// flagUsageSuffix completes usage texts that depend on other packages' lists.
var flagUsageSuffix = map[string]string{"thresholds": threshold.MetricsHelp}

func flagSpecs() []flagSpec {
	cfg := DefaultConfig()
	var out []flagSpec
	for _, l := range conf.Leaves(&cfg) {
		tag, ok := l.Tag.Lookup("flag")
		if !ok {
			continue
		}
		parts := strings.Split(tag, ",")
		fs := flagSpec{name: parts[0], usage: l.Tag.Get("usage") + flagUsageSuffix[l.Key], key: l.Key, field: l.Field}
		for _, p := range parts[1:] {
			if p == "default" {
				fs.showDefault = true
			} else {
				fs.short = p
			}
		}
		out = append(out, fs)
	}
	return out
}

// FlagKeys maps each flag BindFlags defines to its config key.
func FlagKeys() map[string]string {
	m := map[string]string{}
	for _, f := range flagSpecs() {
		m[f.name] = f.key
	}
	return m
}

func (l Loader) flagKeys() map[string]string {
	if l.FlagKey != nil {
		return l.FlagKey
	}
	return FlagKeys()
}

// BindFlags defines on fs the flags the configuration's tags declare; Loader{Flags: fs} reads them back.
func BindFlags(fs *pflag.FlagSet) {
	for _, f := range flagSpecs() {
		switch def := f.field.Interface().(type) {
		case int:
			fs.IntP(f.name, f.short, pick(f.showDefault, def), f.usage)
		case bool:
			fs.BoolP(f.name, f.short, pick(f.showDefault, def), f.usage)
		case float64:
			fs.Float64P(f.name, f.short, pick(f.showDefault, def), f.usage)
		case time.Duration:
			fs.DurationP(f.name, f.short, pick(f.showDefault, def), f.usage)
		case string:
			fs.StringP(f.name, f.short, pick(f.showDefault, def), f.usage)
		case []string:
			fs.StringArrayP(f.name, f.short, pick(f.showDefault, def), f.usage)
		case engine.Stages:
			// The compact form DURATION:TARGET,... (Stages.UnmarshalText), as in the environment.
			fs.StringP(f.name, f.short, "", f.usage)
		default:
			panic(fmt.Sprintf("config key %s: no flag type for %T", f.key, def))
		}
	}
}

// pick is def when the flag shows the configuration's default, else the zero value.
func pick[T any](show bool, def T) T {
	if show {
		return def
	}
	var zero T
	return zero
}

package daemon

import (
	"slices"
	"testing"
	"time"

	"github.com/spf13/pflag"

	"github.com/attestload/attestload/attestation/enroll"
	"github.com/attestload/attestload/daemon/engine"
	"github.com/attestload/attestload/exporter/metrics"
	"github.com/attestload/attestload/internal/conf"
)

// sqliteExplanation is why a SQLite database.url is refused (the old tool's explanation, enroll's error).
var sqliteExplanation = enroll.ErrSQLiteUnsupported.Error()

// The run flags come from the config's tags: each one sets its key, and only a flag the user set overrides.
func TestFlagsFromTags(t *testing.T) {
	fs := pflag.NewFlagSet("run", pflag.ContinueOnError)
	BindFlags(fs)
	if err := fs.Parse([]string{"-w", "3", "--model", "fleet", "--interval", "90s", "--rate-stages", "1m:5,2m:7",
		"--threshold", "evidence.p99<2s", "--threshold", "verdict.pass_rate>0.5", "--insecure-skip-verify"}); err != nil {
		t.Fatal(err)
	}
	cfg, err := Loader{Flags: fs}.Load()
	if err != nil {
		t.Fatal(err)
	}
	if cfg.Run.Workers != 3 || cfg.Scheduler.Model != engine.ModelFleet || cfg.Scheduler.Fleet.Interval != 90*time.Second ||
		len(cfg.Scheduler.Rate.Stages) != 2 || len(cfg.Thresholds) != 2 || !cfg.Verifier.InsecureSkipVerify {
		t.Errorf("flags not applied: %+v", cfg)
	}
	if cfg.Metrics.Listen != metrics.DefaultListen || cfg.Run.Agents != 0 {
		t.Errorf("unset flags overrode the defaults: listen %q, agents %d", cfg.Metrics.Listen, cfg.Run.Agents)
	}
	if f := fs.Lookup("metrics-listen"); f == nil || f.DefValue != metrics.DefaultListen {
		t.Errorf("--metrics-listen should show its default, got %+v", f)
	}
	if f := fs.Lookup("workers"); f == nil || f.Shorthand != "w" || f.DefValue != "0" {
		t.Errorf("--workers: %+v", f)
	}
	known := map[string]bool{}
	for _, k := range Keys() {
		known[k] = true
	}
	for name, key := range FlagKeys() {
		if !known[key] {
			t.Errorf("flag --%s names unknown key %q", name, key)
		}
	}
}

// Every check tag is a rule conf.CheckRange knows, on a type it checks: a typo in a tag would otherwise pass silently
// or refuse every value.
func TestCheckTagsAreKnown(t *testing.T) {
	cfg := DefaultConfig()
	n := 0
	for _, l := range conf.Leaves(&cfg) {
		rule, ok := l.Tag.Lookup("check")
		if !ok {
			continue
		}
		n++
		if !slices.Contains([]string{">=0", ">=1", ">0", "0..1"}, rule) {
			t.Errorf("%s: unknown check %q", l.Key, rule)
		}
		if err := conf.CheckRange(l.Key, rule, l.Field.Interface()); err != nil {
			t.Errorf("%s: the default fails its own check: %v", l.Key, err)
		}
	}
	if n < 20 {
		t.Errorf("only %d keys carry a check tag", n)
	}
}

package daemon

import (
	"context"
	"github.com/attestload/attestload/daemon/engine"
	"strings"
	"testing"
	"testing/synctest"
	"time"
)

func TestSourceAddrs(t *testing.T) {
	for _, tc := range []struct {
		name    string
		url     string
		agents  int
		set     []string
		want    int    // addresses chosen
		warning string // substring of the warning; "" for none
	}{
		{"few agents need nothing", "https://127.0.0.1:8881", 40, nil, 0, ""},
		{"loopback verifier gets loopback sources", "https://127.0.0.1:8881", 100, nil, 3, ""},
		{"localhost too", "https://localhost:8881", 81, nil, 3, ""},
		{"other verifier: a warning with the fix", "https://verifier.example:8881", 100, nil, 0, "set verifier.local_addrs to 3 addresses"},
		{"IPv6 loopback: a warning", "https://[::1]:8881", 100, nil, 0, "verifier.local_addrs"},
		{"user's addresses kept", "https://127.0.0.1:8881", 100, []string{"127.0.0.5", "127.0.0.6", "127.0.0.7"}, 3, ""},
		{"user's addresses too few", "https://127.0.0.1:8881", 100, []string{"127.0.0.5"}, 1, "at least 3 addresses"},
	} {
		t.Run(tc.name, func(t *testing.T) {
			got, warning := sourceAddrs(tc.url, tc.agents, tc.set)
			if len(got) != tc.want {
				t.Errorf("%d addresses %v, want %d", len(got), got, tc.want)
			}
			if (tc.warning == "") != (warning == "") || !strings.Contains(warning, tc.warning) {
				t.Errorf("warning %q, want one containing %q", warning, tc.warning)
			}
		})
	}
	addrs := loopbackAddrs(600)
	seen := map[string]bool{}
	for _, a := range addrs {
		if seen[a] || strings.HasSuffix(a, ".0") || strings.HasSuffix(a, ".255") || !strings.HasPrefix(a, "127.") {
			t.Fatalf("bad or repeated address %s in %v", a, addrs[:5])
		}
		seen[a] = true
	}
	if addrs[0] != "127.0.0.1" || addrs[254] != "127.0.1.1" {
		t.Errorf("addresses %s, %s", addrs[0], addrs[254])
	}
}

func TestLoadShapeWarnings(t *testing.T) {
	cfg := DefaultConfig()
	cfg.Verifier.URL = "https://127.0.0.1:1"
	cfg.Run.Agents, cfg.Run.Workers = 100, 8
	// 100 agents at 6 cycles/s: each every 16.7 s, past 5 × 2 s.
	w := LoadShapeWarning(cfg, engine.Stats{Finished: 600}, 100*time.Second)
	for _, want := range []string{"every 16.7s", "10s (5 × quote_interval 2 s)", "at least 10.0 cycles/s", "at most 60"} {
		if !strings.Contains(w, want) {
			t.Errorf("warning %q lacks %q", w, want)
		}
	}
	if w := LoadShapeWarning(cfg, engine.Stats{Finished: 1500}, 100*time.Second); w != "" {
		t.Errorf("agents every 6.7 s got a warning: %q", w)
	}
	cfg.Scheduler.Model, cfg.Scheduler.Fleet.Interval = engine.ModelFleet, time.Minute
	if ws := loadShapeOf(cfg).startWarnings(cfg); len(ws) != 1 || !strings.Contains(ws[0], "every 1m0s") {
		t.Errorf("fleet start warnings %q", ws)
	}
	cfg.Scheduler.Fleet.Interval = 5 * time.Second
	if ws := loadShapeOf(cfg).startWarnings(cfg); len(ws) != 0 {
		t.Errorf("fleet interval within the window warned: %q", ws)
	}
}

// The early warning projects from the run's second timeout window, names the numbers, and stays quiet when the
// agents keep within the window or when most cycles of that window failed (an outage says nothing about the shape).
func TestEarlyLoadShapeWarning(t *testing.T) {
	cfg := DefaultConfig()
	cfg.Verifier.URL = "https://127.0.0.1:1"
	cfg.Run.Agents, cfg.Run.Workers = 100, 8
	s := loadShapeOf(cfg) // quote_interval 2 s: window 10 s
	for _, tc := range []struct {
		name          string
		want          string
		ok, failed    [2]uint64 // counts at one and at two windows
		wantNoWarning bool
	}{
		{name: "too slow", ok: [2]uint64{20, 80}, want: "every 16.7s on average at the rate of the run's second timeout window"},
		{name: "fast enough", ok: [2]uint64{50, 150}, wantNoWarning: true},
		{name: "first window slow, second fine", ok: [2]uint64{0, 100}, wantNoWarning: true},
		{name: "mostly failing", ok: [2]uint64{10, 20}, failed: [2]uint64{0, 30}, wantNoWarning: true},
		{name: "nothing finished", want: "no cycle finished in 10s with 100 agents and 8 workers"},
	} {
		t.Run(tc.name, func(t *testing.T) {
			synctest.Test(t, func(t *testing.T) {
				start := time.Now()
				calls := 0
				count := func() (uint64, uint64) {
					i := calls
					calls++
					if got, want := time.Since(start), time.Duration(i+1)*s.TimeoutWindow; got != want {
						t.Errorf("count %d taken at %s, want %s", i, got, want)
					}
					return tc.ok[i], tc.failed[i]
				}
				var warnings []string
				s.watchEarly(t.Context(), cfg, start, count, func(w string) { warnings = append(warnings, w) })
				if calls != 2 {
					t.Fatalf("%d counts taken, want 2", calls)
				}
				if tc.wantNoWarning {
					if len(warnings) != 0 {
						t.Fatalf("warned: %q", warnings)
					}
					return
				}
				if len(warnings) != 1 || !strings.Contains(warnings[0], tc.want) ||
					!strings.Contains(warnings[0], "projected early") {
					t.Fatalf("warnings %q, want one containing %q", warnings, tc.want)
				}
			})
		})
	}
	// A run that ends before the second window: no count after it, no warning.
	synctest.Test(t, func(t *testing.T) {
		ctx, cancel := context.WithTimeout(t.Context(), 15*time.Second)
		defer cancel()
		calls := 0
		s.watchEarly(ctx, cfg, time.Now(), func() (uint64, uint64) { calls++; return 0, 0 },
			func(w string) { t.Errorf("warned after the run ended: %q", w) })
		if calls != 1 {
			t.Errorf("%d counts, want 1", calls)
		}
	})
}

package daemon

import (
	"context"
	"fmt"
	"net"
	"net/netip"
	"net/url"
	"time"

	"github.com/attestload/attestload/attestation/simverifier"
	"github.com/attestload/attestload/daemon/engine"
)

// AgentsPerSourceAddr is how many agents the run puts on one source address: the stock verifier allows 50 session
// creations per minute per client address (session_create_rate_limit_per_ip) and every agent opens a session when
// it starts, so 40 leave room for re-authentications after failures.
const AgentsPerSourceAddr = 40

// sourceAddrs chooses the source addresses of the run's connections. With verifier.local_addrs set it keeps them
// (and warns when they are too few); otherwise, when the verifier is on IPv4 loopback and the agents exceed what
// one address serves, it takes as many addresses of 127.0.0.0/8 as needed (all of it is local on Linux); for any
// other verifier it warns with the fix. The warning is "" when there is nothing to say.
func sourceAddrs(verifierURL string, agents int, set []string) (addrs []string, warning string) {
	need := (agents + AgentsPerSourceAddr - 1) / AgentsPerSourceAddr
	if len(set) > 0 {
		if len(set) < need {
			return set, fmt.Sprintf("%d agents on %d source address(es) (verifier.local_addrs) exceed the verifier's "+
				"50 session creations per minute per address: sessions will be refused with 429 and the address "+
				"blocked for 60 s, doubling; give verifier.local_addrs at least %d addresses", agents, len(set), need)
		}
		return set, ""
	}
	if need <= 1 {
		return nil, ""
	}
	u, err := url.Parse(verifierURL)
	if err == nil {
		host := u.Hostname()
		if host == "localhost" {
			host = "127.0.0.1"
		}
		if ip, err := netip.ParseAddr(host); err == nil && ip.Is4() && ip.IsLoopback() {
			return loopbackAddrs(need), ""
		}
	}
	return nil, fmt.Sprintf("%d agents on one source address exceed the verifier's 50 session creations per minute "+
		"per address (session_create_rate_limit_per_ip): sessions will be refused with 429 and the address blocked "+
		"for 60 s, doubling up to an hour; set verifier.local_addrs to %d addresses of this host that reach the "+
		"verifier, or raise session_create_rate_limit_per_ip in the verifier's configuration", agents, need)
}

// loopbackAddrs is n distinct addresses of 127.0.0.0/8: 127.0.0.1, 127.0.0.2, ... (skipping .0 and .255 of each
// /24).
func loopbackAddrs(n int) []string {
	out := make([]string, n)
	for i := range n {
		block := i / 254
		out[i] = net.IPv4(127, byte(block>>8), byte(block&0xff), byte(i%254+1)).String()
	}
	return out
}

// LoadShape is what the run's shape means for the verifier's push-agent timeout monitor and its throughput.
type LoadShape struct {
	QuoteInterval int           // the verifier's quote_interval (seconds)
	TimeoutWindow time.Duration // 5 × quote_interval: an agent quieter than this is marked timed out
}

func loadShapeOf(cfg Config) LoadShape {
	qi := cfg.Verifier.QuoteInterval
	if cfg.Verifier.URL == "" {
		qi = cfg.Simulator.QuoteInterval
	}
	return LoadShape{QuoteInterval: qi, TimeoutWindow: simverifier.TimeoutWindow(qi)}
}

// startWarnings are the load-shape warnings known before the first cycle: a fleet interval past the verifier's
// timeout window.
func (s LoadShape) startWarnings(cfg Config) []string {
	if s.TimeoutWindow <= 0 {
		return nil
	}
	var out []string
	if cfg.Scheduler.Model == engine.ModelFleet && cfg.Scheduler.Fleet.Interval > s.TimeoutWindow {
		out = append(out, fmt.Sprintf("each agent attests every %s (scheduler.fleet.interval), past the verifier's "+
			"push-agent timeout window of %s (5 × quote_interval %d s): the verifier will mark every agent timed out "+
			"between its attestations, database writes a fleet attesting on schedule would not cause; use an interval "+
			"of at most %s, or set verifier.quote_interval to the verifier's",
			cfg.Scheduler.Fleet.Interval, s.TimeoutWindow, s.QuoteInterval, s.TimeoutWindow))
	}
	return out
}

// runWarning is the load-shape warning from what the run did: agents attesting, on average, less often than the
// timeout window (too few workers for the agents), with the numbers. "" when the shape was fine.
func (s LoadShape) runWarning(cfg Config, agents int, cycles uint64, elapsed time.Duration) string {
	if elapsed < s.TimeoutWindow || cycles == 0 {
		return "" // a run shorter than the window cannot tell
	}
	return s.intervalWarning(cfg, agents, cycles, elapsed, "attested every %s on average", "marked agents timed out")
}

// earlyWarning is the same warning projected early in the run from the cycles finished in its second timeout
// window (the first holds the agents' session set-up and first connections): cycles finished in span.
func (s LoadShape) earlyWarning(cfg Config, agents int, cycles uint64, span time.Duration) string {
	w := s.intervalWarning(cfg, agents, cycles, span, "will attest every %s on average at the rate of the run's "+
		"second timeout window", "will mark agents timed out")
	if w == "" {
		return ""
	}
	return w + " (projected early; the summary gives the whole run's figure)"
}

func (s LoadShape) intervalWarning(cfg Config, agents int, cycles uint64, span time.Duration, every, marks string) string {
	if s.TimeoutWindow <= 0 || agents <= 0 || span <= 0 {
		return ""
	}
	if cycles == 0 {
		return fmt.Sprintf("no cycle finished in %s with %d agents and %d workers, past the verifier's push-agent "+
			"timeout window of %s (5 × quote_interval %d s): the verifier %s between their cycles",
			span.Round(100*time.Millisecond), agents, cfg.Run.Workers, s.TimeoutWindow, s.QuoteInterval, marks)
	}
	interval := time.Duration(float64(span) * float64(agents) / float64(cycles))
	if interval <= s.TimeoutWindow {
		return ""
	}
	rate := float64(cycles) / span.Seconds()
	need := float64(agents) / s.TimeoutWindow.Seconds()
	return fmt.Sprintf("each agent "+every+" (%d agents, %.1f cycles/s with %d workers), past the "+
		"verifier's push-agent timeout window of %s (5 × quote_interval %d s): the verifier %s "+
		"between their cycles, database writes a fleet attesting on schedule would not cause; attesting on schedule "+
		"needs at least %.1f cycles/s: raise run.workers if the verifier has capacity left, or run fewer agents "+
		"(at most %d at this rate)", interval.Round(100*time.Millisecond), agents, rate, cfg.Run.Workers,
		s.TimeoutWindow, s.QuoteInterval, marks, need, int(rate*s.TimeoutWindow.Seconds()))
}

// watchEarly logs earlyWarning once: it counts the cycles finished (count() gives those that passed and those that
// failed or were aborted) at one and at two timeout windows after start, and returns at the second or when ctx
// ends. A window in which more cycles failed than passed says nothing about the shape (an outage, a broken
// set-up: their own warnings speak), so it warns only when most cycles passed.
func (s LoadShape) watchEarly(ctx context.Context, cfg Config, start time.Time, count func() (ok, failed uint64),
	warn func(string)) {
	if s.TimeoutWindow <= 0 || cfg.Run.Agents <= 0 {
		return
	}
	wait := func(at time.Time) bool {
		t := time.NewTimer(time.Until(at))
		defer t.Stop()
		select {
		case <-ctx.Done():
			return false
		case <-t.C:
			return true
		}
	}
	if !wait(start.Add(s.TimeoutWindow)) {
		return
	}
	ok0, failed0 := count()
	if !wait(start.Add(2 * s.TimeoutWindow)) {
		return
	}
	ok1, failed1 := count()
	ok, failed := ok1-ok0, failed1-failed0
	if failed > ok {
		return
	}
	if w := s.earlyWarning(cfg, cfg.Run.Agents, ok+failed, s.TimeoutWindow); w != "" {
		warn(w)
	}
}

// LoadShapeWarning is the summary's load-shape warning for a finished run (see LoadShape.runWarning), "" when
// agents attested within the verifier's timeout window.
func LoadShapeWarning(cfg Config, st engine.Stats, loadTime time.Duration) string {
	return loadShapeOf(cfg).runWarning(cfg, cfg.Run.Agents, st.Finished, loadTime)
}

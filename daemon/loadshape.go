package daemon

import (
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
	if s.TimeoutWindow <= 0 || agents <= 0 || cycles == 0 || elapsed < s.TimeoutWindow {
		return "" // a run shorter than the window cannot tell
	}
	every := time.Duration(float64(elapsed) * float64(agents) / float64(cycles))
	if every <= s.TimeoutWindow {
		return ""
	}
	rate := float64(cycles) / elapsed.Seconds()
	need := float64(agents) / s.TimeoutWindow.Seconds()
	return fmt.Sprintf("each agent attested every %s on average (%d agents, %.1f cycles/s with %d workers), past the "+
		"verifier's push-agent timeout window of %s (5 × quote_interval %d s): the verifier marked agents timed out "+
		"between their cycles, database writes a fleet attesting on schedule would not cause; attesting on schedule "+
		"needs at least %.1f cycles/s: raise run.workers if the verifier has capacity left, or run fewer agents "+
		"(at most %d at this rate)", every.Round(100*time.Millisecond), agents, rate, cfg.Run.Workers,
		s.TimeoutWindow, s.QuoteInterval, need, int(rate*s.TimeoutWindow.Seconds()))
}

// LoadShapeWarning is the summary's load-shape warning for a finished run (see LoadShape.runWarning), "" when
// agents attested within the verifier's timeout window.
func LoadShapeWarning(cfg Config, st engine.Stats, loadTime time.Duration) string {
	return loadShapeOf(cfg).runWarning(cfg, cfg.Run.Agents, st.Finished, loadTime)
}

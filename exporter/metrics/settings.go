package metrics

import (
	"net"
	"time"

	"github.com/attestload/attestload/internal/conf"
)

// DefaultListen is where /metrics, /healthz and /readyz are served unless metrics.listen says otherwise:
// loopback only, on the port OpenTelemetry's Prometheus exporters use (the deployment files use it too).
const DefaultListen = "127.0.0.1:9464"

// Settings are the metrics section of the configuration (the keys under "metrics."; internal/conf describes the
// tags): the Prometheus endpoint.
type Settings struct {
	// Listen is where /metrics is served (default DefaultListen); empty: no endpoint.
	Listen string `key:"listen" flag:"metrics-listen,default" usage:"serve Prometheus /metrics, /healthz and /readyz on this address; '' serves nothing"`
	// FinalScrapeWait is how long the run waits, after its last record, for one more scrape, so that Prometheus
	// holds the final counts (its sums then equal the results file); 0 does not wait.
	FinalScrapeWait time.Duration `key:"final_scrape_wait" check:">=0"`
	// Pprof also serves Go's net/http/pprof profiles under /debug/pprof/ on the metrics listener (off by default:
	// profiles show the process's internals to whoever reaches the listener).
	Pprof bool `key:"pprof" flag:"pprof" usage:"also serve Go's profiles (net/http/pprof) under /debug/pprof/ on the metrics listener"`
}

// DefaultSettings are the metrics section's defaults.
func DefaultSettings() Settings { return Settings{Listen: DefaultListen} }

// Validate checks what the range tags cannot say; errors name the key.
func (c Settings) Validate() error {
	if c.Pprof && c.Listen == "" {
		return conf.Errorf("metrics.pprof", "profiles are served on the metrics listener, but metrics.listen is empty: "+
			"give it an address (e.g. %s)", DefaultListen)
	}
	if a := c.Listen; a != "" {
		if _, port, err := net.SplitHostPort(a); err != nil || port == "" {
			return conf.Errorf("metrics.listen", "must be host:port (e.g. 127.0.0.1:9400 or :9400), got %q", a)
		}
	}
	return nil
}

package daemon

import (
	"fmt"
	"net"
	"net/url"
	"os"
	"sort"
	"strings"
	"time"

	"github.com/attestload/attestload/exporter/threshold"
	"github.com/attestload/attestload/internal/conf"
)

// ResultsConfig is the results file.
type ResultsConfig struct {
	Dir           string        `key:"dir" flag:"results-dir" usage:"directory of results files (default results)"`
	FlushInterval time.Duration `key:"flush_interval"`
	OnError       string        `key:"on_error"` // stop or continue
	Buffer        int           `key:"buffer"`   // fan-out input bound, in records
	// Compression is zstd (the default: one frame per flush; attestload report reads it) or none (plain JSONL,
	// which the old tool's report_results needs).
	Compression string `key:"compression"`
	// RotateSize and RotateInterval start a new part <stamp>.partNNNN.jsonl[.zst] when the current one reaches
	// that size on disk or age; 0 turns each off, and with both off the run writes one file.
	RotateSize     conf.ByteSize `key:"rotate_size"`
	RotateInterval time.Duration `key:"rotate_interval"`
	// MinFreeDisk stops the run cleanly when the results file system has less free space; 0 turns the guard off.
	MinFreeDisk conf.ByteSize `key:"min_free_disk"`
}

func defaultResults() ResultsConfig {
	return ResultsConfig{Dir: "results", FlushInterval: time.Second, OnError: "stop", Buffer: 8192,
		Compression: "zstd", MinFreeDisk: 1 << 30}
}

func (c ResultsConfig) validate() error {
	if c.Dir == "" {
		return conf.Errorf("results.dir", "must not be empty")
	}
	if f := c.FlushInterval; f <= 0 || f > time.Second {
		return conf.Errorf("results.flush_interval", "must be > 0 and at most 1s, got %s", f)
	}
	if c.OnError != "stop" && c.OnError != "continue" {
		return conf.Errorf("results.on_error", "must be stop or continue, got %q", c.OnError)
	}
	if c.Buffer < 1 || c.Buffer > 1<<20 {
		return conf.Errorf("results.buffer", "must be within [1, 1048576], got %d", c.Buffer)
	}
	if c.Compression != "none" && c.Compression != "zstd" {
		return conf.Errorf("results.compression", "must be none or zstd, got %q", c.Compression)
	}
	if r := c.RotateSize; r != 0 && r < 1<<20 {
		return conf.Errorf("results.rotate_size", "must be 0 (off) or at least 1MiB, got %d bytes", r)
	}
	if r := c.RotateInterval; r != 0 && r < time.Second {
		return conf.Errorf("results.rotate_interval", "must be 0 (off) or at least 1s, got %s", r)
	}
	if c.MinFreeDisk < 0 {
		return conf.Errorf("results.min_free_disk", "must not be negative")
	}
	return nil
}

// validateThresholds checks the thresholds' expressions (exporter/threshold's syntax).
func validateThresholds(exprs []string) error {
	for i, expr := range exprs {
		if _, err := threshold.Parse(expr); err != nil {
			return conf.Errorf(fmt.Sprintf("thresholds[%d]", i), "%v", err)
		}
	}
	return nil
}

// DefaultMetricsListen is where /metrics, /healthz and /readyz are served unless metrics.listen says otherwise:
// loopback only, on the port OpenTelemetry's Prometheus exporters use (the deployment files use it too).
const DefaultMetricsListen = "127.0.0.1:9464"

// MetricsConfig is the Prometheus endpoint.
type MetricsConfig struct {
	// Listen is where /metrics is served (default DefaultMetricsListen); empty: no endpoint.
	Listen string `key:"listen" flag:"metrics-listen,default" usage:"serve Prometheus /metrics, /healthz and /readyz on this address; '' serves nothing"`
	// FinalScrapeWait is how long the run waits, after its last record, for one more scrape, so that Prometheus
	// holds the final counts (its sums then equal the results file); 0 does not wait.
	FinalScrapeWait time.Duration `key:"final_scrape_wait" check:">=0"`
	// Pprof also serves Go's net/http/pprof profiles under /debug/pprof/ on the metrics listener (off by default:
	// profiles show the process's internals to whoever reaches the listener).
	Pprof bool `key:"pprof" flag:"pprof" usage:"also serve Go's profiles (net/http/pprof) under /debug/pprof/ on the metrics listener"`
}

func defaultMetrics() MetricsConfig { return MetricsConfig{Listen: DefaultMetricsListen} }

func (c MetricsConfig) validate() error {
	if c.Pprof && c.Listen == "" {
		return conf.Errorf("metrics.pprof", "profiles are served on the metrics listener, but metrics.listen is empty: "+
			"give it an address (e.g. %s)", DefaultMetricsListen)
	}
	if a := c.Listen; a != "" {
		if _, port, err := net.SplitHostPort(a); err != nil || port == "" {
			return conf.Errorf("metrics.listen", "must be host:port (e.g. 127.0.0.1:9400 or :9400), got %q", a)
		}
	}
	return nil
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
	SampleRatio      float64           `key:"sample_ratio" check:"0..1"`  // share of ordinary cycles exported
	SlowThreshold    time.Duration     `key:"slow_threshold" check:">=0"` // cycles at least this long are always exported; 0: rule off
	MaxTraces        int               `key:"max_traces" check:">=1"`
	MaxSpansPerTrace int               `key:"max_spans_per_trace" check:">=1"`
}

func defaultTracing() TracingConfig {
	return TracingConfig{Protocol: "grpc", SampleRatio: 0.01, SlowThreshold: 5 * time.Second, MaxTraces: 10000,
		MaxSpansPerTrace: 64}
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
		return conf.Errorf("tracing.protocol", "must be grpc or http, got %q", t.Protocol)
	}
	if e := t.Endpoint; e != "" {
		if strings.Contains(e, "://") {
			u, err := url.Parse(e)
			if err != nil || (u.Scheme != "http" && u.Scheme != "https") || u.Host == "" {
				return conf.Errorf("tracing.endpoint", "must be host:port or an http:// or https:// URL, got %q", e)
			}
		} else if host, port, err := net.SplitHostPort(e); err != nil || host == "" || port == "" {
			return conf.Errorf("tracing.endpoint", "must be host:port or an http:// or https:// URL, got %q", e)
		}
	}
	if t.Insecure && t.CAFile != "" {
		return conf.Errorf("tracing.ca_file", "cannot be combined with tracing.insecure")
	}
	names := make([]string, 0, len(t.Headers))
	for k := range t.Headers {
		names = append(names, k)
	}
	sort.Strings(names)
	for _, k := range names {
		if !validHeaderName(k) {
			return conf.Errorf("tracing.headers", "header name %q is not a valid HTTP header name", k)
		}
		if strings.ContainsAny(t.Headers[k], "\r\n") {
			// The value may be an API key: name the header, never the value.
			return conf.Errorf("tracing.headers."+k, "value must not contain a line break")
		}
	}
	if t.Enabled && t.Endpoint == "" && !OTLPEndpointFromEnv() {
		return conf.Errorf("tracing.endpoint", "must be set when tracing.enabled is true (or set OTEL_EXPORTER_OTLP_ENDPOINT)")
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
	Timeout       time.Duration `key:"timeout" check:">0"`
	PollInterval  time.Duration `key:"poll_interval" check:">0"`
	MaxPending    int           `key:"max_pending" check:">=1"`
	AdminURL      string        `key:"admin_url"`       // empty: verifier.url
	AdminCertFile string        `key:"admin_cert_file"` // empty: verifier.cert_file
	AdminKeyFile  string        `key:"admin_key_file"`  // empty: verifier.key_file
	AdminCAFile   string        `key:"admin_ca_file"`   // empty: verifier.ca_file
}

func defaultVerdict() VerdictConfig {
	return VerdictConfig{Source: VerdictAuto, Timeout: 30 * time.Second, PollInterval: 500 * time.Millisecond,
		MaxPending: 100000}
}

// validate checks the verdict keys; the source's needs are checked against the verifier's and database's keys.
func (v VerdictConfig) validate(verifier VerifierConfig, db DatabaseConfig) error {
	if v.AdminURL != "" {
		u, err := url.Parse(v.AdminURL)
		if err != nil || (u.Scheme != "http" && u.Scheme != "https") || u.Host == "" {
			return conf.Errorf("verdict.admin_url", "must be an http:// or https:// URL with a host, got %q", v.AdminURL)
		}
	}
	if (v.AdminCertFile == "") != (v.AdminKeyFile == "") {
		return conf.Errorf("verdict.admin_cert_file", "admin_cert_file and admin_key_file must be set together")
	}
	switch v.Source {
	case VerdictAuto, VerdictNone:
	case VerdictSimulator:
		if verifier.URL != "" {
			return conf.Errorf("verdict.source", "simulator needs the in-process simulated verifier, but verifier.url is set")
		}
	case VerdictDatabase:
		if db.URL == "" {
			return conf.Errorf("verdict.source", "database needs database.url")
		}
	case VerdictAdminAPI:
		u := v.AdminURL
		if u == "" {
			u = verifier.URL
		}
		if u == "" {
			return conf.Errorf("verdict.admin_url", "must be set (or verifier.url) when verdict.source is admin_api")
		}
		if strings.HasPrefix(strings.ToLower(u), "https://") && v.AdminCertFile == "" && verifier.CertFile == "" {
			return conf.Errorf("verdict.admin_cert_file", "must be set (or verifier.cert_file): the verifier's admin API "+
				"requires its client certificate and key")
		}
	default:
		return conf.Errorf("verdict.source", "must be auto, simulator, database, admin_api or none, got %q", v.Source)
	}
	return nil
}

// PGActivityConfig is the sampler of the verifier's PostgreSQL activity.
type PGActivityConfig struct {
	Enabled  bool          `key:"enabled"`
	Interval time.Duration `key:"interval" check:">0"`
}

func defaultPGActivity() PGActivityConfig { return PGActivityConfig{Interval: 5 * time.Second} }

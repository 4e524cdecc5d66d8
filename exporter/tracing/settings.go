package tracing

import (
	"net"
	"os"
	"sort"
	"strings"
	"time"

	"golang.org/x/net/http/httpguts"

	"github.com/attestload/attestload/internal/conf"
)

// Settings are the tracing section of the configuration (the keys under "tracing."; internal/conf describes the
// tags). With Endpoint empty the exporter reads the standard OTEL_EXPORTER_OTLP_ENDPOINT (or
// OTEL_EXPORTER_OTLP_TRACES_ENDPOINT); OTEL_EXPORTER_OTLP_INSECURE, OTEL_EXPORTER_OTLP_HEADERS and
// OTEL_EXPORTER_OTLP_CERTIFICATE apply when the matching key is not set.
type Settings struct {
	Enabled  bool   `key:"enabled"`
	Protocol string `key:"protocol"` // grpc (default) or http
	// Endpoint is host:port, or a URL (http://, https://) which also sets the path for http.
	Endpoint string            `key:"endpoint"`
	Headers  map[string]string `key:"headers"`  // sent with every export, e.g. an API key; never logged
	Insecure bool              `key:"insecure"` // plaintext; otherwise TLS with system roots or CAFile
	CAFile   string            `key:"ca_file"`  // PEM bundle to verify the collector with
	// SampleRatio is the share of ordinary cycles exported; cycles of at least SlowThreshold are always exported
	// (0: that rule off).
	SampleRatio   float64       `key:"sample_ratio" check:"0..1"`
	SlowThreshold time.Duration `key:"slow_threshold" check:">=0"`
	// MaxTraces bounds the unfinished traces buffered at once, MaxSpansPerTrace the spans buffered per trace; 0
	// means DefaultMaxTraces, DefaultMaxSpansPerTrace.
	MaxTraces        int `key:"max_traces" check:">=1"`
	MaxSpansPerTrace int `key:"max_spans_per_trace" check:">=1"`
}

// DefaultSettings are the tracing section's defaults: off, gRPC, 1 % of ordinary cycles and every one of 5 s or
// more.
func DefaultSettings() Settings {
	return Settings{Protocol: ProtocolGRPC, SampleRatio: 0.01, SlowThreshold: 5 * time.Second,
		MaxTraces: DefaultMaxTraces, MaxSpansPerTrace: DefaultMaxSpansPerTrace}
}

// otelEndpointEnv are the standard variables the OTLP exporters read when no endpoint is configured.
var otelEndpointEnv = []string{"OTEL_EXPORTER_OTLP_TRACES_ENDPOINT", "OTEL_EXPORTER_OTLP_ENDPOINT"}

// OTLPEndpointEnv lists the standard OpenTelemetry variables that name an OTLP endpoint.
func OTLPEndpointEnv() []string { return otelEndpointEnv }

// otlpEndpointFromEnv reports whether the standard OpenTelemetry environment names an OTLP endpoint.
func otlpEndpointFromEnv() bool {
	for _, name := range otelEndpointEnv {
		if os.Getenv(name) != "" {
			return true
		}
	}
	return false
}

// Validate checks what the range tags cannot say; errors name the key.
func (t Settings) Validate() error {
	if t.Protocol != ProtocolGRPC && t.Protocol != ProtocolHTTP {
		return conf.Errorf("tracing.protocol", "must be grpc or http, got %q", t.Protocol)
	}
	if e := t.Endpoint; e != "" {
		if strings.Contains(e, "://") {
			if !conf.HTTPURL(e) {
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
		if !httpguts.ValidHeaderFieldName(k) {
			return conf.Errorf("tracing.headers", "header name %q is not a valid HTTP header name", k)
		}
		if strings.ContainsAny(t.Headers[k], "\r\n") {
			// The value may be an API key: name the header, never the value.
			return conf.Errorf("tracing.headers."+k, "value must not contain a line break")
		}
	}
	if t.Enabled && t.Endpoint == "" && !otlpEndpointFromEnv() {
		return conf.Errorf("tracing.endpoint",
			"must be set when tracing.enabled is true (or set OTEL_EXPORTER_OTLP_ENDPOINT)")
	}
	return nil
}

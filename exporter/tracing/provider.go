package tracing

import (
	"context"
	"crypto/tls"
	"crypto/x509"
	"errors"
	"fmt"
	"net/http"
	"net/url"
	"os"
	"strings"
	"sync"
	"time"

	"go.opentelemetry.io/contrib/instrumentation/net/http/otelhttp"
	"go.opentelemetry.io/otel/attribute"
	"go.opentelemetry.io/otel/exporters/otlp/otlptrace/otlptracegrpc"
	"go.opentelemetry.io/otel/exporters/otlp/otlptrace/otlptracehttp"
	metricnoop "go.opentelemetry.io/otel/metric/noop"
	"go.opentelemetry.io/otel/propagation"
	"go.opentelemetry.io/otel/sdk/resource"
	sdktrace "go.opentelemetry.io/otel/sdk/trace"
	"go.opentelemetry.io/otel/trace"
	"google.golang.org/grpc/credentials"
)

// Protocols accepted in Options.Protocol.
const (
	ProtocolGRPC = "grpc"
	ProtocolHTTP = "http"
)

// Defaults for the bounds of the tail sampler.
const (
	DefaultMaxTraces        = 10000
	DefaultMaxSpansPerTrace = 64
)

// Options configure tracing: the tracing section of the configuration and what the run adds.
type Options struct {
	Settings
	ServiceName string // default "attestload"
	InstanceID  string
	RunID       string

	// Exporter replaces the OTLP exporter (tests, embedding). Its spans are exported synchronously.
	Exporter sdktrace.SpanExporter

	idGenerator sdktrace.IDGenerator // tests: reproducible trace ids
}

// Provider owns the tracer provider, the tail sampler and the exporter of one run.
type Provider struct {
	enabled   bool
	tp        *sdktrace.TracerProvider
	tracer    trace.Tracer
	tail      *tailSampler
	ratio     float64
	slow      time.Duration
	maxParent int

	mu               sync.Mutex
	parents          map[trace.TraceID]trace.SpanID // kept traces awaiting their verdict span
	lostVerdictSpans uint64
}

// New validates opts and builds a Provider. With Enabled false it returns a Provider whose hooks do nothing and
// whose WrapTransport returns the transport unchanged; no exporter is created.
func New(ctx context.Context, opts Options) (*Provider, error) {
	if !opts.Enabled {
		return &Provider{}, nil
	}
	if opts.SampleRatio < 0 || opts.SampleRatio > 1 || opts.SampleRatio != opts.SampleRatio {
		return nil, fmt.Errorf("tracing.sample_ratio: %v is not between 0 and 1", opts.SampleRatio)
	}
	if opts.SlowThreshold < 0 {
		return nil, fmt.Errorf("tracing.slow_threshold: %v is negative", opts.SlowThreshold)
	}
	if opts.MaxTraces < 0 || opts.MaxSpansPerTrace < 0 {
		return nil, errors.New("tracing: max traces and max spans per trace must not be negative")
	}
	if opts.MaxTraces == 0 {
		opts.MaxTraces = DefaultMaxTraces
	}
	if opts.MaxSpansPerTrace == 0 {
		opts.MaxSpansPerTrace = DefaultMaxSpansPerTrace
	}
	if opts.ServiceName == "" {
		opts.ServiceName = "attestload"
	}

	var next sdktrace.SpanProcessor
	if opts.Exporter != nil {
		next = sdktrace.NewSimpleSpanProcessor(opts.Exporter)
	} else {
		exp, err := newOTLPExporter(ctx, opts)
		if err != nil {
			return nil, err
		}
		next = sdktrace.NewBatchSpanProcessor(exp, sdktrace.WithMaxQueueSize(8192))
	}
	tail := newTailSampler(next, opts.MaxTraces, opts.MaxSpansPerTrace)
	res := resource.NewSchemaless(
		attribute.String("service.name", opts.ServiceName),
		attribute.String("service.instance.id", opts.InstanceID),
		attribute.String("attestload.run_id", opts.RunID),
	)
	tpOpts := []sdktrace.TracerProviderOption{
		// Every span is recorded; the tail sampler decides what leaves the process.
		sdktrace.WithSampler(sdktrace.AlwaysSample()),
		sdktrace.WithSpanProcessor(tail),
		sdktrace.WithResource(res),
	}
	if opts.idGenerator != nil {
		tpOpts = append(tpOpts, sdktrace.WithIDGenerator(opts.idGenerator))
	}
	tp := sdktrace.NewTracerProvider(tpOpts...)
	return &Provider{
		enabled:   true,
		tp:        tp,
		tracer:    tp.Tracer("github.com/attestload/attestload/exporter/tracing"),
		tail:      tail,
		ratio:     opts.SampleRatio,
		slow:      opts.SlowThreshold,
		maxParent: opts.MaxTraces,
		parents:   make(map[trace.TraceID]trace.SpanID),
	}, nil
}

func newOTLPExporter(ctx context.Context, opts Options) (sdktrace.SpanExporter, error) {
	// With no endpoint configured, the OTLP exporters read the standard OTEL_EXPORTER_OTLP_(TRACES_)ENDPOINT
	// themselves (and OTEL_EXPORTER_OTLP_INSECURE, _HEADERS, _CERTIFICATE for what is not configured here), as
	// the compose deployment relies on.
	fromEnv := opts.Endpoint == "" && otlpEndpointFromEnv()
	if opts.Endpoint == "" && !fromEnv {
		return nil, errors.New("tracing.endpoint: required when tracing is enabled (or set OTEL_EXPORTER_OTLP_ENDPOINT)")
	}
	if opts.Insecure && opts.CAFile != "" {
		return nil, errors.New("tracing.ca_file: cannot be combined with tracing.insecure")
	}
	for k := range opts.Headers {
		if strings.TrimSpace(k) == "" {
			return nil, errors.New("tracing.headers: empty header name")
		}
	}
	tlsCfg, err := otlpTLSConfig(opts)
	if err != nil {
		return nil, err
	}
	isURL := strings.Contains(opts.Endpoint, "://")
	switch opts.Protocol {
	case "", ProtocolGRPC:
		return newGRPCExporter(ctx, opts, fromEnv, isURL, tlsCfg)
	case ProtocolHTTP:
		return newHTTPExporter(ctx, opts, fromEnv, isURL, tlsCfg)
	default:
		return nil, fmt.Errorf("tracing.protocol: %q is neither %q nor %q", opts.Protocol, ProtocolGRPC, ProtocolHTTP)
	}
}

// otlpTLSConfig is the TLS configuration trusting tracing.ca_file; nil without one (the system roots).
func otlpTLSConfig(opts Options) (*tls.Config, error) {
	if opts.CAFile == "" {
		return nil, nil
	}
	pem, err := os.ReadFile(opts.CAFile)
	if err != nil {
		return nil, fmt.Errorf("tracing.ca_file: %w", err)
	}
	pool := x509.NewCertPool()
	if !pool.AppendCertsFromPEM(pem) {
		return nil, fmt.Errorf("tracing.ca_file: %s holds no PEM certificate", opts.CAFile)
	}
	return &tls.Config{RootCAs: pool, MinVersion: tls.VersionTLS12}, nil
}

// newGRPCExporter is the OTLP/gRPC exporter; fromEnv leaves the endpoint to the OTEL_EXPORTER_OTLP_* variables.
func newGRPCExporter(ctx context.Context, opts Options, fromEnv, isURL bool, tlsCfg *tls.Config) (sdktrace.SpanExporter, error) {
	endpointURL := ""
	if isURL {
		endpointURL = opts.Endpoint
	}
	o := otlpSetters[otlptracegrpc.Option]{endpoint: otlptracegrpc.WithEndpoint,
		endpointURL: otlptracegrpc.WithEndpointURL, headers: otlptracegrpc.WithHeaders,
		insecure: otlptracegrpc.WithInsecure, tls: func(c *tls.Config) otlptracegrpc.Option {
			return otlptracegrpc.WithTLSCredentials(credentials.NewTLS(c))
		}}.options(opts, fromEnv, endpointURL, tlsCfg)
	exp, err := otlptracegrpc.New(ctx, o...)
	if err != nil {
		return nil, fmt.Errorf("tracing: otlp grpc exporter: %w", err)
	}
	return exp, nil
}

// newHTTPExporter is the OTLP/HTTP exporter; a bare collector URL gets the standard /v1/traces path.
func newHTTPExporter(ctx context.Context, opts Options, fromEnv, isURL bool, tlsCfg *tls.Config) (sdktrace.SpanExporter, error) {
	endpointURL := ""
	if isURL && !fromEnv {
		u, err := url.Parse(opts.Endpoint)
		if err != nil || u.Host == "" {
			return nil, fmt.Errorf("tracing.endpoint: %q is not a valid URL", opts.Endpoint)
		}
		// A bare collector URL means the standard OTLP/HTTP path, as OTEL_EXPORTER_OTLP_ENDPOINT does.
		if u.Path == "" || u.Path == "/" {
			u.Path = "/v1/traces"
		}
		endpointURL = u.String()
	}
	o := otlpSetters[otlptracehttp.Option]{endpoint: otlptracehttp.WithEndpoint,
		endpointURL: otlptracehttp.WithEndpointURL, headers: otlptracehttp.WithHeaders,
		insecure: otlptracehttp.WithInsecure, tls: otlptracehttp.WithTLSClientConfig}.options(opts, fromEnv,
		endpointURL, tlsCfg)
	exp, err := otlptracehttp.New(ctx, o...)
	if err != nil {
		return nil, fmt.Errorf("tracing: otlp http exporter: %w", err)
	}
	return exp, nil
}

// otlpSetters are one OTLP exporter's option constructors, so that both exporters are told the same things the
// same way.
type otlpSetters[O any] struct {
	endpoint, endpointURL func(string) O
	headers               func(map[string]string) O
	insecure              func() O
	tls                   func(*tls.Config) O
}

// options are the exporter's options: the endpoint (endpointURL when the endpoint is a URL; none when fromEnv),
// the headers, and plaintext or the TLS configuration.
func (s otlpSetters[O]) options(opts Options, fromEnv bool, endpointURL string, tlsCfg *tls.Config) []O {
	var o []O
	switch {
	case fromEnv:
	case endpointURL != "":
		o = append(o, s.endpointURL(endpointURL))
	default:
		o = append(o, s.endpoint(opts.Endpoint))
	}
	if len(opts.Headers) > 0 {
		o = append(o, s.headers(opts.Headers))
	}
	switch {
	case opts.Insecure:
		o = append(o, s.insecure())
	case tlsCfg != nil:
		o = append(o, s.tls(tlsCfg))
	}
	return o
}

// Enabled reports whether traces are produced.
func (p *Provider) Enabled() bool { return p.enabled }

// Hooks returns the attestation client hooks that build each cycle's trace.
func (p *Provider) Hooks() *Hooks { return &Hooks{p: p} }

// WrapTransport wraps the client's transport so that every request gets an HTTP client span, sends a W3C
// traceparent and records its X-Request-ID. Disabled, it returns rt unchanged.
func (p *Provider) WrapTransport(rt http.RoundTripper) http.RoundTripper {
	if !p.enabled {
		return rt
	}
	if rt == nil {
		rt = http.DefaultTransport
	}
	return otelhttp.NewTransport(requestIDTransport{next: rt},
		otelhttp.WithTracerProvider(p.tp),
		otelhttp.WithMeterProvider(metricnoop.NewMeterProvider()),
		otelhttp.WithPropagators(propagation.TraceContext{}),
	)
}

// Stats returns the tail sampler's counts (zero when disabled).
func (p *Provider) Stats() Stats {
	if !p.enabled {
		return Stats{}
	}
	s := p.tail.stats()
	p.mu.Lock()
	s.VerdictSpansLost = p.lostVerdictSpans
	p.mu.Unlock()
	return s
}

// Shutdown exports what is buffered and stops the exporter. Call it after the last record was observed.
func (p *Provider) Shutdown(ctx context.Context) error {
	if !p.enabled {
		return nil
	}
	if err := p.tp.Shutdown(ctx); err != nil {
		return fmt.Errorf("tracing: shutdown: %w", err)
	}
	return nil
}

// requestIDTransport runs inside otelhttp's transport, where the request's context holds the HTTP client span.
type requestIDTransport struct{ next http.RoundTripper }

func (t requestIDTransport) RoundTrip(req *http.Request) (*http.Response, error) {
	span := trace.SpanFromContext(req.Context())
	if id := req.Header.Get("X-Request-ID"); id != "" && span.IsRecording() {
		span.SetAttributes(
			attribute.StringSlice("http.request.header.x-request-id", []string{id}),
			attribute.String("attestload.request_id", id),
		)
	}
	resp, err := t.next.RoundTrip(req)
	if resp != nil && span.IsRecording() {
		// The verifier strips non-word characters from the id it logs; its echo is the form found in its log.
		if echo := resp.Header.Get("X-Request-Id"); echo != "" {
			span.SetAttributes(attribute.StringSlice("http.response.header.x-request-id", []string{echo}))
		}
	}
	return resp, err
}

package client

import (
	"bytes"
	"context"
	"crypto/rand"
	"crypto/tls"
	"crypto/x509"
	"encoding/binary"
	"encoding/hex"
	"errors"
	"fmt"
	"io"
	"log/slog"
	"net"
	"net/http"
	"net/url"
	"strings"
	"sync"
	"sync/atomic"
	"syscall"
	"time"

	"github.com/attestload/attestload/attestation/record"
)

// ExtraDataEncoding is how the quote challenge goes into the quote's extraData. The verifier accepts both; the PoP
// always uses the raw nonce.
type ExtraDataEncoding string

// Quote extraData encodings.
const (
	ExtraDataRaw     ExtraDataEncoding = "raw"     // the 16 challenge bytes
	ExtraDataB64Text ExtraDataEncoding = "b64text" // the ASCII base64 text of the challenge, as the Rust agent sends
)

// Defaults applied by New for zero Config fields.
const (
	DefaultAPIPrefix        = "v3.0"
	DefaultRequestTimeout   = 30 * time.Second
	DefaultMaxRetries       = 3
	DefaultMaxRetryAfter    = 60 * time.Second
	DefaultMaxBodyBytes     = 1 << 20
	DefaultTokenRenewMargin = 10 * time.Second
)

// Config configures a Client. Zero values take the defaults above.
type Config struct {
	// BaseURL is the verifier's root, e.g. https://127.0.0.1:8881 (http or https, a host, no query).
	BaseURL string
	// APIPrefix is "v3" or "v3.0" (the verifier serves both); default v3.0.
	APIPrefix string
	// HTTPClient, if set, is used as is (its Timeout should be zero: RequestTimeout bounds each request).
	HTTPClient *http.Client
	// Transport, if HTTPClient is nil, is wrapped in a client that does not follow redirects. Default: a
	// NewTransport with verification on. A caller may wrap it (e.g. otelhttp) for tracing.
	Transport http.RoundTripper
	// RequestTimeout bounds each HTTP request, body included.
	RequestTimeout time.Duration
	// MaxRetries bounds the retries per phase (429, 503, 409, 5xx, re-negotiation). 0 means DefaultMaxRetries, a
	// negative value means no retries.
	MaxRetries int
	// MaxRetryAfter caps an honoured Retry-After: a longer one fails the attempt (rate_limited or unavailable) and
	// sets Agent.NotBefore instead of sleeping that long inside a cycle.
	MaxRetryAfter time.Duration
	// MaxBodyBytes bounds what is read from any response; a larger body is bad_response.
	MaxBodyBytes int64
	// ExtraDataEncoding of the quote; default raw.
	ExtraDataEncoding ExtraDataEncoding
	// TokenRenewMargin: a token expiring within this margin is renewed before the cycle rather than risking a 401.
	TokenRenewMargin time.Duration
	// FixedTokenExpiry says the verifier does not slide a token's expiry on passing attestations (its
	// extend_token_on_attestation = false). By default the client assumes it does, as the real verifier's default
	// is: each accepted evidence moves the agent's idea of its expiry on by the token's lifetime, so an agent that
	// keeps passing keeps one session for the whole run, like a real agent, rather than paying for a new session
	// (a PBKDF2 hash on the verifier) every lifetime. A 401 (after a failed attestation, say) still
	// re-authenticates within the cycle.
	FixedTokenExpiry bool
	// Hooks observe cycles, phases and attempts; nil means none.
	Hooks Hooks
	// Logger receives one debug line per failed attempt (never a token); nil discards.
	Logger *slog.Logger
	// Now is the clock; nil means time.Now.
	Now func() time.Time
	// Sleep waits between attempts; nil means a timer that returns ctx.Err() when ctx ends first.
	Sleep func(ctx context.Context, d time.Duration) error
}

// Client runs attestation cycles against one verifier. It is safe for concurrent use by many agents.
type Client struct {
	base         string
	prefix       string
	http         *http.Client
	timeout      time.Duration
	maxRetries   int
	maxRetryWait time.Duration
	maxBody      int64
	extraData    ExtraDataEncoding
	renewMargin  time.Duration
	slideTokens  bool
	hooks        Hooks
	log          *slog.Logger
	// warned holds the transport error classes already logged at warning level (the first of each class is, with
	// its text: the record keeps only the class, and "tls" alone does not say which certificate check failed).
	warned sync.Map
	// blockWarnedUntil is the end (Unix ns) of the last session block logged: a block is logged once, not once per
	// refused agent.
	blockWarnedUntil atomic.Int64
	now              func() time.Time
	sleep            func(ctx context.Context, d time.Duration) error
}

// New validates cfg and builds a Client.
func New(cfg Config) (*Client, error) {
	base, err := validateBaseURL(cfg.BaseURL)
	if err != nil {
		return nil, err
	}
	c := &Client{
		base: base, prefix: cfg.APIPrefix, timeout: cfg.RequestTimeout, maxRetries: cfg.MaxRetries,
		maxRetryWait: cfg.MaxRetryAfter, maxBody: cfg.MaxBodyBytes, extraData: cfg.ExtraDataEncoding,
		renewMargin: cfg.TokenRenewMargin, slideTokens: !cfg.FixedTokenExpiry, hooks: cfg.Hooks, log: cfg.Logger,
		now: cfg.Now, sleep: cfg.Sleep,
	}
	if err := c.checkProtocol(cfg); err != nil {
		return nil, err
	}
	if err := c.checkLimits(cfg); err != nil {
		return nil, err
	}
	if c.http, err = newHTTPClient(cfg); err != nil {
		return nil, err
	}
	if c.hooks == nil {
		c.hooks = nopHooks{}
	}
	if c.log == nil {
		c.log = slog.New(slog.DiscardHandler)
	}
	c.log = c.log.With("component", "client")
	if c.now == nil {
		c.now = time.Now
	}
	if c.sleep == nil {
		c.sleep = sleepCtx
	}
	return c, nil
}

// checkProtocol validates the API prefix and the quote's extraData encoding, and defaults them.
func (c *Client) checkProtocol(cfg Config) error {
	switch c.prefix {
	case "":
		c.prefix = DefaultAPIPrefix
	case "v3", "v3.0":
	default:
		return fmt.Errorf("client config: api prefix %q: must be v3 or v3.0", cfg.APIPrefix)
	}
	switch c.extraData {
	case "":
		c.extraData = ExtraDataRaw
	case ExtraDataRaw, ExtraDataB64Text:
	default:
		return fmt.Errorf("client config: extra data encoding %q: must be raw or b64text", cfg.ExtraDataEncoding)
	}
	return nil
}

// checkLimits validates the durations, retry budget and body bound, and defaults the zero ones.
func (c *Client) checkLimits(cfg Config) error {
	for _, d := range []struct {
		name string
		v    *time.Duration
		def  time.Duration
	}{
		{"request timeout", &c.timeout, DefaultRequestTimeout},
		{"max retry after", &c.maxRetryWait, DefaultMaxRetryAfter},
		{"token renew margin", &c.renewMargin, DefaultTokenRenewMargin},
	} {
		if *d.v < 0 {
			return fmt.Errorf("client config: %s %v: must not be negative", d.name, *d.v)
		}
		if *d.v == 0 {
			*d.v = d.def
		}
	}
	switch {
	case c.maxRetries == 0:
		c.maxRetries = DefaultMaxRetries
	case c.maxRetries < 0:
		c.maxRetries = 0
	}
	switch {
	case c.maxBody < 0:
		return fmt.Errorf("client config: max body bytes %d: must not be negative", cfg.MaxBodyBytes)
	case c.maxBody == 0:
		c.maxBody = DefaultMaxBodyBytes
	}
	return nil
}

// newHTTPClient returns cfg.HTTPClient, or a client over cfg.Transport (default: a verifying NewTransport) that
// does not follow redirects.
func newHTTPClient(cfg Config) (*http.Client, error) {
	if cfg.HTTPClient != nil {
		return cfg.HTTPClient, nil
	}
	rt := cfg.Transport
	if rt == nil {
		t, err := NewTransport(TLSOptions{})
		if err != nil {
			return nil, err
		}
		rt = t
	}
	return &http.Client{
		Transport: rt,
		// A redirect from the verifier is never part of the protocol; seeing it as a status is more useful.
		CheckRedirect: func(*http.Request, []*http.Request) error { return http.ErrUseLastResponse },
	}, nil
}

func validateBaseURL(s string) (string, error) {
	if s == "" {
		return "", errors.New("client config: base url is empty")
	}
	u, err := url.Parse(s)
	if err != nil {
		return "", fmt.Errorf("client config: base url %q: %w", s, err)
	}
	if u.Scheme != "http" && u.Scheme != "https" {
		return "", fmt.Errorf("client config: base url %q: scheme must be http or https", s)
	}
	if u.Host == "" || u.Hostname() == "" {
		return "", fmt.Errorf("client config: base url %q: no host", s)
	}
	if u.RawQuery != "" || u.ForceQuery || u.Fragment != "" {
		return "", fmt.Errorf("client config: base url %q: must have no query or fragment", s)
	}
	if u.User != nil {
		return "", fmt.Errorf("client config: base url: must not carry user information")
	}
	return strings.TrimSuffix(u.Scheme+"://"+u.Host+u.EscapedPath(), "/"), nil
}

func sleepCtx(ctx context.Context, d time.Duration) error {
	t := time.NewTimer(d)
	defer t.Stop()
	select {
	case <-t.C:
		return nil
	case <-ctx.Done():
		return ctx.Err()
	}
}

// response is what one attempt got back. body is valid until release is called.
type response struct {
	status int
	header http.Header
	body   []byte
	buf    *bytes.Buffer
}

var bufPool = sync.Pool{New: func() any { return new(bytes.Buffer) }}

func (r *response) release() {
	if r != nil && r.buf != nil {
		r.buf.Reset()
		bufPool.Put(r.buf)
		r.buf, r.body = nil, nil
	}
}

// do makes one HTTP request and fills an Attempt with everything but the protocol judgement. A nil response means
// the request failed before a complete answer (att.Error is set); so does a body over the limit.
func (c *Client) do(ctx context.Context, action record.Action, method, rawURL string, body []byte, token string) (record.Attempt, *response) {
	att := record.Attempt{Action: action, Method: method, URL: rawURL, RequestID: newRequestID(), BytesSent: int64(len(body))}
	rctx, cancel := context.WithTimeout(ctx, c.timeout)
	defer cancel()
	req, err := http.NewRequestWithContext(rctx, method, rawURL, bytes.NewReader(body))
	start := c.now()
	att.StartTime = unixSeconds(start)
	if err != nil {
		// Only a malformed URL gets here (the agent id is path-escaped, the base validated).
		finish(&att, start, c.now(), record.ClassLocal)
		return att, nil
	}
	req.Header.Set("Content-Type", "application/vnd.api+json")
	req.Header.Set("Accept", "application/json")
	req.Header.Set("X-Request-ID", att.RequestID)
	if token != "" {
		req.Header.Set("Authorization", "Bearer "+token)
	}
	resp, err := c.http.Do(req)
	if err != nil {
		class := classifyErr(ctx, rctx, err)
		finish(&att, start, c.now(), class)
		c.warnFirst(class, method, err)
		return att, nil
	}
	buf := bufPool.Get().(*bytes.Buffer)
	n, rerr := buf.ReadFrom(io.LimitReader(resp.Body, c.maxBody+1))
	resp.Body.Close()
	end := c.now()
	att.BytesRecv = n
	status := resp.StatusCode
	att.Status = &status
	r := &response{status: status, header: resp.Header, body: buf.Bytes(), buf: buf}
	switch {
	case rerr != nil:
		r.release()
		finish(&att, start, end, classifyErr(ctx, rctx, rerr))
		return att, nil
	case n > c.maxBody:
		r.release()
		finish(&att, start, end, record.ClassBadResponse)
		return att, nil
	}
	finish(&att, start, end, "")
	return att, r
}

// warnFirst logs the first transport error of each class (but canceled, which is the run stopping) at warning
// level with the error's text, e.g. which certificate check failed; later ones of the class go to the per-attempt
// debug line only.
func (c *Client) warnFirst(class record.ErrorClass, method string, err error) {
	if class == record.ClassCanceled {
		return
	}
	if _, seen := c.warned.LoadOrStore(class, true); seen {
		return
	}
	c.log.Warn("request to the verifier failed (first error of its class; later ones are counted, not logged)",
		"class", class, "method", method, "err", err)
}

// finish sets the end time and duration, and the error class when class is not empty.
func finish(att *record.Attempt, start, end time.Time, class record.ErrorClass) {
	att.EndTime = unixSeconds(end)
	d := end.Sub(start).Seconds()
	if d < 0 {
		d = 0
	}
	att.Duration = &d
	if class != "" {
		setFailed(att, class)
	}
}

func setFailed(att *record.Attempt, class record.ErrorClass) {
	f := false
	att.OK = &f
	att.Error = &class
}

func setOK(att *record.Attempt) {
	t := true
	att.OK = &t
	att.Error = nil
}

// unixSeconds is t as Unix-epoch seconds rounded to the microsecond: a float64 near today's epoch resolves about
// 0.24 µs, so the seventh decimal digit it would print is rounding noise, and every results line carries a dozen
// such times (durations keep their nanoseconds).
func unixSeconds(t time.Time) float64 {
	return float64(t.UnixMicro()) / 1e6
}

// requestIDPrefix and requestIDSeq make request ids: 16 random hex digits drawn once per process, then a 16-digit
// counter. Ids stay unique across processes (64 random bits) and within one (the counter), and keep the 32 hex
// digits of a random 128-bit id; but the results file compresses them to a few bytes each, where four random ids
// cost 64 bytes a cycle, half of a compressed ima-profile line.
var (
	requestIDPrefix = func() [8]byte {
		var b [8]byte
		_, _ = rand.Read(b[:]) // crypto/rand.Read never fails on supported platforms
		return b
	}()
	requestIDSeq atomic.Uint64
)

func newRequestID() string {
	var b [16]byte
	copy(b[:8], requestIDPrefix[:])
	binary.BigEndian.PutUint64(b[8:], requestIDSeq.Add(1))
	return hex.EncodeToString(b[:])
}

// classifyErr maps a transport error to a record error class. parent is the cycle's context: if it is done, the run
// is shutting down and the attempt was canceled, whatever the error looks like.
func classifyErr(parent, reqCtx context.Context, err error) record.ErrorClass {
	if parent.Err() != nil {
		return record.ClassCanceled
	}
	if errors.Is(err, context.DeadlineExceeded) || reqCtx.Err() != nil {
		return record.ClassTimeout
	}
	if errors.Is(err, context.Canceled) {
		return record.ClassCanceled
	}
	var dnsErr *net.DNSError
	if errors.As(err, &dnsErr) {
		return record.ClassDNS
	}
	if isTLSErr(err) {
		return record.ClassTLS
	}
	switch {
	case errors.Is(err, syscall.ECONNREFUSED):
		return record.ClassConnRefused
	case errors.Is(err, syscall.ECONNRESET), errors.Is(err, syscall.EPIPE), errors.Is(err, io.EOF),
		errors.Is(err, io.ErrUnexpectedEOF), errors.Is(err, net.ErrClosed):
		return record.ClassConnReset
	}
	var ne net.Error
	if errors.As(err, &ne) && ne.Timeout() {
		return record.ClassTimeout
	}
	return record.ClassNetwork
}

func isTLSErr(err error) bool {
	var (
		verr  *tls.CertificateVerificationError
		alert tls.AlertError
		rh    tls.RecordHeaderError
		ua    x509.UnknownAuthorityError
		he    x509.HostnameError
		ci    x509.CertificateInvalidError
	)
	return errors.As(err, &verr) || errors.As(err, &alert) || errors.As(err, &rh) || errors.As(err, &ua) ||
		errors.As(err, &he) || errors.As(err, &ci) || strings.Contains(err.Error(), "tls: ") ||
		strings.Contains(err.Error(), "HTTP response to HTTPS client")
}

// warnSessionBlock logs a session block of the verifier at WARN, once per block.
func (c *Client) warnSessionBlock(d time.Duration, detail string) {
	now := c.now()
	for {
		until := c.blockWarnedUntil.Load()
		if now.UnixNano() < until {
			return
		}
		if c.blockWarnedUntil.CompareAndSwap(until, now.Add(d).UnixNano()) {
			break
		}
	}
	c.log.Warn(fmt.Sprintf("the verifier blocks session creation for %s (its limits: 50 per minute per client "+
		"address, 15 per agent; each further breach doubles the block, up to an hour, until the verifier restarts); "+
		"the refused agents wait it out, the others keep attesting; spread the agents over more source addresses "+
		"(verifier.local_addrs)", d), "detail", detail)
}

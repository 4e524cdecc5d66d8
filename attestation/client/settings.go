package client

import (
	"fmt"
	"net"
	"net/http"
	"net/url"
	"regexp"
	"strings"
	"time"

	"github.com/attestload/attestload/internal/conf"
)

// Settings are the verifier section of the configuration (the keys under "verifier."; internal/conf describes the
// tags): where the load goes and how the client talks to it.
type Settings struct {
	URL                string        `key:"url"` // empty: start the simulated verifier in-process
	APIPrefix          string        `key:"api_prefix"`
	CAFile             string        `key:"ca_file" flag:"verifier-ca" usage:"CA certificate file of the verifier (default: the system roots)"`
	CertFile           string        `key:"cert_file"`
	KeyFile            string        `key:"key_file"`
	InsecureSkipVerify bool          `key:"insecure_skip_verify" flag:"insecure-skip-verify" usage:"do not verify the verifier's certificate (testing only)"`
	RequestTimeout     time.Duration `key:"request_timeout" check:">0"`
	ConnectTimeout     time.Duration `key:"connect_timeout" check:">0"`
	MaxRetries         int           `key:"max_retries" check:">=0"`
	MaxRetryAfter      time.Duration `key:"max_retry_after" check:">=0"`
	MaxConnsPerHost    int           `key:"max_conns_per_host" check:">=0"`
	LocalAddrs         []string      `key:"local_addrs"`
	// Connections is the connection model: per-agent (default; every agent its own keep-alive connection, as a
	// fleet) or shared (one pool for all agents, max_conns_per_host applies).
	Connections string `key:"connections"`
	// MaxOpenConns caps the per-agent model's open connections; past it the least recently used idle agents'
	// connections are closed (0: the descriptor limit less a reserve, halved with the built-in simulator).
	MaxOpenConns int `key:"max_open_conns" check:">=0"`
	// IdleTimeout is how long an agent keeps its unused connection open (per-agent model; default 90 s).
	IdleTimeout time.Duration `key:"idle_timeout" check:">=0"`
	// QuoteInterval is the verifier's quote_interval in seconds (Keylime's template default 2), used to warn when
	// the load shape runs past its push-agent timeout window (5 × quote_interval); the simulator uses its own.
	QuoteInterval int `key:"quote_interval" check:">=0"`
	// ExtendTokenOnAttestation mirrors the verifier's option of that name (default true): whether a passing
	// attestation slides the agent's token expiry. With it, agents keep their session while they pass, as real
	// agents do; without it, they renew just before expiry.
	ExtendTokenOnAttestation bool `key:"extend_token_on_attestation"`
}

// DefaultSettings are the verifier section's defaults.
func DefaultSettings() Settings {
	return Settings{APIPrefix: "v3.0", RequestTimeout: 30 * time.Second, ConnectTimeout: 10 * time.Second,
		MaxRetries: 3, MaxRetryAfter: 60 * time.Second, ExtendTokenOnAttestation: true, QuoteInterval: 2,
		Connections: ConnsPerAgent, IdleTimeout: DefaultAgentIdleTimeout}
}

// Validate checks the verifier keys; errors name the key. The syntax of verifier.url is checked by the caller,
// which shows it with its password redacted (enroll.RedactURL; the client does not import the database side).
func (c Settings) Validate() error {
	if strings.Contains(c.APIPrefix, "/") || c.APIPrefix == "" {
		return conf.Errorf("verifier.api_prefix", "must be an API version such as \"v3.0\", got %q", c.APIPrefix)
	}
	if v := URLAPIVersion(c.URL); v != "" && v != c.APIPrefix {
		return conf.Errorf("verifier.url", "ends in the API version /%s, but verifier.api_prefix is %q: give the "+
			"verifier's root URL (the version is added to every request path) and set verifier.api_prefix to %q "+
			"if that version is meant", v, c.APIPrefix, v)
	}
	switch c.Connections {
	case ConnsPerAgent, ConnsShared:
	default:
		return conf.Errorf("verifier.connections", "must be per-agent or shared, got %q", c.Connections)
	}
	if (c.CertFile == "") != (c.KeyFile == "") {
		return conf.Errorf("verifier.cert_file", "cert_file and key_file must be set together")
	}
	for i, a := range c.LocalAddrs {
		if net.ParseIP(a) == nil {
			return conf.Errorf(fmt.Sprintf("verifier.local_addrs[%d]", i), "must be an IP address, got %q", a)
		}
	}
	return nil
}

// Resolved is s with a URL that ends in the API version (…/v3.0, pasted from a request path) cut back to the
// verifier's root: the client adds the version itself.
func (s Settings) Resolved() Settings {
	if v := URLAPIVersion(s.URL); v != "" && v == s.APIPrefix {
		u := strings.TrimSuffix(s.URL, "/")
		s.URL = strings.TrimSuffix(u[:len(u)-len(v)], "/")
	}
	return s
}

// apiVersionSegment is a push API version as it appears in request paths (v3, v3.0).
var apiVersionSegment = regexp.MustCompile(`^v[0-9]+(\.[0-9]+)?$`)

// URLAPIVersion is the API version a verifier URL ends in ("https://v:8881/v3.0/" → "v3.0"), or "".
func URLAPIVersion(raw string) string {
	u, err := url.Parse(raw)
	if err != nil || u.Path == "" {
		return ""
	}
	p := strings.TrimSuffix(u.Path, "/")
	last := p[strings.LastIndex(p, "/")+1:]
	if u.RawQuery != "" || u.Fragment != "" || !apiVersionSegment.MatchString(last) {
		return ""
	}
	return last
}

// TLSOptions are the transport's options from the verifier section (the source addresses the run chooses may
// replace LocalAddrs, and the simulated verifier its CA).
func (s Settings) TLSOptions() TLSOptions {
	return TLSOptions{CAFile: s.CAFile, CertFile: s.CertFile, KeyFile: s.KeyFile,
		InsecureSkipVerify: s.InsecureSkipVerify, ConnectTimeout: s.ConnectTimeout,
		MaxConnsPerHost: s.MaxConnsPerHost, LocalAddrs: s.LocalAddrs}
}

// Config is the client's configuration from the verifier section, for the verifier at baseURL (verifier.url, or
// the simulated verifier's) over rt. FixedTokenExpiry is the negation of extend_token_on_attestation, so that a
// zero Config assumes the verifier's default.
func (s Settings) Config(baseURL string, rt http.RoundTripper) Config {
	return Config{BaseURL: baseURL, APIPrefix: s.APIPrefix, Transport: rt, RequestTimeout: s.RequestTimeout,
		MaxRetries: s.MaxRetries, MaxRetryAfter: s.MaxRetryAfter, FixedTokenExpiry: !s.ExtendTokenOnAttestation}
}

package daemon

import (
	"fmt"
	"net"
	"net/url"
	"regexp"
	"strings"
	"time"

	"github.com/attestload/attestload/attestation/client"
	"github.com/attestload/attestload/attestation/enroll"
	"github.com/attestload/attestload/internal/conf"
)

// VerifierConfig is where the load goes and how the client talks to it.
type VerifierConfig struct {
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

func defaultVerifier() VerifierConfig {
	return VerifierConfig{APIPrefix: "v3.0", RequestTimeout: 30 * time.Second, ConnectTimeout: 10 * time.Second,
		MaxRetries: 3, MaxRetryAfter: 60 * time.Second, ExtendTokenOnAttestation: true, QuoteInterval: 2,
		Connections: client.ConnsPerAgent, IdleTimeout: client.DefaultAgentIdleTimeout}
}

func (c VerifierConfig) validate() error {
	if c.URL != "" {
		u, err := url.Parse(c.URL)
		if err != nil || (u.Scheme != "http" && u.Scheme != "https") || u.Host == "" {
			return conf.Errorf("verifier.url", "must be an http:// or https:// URL with a host, got %q", enroll.RedactURL(c.URL))
		}
	}
	if strings.Contains(c.APIPrefix, "/") || c.APIPrefix == "" {
		return conf.Errorf("verifier.api_prefix", "must be an API version such as \"v3.0\", got %q", c.APIPrefix)
	}
	if v := urlAPIVersion(c.URL); v != "" && v != c.APIPrefix {
		return conf.Errorf("verifier.url", "ends in the API version /%s, but verifier.api_prefix is %q: give the "+
			"verifier's root URL (the version is added to every request path) and set verifier.api_prefix to %q "+
			"if that version is meant", v, c.APIPrefix, v)
	}
	switch c.Connections {
	case client.ConnsPerAgent, client.ConnsShared:
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

// apiVersionSegment is a push API version as it appears in request paths (v3, v3.0).
var apiVersionSegment = regexp.MustCompile(`^v[0-9]+(\.[0-9]+)?$`)

// urlAPIVersion is the API version a verifier URL ends in ("https://v:8881/v3.0/" → "v3.0"), or "".
func urlAPIVersion(raw string) string {
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

// DatabaseConfig is the verifier's PostgreSQL, where mock agents are enrolled.
type DatabaseConfig struct {
	URL              string `key:"url"`
	Prefix           string `key:"prefix" flag:"prefix" usage:"agent id prefix in the database (default attestload-)"`
	CleanupLeftovers bool   `key:"cleanup_leftovers" flag:"cleanup-leftovers" usage:"remove rows of earlier crashed runs with the same prefix before starting"`
}

func defaultDatabase() DatabaseConfig { return DatabaseConfig{Prefix: "attestload-"} }

// sqliteExplanation is why a SQLite database URL is refused (the old tool's explanation), shared with enroll.
var sqliteExplanation = enroll.ErrSQLiteUnsupported.Error()

func (c DatabaseConfig) validate() error {
	if d := c.URL; d != "" {
		low := strings.ToLower(d)
		switch {
		case enroll.IsSQLite(d):
			return conf.Errorf("database.url", "%s", sqliteExplanation)
		case strings.HasPrefix(low, "postgres://"), strings.HasPrefix(low, "postgresql://"),
			strings.HasPrefix(low, "postgresql+psycopg2://"), strings.Contains(low, "host="), strings.Contains(low, "dbname="):
		default:
			return conf.Errorf("database.url", "must be a PostgreSQL URL (postgresql://user:password@host:5432/verifierdb)")
		}
		if err := enroll.CheckURL(d); err != nil {
			return conf.Errorf("database.url", "%v", err)
		}
	}
	if !validPrefix(c.Prefix) {
		return conf.Errorf("database.prefix", "must be 1 to 32 letters, digits, '.', '_' or '-', got %q", c.Prefix)
	}
	return nil
}

func validPrefix(p string) bool {
	if p == "" || len(p) > 32 {
		return false
	}
	for _, r := range p {
		ok := r >= 'a' && r <= 'z' || r >= 'A' && r <= 'Z' || r >= '0' && r <= '9' || r == '.' || r == '_' || r == '-'
		if !ok {
			return false
		}
	}
	return true
}

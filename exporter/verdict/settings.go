package verdict

import (
	"time"

	"github.com/attestload/attestload/internal/conf"
)

// Verdict sources (verdict.source).
const (
	SourceAuto      = "auto"      // simulator when it runs in-process, else database when configured, else none
	SourceSimulator = "simulator" // the in-process simulated verifier
	SourceDatabase  = "database"  // the verifier's attestations table
	SourceAdminAPI  = "admin_api" // the verifier's GET .../attestations/latest with its client certificate
	SourceNone      = "none"      // every verdict unknown
)

// Settings are the verdict section of the configuration (the keys under "verdict."; internal/conf describes the
// tags): where each cycle's verdict is learned and how long a record waits for it.
type Settings struct {
	Source        string        `key:"source"`
	Timeout       time.Duration `key:"timeout" check:">0"`       // how long a record waits for its verdict; 0 means 30 s
	PollInterval  time.Duration `key:"poll_interval" check:">0"` // how often the source is asked; 0 means 500 ms
	MaxPending    int           `key:"max_pending" check:">=1"`  // records held at once; 0 means 100,000
	AdminURL      string        `key:"admin_url"`                // empty: verifier.url
	AdminCertFile string        `key:"admin_cert_file"`          // empty: verifier.cert_file
	AdminKeyFile  string        `key:"admin_key_file"`           // empty: verifier.key_file
	AdminCAFile   string        `key:"admin_ca_file"`            // empty: verifier.ca_file
}

// DefaultSettings are the verdict section's defaults.
func DefaultSettings() Settings {
	return Settings{Source: SourceAuto, Timeout: 30 * time.Second, PollInterval: 500 * time.Millisecond,
		MaxPending: 100000}
}

// Validate checks the verdict keys by themselves; what a source needs of the verifier's and the database's keys
// is checked where the sections meet (daemon's Config.Validate), right after.
func (v Settings) Validate() error {
	if v.AdminURL != "" && !conf.HTTPURL(v.AdminURL) {
		return conf.Errorf("verdict.admin_url", "must be an http:// or https:// URL with a host, got %q", v.AdminURL)
	}
	if (v.AdminCertFile == "") != (v.AdminKeyFile == "") {
		return conf.Errorf("verdict.admin_cert_file", "admin_cert_file and admin_key_file must be set together")
	}
	switch v.Source {
	case SourceAuto, SourceNone, SourceSimulator, SourceDatabase, SourceAdminAPI:
		return nil
	}
	return conf.Errorf("verdict.source", "must be auto, simulator, database, admin_api or none, got %q", v.Source)
}

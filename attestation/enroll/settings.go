package enroll

import (
	"regexp"
	"strings"

	"github.com/attestload/attestload/internal/conf"
)

// Settings are the database section of the configuration (the keys under "database."; internal/conf describes
// the tags): the verifier's PostgreSQL, where mock agents are enrolled.
type Settings struct {
	URL              string `key:"url"`
	Prefix           string `key:"prefix" flag:"prefix" usage:"agent id prefix in the database (default attestload-)"`
	CleanupLeftovers bool   `key:"cleanup_leftovers" flag:"cleanup-leftovers" usage:"remove rows of earlier crashed runs with the same prefix before starting"`
}

// DefaultSettings are the database section's defaults.
func DefaultSettings() Settings { return Settings{Prefix: "attestload-"} }

// validPrefix is 1 to 32 letters, digits, '.', '_' or '-'.
var validPrefix = regexp.MustCompile(`^[A-Za-z0-9._-]{1,32}$`)

// Validate checks the database keys; errors name the key and never show a password.
func (c Settings) Validate() error {
	if d := c.URL; d != "" {
		low := strings.ToLower(d)
		switch {
		case IsSQLite(d):
			return conf.Errorf("database.url", "%s", ErrSQLiteUnsupported.Error())
		case strings.HasPrefix(low, "postgres://"), strings.HasPrefix(low, "postgresql://"),
			strings.HasPrefix(low, "postgresql+psycopg2://"), strings.Contains(low, "host="), strings.Contains(low, "dbname="):
		default:
			return conf.Errorf("database.url", "must be a PostgreSQL URL (postgresql://user:password@host:5432/verifierdb)")
		}
		if err := CheckURL(d); err != nil {
			return conf.Errorf("database.url", "%v", err)
		}
	}
	if !validPrefix.MatchString(c.Prefix) {
		return conf.Errorf("database.prefix", "must be 1 to 32 letters, digits, '.', '_' or '-', got %q", c.Prefix)
	}
	return nil
}

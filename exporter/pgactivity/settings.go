package pgactivity

import "time"

// Settings are the pgactivity section of the configuration (the keys under "pgactivity."; internal/conf describes
// the tags): the sampler of the verifier's PostgreSQL activity. That it needs database.url is checked where the
// sections meet (daemon's Config.Validate).
type Settings struct {
	Enabled  bool          `key:"enabled"`
	Interval time.Duration `key:"interval" check:">0"`
}

// DefaultSettings are the pgactivity section's defaults: off, every 5 s when on.
func DefaultSettings() Settings { return Settings{Interval: 5 * time.Second} }

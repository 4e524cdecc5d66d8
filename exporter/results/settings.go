package results

import (
	"time"

	"github.com/attestload/attestload/internal/conf"
)

// Settings are the results section of the configuration (the keys under "results."; internal/conf describes the
// tags): the results file.
type Settings struct {
	Dir string `key:"dir" flag:"results-dir" usage:"directory of results files (default results)"`
	// FlushInterval bounds how long a line may sit in memory; 0 means one second.
	FlushInterval time.Duration `key:"flush_interval"`
	OnError       string        `key:"on_error"` // stop or continue: what the run does when the file fails
	Buffer        int           `key:"buffer"`   // fan-out input bound, in records
	// Compression is zstd (the default: one frame per flush; attestload report reads it) or none (plain JSONL,
	// which the old tool's report_results needs; also "").
	Compression string `key:"compression"`
	// RotateSize and RotateInterval start a new part <stamp>.partNNNN.jsonl[.zst] when the current one reaches
	// that size on disk or age (and holds a record); 0 turns each off, and with both off the run writes one file.
	RotateSize     conf.ByteSize `key:"rotate_size"`
	RotateInterval time.Duration `key:"rotate_interval"`
	// MinFreeDisk is the free space (bytes, for unprivileged users) the results file system must keep. Create
	// refuses to start below it; during the run, OnDiskLow is called once when free space drops below it. 0: no
	// guard.
	MinFreeDisk conf.ByteSize `key:"min_free_disk"`
}

// DefaultSettings are the results section's defaults.
func DefaultSettings() Settings {
	return Settings{Dir: "results", FlushInterval: time.Second, OnError: "stop", Buffer: 8192,
		Compression: CompressionZstd, MinFreeDisk: 1 << 30}
}

// Validate checks the results keys; errors name the key.
func (c Settings) Validate() error {
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
	if c.Compression != CompressionNone && c.Compression != CompressionZstd {
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

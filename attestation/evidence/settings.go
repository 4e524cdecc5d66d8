package evidence

import (
	"github.com/attestload/attestload/attestation/measuredboot"
	"github.com/attestload/attestload/internal/conf"
)

// Settings are the evidence section of the configuration (the keys under "evidence."; internal/conf describes the
// tags): what the agents send.
type Settings struct {
	Profile     string `key:"profile" flag:"profile" usage:"evidence: ima, quote-only or captured (default ima)"`
	IMAInitial  int    `key:"ima_initial" check:">=1"`
	IMAGrow     int    `key:"ima_grow" check:">=0"`
	IMAUniverse int    `key:"ima_universe"`
	CapturedLog string `key:"captured_log"`
	// MeasuredBoot adds measured boot to the profile: the run's mbpolicies row holds the captured reference state
	// and every attestation sends the captured UEFI event log (compiled into the binary), with the TPM's PCRs 0-15
	// as that log leaves them.
	MeasuredBoot bool `key:"measured_boot" flag:"measured-boot" usage:"also send a UEFI event log with every attestation, against an mbpolicies reference state (any profile)"`
	// Reboot simulation: before a cycle, an agent reboots (new boot_time, TPM reset count + 1, IMA log back to
	// its first entries) every RebootEvery cycles and/or with probability RebootProbability.
	RebootEvery       int     `key:"reboot_every" check:">=0"`
	RebootProbability float64 `key:"reboot_probability" check:"0..1"`
}

// DefaultSettings are the evidence section's defaults: a synthetic IMA log of 200 entries growing by 2.
func DefaultSettings() Settings {
	return Settings{Profile: "ima", IMAInitial: 200, IMAGrow: 2, IMAUniverse: 1000}
}

// Validate checks the evidence keys; errors name the key.
func (c Settings) Validate() error {
	switch c.Profile {
	case "ima", "quote-only":
	case "captured":
		if c.CapturedLog == "" {
			return conf.Errorf("evidence.captured_log", "must name an IMA log file when evidence.profile is captured")
		}
	default:
		return conf.Errorf("evidence.profile", "must be ima, quote-only or captured, got %q", c.Profile)
	}
	if c.IMAUniverse < c.IMAInitial {
		return conf.Errorf("evidence.ima_universe", "must be >= evidence.ima_initial (%d), got %d", c.IMAInitial,
			c.IMAUniverse)
	}
	return nil
}

// NewProfile builds the profile the section describes, with measured boot when it asks for it.
func (c Settings) NewProfile() (Profile, error) {
	p, err := c.baseProfile()
	if err != nil || !c.MeasuredBoot {
		return p, err
	}
	b, err := measuredboot.Captured()
	if err != nil {
		return nil, conf.Errorf("evidence.measured_boot", "%v", err)
	}
	return WithMeasuredBoot(p, b), nil
}

func (c Settings) baseProfile() (Profile, error) {
	switch c.Profile {
	case "quote-only":
		return NewQuoteOnly(), nil
	case "captured":
		p, err := LoadCaptured(c.CapturedLog)
		if err != nil {
			return nil, conf.Errorf("evidence.captured_log", "%v", err)
		}
		return p, nil
	default:
		p, err := NewSynthetic(c.IMAInitial, c.IMAGrow, c.IMAUniverse)
		if err != nil {
			return nil, conf.Errorf("evidence", "%v", err)
		}
		return p, nil
	}
}

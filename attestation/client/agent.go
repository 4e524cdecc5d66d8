package client

import (
	"fmt"
	"net/url"
	"time"

	"github.com/attestload/attestload/attestation/evidence"
	"github.com/attestload/attestload/attestation/measuredboot"
	"github.com/attestload/attestload/attestation/softtpm"
)

// defaultBootTime is the boot time every simulated agent starts with. A constant boot time lets the verifier ask
// for the IMA log incrementally; only a simulated reboot moves it forward.
var defaultBootTime = time.Date(2026, 1, 1, 0, 0, 0, 0, time.UTC)

// Agent is the state of one simulated push agent across cycles. An Agent is used by one goroutine at a time; the
// scheduler may read NotBefore between cycles.
type Agent struct {
	// ID is the agent id the verifier knows (verifiermain.agent_id).
	ID string
	// Index is the agent's number in the fleet (record agent_index).
	Index int
	// TPM signs the PoP and the quotes with the agent's AK.
	TPM *softtpm.TPM
	// Profile is the evidence profile (ima, quote-only, ...).
	Profile evidence.Profile
	// Log is the agent's IMA log; nil when the profile has no IMA.
	Log *evidence.AgentLog
	// BootTime is sent as system_info.boot_time. It changes only on Reboot.
	BootTime time.Time
	// NotBefore is the earliest time the next attestation POST should be made, from the verifier's
	// meta.seconds_to_next_attestation or a Retry-After; zero when unknown.
	NotBefore time.Time
	// LastIndex is the attestation index of the last accepted evidence, -1 before any.
	LastIndex int

	// The token is unexported so that it can never be serialized with the Agent.
	token         string
	tokenExpiry   time.Time     // zero: unknown, use until a 401
	tokenLifetime time.Duration // expiry minus the time of the PoP answer; slid on by each accepted evidence

	setupErr error      // a profile PCR value the TPM refused; every cycle then fails as local
	urls     *agentURLs // made by the agent's first cycle: an idle agent of a fleet holds none
}

// agentURLs caches the request URLs of an agent for one client base URL.
type agentURLs struct {
	base     string
	sessions string
	create   string
	update   string
}

// NewAgent prepares an agent: it loads the profile's static PCR values into the TPM and creates the agent's IMA log
// when the profile has one.
func NewAgent(id string, index int, tpm *softtpm.TPM, p evidence.Profile) *Agent {
	a := new(Agent)
	a.Init(id, index, tpm, p)
	return a
}

// Init prepares a in place as NewAgent does, so that a fleet can keep its agents in one slice instead of one
// allocation each.
func (a *Agent) Init(id string, index int, tpm *softtpm.TPM, p evidence.Profile) {
	*a = Agent{ID: id, Index: index, TPM: tpm, Profile: p, BootTime: defaultBootTime, LastIndex: -1}
	if p != nil && p.HasIMA() {
		a.Log = p.NewAgentLog()
	}
	if tpm != nil {
		a.loadStaticPCRs()
	}
}

// akInfo is what the capabilities say about the agent's AK, derived from the key when a cycle needs it rather than
// kept with every agent of a fleet (most of which are idle); zero without a TPM or key.
func (a *Agent) akInfo() akInfo {
	if a.TPM == nil || a.TPM.Key() == nil {
		return akInfo{}
	}
	k := a.TPM.Key()
	return akInfo{public: k.PublicBase64(), scheme: k.SignatureScheme(), algorithm: k.KeyAlgorithm(), size: k.KeySize()}
}

// measuredBoot is the boot whose UEFI log the agent sends, nil when its profile has none.
func (a *Agent) measuredBoot() *measuredboot.Boot {
	if a.Profile == nil {
		return nil
	}
	return a.Profile.MeasuredBoot()
}

func (a *Agent) loadStaticPCRs() {
	if a.Profile == nil {
		return
	}
	for i, v := range a.Profile.StaticPCRs() {
		if err := a.TPM.SetPCR(i, v); err != nil {
			a.setupErr = fmt.Errorf("profile %q: static %w", a.Profile.Name(), err)
		}
	}
}

// Reboot simulates a reboot: the boot time moves forward (so the verifier asks for the IMA log from offset 0), the
// TPM's PCRs and reset counter restart and the IMA log starts again. The token survives: the verifier ties it to
// the agent, not to a boot. (The real verifier then judges every later attestation "PCR quote did not make
// progress", spec §12.)
func (a *Agent) Reboot() {
	bt := time.Now().UTC().Truncate(time.Second)
	if !bt.After(a.BootTime) {
		bt = a.BootTime.Add(time.Second)
	}
	a.BootTime = bt
	if a.TPM != nil {
		a.TPM.Reboot()
		a.loadStaticPCRs()
	}
	if a.Log != nil {
		a.Log.Reboot()
	}
}

// HasToken reports whether the agent holds a bearer token that is still valid margin from now. For a token whose
// whole lifetime is short, the margin is at most a quarter of that lifetime, so that a sliding token is not
// renewed on every cycle.
func (a *Agent) HasToken(now time.Time, margin time.Duration) bool {
	if a.token == "" {
		return false
	}
	if a.tokenLifetime > 0 {
		margin = min(margin, a.tokenLifetime/4)
	}
	return a.tokenExpiry.IsZero() || a.tokenExpiry.After(now.Add(margin))
}

// TokenExpiry is when the agent's token expires according to the PoP answer; zero when it holds none or the
// verifier did not say.
func (a *Agent) TokenExpiry() time.Time {
	if a.token == "" {
		return time.Time{}
	}
	return a.tokenExpiry
}

// DropToken forgets the bearer token, so the next cycle starts with a session.
func (a *Agent) DropToken() {
	a.token = ""
	a.tokenExpiry = time.Time{}
	a.tokenLifetime = 0
}

// setToken keeps a token from a PoP answer received at now.
func (a *Agent) setToken(token string, expiry, now time.Time) {
	a.token, a.tokenExpiry, a.tokenLifetime = token, expiry, 0
	if !expiry.IsZero() && expiry.After(now) {
		a.tokenLifetime = expiry.Sub(now)
	}
}

// slideToken moves the expiry to now plus the token's lifetime, as the verifier does after a passing attestation
// (extend_token_on_attestation, its default). Called when evidence is accepted, before the verdict is known: if
// the attestation then fails, the verifier does not extend, and the agent learns it from a 401 and
// authenticates again, as a real agent does.
func (a *Agent) slideToken(now time.Time) {
	if a.token != "" && a.tokenLifetime > 0 {
		if e := now.Add(a.tokenLifetime); e.After(a.tokenExpiry) {
			a.tokenExpiry = e
		}
	}
}

func (a *Agent) urlsFor(base, prefix string) *agentURLs {
	if a.urls == nil || a.urls.base != base {
		root := base + "/" + prefix
		id := url.PathEscape(a.ID)
		a.urls = &agentURLs{
			base:     base,
			sessions: root + "/sessions",
			create:   root + "/agents/" + id + "/attestations",
			update:   root + "/agents/" + id + "/attestations/latest",
		}
	}
	return a.urls
}

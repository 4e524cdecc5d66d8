package simverifier

import (
	"context"
	"crypto/sha256"
	"crypto/tls"
	"encoding/json"
	"errors"
	"fmt"
	"io"
	"log/slog"
	"net"
	"net/http"
	"sort"
	"sync"
	"sync/atomic"
	"time"

	"github.com/attestload/attestload/attestation/enroll"
	"github.com/attestload/attestload/attestation/evidence"
	"github.com/jackc/pgx/v5"
)

// ErrConfig marks errors New returns for an invalid Config (as opposed to TLS or database failures).
var ErrConfig = errors.New("invalid simulated verifier configuration")

// Verifier is the simulated verifier. It is safe for concurrent use.
type Verifier struct {
	cfg     Config
	now     func() time.Time
	entropy Entropy
	log     *slog.Logger
	rnd     *lockedRand
	faults  atomic.Pointer[Faults]
	workers chan struct{} // nil when unbounded
	procs   *processes    // nil without the process model
	monitor *process      // the timeout monitor's timers without the process model

	timerMu       sync.Mutex // guards every process's timers and timersStopped
	timersStopped bool
	timeouts      atomic.Int64
	tls           *tlsMaterial // nil in plain-HTTP mode
	db            *database    // nil unless in PostgreSQL mode

	mu       sync.RWMutex
	agents   map[string]*agent
	policies map[[32]byte]*sharedPolicy

	akKeys      akKeys      // parsed RSA AKs, shared by the agents holding the same key (agentmem.go)
	tpmPolicies tpmPolicies // normalised TPM policies, shared by the agents with the same policy (agentmem.go)

	mbPolicies mbPolicies // parsed measured-boot reference states (measuredboot.go)
	uefiLogs   uefiLogs   // the last UEFI log's replay

	sessions sessionStore
	limitIP  *rateLimiter
	limitAg  *rateLimiter

	ownPool bool // the pool was opened by New and is closed by Close

	verdictMu sync.Mutex
	verdictCh chan struct{} // closed and replaced whenever a verification completes

	// beforeCommit, when set by a test, runs between reading an agent's state and committing a new attestation,
	// which is where a concurrent create can slip in (409).
	beforeCommit func()
	// beforeVerify, when set by a test, runs at the start of a verification (to hold it "in progress").
	beforeVerify func()
	// beforeRequest, when set by a test, runs once a request holds its process (to hold the process busy).
	beforeRequest func()
	// timeoutWindow, when set by a test, replaces the timeout monitor's 5 × quote_interval.
	timeoutWindow time.Duration
}

// sharedPolicy is one parsed IMA policy, shared by every agent enrolled with the same JSON.
type sharedPolicy struct {
	policy *evidence.Policy
	refs   int
	key    [32]byte // its key in Verifier.policies
}

// AgentSpec is an agent's enrolment, the in-memory equivalent of its verifiermain row and policy rows.
type AgentSpec struct {
	ID             string
	AKPublic       []byte              // TPM2B_PUBLIC of the AK (verifiermain.ak_tpm, decoded)
	TPMPolicy      map[string][]string // PCR number -> accepted hex values; empty lists are ignored
	AcceptHashAlgs []string            // default ["sha256"]
	AcceptSignAlgs []string            // default ["rsassa"]
	IMAPolicyJSON  []byte              // runtime policy (allowlists.ima_policy); used when IMAGenerator > 1
	IMAGenerator   int                 // allowlists.generator: IMA is requested only when > 1
	MBPolicy       *string             // mbpolicies.mb_policy: nil or "" = no measured boot
}

// New builds a Verifier. In TLS mode it generates a CA, a server certificate and an admin client certificate (and
// writes them to Config.TLSDir if set).
func New(cfg Config) (*Verifier, error) {
	if err := cfg.validate(); err != nil {
		return nil, fmt.Errorf("%w: %w", ErrConfig, err)
	}
	v := &Verifier{
		cfg:       cfg,
		now:       cfg.Now,
		entropy:   cfg.Entropy,
		log:       cfg.Logger,
		rnd:       newLockedRand(cfg.Seed),
		agents:    map[string]*agent{},
		policies:  map[[32]byte]*sharedPolicy{},
		sessions:  newSessionStore(),
		limitIP:   newRateLimiter(cfg.RateLimits.PerIP, cfg.RateLimits.WindowIP),
		limitAg:   newRateLimiter(cfg.RateLimits.PerAgent, cfg.RateLimits.WindowAgent),
		verdictCh: make(chan struct{}),
	}
	if v.now == nil {
		v.now = time.Now
	}
	if v.entropy == nil {
		v.entropy = cryptoEntropy{}
	}
	if v.log == nil {
		v.log = slog.New(slog.DiscardHandler)
	}
	v.log = v.log.With("component", "simverifier")
	v.faults.Store(cfg.Faults.clone())
	if cfg.Workers > 0 {
		v.workers = make(chan struct{}, cfg.Workers)
	}
	v.monitor = &process{index: -1, timers: map[string]*timeoutHandle{}}
	if cfg.Processes > 0 {
		v.procs = newProcesses(cfg.Processes, processSeed(cfg.Seed), v.now)
	}
	if !cfg.PlainHTTP {
		m, err := generateTLS(cfg.TLSDir)
		if err != nil {
			return nil, fmt.Errorf("simverifier tls: %w", err)
		}
		v.tls = m
	}
	if cfg.DatabaseURL != "" {
		ctx, cancel := context.WithTimeout(context.Background(), time.Minute)
		defer cancel()
		pool, err := enroll.Connect(ctx, cfg.DatabaseURL)
		if err != nil {
			return nil, fmt.Errorf("simverifier database: %w", err)
		}
		if cfg.InitSchema {
			if err := enroll.InitSchema(ctx, pool); err != nil {
				pool.Close()
				return nil, fmt.Errorf("simverifier database: %w", err)
			}
		} else if err := enroll.CheckSchema(ctx, pool); errors.Is(err, enroll.ErrSchemaMissing) {
			// Name the fix rather than failing later on `relation "verifiermain" does not exist`.
			pool.Close()
			return nil, fmt.Errorf("%w: database %s has no Keylime verifier tables: add --init-schema to create "+
				"them (or start the Keylime verifier once against it)", ErrConfig, enroll.RedactURL(cfg.DatabaseURL))
		}
		n, err := v.UseDatabase(ctx, pool)
		if err != nil {
			pool.Close()
			return nil, fmt.Errorf("simverifier database: %w", err)
		}
		v.ownPool = true
		v.log.Info("agents loaded from database", "agents", n)
	}
	return v, nil
}

// Close releases the database pool if New opened one.
func (v *Verifier) Close() {
	if v.db != nil && v.ownPool {
		v.db.pool.Close()
	}
}

// SetFaults replaces the injected faults; requests already past a fault decision keep the old one.
func (v *Verifier) SetFaults(f Faults) error {
	if err := f.validate(); err != nil {
		return fmt.Errorf("%w: %w", ErrConfig, err)
	}
	v.faults.Store(f.clone())
	return nil
}

// Faults returns a copy of the faults in force.
func (v *Verifier) Faults() Faults {
	return *v.faults.Load().clone()
}

// EnrollAgent adds or replaces an agent. Replacing keeps nothing of the old agent's attestation state.
func (v *Verifier) EnrollAgent(spec AgentSpec) error {
	a, err := v.newAgent(spec)
	if err != nil {
		return fmt.Errorf("enroll agent %q: %w", spec.ID, err)
	}
	var pol *sharedPolicy
	var key [32]byte
	if spec.IMAGenerator > 1 {
		key = sha256.Sum256(spec.IMAPolicyJSON)
	}
	v.mu.Lock()
	defer v.mu.Unlock()
	if spec.IMAGenerator > 1 {
		pol = v.policies[key]
		if pol == nil {
			p, err := evidence.ParsePolicy(spec.IMAPolicyJSON)
			if err != nil {
				return fmt.Errorf("enroll agent %q: ima policy: %w", spec.ID, err)
			}
			pol = &sharedPolicy{policy: p, key: key}
			v.policies[key] = pol
		}
		pol.refs++
		a.ima = pol
	}
	if old := v.agents[spec.ID]; old != nil {
		v.releasePolicyLocked(old)
	}
	v.agents[spec.ID] = a
	return nil
}

// RemoveAgent forgets an agent (its sessions stay valid until they expire, as in the real verifier). It reports
// whether the agent existed.
func (v *Verifier) RemoveAgent(id string) bool {
	v.mu.Lock()
	defer v.mu.Unlock()
	a := v.agents[id]
	if a == nil {
		return false
	}
	v.releasePolicyLocked(a)
	delete(v.agents, id)
	return true
}

func (v *Verifier) releasePolicyLocked(a *agent) {
	if a.ima == nil {
		return
	}
	a.ima.refs--
	if a.ima.refs == 0 {
		delete(v.policies, a.ima.key)
	}
}

// AgentCount is the number of enrolled agents.
func (v *Verifier) AgentCount() int {
	v.mu.RLock()
	defer v.mu.RUnlock()
	return len(v.agents)
}

// agentMem looks an agent up in memory only.
func (v *Verifier) agentMem(id string) *agent {
	v.mu.RLock()
	defer v.mu.RUnlock()
	return v.agents[id]
}

// agent looks an agent up, in database mode falling back to verifiermain for agents enrolled after the start.
func (v *Verifier) agent(id string) *agent {
	if a := v.agentMem(id); a != nil || v.db == nil {
		return a
	}
	if err := v.loadAgent(context.Background(), id); err != nil {
		if !errors.Is(err, pgx.ErrNoRows) {
			v.log.Warn("agent not loaded from database", "agent_id", id, "err", err)
		}
		return nil
	}
	return v.agentMem(id)
}

func (v *Verifier) newAgent(spec AgentSpec) (*agent, error) {
	if spec.ID == "" || len(spec.ID) > 80 {
		return nil, errors.New("agent id must be 1 to 80 characters")
	}
	a := &agent{
		id:       spec.ID,
		hashAlgs: internAlgs(spec.AcceptHashAlgs, "sha256"),
		signAlgs: internAlgs(spec.AcceptSignAlgs, "rsassa"),
		mb:       v.mbPolicies.state(spec.MBPolicy),
		accept:   true,
	}
	if err := v.akKeys.set(a, spec.AKPublic); err != nil {
		return nil, err
	}
	pol, err := v.tpmPolicies.intern(spec.TPMPolicy)
	if err != nil {
		return nil, err
	}
	a.tpmPolicy = pol
	if spec.IMAGenerator > 1 && len(spec.IMAPolicyJSON) == 0 {
		return nil, errors.New("ima generator > 1 needs an IMA policy")
	}
	return a, nil
}

// ParseTPMPolicy decodes verifiermain.tpm_policy text ({"10": ["hex", ...], ...}). It also accepts the tenant's
// double-encoded form and ignores non-list members such as "mask".
func ParseTPMPolicy(text string) (map[string][]string, error) {
	var raw any
	if err := json.Unmarshal([]byte(text), &raw); err != nil {
		return nil, fmt.Errorf("tpm policy is not JSON: %w", err)
	}
	if s, ok := raw.(string); ok {
		if err := json.Unmarshal([]byte(s), &raw); err != nil {
			return nil, fmt.Errorf("tpm policy is not JSON: %w", err)
		}
	}
	obj, ok := raw.(map[string]any)
	if !ok {
		return nil, errors.New("tpm policy must be a JSON object")
	}
	out := map[string][]string{}
	for k, val := range obj {
		list, ok := val.([]any)
		if !ok {
			continue
		}
		for _, x := range list {
			if s, ok := x.(string); ok {
				out[k] = append(out[k], s)
			}
		}
	}
	return out, nil
}

// Verdict reports the verdict of an agent's attestation. ok is false when the attestation is unknown or has left
// the bounded history; done is false while the evidence is awaited or being verified (evaluation "pending").
func (v *Verifier) Verdict(agentID string, index int) (evaluation, failureReason string, done bool, ok bool) {
	a := v.agentMem(agentID)
	if a == nil {
		return "", "", false, false
	}
	a.mu.Lock()
	defer a.mu.Unlock()
	for _, e := range a.verdicts {
		if e.index == index {
			return e.evaluation, e.failureReason, e.evaluation != evalPending, true
		}
	}
	return "", "", false, false
}

// WaitVerdict waits until the attestation's verification has completed (or ctx ends) and returns its verdict.
func (v *Verifier) WaitVerdict(ctx context.Context, agentID string, index int) (evaluation, failureReason string, err error) {
	for {
		v.verdictMu.Lock()
		ch := v.verdictCh
		v.verdictMu.Unlock()
		ev, fr, done, ok := v.Verdict(agentID, index)
		if done {
			return ev, fr, nil
		}
		if !ok && v.agentMem(agentID) == nil {
			return "", "", fmt.Errorf("agent %q is not enrolled", agentID)
		}
		select {
		case <-ch:
		case <-ctx.Done():
			return "", "", fmt.Errorf("wait for verdict of %s/%d: %w", agentID, index, ctx.Err())
		}
	}
}

func (v *Verifier) notifyVerdict() {
	v.verdictMu.Lock()
	close(v.verdictCh)
	v.verdictCh = make(chan struct{})
	v.verdictMu.Unlock()
}

// Handler returns the HTTP handler (all routes, with the faults in force).
func (v *Verifier) Handler() http.Handler {
	return http.HandlerFunc(v.serveHTTP)
}

// TLSConfig returns the server TLS configuration (client certificates optional, verified against the simulator's
// CA), or nil in plain-HTTP mode.
func (v *Verifier) TLSConfig() *tls.Config {
	if v.tls == nil {
		return nil
	}
	return v.tls.serverConfig()
}

// CACertPEM returns the CA certificate clients must trust, or nil in plain-HTTP mode.
func (v *Verifier) CACertPEM() []byte {
	if v.tls == nil {
		return nil
	}
	return append([]byte(nil), v.tls.caPEM...)
}

// AdminCertificate returns the admin client certificate (the real cv_ca/client-cert.crt equivalent), or false in
// plain-HTTP mode.
func (v *Verifier) AdminCertificate() (tls.Certificate, bool) {
	if v.tls == nil {
		return tls.Certificate{}, false
	}
	return v.tls.client, true
}

// Serve serves on ln (HTTPS unless Config.PlainHTTP) until ctx ends, then shuts down gracefully, giving in-flight
// requests up to 5 seconds.
func (v *Verifier) Serve(ctx context.Context, ln net.Listener) error {
	srv := &http.Server{
		Handler:           v.Handler(),
		ReadHeaderTimeout: 30 * time.Second,
		// Tornado's idle_connection_timeout default, which Keylime keeps: a keep-alive connection stays open an hour
		// between requests (without it, ReadHeaderTimeout would close an agent's idle connection after 30 s).
		IdleTimeout: time.Hour,
		ErrorLog:    slog.NewLogLogger(v.log.Handler(), slog.LevelDebug),
		BaseContext: func(net.Listener) context.Context { return ctx },
		ConnContext: func(ctx context.Context, c net.Conn) context.Context {
			if p := connProcess(c); p != nil {
				return context.WithValue(ctx, processKey{}, p)
			}
			return ctx
		},
	}
	defer v.stopTimeouts()
	if v.procs != nil {
		ln = &processListener{Listener: ln, ps: v.procs, done: make(chan struct{})}
	}
	if v.tls != nil {
		srv.TLSConfig = v.tls.serverConfig()
		ln = tls.NewListener(ln, srv.TLSConfig)
	}
	errc := make(chan error, 1)
	go func() { errc <- srv.Serve(ln) }()
	select {
	case err := <-errc:
		return fmt.Errorf("simverifier serve: %w", err)
	case <-ctx.Done():
	}
	sctx, cancel := context.WithTimeout(context.WithoutCancel(ctx), 5*time.Second)
	defer cancel()
	err := srv.Shutdown(sctx)
	if serr := <-errc; serr != nil && !errors.Is(serr, http.ErrServerClosed) {
		err = errors.Join(err, serr)
	}
	if err != nil {
		return fmt.Errorf("simverifier shutdown: %w", err)
	}
	return nil
}

// maxRequestBody bounds what a request may send; the real server's limit is larger, but nothing legitimate in
// this protocol comes close.
const maxRequestBody = 64 << 20

func readBody(r *http.Request) ([]byte, error) {
	return io.ReadAll(http.MaxBytesReader(nil, r.Body, maxRequestBody))
}

func sortedKeys(m map[int][]string) []int {
	out := make([]int, 0, len(m))
	for k := range m {
		out = append(out, k)
	}
	sort.Ints(out)
	return out
}

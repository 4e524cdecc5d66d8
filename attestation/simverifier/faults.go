package simverifier

import (
	"context"
	"crypto/sha256"
	"errors"
	"fmt"
	"math"
	"math/rand/v2"
	"sort"
	"strconv"
	"strings"
	"sync"
	"time"
)

// Endpoint is a kind of request, the unit faults are configured per.
type Endpoint string

// Endpoint kinds. The EndpointAll rule applies to every kind; a kind's own rule overrides it key by key.
const (
	EndpointAll           Endpoint = "*"
	EndpointSessionCreate Endpoint = "session_create" // POST /v3/sessions
	EndpointSessionPoP    Endpoint = "session_pop"    // PATCH /v3/sessions/{id}
	EndpointCreate        Endpoint = "create"         // POST /v3/agents/{id}/attestations
	EndpointUpdate        Endpoint = "update"         // PATCH /v3/agents/{id}/attestations/{latest|n}
	EndpointAdmin         Endpoint = "admin"          // GETs on attestations
	EndpointOther         Endpoint = "other"          // everything else
)

var knownEndpoints = map[Endpoint]bool{
	EndpointAll: true, EndpointSessionCreate: true, EndpointSessionPoP: true, EndpointCreate: true,
	EndpointUpdate: true, EndpointAdmin: true, EndpointOther: true,
}

// ParseEndpoint checks an endpoint name (for flags and configuration).
func ParseEndpoint(s string) (Endpoint, error) {
	e := Endpoint(s)
	if !knownEndpoints[e] {
		names := make([]string, 0, len(knownEndpoints))
		for k := range knownEndpoints {
			names = append(names, string(k))
		}
		sort.Strings(names)
		return "", fmt.Errorf("unknown endpoint %q (one of %s)", s, strings.Join(names, ", "))
	}
	return e, nil
}

// Faults are injected misbehaviours. The zero value injects nothing.
type Faults struct {
	// Rules per endpoint kind. The EndpointAll rule applies to every kind, also to kinds with a rule of their own:
	// each setting a kind's rule leaves at zero is taken from EndpointAll (the latency's fixed part and its
	// median/p99 pair separately), so '*:error-rate=0.02' next to 'update:latency-median=50ms' gives updates both.
	Rules map[Endpoint]FaultRule
	// VerifyCPU is spent (busy, on the verifying goroutine) per verification, on top of the real checks.
	VerifyCPU time.Duration
	// VerifyHashIterations SHA-256 rounds are computed per verification, a machine-independent CPU cost.
	VerifyHashIterations int
}

// FaultRule is what happens to one kind of request. Probabilities are in [0, 1] and are drawn independently per
// request, in this order: close, error, stall; the body faults (truncate, invalid JSON, wrong content type, huge,
// trickle) apply to responses that were produced.
type FaultRule struct {
	// Latency is added before the request is handled (it occupies a worker, like slow processing would).
	Latency Latency
	// ErrorRate answers ErrorStatus (default 503) instead of handling the request.
	ErrorRate   float64
	ErrorStatus int
	// ErrorRetryAfter, when > 0, adds a Retry-After header (seconds) to injected errors.
	ErrorRetryAfter int
	// EvidenceOrderRate (update only) answers an evidence PATCH with the stock verifier's evidence-order defect: 422
	// invalid_resource_data "evidence must appear in the same order as the evidence requested", whatever the order
	// (docs/verifier-conformance.md).
	EvidenceOrderRate float64
	// StallRate makes a request hang for StallFor (or until the client gives up) before it is handled.
	StallRate float64
	StallFor  time.Duration
	// CloseRate drops the connection without any response.
	CloseRate float64
	// TruncateRate sends only the first half of the body (with the full Content-Length) and drops the connection.
	TruncateRate float64
	// InvalidJSONRate replaces the body with broken JSON.
	InvalidJSONRate float64
	// WrongContentTypeRate answers with Content-Type text/plain.
	WrongContentTypeRate float64
	// HugeBodyRate pads the body with HugeBodyBytes (default 8 MiB) of trailing whitespace.
	HugeBodyRate  float64
	HugeBodyBytes int
	// TrickleRate sends the body TrickleChunk bytes (default 16) at a time with TrickleDelay between chunks.
	TrickleRate  float64
	TrickleChunk int
	TrickleDelay time.Duration
}

// Latency is a fixed delay plus an optional log-normal part given by its median and 99th percentile.
type Latency struct {
	Fixed  time.Duration
	Median time.Duration
	P99    time.Duration
}

// z99 is the standard normal quantile at 0.99; a log-normal with median m has p99 = m·exp(σ·z99).
const z99 = 2.3263478740408408

func (l Latency) validate() error {
	if l.Fixed < 0 || l.Median < 0 || l.P99 < 0 {
		return errors.New("latency values must not be negative")
	}
	if (l.Median == 0) != (l.P99 == 0) {
		return errors.New("latency distribution needs both median and p99")
	}
	if l.P99 < l.Median {
		return fmt.Errorf("latency p99 %v is below the median %v", l.P99, l.Median)
	}
	return nil
}

func (l Latency) sample(r *lockedRand) time.Duration {
	d := l.Fixed
	if l.Median > 0 {
		sigma := (math.Log(float64(l.P99)) - math.Log(float64(l.Median))) / z99
		d += time.Duration(float64(l.Median) * math.Exp(sigma*r.NormFloat64()))
	}
	return d
}

func (f Faults) validate() error {
	var errs []error
	for e := range f.Rules {
		if !knownEndpoints[e] {
			errs = append(errs, fmt.Errorf("faults: unknown endpoint %q", e))
		}
	}
	// What applies is '*' alone (to kinds without a rule) and each kind's rule combined with '*'.
	if all, ok := f.Rules[EndpointAll]; ok {
		if err := all.validate(); err != nil {
			errs = append(errs, fmt.Errorf("faults for %s: %w", EndpointAll, err))
		}
	}
	kinds := make([]string, 0, len(f.Rules))
	for e := range f.Rules {
		if e != EndpointAll && knownEndpoints[e] {
			kinds = append(kinds, string(e))
		}
	}
	sort.Strings(kinds)
	for _, k := range kinds {
		if err := f.rule(Endpoint(k)).validate(); err != nil {
			errs = append(errs, fmt.Errorf("faults for %s: %w", k, err))
		}
	}
	if f.VerifyCPU < 0 || f.VerifyHashIterations < 0 {
		errs = append(errs, errors.New("faults: verification cost must not be negative"))
	}
	return errors.Join(errs...)
}

func (r FaultRule) validate() error {
	var errs []error
	for name, p := range map[string]float64{
		"error rate": r.ErrorRate, "evidence order rate": r.EvidenceOrderRate, "stall rate": r.StallRate, "close rate": r.CloseRate,
		"truncate rate": r.TruncateRate, "invalid JSON rate": r.InvalidJSONRate,
		"wrong content type rate": r.WrongContentTypeRate, "huge body rate": r.HugeBodyRate,
		"trickle rate": r.TrickleRate,
	} {
		if !(p >= 0 && p <= 1) {
			errs = append(errs, fmt.Errorf("%s %v: must be within [0, 1]", name, p))
		}
	}
	if err := r.Latency.validate(); err != nil {
		errs = append(errs, err)
	}
	if r.ErrorStatus != 0 && (r.ErrorStatus < 400 || r.ErrorStatus > 599) {
		errs = append(errs, fmt.Errorf("error status %d: must be a 4xx or 5xx code", r.ErrorStatus))
	}
	if r.ErrorRetryAfter < 0 || r.StallFor < 0 || r.HugeBodyBytes < 0 || r.TrickleChunk < 0 || r.TrickleDelay < 0 {
		errs = append(errs, errors.New("durations and sizes must not be negative"))
	}
	if r.StallRate > 0 && r.StallFor == 0 {
		errs = append(errs, errors.New("stall rate needs a stall duration"))
	}
	return errors.Join(errs...)
}

// rule is what applies to kind e: its own rule, with every setting it leaves at zero taken from the '*' rule.
func (f *Faults) rule(e Endpoint) FaultRule {
	all := f.Rules[EndpointAll]
	r, ok := f.Rules[e]
	if !ok || e == EndpointAll {
		return all
	}
	or := func(v *float64, d float64) {
		if *v == 0 {
			*v = d
		}
	}
	orInt := func(v *int, d int) {
		if *v == 0 {
			*v = d
		}
	}
	orDur := func(v *time.Duration, d time.Duration) {
		if *v == 0 {
			*v = d
		}
	}
	orDur(&r.Latency.Fixed, all.Latency.Fixed)
	if r.Latency.Median == 0 && r.Latency.P99 == 0 {
		r.Latency.Median, r.Latency.P99 = all.Latency.Median, all.Latency.P99
	}
	or(&r.ErrorRate, all.ErrorRate)
	or(&r.EvidenceOrderRate, all.EvidenceOrderRate)
	orInt(&r.ErrorStatus, all.ErrorStatus)
	orInt(&r.ErrorRetryAfter, all.ErrorRetryAfter)
	or(&r.StallRate, all.StallRate)
	orDur(&r.StallFor, all.StallFor)
	or(&r.CloseRate, all.CloseRate)
	or(&r.TruncateRate, all.TruncateRate)
	or(&r.InvalidJSONRate, all.InvalidJSONRate)
	or(&r.WrongContentTypeRate, all.WrongContentTypeRate)
	or(&r.HugeBodyRate, all.HugeBodyRate)
	orInt(&r.HugeBodyBytes, all.HugeBodyBytes)
	or(&r.TrickleRate, all.TrickleRate)
	orInt(&r.TrickleChunk, all.TrickleChunk)
	orDur(&r.TrickleDelay, all.TrickleDelay)
	return r
}

// clone deep-copies the rules map so that a caller changing its map after SetFaults cannot race the handlers.
func (f Faults) clone() *Faults {
	c := f
	c.Rules = make(map[Endpoint]FaultRule, len(f.Rules))
	for k, v := range f.Rules {
		c.Rules[k] = v
	}
	return &c
}

// lockedRand is a seeded PCG source shared by all handlers.
type lockedRand struct {
	mu sync.Mutex
	r  *rand.Rand
}

func newLockedRand(seed uint64) *lockedRand {
	if seed == 0 {
		seed = rand.Uint64()
	}
	return &lockedRand{r: rand.New(rand.NewPCG(seed, seed^0x9e3779b97f4a7c15))}
}

func (l *lockedRand) Float64() float64 {
	l.mu.Lock()
	defer l.mu.Unlock()
	return l.r.Float64()
}

func (l *lockedRand) NormFloat64() float64 {
	l.mu.Lock()
	defer l.mu.Unlock()
	return l.r.NormFloat64()
}

// hit draws one Bernoulli trial; a zero probability never consumes randomness so that unrelated rules do not
// shift each other's sequences.
func (l *lockedRand) hit(p float64) bool {
	return p > 0 && l.Float64() < p
}

// sleepCtx waits d or until ctx is done.
func sleepCtx(ctx context.Context, d time.Duration) error {
	if d <= 0 {
		return nil
	}
	t := time.NewTimer(d)
	defer t.Stop()
	select {
	case <-t.C:
		return nil
	case <-ctx.Done():
		return ctx.Err()
	}
}

// burnCPU spends the configured verification cost. The hash chain's result is returned so the compiler cannot drop
// the loop.
func burnCPU(spin time.Duration, iterations int) byte {
	var h [32]byte
	for range iterations {
		h = sha256.Sum256(h[:])
	}
	if spin > 0 {
		end := time.Now().Add(spin)
		for time.Now().Before(end) {
			h = sha256.Sum256(h[:])
		}
	}
	return h[0]
}

// FaultSpecHelp describes the syntax ParseFaultSpec accepts (for command-line help).
const FaultSpecHelp = `ENDPOINT:KEY=VALUE, ENDPOINT one of *, session_create, session_pop, create, update, admin, other ` +
	`(* applies to every endpoint, also to one with keys of its own; a key set for an endpoint overrides the same key ` +
	`from *); KEY one of ` +
	`latency, latency-median, latency-p99 (durations), error-rate, error-status, retry-after (seconds), ` +
	`evidence-order-rate (update: Keylime's evidence-order 422), stall-rate, ` +
	`stall-for, close-rate, truncate-rate, invalid-json-rate, wrong-content-type-rate, huge-body-rate, ` +
	`huge-body-bytes, trickle-rate, trickle-chunk, trickle-delay`

// ParseFaultSpec applies one "ENDPOINT:KEY=VALUE" setting (see FaultSpecHelp) to f, e.g. "update:error-rate=0.01"
// or "*:latency-median=20ms". The result is not validated as a whole; New and SetFaults do that.
func ParseFaultSpec(spec string, f *Faults) error {
	target, kv, ok := strings.Cut(spec, ":")
	key, val, ok2 := strings.Cut(kv, "=")
	if !ok || !ok2 || val == "" {
		return fmt.Errorf("fault %q: want ENDPOINT:KEY=VALUE", spec)
	}
	e, err := ParseEndpoint(target)
	if err != nil {
		return fmt.Errorf("fault %q: %w", spec, err)
	}
	if f.Rules == nil {
		f.Rules = map[Endpoint]FaultRule{}
	}
	r := f.Rules[e]
	dur := func(dst *time.Duration) error {
		d, err := time.ParseDuration(val)
		if err != nil {
			return err
		}
		*dst = d
		return nil
	}
	num := func(dst *int) error {
		n, err := strconv.Atoi(val)
		if err != nil {
			return err
		}
		*dst = n
		return nil
	}
	prob := func(dst *float64) error {
		p, err := strconv.ParseFloat(val, 64)
		if err != nil {
			return err
		}
		if !(p >= 0 && p <= 1) {
			return fmt.Errorf("%v is not a probability within [0, 1]", p)
		}
		*dst = p
		return nil
	}
	setters := map[string]func() error{
		"latency":                 func() error { return dur(&r.Latency.Fixed) },
		"latency-median":          func() error { return dur(&r.Latency.Median) },
		"latency-p99":             func() error { return dur(&r.Latency.P99) },
		"error-rate":              func() error { return prob(&r.ErrorRate) },
		"evidence-order-rate":     func() error { return prob(&r.EvidenceOrderRate) },
		"error-status":            func() error { return num(&r.ErrorStatus) },
		"retry-after":             func() error { return num(&r.ErrorRetryAfter) },
		"stall-rate":              func() error { return prob(&r.StallRate) },
		"stall-for":               func() error { return dur(&r.StallFor) },
		"close-rate":              func() error { return prob(&r.CloseRate) },
		"truncate-rate":           func() error { return prob(&r.TruncateRate) },
		"invalid-json-rate":       func() error { return prob(&r.InvalidJSONRate) },
		"wrong-content-type-rate": func() error { return prob(&r.WrongContentTypeRate) },
		"huge-body-rate":          func() error { return prob(&r.HugeBodyRate) },
		"huge-body-bytes":         func() error { return num(&r.HugeBodyBytes) },
		"trickle-rate":            func() error { return prob(&r.TrickleRate) },
		"trickle-chunk":           func() error { return num(&r.TrickleChunk) },
		"trickle-delay":           func() error { return dur(&r.TrickleDelay) },
	}
	set, ok := setters[key]
	if !ok {
		return fmt.Errorf("fault %q: unknown key %q (%s)", spec, key, FaultSpecHelp)
	}
	if err := set(); err != nil {
		return fmt.Errorf("fault %q: %s: %w", spec, key, err)
	}
	f.Rules[e] = r
	return nil
}

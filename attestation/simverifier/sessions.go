package simverifier

import (
	"bytes"
	"crypto/pbkdf2"
	"crypto/sha256"
	"crypto/subtle"
	"encoding/base64"
	"encoding/hex"
	"errors"
	"fmt"
	"net"
	"net/http"
	"strconv"
	"strings"
	"sync"
	"time"

	"github.com/attestload/attestload/attestation/softtpm"
)

// pendingSession is a session between its POST and its PoP.
type pendingSession struct {
	id        string
	agentID   string
	nonce     []byte
	token     string
	tokenHash string
	tokenSalt string
	createdAt time.Time
	expiresAt time.Time
}

// activeSession is a session whose PoP passed: its token is valid until expiresAt.
type activeSession struct {
	id        string
	agentID   string
	token     string
	expiresAt time.Time
}

// sessionStore is the real verifier's shared session cache: pending sessions by id, active tokens by value, and the
// one active session per agent.
type sessionStore struct {
	mu        sync.Mutex
	pending   map[string]*pendingSession
	byToken   map[string]*activeSession
	byAgent   map[string]*activeSession
	lastSweep time.Time
}

func newSessionStore() sessionStore {
	return sessionStore{
		pending: map[string]*pendingSession{},
		byToken: map[string]*activeSession{},
		byAgent: map[string]*activeSession{},
	}
}

// sweep drops expired pending sessions and tokens. It runs at most once per interval so that its O(n) cost is
// amortised over many session requests; this keeps memory bounded over long runs.
func (s *sessionStore) sweepLocked(now time.Time, interval time.Duration) {
	if now.Sub(s.lastSweep) < interval {
		return
	}
	s.lastSweep = now
	for id, p := range s.pending {
		if now.After(p.expiresAt) {
			delete(s.pending, id)
		}
	}
	for tok, a := range s.byToken {
		// Expired tokens linger one more interval so that their holders get "expired" rather than "invalid".
		if now.After(a.expiresAt.Add(interval)) {
			delete(s.byToken, tok)
			if s.byAgent[a.agentID] == a {
				delete(s.byAgent, a.agentID)
			}
		}
	}
}

// extend slides an agent's token expiry (after a passing attestation).
func (s *sessionStore) extend(agentID string, until time.Time) {
	s.mu.Lock()
	defer s.mu.Unlock()
	if a := s.byAgent[agentID]; a != nil && until.After(a.expiresAt) {
		a.expiresAt = until
	}
}

// rateLimiter counts requests per key in a sliding window, blocking a key for 60 s · 2^(breaches-1) (capped at an
// hour) after each breach. Breach counts never decay, as in the real RateLimiter.
type rateLimiter struct {
	limit  int
	window time.Duration
	mu     sync.Mutex
	keys   map[string]*rateEntry
	sweep  time.Time
}

type rateEntry struct {
	hits         []time.Time
	breaches     int
	blockedUntil time.Time
}

func newRateLimiter(limit int, window time.Duration) *rateLimiter {
	return &rateLimiter{limit: limit, window: window, keys: map[string]*rateEntry{}}
}

// allow records a request and returns 0, or the seconds the caller must wait.
func (l *rateLimiter) allow(key string, now time.Time) int {
	if l.limit <= 0 {
		return 0
	}
	l.mu.Lock()
	defer l.mu.Unlock()
	if now.Sub(l.sweep) > l.window {
		l.sweep = now
		for k, e := range l.keys {
			// Keys with a breach history are kept: their escalation must survive.
			if e.breaches == 0 && (len(e.hits) == 0 || now.Sub(e.hits[len(e.hits)-1]) > l.window) {
				delete(l.keys, k)
			}
		}
	}
	e := l.keys[key]
	if e == nil {
		e = &rateEntry{}
		l.keys[key] = e
	}
	if now.Before(e.blockedUntil) {
		return ceilSeconds(e.blockedUntil.Sub(now))
	}
	cut := 0
	for cut < len(e.hits) && now.Sub(e.hits[cut]) >= l.window {
		cut++
	}
	e.hits = append(e.hits[:0], e.hits[cut:]...)
	if len(e.hits) >= l.limit {
		e.breaches++
		block := 60 * time.Second << min(e.breaches-1, 6)
		block = min(block, time.Hour)
		e.blockedUntil = now.Add(block)
		e.hits = e.hits[:0]
		return ceilSeconds(block)
	}
	e.hits = append(e.hits, now)
	return 0
}

func clientIP(r *http.Request) string {
	host, _, err := net.SplitHostPort(r.RemoteAddr)
	if err != nil {
		return r.RemoteAddr
	}
	return host
}

func isSessionJSON(ct string) (ok, vndAPI bool) {
	ct = strings.ToLower(strings.TrimSpace(strings.SplitN(ct, ";", 2)[0]))
	if ct == "application/json" {
		return true, false
	}
	if strings.HasPrefix(ct, "application/") && strings.HasSuffix(ct, "+json") {
		return true, ct == "application/vnd.api+json"
	}
	return false, false
}

// sessionBody decodes a session request body: 415 for other content types, 400 for bad documents, 500 for a
// missing data.type in vnd.api+json (the real server's KeyError).
func sessionBody(r *http.Request, body []byte) (map[string]any, *response) {
	ok, vnd := isSessionJSON(r.Header.Get("Content-Type"))
	if !ok {
		return nil, emptyResponse(http.StatusUnsupportedMediaType)
	}
	data, _, err := decodeDocument(body, vnd)
	switch {
	case errors.Is(err, errNoType):
		return nil, emptyResponse(http.StatusInternalServerError)
	case err != nil:
		return nil, emptyResponse(http.StatusBadRequest)
	}
	attrs, _ := asObject(data["attributes"])
	if attrs == nil {
		attrs = map[string]any{}
	}
	return attrs, nil
}

type sessionDoc struct {
	Data sessionData `json:"data"`
}

type sessionData struct {
	Type       string         `json:"type"`
	ID         string         `json:"id"`
	Attributes map[string]any `json:"attributes"`
}

func popItem(extra map[string]any) map[string]any {
	m := map[string]any{"authentication_class": "pop", "authentication_type": "tpm_pop"}
	for k, v := range extra {
		m[k] = v
	}
	return m
}

// createSession is POST /v3/sessions.
func (v *Verifier) createSession(r *http.Request, body []byte) *response {
	now := v.now()
	if wait := v.limitIP.allow(clientIP(r), now); wait > 0 {
		return tooManySessions(wait)
	}
	attrs, bad := sessionBody(r, body)
	if bad != nil {
		return bad
	}
	agentID, _ := asString(attrs["agent_id"])
	if agentID == "" {
		return sessionErrorResponse(http.StatusBadRequest, "agent_id is required")
	}
	if wait := v.limitAg.allow(agentID, now); wait > 0 {
		return tooManySessions(wait)
	}
	supported, _ := asList(attrs["authentication_supported"])
	found := false
	for _, it := range supported {
		if m, ok := asObject(it); ok && m["authentication_type"] == "tpm_pop" {
			found = true
		}
	}
	if !found {
		return sessionErrorResponse(http.StatusBadRequest, "authentication_supported must include tpm_pop")
	}
	spendCPU(v.cfg.Costs.Session)
	p, err := v.newPendingSession(agentID, now)
	if err != nil {
		v.log.Error("session create failed", "err", err)
		return emptyResponse(http.StatusInternalServerError)
	}
	v.sessions.mu.Lock()
	v.sessions.sweepLocked(now, max(v.cfg.NonceLifetime, v.cfg.SessionLifetime))
	v.sessions.pending[p.id] = p
	v.sessions.mu.Unlock()
	return jsonResponse(http.StatusOK, ctSession, sessionDoc{Data: sessionData{Type: "session", ID: p.id,
		Attributes: map[string]any{
			"agent_id": agentID,
			"authentication_requested": []any{popItem(map[string]any{
				"chosen_parameters": map[string]any{"challenge": base64.StdEncoding.EncodeToString(p.nonce)},
			})},
			"created_at":           timestamp(p.createdAt),
			"challenges_expire_at": timestamp(p.expiresAt),
		}}}, true)
}

func tooManySessions(wait int) *response {
	return sessionErrorResponse(http.StatusTooManyRequests,
		fmt.Sprintf("Rate limit exceeded. Try again in %d seconds.", wait)).set("Retry-After", strconv.Itoa(wait))
}

func (v *Verifier) newPendingSession(agentID string, now time.Time) (*pendingSession, error) {
	nonce, err := v.entropy.SessionNonce()
	if err != nil {
		return nil, err
	}
	if len(nonce) != 16 {
		return nil, fmt.Errorf("session nonce has %d bytes, want 16", len(nonce))
	}
	id, err := v.entropy.SessionID()
	if err != nil {
		return nil, err
	}
	secret, err := v.entropy.TokenSecret()
	if err != nil {
		return nil, err
	}
	token := id + "." + secret
	salt, err := randomBytes(16)
	if err != nil {
		return nil, err
	}
	iter := max(v.cfg.SessionHashIterations, 1)
	key, err := pbkdf2.Key(sha256.New, token, salt, iter, 32)
	if err != nil {
		return nil, fmt.Errorf("hash token: %w", err)
	}
	return &pendingSession{
		id: id, agentID: agentID, nonce: nonce, token: token,
		tokenHash: hex.EncodeToString(key), tokenSalt: hex.EncodeToString(salt),
		createdAt: now, expiresAt: now.Add(v.cfg.NonceLifetime),
	}, nil
}

// popSession is PATCH /v3/sessions/{id}.
func (v *Verifier) popSession(r *http.Request, body []byte, sessionID string) *response {
	now := v.now()
	attrs, bad := sessionBody(r, body)
	if bad != nil {
		return bad
	}
	agentID, _ := asString(attrs["agent_id"])
	if agentID == "" {
		return sessionErrorResponse(http.StatusBadRequest, "agent_id is required")
	}
	v.sessions.mu.Lock()
	p := v.sessions.pending[sessionID]
	// The session leaves the cache whatever happens next: a failed PoP needs a new POST.
	delete(v.sessions.pending, sessionID)
	v.sessions.mu.Unlock()
	if p == nil {
		return sessionErrorResponse(http.StatusNotFound, "Session not found")
	}
	if p.agentID != agentID {
		return sessionErrorResponse(http.StatusBadRequest, "Agent ID mismatch")
	}
	message, signature := providedPoP(attrs)
	attributes := map[string]any{
		"agent_id":   agentID,
		"evaluation": evalFail,
		"authentication": []any{popItem(map[string]any{
			"chosen_parameters": map[string]any{"challenge": base64.StdEncoding.EncodeToString(p.nonce)},
			"data":              map[string]any{"message": message, "signature": signature},
		})},
		"created_at":           timestamp(p.createdAt),
		"challenges_expire_at": timestamp(p.expiresAt),
		"response_received_at": timestamp(now),
	}
	doc := func(status int) *response {
		return jsonResponse(status, ctSession, sessionDoc{Data: sessionData{Type: "session", ID: p.id, Attributes: attributes}}, true)
	}
	if now.After(p.expiresAt) {
		attributes["token_expires_at"] = nil
		return doc(http.StatusOK)
	}
	a := v.agent(agentID)
	if a == nil {
		return doc(http.StatusOK)
	}
	spendCPU(v.cfg.Costs.PoP)
	if err := v.verifyPoP(r, a, p.nonce, message, signature); err != nil {
		v.log.Info("pop verification failed", "agent_id", agentID, "session_id", p.id, "reason", err.Error())
		return doc(http.StatusUnauthorized)
	}
	s := v.activateSession(r, p, now, message, signature)
	attributes["evaluation"] = evalPass
	attributes["token"] = s.token
	attributes["token_expires_at"] = timestamp(s.expiresAt)
	return doc(http.StatusOK)
}

// providedPoP is the message and signature of the tpm_pop item of authentication_provided ("" when absent).
func providedPoP(attrs map[string]any) (message, signature string) {
	provided, _ := asList(attrs["authentication_provided"])
	for _, it := range provided {
		m, ok := asObject(it)
		if !ok || m["authentication_type"] != "tpm_pop" {
			continue
		}
		d, _ := asObject(m["data"])
		message, _ = asString(d["message"])
		signature, _ = asString(d["signature"])
	}
	return message, signature
}

// verifyPoP checks the proof of possession against the agent's AK, reloading the agent from the database once if
// it fails there.
func (v *Verifier) verifyPoP(r *http.Request, a *agent, nonce []byte, message, signature string) error {
	err := v.checkPoP(a, nonce, message, signature)
	if err != nil && v.db != nil {
		// The real verifier reads ak_tpm on every PoP; an agent re-enrolled with a new key since we loaded it must
		// not be refused, so reload it once before giving up.
		if lerr := v.loadAgent(r.Context(), a.id); lerr == nil {
			if fresh := v.agentMem(a.id); fresh != nil {
				err = v.checkPoP(fresh, nonce, message, signature)
			}
		}
	}
	return err
}

// activateSession makes p's token the agent's one valid token (replacing any other) and stores the session.
func (v *Verifier) activateSession(r *http.Request, p *pendingSession, now time.Time, message, signature string) *activeSession {
	s := &activeSession{id: p.id, agentID: p.agentID, token: p.token, expiresAt: now.Add(v.cfg.SessionLifetime)}
	v.sessions.mu.Lock()
	if old := v.sessions.byAgent[p.agentID]; old != nil {
		delete(v.sessions.byToken, old.token)
	}
	v.sessions.byAgent[p.agentID] = s
	v.sessions.byToken[s.token] = s
	v.sessions.mu.Unlock()
	if v.db != nil {
		v.db.saveSession(r.Context(), p, now, s.expiresAt, message, signature)
	}
	return s
}

// checkPoP verifies a TPM2_Certify proof of possession: the AK certifies itself over the raw session nonce.
func (v *Verifier) checkPoP(a *agent, nonce []byte, messageB64, signatureB64 string) error {
	msg, err := decodeBinary(messageB64)
	if err != nil || len(msg) == 0 {
		return errors.New("message is missing or not base64")
	}
	sig, err := decodeBinary(signatureB64)
	if err != nil || len(sig) == 0 {
		return errors.New("signature is missing or not base64")
	}
	att, err := softtpm.ParseAttest(msg)
	if err != nil {
		return fmt.Errorf("message: %w", err)
	}
	if att.Magic != tpmGeneratedValue || att.Type != tpmSTAttestCertify {
		return fmt.Errorf("message is not a TPM2_Certify attestation (magic %#x, type %#x)", att.Magic, att.Type)
	}
	if !bytes.Equal(att.ExtraData, nonce) {
		return errors.New("extraData is not the session nonce")
	}
	name, err := a.akName()
	if err != nil {
		return fmt.Errorf("enrolled AK: %w", err)
	}
	if !bytes.Equal(att.CertifiedName, name) {
		return errors.New("ObjectNameMismatch: certified name is not the AK's name")
	}
	if err := checkSigAlgs(sig, "sha256"); err != nil {
		return err
	}
	pub, err := a.publicKey()
	if err != nil {
		return fmt.Errorf("enrolled AK: %w", err)
	}
	if err := softtpm.VerifySignature(pub, msg, sig); err != nil {
		return fmt.Errorf("IncorrectSignature: %w", err)
	}
	return nil
}

// Authentication outcome of a request on an attestation route.
type identity struct {
	agentID string // set for a valid agent token
	admin   bool
}

// authenticate applies the real identity rules: an Authorization header is all that counts when present (401 if
// malformed, unknown or expired); without one, a verified client certificate (or, in plain HTTP, nothing) decides.
func (v *Verifier) authenticate(r *http.Request) (identity, *response) {
	h, present := r.Header["Authorization"]
	if present {
		val := ""
		if len(h) > 0 {
			val = h[0]
		}
		tok, ok := strings.CutPrefix(val, "Bearer ")
		if !ok || tok == "" {
			return identity{}, apiErrorResponse(http.StatusUnauthorized, "", "Invalid authentication token", "", "")
		}
		if v.cfg.AdminToken != "" && subtle.ConstantTimeCompare([]byte(tok), []byte(v.cfg.AdminToken)) == 1 {
			return identity{admin: true}, nil
		}
		v.sessions.mu.Lock()
		s := v.sessions.byToken[tok]
		var expired bool
		var agentID string
		if s != nil {
			expired = v.now().After(s.expiresAt)
			agentID = s.agentID
		}
		v.sessions.mu.Unlock()
		if s == nil {
			return identity{}, apiErrorResponse(http.StatusUnauthorized, "", "Invalid authentication token", "", "")
		}
		if expired {
			return identity{}, apiErrorResponse(http.StatusUnauthorized, "", "Authentication token expired", "", "")
		}
		return identity{agentID: agentID}, nil
	}
	if r.TLS != nil && len(r.TLS.VerifiedChains) > 0 {
		return identity{admin: true}, nil
	}
	return identity{}, nil
}

// authorizeAgent checks SUBMIT_ATTESTATION: agent identity, own id only.
func authorizeAgent(id identity, agentID string) *response {
	switch {
	case id.agentID == "":
		return apiErrorResponse(http.StatusForbidden, "",
			"Action submit_attestation requires agent authentication (PoP token)", "", "")
	case id.agentID != agentID:
		return apiErrorResponse(http.StatusForbidden, "",
			fmt.Sprintf("Agent %s cannot submit_attestation for resource %s (ownership required)", id.agentID, agentID), "", "")
	}
	return nil
}

// authorizeAdmin checks the admin-only actions (all attestation GETs).
func authorizeAdmin(id identity) *response {
	if !id.admin {
		return apiErrorResponse(http.StatusForbidden, "", "Action read_attestations requires admin authentication", "", "")
	}
	return nil
}

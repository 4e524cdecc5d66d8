package client

import (
	"context"
	"fmt"
	"net/http"
	"net/url"
	"slices"
	"strconv"
	"strings"
	"time"

	"github.com/attestload/attestload/attestation/record"
)

// decision is what the client does after an attempt.
type decision int

const (
	decOK          decision = iota
	decRetry                // wait, then repeat the request
	decReauth               // 401: new session, then repeat the request
	decRenegotiate          // 403 challenges_expired / evidence_immutable: start again with a new POST
	decFail                 // give up the cycle
)

// backoffBase is the first wait after a 5xx without Retry-After; it doubles per retry. Whole seconds keep
// retry_after (an integer in the results) equal to what was really waited.
const backoffBase = time.Second

// conflictWait is how long a 409 waits before the POST is repeated, as the old tool did.
const conflictWait = time.Second

// cycle carries the state of one Cycle call.
type cycle struct {
	c        *Client
	a        *Agent
	rec      *record.Record
	urls     *agentURLs
	reauthed bool              // the one re-authentication a cycle may do after a 401 has been used
	failure  record.ErrorClass // error class that ended the cycle
}

// Cycle runs one attestation cycle for a and returns its Record; it never fails, failures are data in the Record.
//
// Phases: a session (PoP) when the agent holds no token valid for TokenRenewMargin more; negotiation (POST, 201);
// evidence (PATCH latest, 202). Retries, each bounded by MaxRetries per phase:
//   - 429 and 503 with a Retry-After up to MaxRetryAfter: sleep it, repeat (retry_after = seconds slept). A longer
//     Retry-After, and any 429 on the session POST (the verifier's per-address session block), fails the cycle and
//     sets Agent.NotBefore, so that only that agent waits; a session block is logged at WARN once per block.
//     Every attempt records the Retry-After the verifier sent (server_retry_after).
//   - 5xx without Retry-After: repeat after 1 s, 2 s, 4 s, ... (capped at MaxRetryAfter).
//   - 409 on the POST: repeat after 1 s (conflicts true, retry_after 1).
//   - 401 on POST or PATCH: drop the token, redo the session once per cycle, repeat.
//   - 403 challenges_expired or evidence_immutable on the PATCH: negotiate again.
//
// Everything else fails the cycle at once: 400, 403 (other codes), 404, 415, 422 (evidence_order when the verifier's
// detail is its ORDER BY bug, else invalid_data), a PoP rejection, a malformed body, and transport errors (timeout,
// refused, reset, TLS, DNS): a load tool should see those, not hide them behind retries. A cancelled ctx ends the
// cycle as aborted.
func (c *Client) Cycle(ctx context.Context, a *Agent, task, worker int) *record.Record {
	rec := &record.Record{
		Schema:          record.SchemaVersion,
		AgentIndex:      a.Index,
		AgentID:         a.ID,
		TaskIndex:       task,
		WorkerIndex:     worker,
		Verdict:         record.Verdict{Evaluation: record.EvaluationUnknown},
		CreateAttempts:  []record.Attempt{},
		UpdateAttempts:  []record.Attempt{},
		SessionAttempts: []record.Attempt{},
	}
	if a.Profile != nil {
		rec.Profile = a.Profile.Name()
	}
	rec.StartTime = unixSeconds(c.now())
	ctx = c.hooks.CycleStart(WithAgent(ctx, a.Index), a, task)
	cy := &cycle{c: c, a: a, rec: rec, urls: a.urlsFor(c.base, c.prefix)}
	cy.run(ctx)

	rec.EndTime = unixSeconds(c.now())
	rec.SessionDuration = sumDurations(rec.SessionAttempts)
	rec.CreateDuration = sumDurations(rec.CreateAttempts)
	rec.UpdateDuration = sumDurations(rec.UpdateAttempts)
	switch {
	case rec.UpdateSuccessful:
		rec.Outcome = record.OutcomeSuccess
	case ctx.Err() != nil:
		rec.Outcome = record.OutcomeAborted
		cls := record.ClassCanceled
		rec.Error = &cls
	default:
		rec.Outcome = record.OutcomeFail
		cls := cy.failure
		if cls == "" {
			cls = record.ClassLocal
		}
		rec.Error = &cls
	}
	c.hooks.CycleEnd(ctx, rec)
	return rec
}

func sumDurations(atts []record.Attempt) float64 {
	var s float64
	for i := range atts {
		if d := atts[i].Duration; d != nil {
			s += *d
		}
	}
	return s
}

func (cy *cycle) run(ctx context.Context) {
	if ctx.Err() != nil {
		cy.failure = record.ClassCanceled
		return
	}
	if cy.a.setupErr != nil {
		cy.failure = record.ClassLocal
		cy.c.log.Debug("agent setup failed", "agent", cy.a.ID, "err", cy.a.setupErr)
		return
	}
	if !cy.a.HasToken(cy.c.now(), cy.c.renewMargin) {
		cy.a.DropToken()
		if !cy.session(ctx) {
			return
		}
	}
	for round := 0; ; round++ {
		neg, ok := cy.negotiate(ctx)
		if !ok {
			return
		}
		switch cy.evidence(ctx, neg) {
		case decOK:
			return
		case decRenegotiate:
			if round >= cy.c.maxRetries {
				return // failure already set by evidence
			}
		default:
			return
		}
	}
}

// wait sleeps between attempts; false means the cycle was cancelled meanwhile.
func (cy *cycle) wait(ctx context.Context, d time.Duration) bool {
	if d <= 0 {
		return ctx.Err() == nil
	}
	if err := cy.c.sleep(ctx, d); err != nil {
		cy.failure = record.ClassCanceled
		return false
	}
	return true
}

// add appends att to the phase's attempts and tells the hooks.
func (cy *cycle) add(ctx context.Context, list *[]record.Attempt, att record.Attempt, detail string) {
	*list = append(*list, att)
	p := &(*list)[len(*list)-1]
	if p.Error != nil {
		status := 0
		if p.Status != nil {
			status = *p.Status
		}
		cy.c.log.Debug("attempt failed", "agent", cy.a.ID, "action", p.Action, "status", status,
			"error", *p.Error, "code", p.Code, "detail", detail, "request_id", p.RequestID)
	}
	cy.c.hooks.Request(ctx, p)
}

// retryAfter reads a Retry-After header: delay seconds or an HTTP date. ok is false when absent or unreadable.
func retryAfter(h http.Header, now time.Time) (time.Duration, bool) {
	v := strings.TrimSpace(h.Get("Retry-After"))
	if v == "" {
		return 0, false
	}
	// A day is far beyond any sane MaxRetryAfter; capping keeps the arithmetic away from overflow.
	const maxRA = 24 * time.Hour
	if n, err := strconv.ParseInt(v, 10, 64); err == nil {
		if n < 0 {
			return 0, false
		}
		return min(time.Duration(min(n, int64(maxRA/time.Second)))*time.Second, maxRA), true
	}
	if t, err := http.ParseTime(v); err == nil {
		return min(max(t.Sub(now), 0), maxRA), true
	}
	return 0, false
}

// judge classifies a non-success answer (or a transport failure, r == nil) into a decision and a wait. It sets
// att.Error/Code/Conflicts; the caller sets RetryAfter once it knows it will retry. retries is how many retries
// the phase has already made.
func (cy *cycle) judge(att *record.Attempt, r *response, patch bool, retries int) (decision, time.Duration, string) {
	if r == nil {
		return decFail, 0, ""
	}
	e := parseAPIError(r.body)
	att.Code = e.Code
	ra, hasRA := retryAfter(r.header, cy.c.now())
	limited := func(class record.ErrorClass) (decision, time.Duration, string) {
		setFailed(att, class)
		if !hasRA {
			return cy.backoff(retries, e.Detail)
		}
		if att.Action == record.ActionSessionCreate && class == record.ClassRateLimited {
			// A session block (60 s, doubling up to an hour) is the agent's to wait out: the cycle ends and the
			// scheduler brings the agent back after it, while the worker attests other agents meanwhile.
			cy.a.NotBefore = cy.c.now().Add(ra)
			cy.c.warnSessionBlock(ra, e.Detail)
			return decFail, 0, e.Detail
		}
		if ra > cy.c.maxRetryWait {
			// Sleeping an hour inside a cycle would stall a worker; the scheduler learns when to come back.
			cy.a.NotBefore = cy.c.now().Add(ra)
			return decFail, 0, e.Detail
		}
		if ra < time.Second {
			ra = time.Second // "0" is a rounded remainder; an immediate repeat would only be refused again
		}
		return decRetry, ra, e.Detail
	}
	switch s := r.status; {
	case s == http.StatusUnauthorized:
		setFailed(att, record.ClassAuth)
		return decReauth, 0, e.Detail
	case s == http.StatusTooManyRequests:
		return limited(record.ClassRateLimited)
	case s == http.StatusServiceUnavailable:
		return limited(record.ClassUnavailable)
	case s == http.StatusConflict:
		setFailed(att, record.ClassConflict)
		t := true
		att.Conflicts = &t
		return decRetry, conflictWait, e.Detail
	case s == http.StatusForbidden:
		setFailed(att, record.ClassForbidden)
		if patch && (e.Code == "challenges_expired" || e.Code == "evidence_immutable") {
			return decRenegotiate, 0, e.Detail
		}
		return decFail, 0, e.Detail
	case s == http.StatusNotFound:
		setFailed(att, record.ClassNotFound)
		return decFail, 0, e.Detail
	case s == http.StatusUnprocessableEntity:
		if strings.Contains(e.Detail, "same order as the evidence requested") {
			setFailed(att, record.ClassEvidenceOrder)
		} else {
			setFailed(att, record.ClassInvalidData)
		}
		return decFail, 0, e.Detail
	case s >= 500:
		setFailed(att, record.ClassHTTPStatus)
		if hasRA {
			return limited(record.ClassHTTPStatus)
		}
		return cy.backoff(retries, e.Detail)
	default:
		setFailed(att, record.ClassHTTPStatus)
		return decFail, 0, e.Detail
	}
}

func (cy *cycle) backoff(retries int, detail string) (decision, time.Duration, string) {
	d := backoffBase << min(retries, 16)
	if d > cy.c.maxRetryWait {
		d = cy.c.maxRetryWait
	}
	return decRetry, d, detail
}

// retry records that the client will wait d and repeat, if the phase's budget allows; false means give up.
func (cy *cycle) retry(att *record.Attempt, retries *int, d time.Duration) bool {
	if *retries >= cy.c.maxRetries {
		return false
	}
	*retries++
	secs := int((d + time.Second - 1) / time.Second)
	att.RetryAfter = &secs
	return true
}

// session authenticates the agent: POST /sessions, then the PoP PATCH. It returns true with a token stored in the
// agent. A retryable failure of either request starts again from the POST, because the verifier discards the
// session on any PoP failure.
func (cy *cycle) session(ctx context.Context) bool {
	c, a := cy.c, cy.a
	pctx, end := c.hooks.PhaseStart(ctx, record.PhaseSession)
	ok := false
	defer func() { end(ok) }()
	if a.TPM == nil {
		cy.failure = record.ClassLocal
		return false
	}
	createBody, err := sessionCreateBody(a.ID)
	if err != nil {
		cy.failure = record.ClassLocal
		return false
	}
	retries := 0
	for {
		var sess sessionCreated
		create := call{action: record.ActionSessionCreate, method: http.MethodPost, url: cy.urls.sessions,
			body: createBody, want: http.StatusOK, accept: func(r *response) (record.ErrorClass, string) {
				var err error
				if sess, err = parseSessionCreated(r.body); err != nil {
					return record.ClassBadResponse, err.Error()
				}
				return "", ""
			}}
		switch dec, wait := cy.sessionStep(pctx, &create, &retries); dec {
		case decRetry:
			if !cy.wait(ctx, wait) {
				return false
			}
			continue
		case decFail:
			return false
		}
		switch dec, wait := cy.proveSession(pctx, sess, &retries); dec {
		case decOK:
			ok = true
			return true
		case decRetry:
			if !cy.wait(ctx, wait) {
				return false
			}
		default:
			return false
		}
	}
}

// proveSession sends the session's proof of possession: PATCH /sessions/{id} with TPM2_Certify over the raw
// nonce. A pass stores the token in the agent.
func (cy *cycle) proveSession(pctx context.Context, sess sessionCreated, retries *int) (decision, time.Duration) {
	c, a := cy.c, cy.a
	msg, sig, err := a.TPM.Certify(sess.Challenge)
	if err != nil {
		cy.failure = record.ClassLocal
		c.log.Debug("certify failed", "agent", a.ID, "err", err)
		return decFail, 0
	}
	popBody, err := sessionPoPBody(a.ID, sess.ID, msg, sig)
	if err != nil {
		cy.failure = record.ClassLocal
		return decFail, 0
	}
	pop := call{action: record.ActionSessionPoP, method: http.MethodPatch,
		url: cy.urls.sessions + "/" + url.PathEscape(sess.ID), body: popBody, want: http.StatusOK,
		accept: func(r *response) (record.ErrorClass, string) {
			res, err := parsePoPResult(r.body)
			switch {
			case err != nil:
				return record.ClassBadResponse, err.Error()
			case !res.Pass:
				// 200 "fail": nonce expired or agent unknown to the verifier.
				return record.ClassPoPRejected, ""
			}
			a.setToken(res.Token, res.Expires, c.now())
			return "", ""
		},
		refuse: func(att *record.Attempt, r *response) bool {
			if r == nil || r.status != http.StatusUnauthorized {
				return false
			}
			setFailed(att, record.ClassPoPRejected)
			att.Code = parseAPIError(r.body).Code
			return true
		}}
	return cy.sessionStep(pctx, &pop, retries)
}

// sessionStep is a step of the session phase, which cannot re-authenticate or renegotiate: those answers fail it.
// A failure sets cy.failure.
func (cy *cycle) sessionStep(pctx context.Context, req *call, retries *int) (decision, time.Duration) {
	dec, wait, class := cy.step(pctx, &cy.rec.SessionAttempts, req, retries)
	if dec != decOK && dec != decRetry {
		cy.failure = class
		return decFail, 0
	}
	return dec, wait
}

// call is one request of a phase and how its answer is read.
type call struct {
	action      record.Action
	method, url string
	body        []byte
	auth        bool // send the agent's current token (read at each attempt: a re-authentication renews it)
	want        int  // the status that means the verifier took the request
	patch       bool // the evidence PATCH: 403 challenges_expired or evidence_immutable renegotiates
	// accept reads a response with status want. An empty class makes the attempt successful (a detail is then only
	// logged); otherwise the attempt fails with class and detail.
	accept func(r *response) (class record.ErrorClass, detail string)
	// refuse, if set, may judge a response other than want (or a transport failure, r == nil) before judge does:
	// true means it set the attempt's error and the step fails.
	refuse func(att *record.Attempt, r *response) bool
}

// step makes one attempt of req: it sends the request, classifies the answer (accept, refuse, judge), turns a retry
// the phase's budget cannot pay for into a failure, and records the attempt in list. It returns the decision, the
// wait before a retry, and the attempt's error class when it failed.
func (cy *cycle) step(pctx context.Context, list *[]record.Attempt, req *call, retries *int) (decision, time.Duration, record.ErrorClass) {
	token := ""
	if req.auth {
		token = cy.a.token
	}
	att, r := cy.c.do(pctx, req.action, req.method, req.url, req.body, token)
	if r != nil {
		if ra, ok := retryAfter(r.header, cy.c.now()); ok {
			secs := int((ra + time.Second - 1) / time.Second)
			att.ServerRetryAfter = &secs
		}
	}
	var dec decision
	var wait time.Duration
	var detail string
	switch {
	case r != nil && r.status == req.want:
		var class record.ErrorClass
		if class, detail = req.accept(r); class != "" {
			setFailed(&att, class)
			dec = decFail
		} else {
			setOK(&att)
			dec = decOK
		}
	case req.refuse != nil && req.refuse(&att, r):
		dec = decFail
	default:
		dec, wait, detail = cy.judge(&att, r, req.patch, *retries)
	}
	r.release()
	if dec == decRetry && !cy.retry(&att, retries, wait) {
		dec = decFail
	}
	cy.add(pctx, list, att, detail)
	var class record.ErrorClass
	if att.Error != nil {
		class = *att.Error
	}
	return dec, wait, class
}

// reauth handles a 401 on an attestation call: drop the token and authenticate again, once per cycle.
func (cy *cycle) reauth(ctx context.Context) bool {
	cy.a.DropToken()
	if cy.reauthed {
		cy.failure = record.ClassAuth
		return false
	}
	cy.reauthed = true
	return cy.session(ctx)
}

// negotiate sends the capabilities and returns what the verifier asks for.
func (cy *cycle) negotiate(ctx context.Context) (negotiation, bool) {
	c, a := cy.c, cy.a
	pctx, end := c.hooks.PhaseStart(ctx, record.PhaseNegotiate)
	ok := false
	defer func() { end(ok) }()
	hasIMA := a.Log != nil
	entries := 0
	if hasIMA {
		entries = a.Log.EntryCount()
	}
	uefiEvents := 0
	if mb := a.measuredBoot(); mb != nil {
		uefiEvents = mb.Events()
	}
	ak := a.akInfo()
	body, err := capabilitiesBody(ak, hasIMA, entries, uefiEvents, a.BootTime)
	if err != nil || ak.public == "" {
		cy.failure = record.ClassLocal
		return negotiation{}, false
	}
	var neg negotiation
	req := call{action: record.ActionCreate, method: http.MethodPost, url: cy.urls.create, body: body, auth: true,
		want: http.StatusCreated, accept: func(r *response) (record.ErrorClass, string) {
			var err error
			if neg, err = parseNegotiation(r.body, r.header.Get("Location")); err != nil {
				return record.ClassBadResponse, err.Error()
			}
			return "", ""
		}}
	dec := cy.exchange(ctx, pctx, &req, &cy.rec.CreateAttempts)
	if dec != decOK {
		return negotiation{}, false
	}
	ok = true
	cy.rec.CreateSuccessful = true
	cy.rec.AttestationIndex = neg.Index
	return neg, true
}

// evidence builds the evidence the verifier asked for, in its order, and sends it.
func (cy *cycle) evidence(ctx context.Context, neg negotiation) decision {
	c, a := cy.c, cy.a
	pctx, end := c.hooks.PhaseStart(ctx, record.PhaseEvidence)
	ok := false
	defer func() { end(ok) }()
	body, err := cy.buildEvidence(neg)
	if err != nil {
		cy.failure = record.ClassLocal
		c.log.Debug("building evidence failed", "agent", a.ID, "err", err)
		return decFail
	}
	var next *float64
	req := call{action: record.ActionUpdate, method: http.MethodPatch, url: cy.urls.update, body: body, auth: true,
		want: http.StatusAccepted, patch: true, accept: func(r *response) (record.ErrorClass, string) {
			var err error
			if next, err = parseAccepted(r.body); err != nil {
				// The evidence was accepted whatever the body says; only the hint for the next POST is lost.
				return "", err.Error()
			}
			return "", ""
		}}
	dec := cy.exchange(ctx, pctx, &req, &cy.rec.UpdateAttempts)
	if dec != decOK {
		return dec
	}
	ok = true
	cy.rec.UpdateSuccessful = true
	now := c.now()
	if next != nil {
		a.NotBefore = now.Add(time.Duration(*next * float64(time.Second)))
	} else {
		a.NotBefore = now
	}
	if neg.Index != nil {
		a.LastIndex = *neg.Index
	}
	if a.Log != nil {
		a.Log.Grow()
	}
	if c.slideTokens {
		a.slideToken(now)
	}
	return decOK
}

// exchange sends one attestation request (the POST or the PATCH) until it succeeds or the cycle has to stop,
// recording every attempt in list. Retries wait as the verifier asked, a 401 re-authenticates once, and the result
// is decOK, decRenegotiate (only for the evidence PATCH) or decFail with cy.failure set.
func (cy *cycle) exchange(ctx, pctx context.Context, req *call, list *[]record.Attempt) decision {
	retries := 0
	for {
		dec, wait, class := cy.step(pctx, list, req, &retries)
		switch dec {
		case decOK:
			return decOK
		case decRetry:
			if !cy.wait(ctx, wait) {
				return decFail
			}
		case decReauth:
			if !cy.reauth(pctx) {
				return decFail
			}
		case decRenegotiate:
			cy.failure = class
			return decRenegotiate
		default:
			cy.failure = class
			return decFail
		}
	}
}

func (cy *cycle) buildEvidence(neg negotiation) ([]byte, error) {
	a := cy.a
	items := make([]evidenceItem, 0, len(neg.Items))
	// The IMA entries must be read before quoting: PCR 10 has to match exactly the log that is sent.
	var imaText string
	var imaN int
	imaOffset := -1
	for _, it := range neg.Items {
		if it.Type != "ima_log" {
			continue
		}
		if a.Log == nil {
			return nil, fmt.Errorf("verifier requested an ima_log but profile %q has none", profileName(a))
		}
		text, n, err := a.Log.Entries(it.StartingOffset)
		if err != nil {
			return nil, fmt.Errorf("ima entries from %d: %w", it.StartingOffset, err)
		}
		imaText, imaN, imaOffset = text, n, it.StartingOffset
	}
	for _, it := range neg.Items {
		switch it.Type {
		case "tpm_quote":
			if scheme := a.TPM.Key().SignatureScheme(); it.SigScheme != scheme || it.HashAlg != "sha256" {
				return nil, fmt.Errorf("quote with %s/%s requested; the AK signs %s/sha256 only", it.SigScheme, it.HashAlg, scheme)
			}
			extra := it.Challenge
			if cy.c.extraData == ExtraDataB64Text {
				extra = []byte(it.ChallengeText)
			}
			if a.Log != nil {
				if err := a.TPM.SetPCR(10, a.Log.PCR10()); err != nil {
					return nil, err
				}
			}
			pcrs := slices.Clone(it.PCRs)
			slices.Sort(pcrs)
			pcrs = slices.Compact(pcrs)
			msg, sig, subject, err := a.TPM.Quote(extra, pcrs)
			if err != nil {
				return nil, fmt.Errorf("quote: %w", err)
			}
			items = append(items, evidenceItem{quote: &quoteEvidence{class: it.Class, typ: it.Type,
				subject: subject, message: msg, signature: sig}})
		case "ima_log":
			items = append(items, evidenceItem{ima: &imaEvidence{class: it.Class, typ: it.Type, count: imaN, entries: imaText}})
		case "uefi_log":
			mb := a.measuredBoot()
			if mb == nil {
				return nil, fmt.Errorf("verifier requested a uefi_log but profile %q has no measured boot", profileName(a))
			}
			items = append(items, evidenceItem{uefi: &uefiEvidence{class: it.Class, typ: it.Type, entries: mb.LogBase64()}})
		default:
			return nil, fmt.Errorf("verifier requested %s/%s, which the simulated agent cannot provide", it.Class, it.Type)
		}
	}
	if imaOffset >= 0 {
		off, n := imaOffset, imaN
		cy.rec.IMAOffset, cy.rec.IMAEntriesSent = &off, &n
	}
	return evidenceBody(items)
}

func profileName(a *Agent) string {
	if a.Profile == nil {
		return ""
	}
	return a.Profile.Name()
}

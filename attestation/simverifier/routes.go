package simverifier

import (
	"bytes"
	"crypto/rand"
	"encoding/hex"
	"io"
	"net/http"
	"regexp"
	"strconv"
	"strings"
	"time"
)

var nonWord = regexp.MustCompile(`[^A-Za-z0-9_]`)

// requestID mirrors the real verifier: non-word characters are stripped, the rest truncated to 36 characters.
func requestID(r *http.Request) string {
	id := nonWord.ReplaceAllString(r.Header.Get("X-Request-ID"), "")
	if len(id) > 36 {
		id = id[:36]
	}
	if id == "" {
		b := make([]byte, 16)
		_, _ = rand.Read(b)
		id = hex.EncodeToString(b)
	}
	return id
}

// route is a parsed request path.
type route struct {
	kind    Endpoint
	handler func(v *Verifier, r *http.Request, body []byte) *response
}

// classify maps a request to its endpoint kind and handler, reproducing the real routing table and its quirks.
func (v *Verifier) classify(r *http.Request) route {
	p := r.URL.Path
	switch strings.TrimSuffix(p, "/") {
	case "":
		return route{EndpointOther, func(*Verifier, *http.Request, []byte) *response {
			return emptyResponse(http.StatusTemporaryRedirect).set("Location", "/v3.0/")
		}}
	case "/versions", "/version":
		return route{EndpointOther, func(*Verifier, *http.Request, []byte) *response {
			return apiErrorResponse(http.StatusGone, "", "Version information is not available in push mode", "", "")
		}}
	}
	var rest string
	switch {
	case strings.HasPrefix(p, "/v3.0/"):
		rest = p[len("/v3.0/"):]
	case strings.HasPrefix(p, "/v3/"):
		rest = p[len("/v3/"):]
	default:
		return route{EndpointOther, notFound}
	}
	rest = strings.TrimSuffix(rest, "/")
	parts := strings.Split(rest, "/")
	m := r.Method
	switch {
	case rest == "":
		// respond() is forbidden under v3, so the version root fails.
		return route{EndpointOther, serverError}
	case parts[0] == "sessions" && len(parts) == 1:
		if m == http.MethodPost {
			return route{EndpointSessionCreate, func(v *Verifier, r *http.Request, b []byte) *response { return v.createSession(r, b) }}
		}
	case parts[0] == "sessions" && len(parts) == 2 && parts[1] != "":
		if m == http.MethodPatch {
			sid := parts[1]
			return route{EndpointSessionPoP, func(v *Verifier, r *http.Request, b []byte) *response { return v.popSession(r, b, sid) }}
		}
	case parts[0] == "agents" && len(parts) == 1:
		// v3 agent stubs call respond() and fail.
		return route{EndpointOther, serverError}
	case parts[0] == "agents" && len(parts) == 2:
		return route{EndpointOther, serverError}
	case parts[0] == "agents" && len(parts) >= 3 && parts[2] == "session":
		return route{EndpointOther, serverError}
	case parts[0] == "agents" && len(parts) == 3 && parts[2] == "attestations":
		id := parts[1]
		self := strings.TrimSuffix(p, "/")
		switch m {
		case http.MethodPost:
			return route{EndpointCreate, func(v *Verifier, r *http.Request, b []byte) *response { return v.createAttestation(r, b, id, self) }}
		case http.MethodGet:
			return route{EndpointAdmin, func(v *Verifier, r *http.Request, _ []byte) *response { return v.listAttestations(r, id) }}
		}
	case parts[0] == "agents" && len(parts) == 4 && parts[2] == "attestations":
		id, which := parts[1], parts[3]
		index := -1
		if which != "latest" {
			n, err := strconv.Atoi(which)
			if err != nil || n < 0 {
				return route{EndpointOther, notFound}
			}
			index = n
		}
		self := strings.TrimSuffix(p, "/")
		switch m {
		case http.MethodPatch:
			return route{EndpointUpdate, func(v *Verifier, r *http.Request, b []byte) *response {
				return v.updateAttestation(r, b, id, index, self)
			}}
		case http.MethodGet:
			return route{EndpointAdmin, func(v *Verifier, r *http.Request, _ []byte) *response { return v.getAttestation(r, id, index) }}
		}
	default:
		return route{EndpointOther, notFound}
	}
	return route{EndpointOther, methodNotAllowed}
}

func notFound(*Verifier, *http.Request, []byte) *response { return emptyResponse(http.StatusNotFound) }
func serverError(*Verifier, *http.Request, []byte) *response {
	return emptyResponse(http.StatusInternalServerError)
}
func methodNotAllowed(*Verifier, *http.Request, []byte) *response {
	return emptyResponse(http.StatusMethodNotAllowed)
}

// serveHTTP runs one request: worker slot, pre-handling faults, the route, the response (with body faults), then
// anything that runs after the response (verification), still holding the worker like the real worker process.
func (v *Verifier) serveHTTP(w http.ResponseWriter, r *http.Request) {
	ctx := r.Context()
	reqID := requestID(r)
	w.Header().Set("X-Request-Id", reqID)
	rt := v.classify(r)
	faults := v.faults.Load()
	rule := faults.rule(rt.kind)

	if v.workers != nil {
		select {
		case v.workers <- struct{}{}:
			defer func() { <-v.workers }()
		case <-ctx.Done():
			return
		}
	}
	if p := processFrom(ctx); p != nil {
		if !v.procs.acquire(ctx, p) {
			return
		}
		defer v.procs.release(p)
	}
	if v.beforeRequest != nil {
		v.beforeRequest()
	}
	spendCPU(v.cfg.Costs.Request)
	if v.rnd.hit(rule.CloseRate) {
		panic(http.ErrAbortHandler)
	}
	if err := sleepCtx(ctx, rule.Latency.sample(v.rnd)); err != nil {
		return
	}
	if v.rnd.hit(rule.StallRate) {
		if err := sleepCtx(ctx, rule.StallFor); err != nil {
			return
		}
	}
	var resp *response
	if v.rnd.hit(rule.ErrorRate) {
		status := rule.ErrorStatus
		if status == 0 {
			status = http.StatusServiceUnavailable
		}
		resp = apiErrorResponse(status, "injected_fault", "fault injected by the simulated verifier", "", "")
		if rule.ErrorRetryAfter > 0 {
			resp.set("Retry-After", strconv.Itoa(rule.ErrorRetryAfter))
		}
	} else if rt.kind == EndpointUpdate && v.rnd.hit(rule.EvidenceOrderRate) {
		// Keylime's evidence-order defect: evidence in the requested order refused as if it were not.
		resp = invalid(r.URL.Path, "/data/attributes/evidence_collected", "evidence must appear in the same order as the evidence requested")
	} else {
		body, err := readBody(r)
		if err != nil {
			resp = emptyResponse(http.StatusRequestEntityTooLarge)
		} else {
			resp = rt.handler(v, r, body)
		}
	}
	if resp.after != nil {
		// Deferred so that verification still runs when a body fault aborts the connection after the 202, as it
		// would on the real verifier; it runs before the worker slot is released.
		defer resp.after()
	}
	v.write(w, r, resp, rule)
}

// write sends a response, applying the body faults of rule.
func (v *Verifier) write(w http.ResponseWriter, r *http.Request, resp *response, rule FaultRule) {
	h := w.Header()
	for k, vals := range resp.header {
		h[k] = vals
	}
	body := resp.body
	ct := resp.contentType
	if v.rnd.hit(rule.WrongContentTypeRate) {
		ct = "text/plain; charset=utf-8"
	}
	if len(body) > 0 && v.rnd.hit(rule.InvalidJSONRate) {
		body = append([]byte(`{"data": {"type": "attestation", "attributes": {`), body[:len(body)/3]...)
	}
	pad := 0
	if v.rnd.hit(rule.HugeBodyRate) {
		pad = rule.HugeBodyBytes
		if pad == 0 {
			pad = 8 << 20
		}
	}
	if ct != "" {
		h.Set("Content-Type", ct)
	}
	total := len(body) + pad
	h.Set("Content-Length", strconv.Itoa(total))
	truncate := total > 1 && v.rnd.hit(rule.TruncateRate)
	trickle := v.rnd.hit(rule.TrickleRate)
	// The huge-body padding is streamed from one shared block, never built: 8 agents asking at once would
	// otherwise make the simulator allocate hundreds of MiB and, under load or the race detector, answer so slowly
	// that the client times out before it sees the oversized body it is meant to refuse.
	content := io.MultiReader(bytes.NewReader(body), &padding{left: pad})
	w.WriteHeader(resp.status)
	if truncate {
		_, _ = io.CopyN(w, content, int64(total/2))
		if f, ok := w.(http.Flusher); ok {
			f.Flush()
		}
		// Aborting makes the server close the connection short of Content-Length.
		panic(http.ErrAbortHandler)
	}
	if trickle {
		chunk := rule.TrickleChunk
		if chunk == 0 {
			chunk = 16
		}
		f, _ := w.(http.Flusher)
		for left := total; left > 0; {
			n := min(chunk, left)
			if _, err := io.CopyN(w, content, int64(n)); err != nil {
				return
			}
			left -= n
			if f != nil {
				f.Flush()
			}
			if left > 0 && sleepCtx(r.Context(), rule.TrickleDelay) != nil {
				return
			}
		}
		return
	}
	if pad == 0 {
		// An ordinary answer is written as it is: io.Copy through the MultiReader would take a 32 KiB buffer per
		// answer (kept in a pool, they showed as 20 MB of a fleet run's live heap).
		if _, err := w.Write(body); err != nil {
			return
		}
	} else if _, err := io.Copy(w, content); err != nil {
		return
	}
	if f, ok := w.(http.Flusher); ok && resp.after != nil {
		// The client must see the 202 before the verification that follows it starts.
		f.Flush()
	}
}

// spaces is the block the huge-body fault's padding is read from.
var spaces = bytes.Repeat([]byte(" "), 64<<10)

// padding reads left spaces without holding them.
type padding struct{ left int }

func (p *padding) Read(b []byte) (int, error) {
	if p.left == 0 {
		return 0, io.EOF
	}
	n := copy(b, spaces[:min(len(spaces), p.left, len(b))])
	p.left -= n
	return n, nil
}

// retryAfter formats a Retry-After value.
func retryAfter(d time.Duration) string { return strconv.Itoa(ceilSeconds(d)) }

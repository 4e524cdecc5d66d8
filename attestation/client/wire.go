package client

import (
	"encoding/base64"
	"encoding/json"
	"errors"
	"fmt"
	"net/url"
	"strconv"
	"strings"
	"time"
)

// Request bodies. Field order follows the spec's examples so captured traffic is easy to compare by eye.

type jsonAPIDoc[T any] struct {
	Data T `json:"data"`
}

type authMethod struct {
	Class string `json:"authentication_class"`
	Type  string `json:"authentication_type"`
}

type sessionCreateData struct {
	Type       string `json:"type"`
	Attributes struct {
		AgentID   string       `json:"agent_id"`
		Supported []authMethod `json:"authentication_supported"`
	} `json:"attributes"`
}

type popData struct {
	Message   string `json:"message"`
	Signature string `json:"signature"`
}

type authProvided struct {
	authMethod
	Data popData `json:"data"`
}

type sessionPoPData struct {
	Type       string `json:"type"`
	ID         string `json:"id"`
	Attributes struct {
		AgentID  string         `json:"agent_id"`
		Provided []authProvided `json:"authentication_provided"`
	} `json:"attributes"`
}

func sessionCreateBody(agentID string) ([]byte, error) {
	var d sessionCreateData
	d.Type = "session"
	d.Attributes.AgentID = agentID
	d.Attributes.Supported = []authMethod{{Class: "pop", Type: "tpm_pop"}}
	return json.Marshal(jsonAPIDoc[sessionCreateData]{Data: d})
}

func sessionPoPBody(agentID, sessionID string, message, signature []byte) ([]byte, error) {
	var d sessionPoPData
	d.Type = "session"
	d.ID = sessionID
	d.Attributes.AgentID = agentID
	d.Attributes.Provided = []authProvided{{
		authMethod: authMethod{Class: "pop", Type: "tpm_pop"},
		Data: popData{
			Message:   base64.StdEncoding.EncodeToString(message),
			Signature: base64.StdEncoding.EncodeToString(signature),
		},
	}}
	return json.Marshal(jsonAPIDoc[sessionPoPData]{Data: d})
}

// Response parsing. Every parser tolerates unknown fields and reports missing or malformed required fields as an
// error; none may panic on any input (they are fuzzed).

// apiError is the first element of a JSON:API errors[] array.
type apiError struct {
	Code   string
	Detail string
}

// parseAPIError never fails: an empty or non-JSON body (framework errors have one) gives a zero apiError.
func parseAPIError(body []byte) apiError {
	var doc struct {
		Errors []struct {
			Code   any `json:"code"`
			Detail any `json:"detail"`
			Title  any `json:"title"`
		} `json:"errors"`
	}
	if len(body) == 0 || json.Unmarshal(body, &doc) != nil || len(doc.Errors) == 0 {
		return apiError{}
	}
	e := doc.Errors[0]
	detail := asString(e.Detail)
	if detail == "" {
		detail = asString(e.Title)
	}
	return apiError{Code: asString(e.Code), Detail: detail}
}

func asString(v any) string {
	if s, ok := v.(string); ok {
		return s
	}
	return ""
}

type sessionCreated struct {
	ID        string
	Challenge []byte
}

func parseSessionCreated(body []byte) (sessionCreated, error) {
	var doc struct {
		Data *struct {
			ID         string `json:"id"`
			Attributes struct {
				Requested []struct {
					Type   string `json:"authentication_type"`
					Params struct {
						Challenge string `json:"challenge"`
					} `json:"chosen_parameters"`
				} `json:"authentication_requested"`
			} `json:"attributes"`
		} `json:"data"`
	}
	if err := json.Unmarshal(body, &doc); err != nil {
		return sessionCreated{}, fmt.Errorf("session response: %w", err)
	}
	if doc.Data == nil {
		return sessionCreated{}, errors.New("session response: no data")
	}
	if doc.Data.ID == "" {
		return sessionCreated{}, errors.New("session response: no data.id")
	}
	for _, r := range doc.Data.Attributes.Requested {
		if r.Type != "tpm_pop" {
			continue
		}
		ch, err := base64.StdEncoding.DecodeString(r.Params.Challenge)
		if err != nil {
			return sessionCreated{}, fmt.Errorf("session response: challenge is not base64: %w", err)
		}
		if len(ch) == 0 {
			return sessionCreated{}, errors.New("session response: empty challenge")
		}
		return sessionCreated{ID: doc.Data.ID, Challenge: ch}, nil
	}
	return sessionCreated{}, errors.New("session response: no tpm_pop authentication requested")
}

type popResult struct {
	Pass    bool
	Token   string
	Expires time.Time // zero when the verifier sent none
}

// parsePoPResult reads a session PATCH answer. Its errors never contain the token.
func parsePoPResult(body []byte) (popResult, error) {
	var doc struct {
		Data *struct {
			Attributes struct {
				Evaluation string  `json:"evaluation"`
				Token      *string `json:"token"`
				Expires    *string `json:"token_expires_at"`
			} `json:"attributes"`
		} `json:"data"`
	}
	if err := json.Unmarshal(body, &doc); err != nil {
		var syn *json.SyntaxError
		if errors.As(err, &syn) {
			return popResult{}, fmt.Errorf("session pop response: invalid JSON at offset %d", syn.Offset)
		}
		return popResult{}, errors.New("session pop response: unexpected JSON shape")
	}
	if doc.Data == nil {
		return popResult{}, errors.New("session pop response: no data")
	}
	a := doc.Data.Attributes
	switch a.Evaluation {
	case "fail":
		return popResult{}, nil
	case "pass":
	default:
		return popResult{}, fmt.Errorf("session pop response: evaluation %q is neither pass nor fail", a.Evaluation)
	}
	if a.Token == nil || *a.Token == "" {
		return popResult{}, errors.New("session pop response: evaluation pass without a token")
	}
	r := popResult{Pass: true, Token: *a.Token}
	if a.Expires != nil && *a.Expires != "" {
		t, err := parseTime(*a.Expires)
		if err != nil {
			return popResult{}, fmt.Errorf("session pop response: token_expires_at: %w", err)
		}
		r.Expires = t
	}
	return r, nil
}

// parseTime accepts the verifier's ISO-8601 timestamps ("2026-11-30T20:14:39.454007+00:00", or with Z).
func parseTime(s string) (time.Time, error) {
	t, err := time.Parse(time.RFC3339Nano, s)
	if err != nil {
		return time.Time{}, fmt.Errorf("time %q is not ISO-8601", s)
	}
	return t, nil
}

// requestedItem is one element of evidence_requested, reduced to what the client needs to answer it.
type requestedItem struct {
	Class, Type string

	// tpm_quote
	ChallengeText string // as sent (base64), for the b64text extraData encoding
	Challenge     []byte
	SigScheme     string
	HashAlg       string
	PCRs          []int // selected_subjects["sha256"]

	// ima_log
	StartingOffset int
}

type negotiation struct {
	Index *int // server-assigned attestation index, nil when neither Location nor links.self carry one
	Items []requestedItem
}

// parseNegotiation reads a 201 answer to the capabilities POST. location is the Location header ("" if absent).
func parseNegotiation(body []byte, location string) (negotiation, error) {
	var doc struct {
		Data *struct {
			Attributes struct {
				Requested []struct {
					Class  string          `json:"evidence_class"`
					Type   string          `json:"evidence_type"`
					Params json.RawMessage `json:"chosen_parameters"`
				} `json:"evidence_requested"`
			} `json:"attributes"`
			Links struct {
				Self string `json:"self"`
			} `json:"links"`
		} `json:"data"`
	}
	if err := json.Unmarshal(body, &doc); err != nil {
		return negotiation{}, fmt.Errorf("attestation response: %w", err)
	}
	if doc.Data == nil {
		return negotiation{}, errors.New("attestation response: no data")
	}
	var n negotiation
	if idx, ok := indexFromPath(location); ok {
		n.Index = &idx
	} else if idx, ok := indexFromPath(doc.Data.Links.Self); ok {
		n.Index = &idx
	}
	if len(doc.Data.Attributes.Requested) == 0 {
		// The verifier selected nothing (no IMA policy and no PCR policy): evidence can never be accepted.
		return negotiation{}, errors.New("attestation response: evidence_requested is empty")
	}
	for i, r := range doc.Data.Attributes.Requested {
		it := requestedItem{Class: r.Class, Type: r.Type}
		var err error
		switch r.Type {
		case "tpm_quote":
			err = parseQuoteParams(r.Params, &it)
		case "ima_log":
			err = parseIMAParams(r.Params, &it)
		}
		if err != nil {
			return negotiation{}, fmt.Errorf("attestation response: evidence_requested[%d] (%s): %w", i, r.Type, err)
		}
		n.Items = append(n.Items, it)
	}
	return n, nil
}

func parseQuoteParams(raw json.RawMessage, it *requestedItem) error {
	var p struct {
		Challenge string                      `json:"challenge"`
		SigScheme string                      `json:"signature_scheme"`
		HashAlg   string                      `json:"hash_algorithm"`
		Subjects  map[string]*json.RawMessage `json:"selected_subjects"`
	}
	if len(raw) == 0 {
		return errors.New("no chosen_parameters")
	}
	if err := json.Unmarshal(raw, &p); err != nil {
		return err
	}
	ch, err := base64.StdEncoding.DecodeString(p.Challenge)
	if err != nil || len(ch) == 0 {
		return errors.New("challenge missing or not base64")
	}
	it.ChallengeText, it.Challenge = p.Challenge, ch
	it.SigScheme, it.HashAlg = p.SigScheme, p.HashAlg
	for bank, v := range p.Subjects {
		if v == nil || string(*v) == "null" {
			continue
		}
		if bank != "sha256" {
			return fmt.Errorf("selected_subjects names bank %q, but only sha256 was offered", bank)
		}
		if err := json.Unmarshal(*v, &it.PCRs); err != nil {
			return fmt.Errorf("selected_subjects.sha256: %w", err)
		}
	}
	if len(it.PCRs) == 0 {
		return errors.New("selected_subjects selects no sha256 PCR")
	}
	for _, pcr := range it.PCRs {
		if pcr < 0 || pcr > 23 {
			return fmt.Errorf("selected_subjects.sha256 has PCR %d outside 0-23", pcr)
		}
	}
	return nil
}

func parseIMAParams(raw json.RawMessage, it *requestedItem) error {
	var p struct {
		StartingOffset *int `json:"starting_offset"`
	}
	if len(raw) == 0 {
		return errors.New("no chosen_parameters")
	}
	if err := json.Unmarshal(raw, &p); err != nil {
		return err
	}
	if p.StartingOffset == nil {
		return errors.New("no starting_offset")
	}
	if *p.StartingOffset < 0 {
		return fmt.Errorf("starting_offset %d is negative", *p.StartingOffset)
	}
	it.StartingOffset = *p.StartingOffset
	return nil
}

// indexFromPath takes the attestation index from ".../attestations/{n}" (a Location header or links.self, possibly
// a full URL).
func indexFromPath(s string) (int, bool) {
	if s == "" {
		return 0, false
	}
	if u, err := url.Parse(s); err == nil {
		s = u.Path
	}
	s = strings.TrimSuffix(s, "/")
	i := strings.LastIndexByte(s, '/')
	if i < 0 || !strings.HasSuffix(s[:i], "/attestations") {
		return 0, false
	}
	n, err := strconv.Atoi(s[i+1:])
	if err != nil || n < 0 {
		return 0, false
	}
	return n, true
}

// parseAccepted reads a 202 answer to the evidence PATCH: only meta.seconds_to_next_attestation matters, and a
// body without it is still an acceptance.
func parseAccepted(body []byte) (next *float64, err error) {
	var doc struct {
		Meta struct {
			Next *float64 `json:"seconds_to_next_attestation"`
		} `json:"meta"`
	}
	if len(body) == 0 {
		return nil, nil
	}
	if err := json.Unmarshal(body, &doc); err != nil {
		return nil, fmt.Errorf("evidence response: %w", err)
	}
	if n := doc.Meta.Next; n != nil && (*n < 0 || *n > 1e9) {
		return nil, fmt.Errorf("evidence response: seconds_to_next_attestation %v out of range", *n)
	}
	return doc.Meta.Next, nil
}

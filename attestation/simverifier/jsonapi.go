package simverifier

import (
	"bytes"
	"encoding/base64"
	"encoding/hex"
	"encoding/json"
	"errors"
	"fmt"
	"math"
	"net/http"
	"strconv"
	"strings"
	"time"
)

// response is what a route produces. It is written by ServeHTTP, which applies the body faults; after, if set,
// runs once the response has been sent (the verification after a 202).
type response struct {
	status      int
	contentType string
	header      http.Header
	body        []byte
	after       func()
}

const (
	ctJSONAPIOut = "application/json; charset=UTF-8" // tornado overrides vnd.api+json on the way out
	ctSession    = "application/json"
	ctFramework  = "text/html; charset=UTF-8"
)

// emptyResponse is a framework error of the real server: empty body, text/html.
func emptyResponse(status int) *response {
	return &response{status: status, contentType: ctFramework}
}

func jsonResponse(status int, contentType string, v any, indent bool) *response {
	var b []byte
	var err error
	if indent {
		b, err = json.MarshalIndent(v, "", "    ")
	} else {
		b, err = json.Marshal(v)
	}
	if err != nil {
		// Only our own types are marshalled; failing here is a programming error, reported as the server would.
		return emptyResponse(http.StatusInternalServerError)
	}
	return &response{status: status, contentType: contentType, body: b}
}

func (r *response) set(key, value string) *response {
	if r.header == nil {
		r.header = http.Header{}
	}
	r.header.Set(key, value)
	return r
}

type apiError struct {
	Status string         `json:"status"`
	Code   string         `json:"code,omitempty"`
	Title  string         `json:"title,omitempty"`
	Detail string         `json:"detail,omitempty"`
	Source map[string]any `json:"source,omitempty"`
}

type errorDoc struct {
	Errors  []apiError        `json:"errors"`
	Links   map[string]string `json:"links,omitempty"`
	JSONAPI map[string]string `json:"jsonapi,omitempty"`
}

// apiErrorResponse is a JSON:API error as the v3 controllers send it.
func apiErrorResponse(status int, code, detail, self string, pointer string) *response {
	e := apiError{Status: strconv.Itoa(status), Code: code, Title: http.StatusText(status), Detail: detail}
	if pointer != "" {
		e.Source = map[string]any{"pointer": pointer}
	}
	doc := errorDoc{Errors: []apiError{e}, JSONAPI: map[string]string{"version": "1.1"}}
	if self != "" {
		doc.Links = map[string]string{"self": self}
	}
	return jsonResponse(status, ctJSONAPIOut, doc, false)
}

// sessionErrorResponse is an error of the session controller (plain errors list, application/json).
func sessionErrorResponse(status int, detail string) *response {
	return jsonResponse(status, ctSession, errorDoc{Errors: []apiError{{
		Status: strconv.Itoa(status), Title: http.StatusText(status), Detail: detail,
	}}}, true)
}

// errNotJSONAPI and errNoType distinguish the real server's 400 (bad document) from its 500 (KeyError on a missing
// data.type).
var (
	errNotJSONAPI = errors.New("body is not a JSON:API document")
	errNoType     = errors.New("data.type is missing")
)

// decodeDocument parses a JSON:API request body into its data member. requireType mirrors APIResource.load, which
// indexes data["type"] when the body is vnd.api+json.
func decodeDocument(body []byte, requireType bool) (data map[string]any, typ string, err error) {
	dec := json.NewDecoder(bytes.NewReader(body))
	dec.UseNumber()
	var doc any
	if err := dec.Decode(&doc); err != nil {
		return nil, "", errNotJSONAPI
	}
	if dec.More() {
		return nil, "", errNotJSONAPI
	}
	top, ok := doc.(map[string]any)
	if !ok {
		return nil, "", errNotJSONAPI
	}
	for k := range top {
		switch k {
		case "data", "errors", "meta", "links", "jsonapi":
		default:
			return nil, "", errNotJSONAPI
		}
	}
	data, ok = top["data"].(map[string]any)
	if !ok {
		return nil, "", errNotJSONAPI
	}
	t, present := data["type"]
	if !present {
		if requireType {
			return nil, "", errNoType
		}
		return data, "", nil
	}
	typ, _ = t.(string)
	return data, typ, nil
}

// decodeObject decodes a JSON object with json.Number numbers (nil input gives an empty object).
func decodeObject(b []byte) (map[string]any, bool, error) {
	if b == nil {
		return map[string]any{}, false, nil
	}
	dec := json.NewDecoder(bytes.NewReader(b))
	dec.UseNumber()
	var m map[string]any
	if err := dec.Decode(&m); err != nil {
		return nil, false, err
	}
	return m, true, nil
}

func asObject(v any) (map[string]any, bool) {
	m, ok := v.(map[string]any)
	return m, ok
}

func asList(v any) ([]any, bool) {
	l, ok := v.([]any)
	return l, ok
}

func asString(v any) (string, bool) {
	s, ok := v.(string)
	return s, ok
}

// asInt accepts JSON integers only (json.Number from a UseNumber decoder).
func asInt(v any) (int, bool) {
	n, ok := v.(json.Number)
	if !ok {
		return 0, false
	}
	i, err := strconv.ParseInt(string(n), 10, 64)
	if err != nil || i < math.MinInt32 || i > math.MaxInt32 {
		return 0, false
	}
	return int(i), true
}

func asBool(v any) (bool, bool) {
	b, ok := v.(bool)
	return b, ok
}

func stringList(v any) ([]string, bool) {
	l, ok := asList(v)
	if !ok {
		return nil, false
	}
	out := make([]string, 0, len(l))
	for _, x := range l {
		s, ok := asString(x)
		if !ok {
			return nil, false
		}
		out = append(out, s)
	}
	return out, true
}

func contains(list []string, s string) bool {
	for _, x := range list {
		if x == s {
			return true
		}
	}
	return false
}

// decodeBinary decodes a binary field the way keylime's Binary type does: base64 first (so a hex string that is
// also valid base64 is read as base64), then hex.
func decodeBinary(s string) ([]byte, error) {
	if b, err := base64.StdEncoding.DecodeString(s); err == nil {
		return b, nil
	}
	if b, err := hex.DecodeString(strings.TrimPrefix(s, "0x")); err == nil {
		return b, nil
	}
	return nil, errors.New("neither base64 nor hex")
}

// timestamp formats like keylime's Timestamp type: microseconds and an explicit +00:00 offset.
func timestamp(t time.Time) string {
	return t.UTC().Format("2006-01-02T15:04:05.000000") + "+00:00"
}

// parseBootTime accepts what keylime accepts for system_info.boot_time: ISO 8601 (a trailing Z allowed) or Unix
// seconds as a number or numeric string.
func parseBootTime(v any) (time.Time, error) {
	switch x := v.(type) {
	case json.Number:
		f, err := x.Float64()
		if err != nil {
			return time.Time{}, fmt.Errorf("boot_time %q is not a number", x)
		}
		return unixFloat(f)
	case string:
		if f, err := strconv.ParseFloat(x, 64); err == nil {
			return unixFloat(f)
		}
		for _, layout := range []string{time.RFC3339Nano, "2006-01-02T15:04:05.999999", "2006-01-02 15:04:05.999999Z07:00",
			"2006-01-02T15:04:05", "2006-01-02"} {
			if t, err := time.Parse(layout, x); err == nil {
				return t.UTC(), nil
			}
		}
		return time.Time{}, fmt.Errorf("boot_time %q is not an ISO 8601 timestamp", x)
	default:
		return time.Time{}, errors.New("boot_time must be a string or a number")
	}
}

func unixFloat(f float64) (time.Time, error) {
	if math.IsNaN(f) || math.IsInf(f, 0) || f < 0 || f > 1e11 {
		return time.Time{}, fmt.Errorf("boot_time %v is out of range", f)
	}
	sec, frac := math.Modf(f)
	return time.Unix(int64(sec), int64(frac*1e9)).UTC(), nil
}

// ceilSeconds rounds a positive remaining duration the way the verifier reports it (whole seconds, at least 1 while
// anything remains).
func ceilSeconds(d time.Duration) int {
	if d <= 0 {
		return 0
	}
	s := int(math.Round(d.Seconds()))
	if s < 1 {
		s = 1
	}
	return s
}

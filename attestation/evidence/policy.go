package evidence

import (
	"bytes"
	"encoding/hex"
	"encoding/json"
	"errors"
	"fmt"
	"regexp"
	"sort"
)

// Allowlist generator values (allowlists.generator and the policy's meta.generator). With 1 the verifier requests
// no IMA log; 2 or 3 enable IMA.
const (
	GeneratorEmpty      = 1
	GeneratorCompatible = 2
)

// policyDoc is the runtime policy layout of keylime's ima.py schema, with every key the verifier expects present.
type policyDoc struct {
	Meta struct {
		Version   int `json:"version"`
		Generator int `json:"generator"`
	} `json:"meta"`
	Release          int                 `json:"release"`
	Digests          map[string][]string `json:"digests"`
	Excludes         []string            `json:"excludes"`
	Keyrings         map[string][]string `json:"keyrings"`
	IMA              policyIMA           `json:"ima"`
	IMABuf           map[string][]string `json:"ima-buf"`
	VerificationKeys string              `json:"verification-keys"`
}

type policyIMA struct {
	IgnoredKeyrings []string        `json:"ignored_keyrings"`
	LogHashAlg      string          `json:"log_hash_alg"`
	DMPolicy        json.RawMessage `json:"dm_policy"`
}

// buildPolicyJSON renders a runtime policy. Digest lists are sorted and de-duplicated so the same inputs always give
// the same bytes (and the same allowlists.checksum).
func buildPolicyJSON(generator int, digests map[string][]string) ([]byte, error) {
	var d policyDoc
	d.Meta.Version = 1
	d.Meta.Generator = generator
	d.Digests = make(map[string][]string, len(digests))
	for p, list := range digests {
		l := append([]string(nil), list...)
		sort.Strings(l)
		d.Digests[p] = compactStrings(l)
	}
	d.Excludes = []string{}
	d.Keyrings = map[string][]string{}
	d.IMA = policyIMA{IgnoredKeyrings: []string{}, LogHashAlg: "sha1", DMPolicy: json.RawMessage("null")}
	d.IMABuf = map[string][]string{}
	b, err := json.Marshal(d)
	if err != nil {
		return nil, fmt.Errorf("evidence: marshal runtime policy: %w", err)
	}
	return b, nil
}

func compactStrings(s []string) []string {
	out := s[:0]
	for i, v := range s {
		if i == 0 || v != s[i-1] {
			out = append(out, v)
		}
	}
	return out
}

// Policy is a parsed runtime policy, reduced to what IMA validation of ima-ng entries needs.
type Policy struct {
	Digests    map[string][]string // path -> allowed lowercase hex file digests
	Excludes   []*regexp.Regexp    // a path matching any of these (anchored at its start) skips digest checks
	Generator  int                 // meta.generator
	LogHashAlg string              // ima.log_hash_alg: the algorithm of column 2 of the log lines
}

// ParsePolicy parses allowlists.ima_policy JSON. It requires a JSON object with a "digests" object of string
// arrays holding hex digests; excludes must compile as regular expressions (Go RE2 syntax, which covers the usual
// Python patterns).
func ParsePolicy(policyJSON []byte) (*Policy, error) {
	var raw struct {
		Meta *struct {
			Generator int `json:"generator"`
		} `json:"meta"`
		Digests  map[string][]string `json:"digests"`
		Excludes []string            `json:"excludes"`
		IMA      *struct {
			LogHashAlg string `json:"log_hash_alg"`
		} `json:"ima"`
	}
	dec := json.NewDecoder(bytes.NewReader(policyJSON))
	if err := dec.Decode(&raw); err != nil {
		return nil, fmt.Errorf("evidence: runtime policy: %w", err)
	}
	if dec.More() {
		return nil, errors.New("evidence: runtime policy: data after the JSON object")
	}
	if raw.Digests == nil {
		return nil, errors.New(`evidence: runtime policy: "digests" is missing or null`)
	}
	p := &Policy{Digests: make(map[string][]string, len(raw.Digests)), LogHashAlg: "sha1"}
	if raw.Meta != nil {
		p.Generator = raw.Meta.Generator
	}
	if raw.IMA != nil && raw.IMA.LogHashAlg != "" {
		p.LogHashAlg = raw.IMA.LogHashAlg
	}
	for path, list := range raw.Digests {
		for _, d := range list {
			if _, err := hex.DecodeString(d); err != nil || d == "" {
				return nil, fmt.Errorf("evidence: runtime policy: digest %q of %q is not hex", d, path)
			}
		}
		p.Digests[path] = list
	}
	for i, x := range raw.Excludes {
		re, err := regexp.Compile(`^(?:` + x + `)`)
		if err != nil {
			return nil, fmt.Errorf("evidence: runtime policy: excludes[%d] %q: %w", i, x, err)
		}
		p.Excludes = append(p.Excludes, re)
	}
	return p, nil
}

// Check validates an entry like the verifier's ima-ng validation: nil when the path is excluded or its file digest
// is listed for the path; otherwise an error naming the path and the digest.
func (p *Policy) Check(e Entry) error {
	for _, re := range p.Excludes {
		if re.MatchString(e.Path) {
			return nil
		}
	}
	list, ok := p.Digests[e.Path]
	if !ok {
		return fmt.Errorf("path %s is not in the runtime policy", e.Path)
	}
	got := hex.EncodeToString(e.FileDigest)
	for _, d := range list {
		if len(d) == len(got) && (d == got || hexEqualFold(d, got)) {
			return nil
		}
	}
	return fmt.Errorf("path %s: digest %s:%s is not allowed by the runtime policy", e.Path, e.Alg, got)
}

func hexEqualFold(a, b string) bool {
	x, err1 := hex.DecodeString(a)
	y, err2 := hex.DecodeString(b)
	return err1 == nil && err2 == nil && bytes.Equal(x, y)
}

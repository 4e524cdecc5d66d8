package client

import (
	"bytes"
	"encoding/base64"
	"encoding/json"
	"reflect"
	"strings"
	"testing"
	"time"
	"unicode/utf8"
)

// The reference encoding: the documents the appenders write, as structs marshalled by encoding/json.
type refCertKey struct {
	KeyClass        string `json:"key_class"`
	KeyAlgorithm    string `json:"key_algorithm"`
	KeySize         int    `json:"key_size"`
	ServerID        string `json:"server_identifier"`
	LocalIdentifier string `json:"local_identifier"`
	Public          string `json:"public"`
}

type refQuoteCaps struct {
	ComponentVersion  string           `json:"component_version"`
	HashAlgorithms    []string         `json:"hash_algorithms"`
	SignatureSchemes  []string         `json:"signature_schemes"`
	AvailableSubjects map[string][]int `json:"available_subjects"`
	CertificationKeys []refCertKey     `json:"certification_keys"`
}

type refIMACaps struct {
	EntryCount            int      `json:"entry_count"`
	SupportsPartialAccess bool     `json:"supports_partial_access"`
	Appendable            bool     `json:"appendable"`
	Formats               []string `json:"formats"`
}

type refSupported struct {
	Class        string `json:"evidence_class"`
	Type         string `json:"evidence_type"`
	Capabilities any    `json:"capabilities"`
}

type refCollected struct {
	Class string `json:"evidence_class"`
	Type  string `json:"evidence_type"`
	Data  any    `json:"data"`
}

func refCapabilities(ak akInfo, hasIMA bool, n, uefi int, boot time.Time) []byte {
	all := []int{0, 1, 2, 3, 4, 5, 6, 7, 8, 9, 10, 11, 12, 13, 14, 15, 16, 17, 18, 19, 20, 21, 22, 23}
	sup := []refSupported{{Class: "certification", Type: "tpm_quote", Capabilities: refQuoteCaps{
		ComponentVersion: "2.0", HashAlgorithms: []string{"sha256"}, SignatureSchemes: []string{ak.scheme},
		AvailableSubjects: map[string][]int{"sha256": all},
		CertificationKeys: []refCertKey{{KeyClass: "asymmetric", KeyAlgorithm: ak.algorithm, KeySize: ak.size,
			ServerID: "ak", LocalIdentifier: "att_local_identifier", Public: ak.public}},
	}}}
	if hasIMA {
		sup = append(sup, refSupported{Class: "log", Type: "ima_log", Capabilities: refIMACaps{EntryCount: n,
			SupportsPartialAccess: true, Appendable: true, Formats: []string{"text/plain"}}})
	}
	if uefi > 0 {
		sup = append(sup, refSupported{Class: "log", Type: "uefi_log", Capabilities: map[string]any{"entry_count": uefi,
			"supports_partial_access": false, "appendable": false, "formats": []string{"application/octet-stream"}}})
	}
	doc := map[string]any{"data": map[string]any{"type": "attestation", "attributes": map[string]any{
		"evidence_supported": sup, "system_info": map[string]any{"boot_time": boot.UTC().Format(time.RFC3339Nano)}}}}
	b, _ := json.Marshal(doc)
	return b
}

func refEvidence(items []evidenceItem) []byte {
	var out []refCollected
	for _, it := range items {
		if q := it.quote; q != nil {
			out = append(out, refCollected{Class: q.class, Type: q.typ, Data: map[string]string{
				"subject_data": base64.StdEncoding.EncodeToString(q.subject),
				"message":      base64.StdEncoding.EncodeToString(q.message),
				"signature":    base64.StdEncoding.EncodeToString(q.signature)}})
			continue
		}
		if u := it.uefi; u != nil {
			out = append(out, refCollected{Class: u.class, Type: u.typ, Data: map[string]any{"entries": u.entries}})
			continue
		}
		out = append(out, refCollected{Class: it.ima.class, Type: it.ima.typ, Data: map[string]any{
			"entry_count": it.ima.count, "entries": it.ima.entries}})
	}
	doc := map[string]any{"data": map[string]any{"type": "attestation", "attributes": map[string]any{
		"evidence_collected": out}}}
	b, _ := json.Marshal(doc)
	return b
}

// sameJSON fails unless a and b are valid JSON documents with the same content.
func sameJSON(t *testing.T, what string, got, want []byte) {
	t.Helper()
	var g, w any
	if err := json.Unmarshal(got, &g); err != nil {
		t.Fatalf("%s: appended body is not JSON (%v):\n%s", what, err, got)
	}
	if err := json.Unmarshal(want, &w); err != nil {
		t.Fatal(err)
	}
	if !reflect.DeepEqual(g, w) {
		t.Fatalf("%s: appended body\n%s\ndiffers from encoding/json's\n%s", what, got, want)
	}
}

func TestBodiesMatchEncodingJSON(t *testing.T) {
	boot := time.Date(2026, 1, 2, 3, 4, 5, 600, time.FixedZone("x", 3600))
	for _, ak := range []akInfo{{public: "AAAA+/==", scheme: "rsassa", algorithm: "rsa", size: 2048},
		{public: "AFgAIw==", scheme: "ecdsa", algorithm: "ecc", size: 256}} {
		for _, ima := range []bool{false, true} {
			for _, uefi := range []int{0, 152} {
				got, _ := capabilitiesBody(ak, ima, 1234, uefi, boot)
				sameJSON(t, "capabilities", got, refCapabilities(ak, ima, 1234, uefi, boot))
			}
		}
	}
	entries := "10 " + strings.Repeat("ab", 20) + " ima-ng sha256:00 /usr/bin/a\"b\\c\td\x01 é \u2028 \xff<&>\n"
	items := []evidenceItem{
		{quote: &quoteEvidence{class: "certification", typ: "tpm_quote", subject: []byte{1, 2, 3},
			message: bytes.Repeat([]byte{0xff}, 145), signature: []byte{0, 0x18}}},
		{uefi: &uefiEvidence{class: "log", typ: "uefi_log", entries: "AAAAAAMAAAA+/w=="}},
		{ima: &imaEvidence{class: "log", typ: "ima_log", count: 2, entries: entries + entries}},
	}
	got, _ := evidenceBody(items)
	sameJSON(t, "evidence", got, refEvidence(items))
	if got, _ := evidenceBody(items[:1]); !json.Valid(got) {
		t.Fatalf("quote-only evidence is not JSON: %s", got)
	}
	if got, _ := evidenceBody(nil); !json.Valid(got) {
		t.Fatalf("empty evidence is not JSON: %s", got)
	}
}

// Any string, valid UTF-8 or not, comes out as valid UTF-8 and as the JSON string encoding/json makes of it.
func FuzzAppendJSONString(f *testing.F) {
	for _, s := range []string{"", "plain", "a\"b\\c", "\x00\x1f\n\r\t", "é\u2028\u2029", "\xff\xfe", "<&>", "\xe2\x80"} {
		f.Add(s)
	}
	f.Fuzz(func(t *testing.T, s string) {
		got := appendJSONString([]byte("x"), s)
		if got[0] != 'x' {
			t.Fatal("appendJSONString overwrote its destination")
		}
		// Valid UTF-8 on the wire: encoding/json would read a raw invalid byte back as U+FFFD too, so the
		// comparison below cannot see it, but Python's json.loads refuses the whole body.
		if !utf8.Valid(got[1:]) {
			t.Fatalf("%q gives invalid UTF-8 %q", s, got[1:])
		}
		var back, want string
		if err := json.Unmarshal(got[1:], &back); err != nil {
			t.Fatalf("%q gives invalid JSON %s: %v", s, got[1:], err)
		}
		ref, _ := json.Marshal(s)
		if err := json.Unmarshal(ref, &want); err != nil {
			t.Fatal(err)
		}
		if back != want {
			t.Fatalf("%q reads back as %q, encoding/json's as %q", s, back, want)
		}
	})
}

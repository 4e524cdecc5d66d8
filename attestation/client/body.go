package client

import (
	"encoding/base64"
	"strconv"
	"time"
	"unicode/utf8"
)

// The request bodies of a cycle have fixed JSON:API shapes, so they are appended directly instead of being
// marshalled by reflection: each body is one allocation of about its final size, the base64 fields are encoded in
// place, and nothing is built only to be copied. The tests check every body against encoding/json's output for
// the same document.

// appendJSONString appends s as a JSON string. Control characters, '"' and '\\' are escaped, as are U+2028 and
// U+2029; invalid UTF-8 becomes U+FFFD, as encoding/json does. '<', '>' and '&' are left as they are (encoding/json
// escapes them for HTML, which a verifier does not need).
func appendJSONString(dst []byte, s string) []byte {
	const hex = "0123456789abcdef"
	dst = append(dst, '"')
	start := 0
	for i := 0; i < len(s); {
		c := s[i]
		if c < utf8.RuneSelf {
			if c >= 0x20 && c != '"' && c != '\\' {
				i++
				continue
			}
			dst = append(dst, s[start:i]...)
			switch c {
			case '"', '\\':
				dst = append(dst, '\\', c)
			case '\n':
				dst = append(dst, '\\', 'n')
			case '\r':
				dst = append(dst, '\\', 'r')
			case '\t':
				dst = append(dst, '\\', 't')
			default:
				dst = append(dst, '\\', 'u', '0', '0', hex[c>>4], hex[c&0xf])
			}
			i++
			start = i
			continue
		}
		r, size := utf8.DecodeRuneInString(s[i:])
		if r == utf8.RuneError && size == 1 {
			dst = append(dst, s[start:i]...)
			dst = append(dst, `\ufffd`...)
			i += size
			start = i
			continue
		}
		if r == '\u2028' || r == '\u2029' {
			dst = append(dst, s[start:i]...)
			dst = append(dst, '\\', 'u', '2', '0', '2', hex[r&0xf])
			i += size
			start = i
			continue
		}
		i += size
	}
	dst = append(dst, s[start:]...)
	return append(dst, '"')
}

// appendBase64String appends the standard base64 of b as a JSON string (base64 needs no escaping).
func appendBase64String(dst, b []byte) []byte {
	dst = append(dst, '"')
	dst = base64.StdEncoding.AppendEncode(dst, b)
	return append(dst, '"')
}

// pcrList is what a TPM 2.0 sha256 bank offers, as JSON; the verifier picks the ones its policies need.
const pcrList = "[0,1,2,3,4,5,6,7,8,9,10,11,12,13,14,15,16,17,18,19,20,21,22,23]"

// capabilitiesBody offers exactly one bank (sha256): offering more makes the verifier select several banks, and
// every selected bank must then be in subject_data (spec §2.3).
//
// The quote's signature scheme and the certification key follow the AK: rsassa with an rsa key of 2048 bits, or
// ecdsa with an ecc key of 256 bits, as Keylime's push agent reports them.
//
// uefiEvents > 0 offers a UEFI event log of that many events (the whole log, which cannot be read in parts).
func capabilitiesBody(ak akInfo, hasIMA bool, imaEntries, uefiEvents int, bootTime time.Time) ([]byte, error) {
	b := make([]byte, 0, 600+len(ak.public))
	b = append(b, `{"data":{"type":"attestation","attributes":{"evidence_supported":[`+
		`{"evidence_class":"certification","evidence_type":"tpm_quote","capabilities":{"component_version":"2.0",`+
		`"hash_algorithms":["sha256"],"signature_schemes":[`...)
	b = appendJSONString(b, ak.scheme)
	b = append(b, `],"available_subjects":{"sha256":`+pcrList+`},"certification_keys":[{"key_class":"asymmetric",`+
		`"key_algorithm":`...)
	b = appendJSONString(b, ak.algorithm)
	b = append(b, `,"key_size":`...)
	b = strconv.AppendInt(b, int64(ak.size), 10)
	b = append(b, `,"server_identifier":"ak","local_identifier":"att_local_identifier","public":`...)
	b = appendJSONString(b, ak.public)
	b = append(b, `}]}}`...)
	if hasIMA {
		b = append(b, `,{"evidence_class":"log","evidence_type":"ima_log","capabilities":{"entry_count":`...)
		b = strconv.AppendInt(b, int64(imaEntries), 10)
		b = append(b, `,"supports_partial_access":true,"appendable":true,"formats":["text/plain"]}}`...)
	}
	if uefiEvents > 0 {
		b = append(b, `,{"evidence_class":"log","evidence_type":"uefi_log","capabilities":{"entry_count":`...)
		b = strconv.AppendInt(b, int64(uefiEvents), 10)
		b = append(b, `,"supports_partial_access":false,"appendable":false,"formats":["application/octet-stream"]}}`...)
	}
	b = append(b, `],"system_info":{"boot_time":"`...)
	b = bootTime.UTC().AppendFormat(b, time.RFC3339Nano)
	return append(b, `"}}}}`...), nil
}

// quoteEvidence is a tpm_quote's collected evidence.
type quoteEvidence struct {
	class, typ                  string
	subject, message, signature []byte
}

// imaEvidence is an ima_log's collected evidence.
type imaEvidence struct {
	class, typ string
	count      int
	entries    string
}

// uefiEvidence is a uefi_log's collected evidence: the whole binary log, base64.
type uefiEvidence struct {
	class, typ string
	entries    string
}

// evidenceBody is the PATCH of the evidence requested, in the order requested. Exactly one of quote, ima and uefi
// of each item is set.
func evidenceBody(items []evidenceItem) ([]byte, error) {
	size := 80
	for _, it := range items {
		switch {
		case it.quote != nil:
			size += 180 + base64.StdEncoding.EncodedLen(len(it.quote.subject)+len(it.quote.message)+len(it.quote.signature)+6)
		case it.uefi != nil:
			size += 80 + len(it.uefi.entries)
		default:
			size += 120 + len(it.ima.entries) + len(it.ima.entries)/16
		}
	}
	b := make([]byte, 0, size)
	b = append(b, `{"data":{"type":"attestation","attributes":{"evidence_collected":[`...)
	for i, it := range items {
		if i > 0 {
			b = append(b, ',')
		}
		switch {
		case it.quote != nil:
			q := it.quote
			b = appendItemStart(b, q.class, q.typ)
			b = append(b, `"subject_data":`...)
			b = appendBase64String(b, q.subject)
			b = append(b, `,"message":`...)
			b = appendBase64String(b, q.message)
			b = append(b, `,"signature":`...)
			b = appendBase64String(b, q.signature)
		case it.uefi != nil:
			b = appendItemStart(b, it.uefi.class, it.uefi.typ)
			b = append(b, `"entries":`...)
			b = appendJSONString(b, it.uefi.entries)
		default:
			m := it.ima
			b = appendItemStart(b, m.class, m.typ)
			b = append(b, `"entry_count":`...)
			b = strconv.AppendInt(b, int64(m.count), 10)
			b = append(b, `,"entries":`...)
			b = appendJSONString(b, m.entries)
		}
		b = append(b, `}}`...)
	}
	return append(b, `]}}}`...), nil
}

// appendItemStart writes an evidence item's class and type and opens its data object.
func appendItemStart(b []byte, class, typ string) []byte {
	b = append(b, `{"evidence_class":`...)
	b = appendJSONString(b, class)
	b = append(b, `,"evidence_type":`...)
	b = appendJSONString(b, typ)
	return append(b, `,"data":{`...)
}

// evidenceItem is one collected item of an evidence body.
type evidenceItem struct {
	quote *quoteEvidence
	ima   *imaEvidence
	uefi  *uefiEvidence
}

// akInfo is what the capabilities say about an agent's AK.
type akInfo struct {
	public    string // base64 TPM2B_PUBLIC
	scheme    string // rsassa or ecdsa
	algorithm string // rsa or ecc
	size      int
}

package evidence

import (
	"crypto/sha1"
	"crypto/sha256"
	"encoding/binary"
	"encoding/hex"
	"errors"
	"fmt"
	"strconv"
	"strings"
)

// IMAPCR is the PCR that IMA extends.
const IMAPCR = 10

// TemplateNG is the only IMA template supported.
const TemplateNG = "ima-ng"

// Entry is one parsed ima-ng measurement line.
type Entry struct {
	PCR          int
	TemplateHash string // column 2, lowercase hex as in the log
	Template     string // "ima-ng"
	Alg          string // file digest algorithm, e.g. "sha256"
	FileDigest   []byte
	Path         string
}

// fileDigestSizes are the digest algorithms ima-ng logs carry and their lengths; a line whose digest does not fit
// its algorithm is rejected because the verifier would compare it against policy digests of that length.
var fileDigestSizes = map[string]int{
	"md5": 16, "sha1": 20, "sha224": 28, "sha256": 32, "sha384": 48, "sha512": 64, "sm3": 32,
}

// ParseLine parses one ima-ng line of the form "10 <template hash> ima-ng <alg>:<hex digest> <path>", with or without
// its trailing newline. Fields are separated by single spaces and paths contain no spaces (IMA replaces them).
func ParseLine(line string) (Entry, error) {
	line = strings.TrimSuffix(line, "\n")
	if line == "" {
		return Entry{}, errors.New("empty line")
	}
	f := strings.Split(line, " ")
	if len(f) != 5 {
		return Entry{}, fmt.Errorf("want 5 space-separated fields, got %d", len(f))
	}
	if f[0] != strconv.Itoa(IMAPCR) {
		return Entry{}, fmt.Errorf("PCR field %q is not %d", f[0], IMAPCR)
	}
	th := f[1]
	if (len(th) != 2*sha1.Size && len(th) != 2*sha256.Size) || !isLowerHex(th) {
		return Entry{}, fmt.Errorf("template hash %q is not 40 or 64 lowercase hex digits", th)
	}
	if f[2] != TemplateNG {
		return Entry{}, fmt.Errorf("template %q is not supported (only %s)", f[2], TemplateNG)
	}
	alg, digestHex, ok := strings.Cut(f[3], ":")
	if !ok {
		return Entry{}, fmt.Errorf("file digest %q has no <alg>: prefix", f[3])
	}
	size, known := fileDigestSizes[alg]
	if !known {
		return Entry{}, fmt.Errorf("file digest algorithm %q is not supported", alg)
	}
	if !isLowerHex(digestHex) {
		return Entry{}, fmt.Errorf("file digest %q is not lowercase hex", digestHex)
	}
	digest, _ := hex.DecodeString(digestHex) // cannot fail after isLowerHex with an even length
	if len(digestHex) != 2*size {
		return Entry{}, fmt.Errorf("%s file digest has %d hex digits, want %d", alg, len(digestHex), 2*size)
	}
	if f[4] == "" {
		return Entry{}, errors.New("path is empty")
	}
	if i := strings.IndexFunc(f[4], func(r rune) bool { return r < 0x20 || r == 0x7f }); i >= 0 {
		return Entry{}, fmt.Errorf("path %q has a control character at byte %d", f[4], i)
	}
	return Entry{PCR: IMAPCR, TemplateHash: th, Template: f[2], Alg: alg, FileDigest: digest, Path: f[4]}, nil
}

func isLowerHex(s string) bool {
	if s == "" || len(s)%2 != 0 {
		return false
	}
	for i := 0; i < len(s); i++ {
		c := s[i]
		if !('0' <= c && c <= '9' || 'a' <= c && c <= 'f') {
			return false
		}
	}
	return true
}

// TemplateBytes is the ima-ng template data that IMA hashes:
// u32le(len(alg)+2+len(digest)) alg ':' 0x00 digest, then u32le(len(path)+1) path 0x00.
func TemplateBytes(alg string, digest []byte, path string) []byte {
	b := make([]byte, 0, 4+len(alg)+2+len(digest)+4+len(path)+1)
	b = binary.LittleEndian.AppendUint32(b, uint32(len(alg)+2+len(digest)))
	b = append(b, alg...)
	b = append(b, ':', 0)
	b = append(b, digest...)
	b = binary.LittleEndian.AppendUint32(b, uint32(len(path)+1))
	b = append(b, path...)
	return append(b, 0)
}

// ExtendValue is what IMA extends into the SHA-256 PCR 10 bank for the entry: SHA-256 of its template bytes.
func ExtendValue(e Entry) []byte {
	sum := sha256.Sum256(TemplateBytes(e.Alg, e.FileDigest, e.Path))
	return sum[:]
}

// Extend returns SHA-256(pcr || value), the new value of a SHA-256 PCR after TPM2_PCR_Extend.
func Extend(pcr, value []byte) []byte {
	h := sha256.New()
	h.Write(pcr)
	h.Write(value)
	return h.Sum(nil)
}

// CheckTemplateHash verifies column 2 against the entry's fields: SHA-1 (40 hex digits, log_hash_alg "sha1") or
// SHA-256 (64 hex digits) of the template bytes. An all-zero hash marks a ToMToU violation and is reported as one.
func (e Entry) CheckTemplateHash() error {
	if strings.Trim(e.TemplateHash, "0") == "" {
		return fmt.Errorf("%s: all-zero template hash (ToMToU violation entry)", e.Path)
	}
	t := TemplateBytes(e.Alg, e.FileDigest, e.Path)
	var want string
	switch len(e.TemplateHash) {
	case 2 * sha1.Size:
		s := sha1.Sum(t)
		want = hex.EncodeToString(s[:])
	case 2 * sha256.Size:
		s := sha256.Sum256(t)
		want = hex.EncodeToString(s[:])
	default:
		return fmt.Errorf("%s: template hash has %d hex digits", e.Path, len(e.TemplateHash))
	}
	if want != e.TemplateHash {
		return fmt.Errorf("%s: template hash %s does not match the template data (%s)", e.Path, e.TemplateHash, want)
	}
	return nil
}

// FormatLine renders an ima-ng line (with its newline) for a file measurement, with a SHA-1 template hash as the
// default log_hash_alg expects.
func FormatLine(alg string, digest []byte, path string) string {
	th := sha1.Sum(TemplateBytes(alg, digest, path))
	return fmt.Sprintf("%d %x %s %s:%x %s\n", IMAPCR, th, TemplateNG, alg, digest, path)
}

// Replay extends a PCR 10 starting value over lines (each ending in "\n") and returns the value after each line.
// It is what a verifier does with the entries of an evidence PATCH.
func Replay(start []byte, text string) (after [][]byte, entries []Entry, err error) {
	if len(start) != sha256.Size {
		return nil, nil, fmt.Errorf("start PCR value is %d bytes, want %d", len(start), sha256.Size)
	}
	if text == "" {
		return nil, nil, nil
	}
	if !strings.HasSuffix(text, "\n") {
		return nil, nil, errors.New("log text does not end with a newline")
	}
	pcr := start
	lines := strings.Split(strings.TrimSuffix(text, "\n"), "\n")
	for i, l := range lines {
		e, err := ParseLine(l)
		if err != nil {
			return nil, nil, fmt.Errorf("line %d: %w", i+1, err)
		}
		pcr = Extend(pcr, ExtendValue(e))
		after = append(after, pcr)
		entries = append(entries, e)
	}
	return after, entries, nil
}

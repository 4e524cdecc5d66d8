package evidence

import (
	"bytes"
	"crypto/sha1"
	"crypto/sha256"
	"encoding/binary"
	"encoding/hex"
	"strings"
	"testing"
)

func FuzzParseLine(f *testing.F) {
	f.Add(FormatLine("sha256", sha256Of("a"), "/usr/bin/a"))
	f.Add(FormatLine("sha1", make([]byte, 20), "boot_aggregate"))
	f.Add("10 0000 ima-ng sha256:00 /a")
	f.Add("10 " + strings.Repeat("0", 40) + " ima-ng sha1:" + strings.Repeat("0", 40) + " /tomtou")
	f.Add("10 " + hex.EncodeToString(sha256Of("not the template")) + " ima-ng sha256:" +
		hex.EncodeToString(sha256Of("b")) + " /b")
	f.Fuzz(func(t *testing.T, line string) {
		e, err := ParseLine(line)
		if err != nil {
			return
		}
		// A parsed line has a sound template: rendering it again with the same template hash gives the same line.
		out := strings.Join([]string{"10", e.TemplateHash, e.Template, e.Alg + ":" + hexs(e.FileDigest), e.Path}, " ")
		if out != strings.TrimSuffix(line, "\n") {
			t.Fatalf("%q parsed as %+v, renders as %q", line, e, out)
		}
		// The template bytes, laid out independently: u32 length, "alg:\0" digest, u32 length, path "\0".
		var want []byte
		want = binary.LittleEndian.AppendUint32(want, uint32(len(e.Alg)+2+len(e.FileDigest)))
		want = append(append(append(want, e.Alg...), ':', 0), e.FileDigest...)
		want = binary.LittleEndian.AppendUint32(want, uint32(len(e.Path)+1))
		want = append(append(want, e.Path...), 0)
		tb := TemplateBytes(e.Alg, e.FileDigest, e.Path)
		if !bytes.Equal(tb, want) {
			t.Fatalf("template bytes of %+v:\n%x, want\n%x", e, tb, want)
		}
		// The template hash: CheckTemplateHash accepts exactly a SHA-1 or SHA-256 of those bytes that is not all
		// zeros (the ToMToU marker).
		s1, s256 := sha1.Sum(want), sha256.Sum256(want)
		sound := (e.TemplateHash == hex.EncodeToString(s1[:]) || e.TemplateHash == hex.EncodeToString(s256[:])) &&
			strings.Trim(e.TemplateHash, "0") != ""
		if err := e.CheckTemplateHash(); (err == nil) != sound {
			t.Fatalf("%q: CheckTemplateHash = %v, but the hash is sound: %v", line, err, sound)
		}
		// FormatLine writes a line whose template hash is the SHA-1 of the template bytes, and which parses back
		// to the same measurement.
		formatted := FormatLine(e.Alg, e.FileDigest, e.Path)
		back, err := ParseLine(formatted)
		if err != nil {
			t.Fatalf("FormatLine(%+v) = %q does not parse: %v", e, formatted, err)
		}
		if back.TemplateHash != hex.EncodeToString(s1[:]) || back.CheckTemplateHash() != nil ||
			back.Alg != e.Alg || !bytes.Equal(back.FileDigest, e.FileDigest) || back.Path != e.Path {
			t.Fatalf("FormatLine(%+v) = %q parses as %+v", e, formatted, back)
		}
		if got := ExtendValue(e); !bytes.Equal(got, s256[:]) {
			t.Fatalf("ExtendValue = %x, want SHA-256 of the template bytes %x", got, s256)
		}
	})
}

func hexs(b []byte) string {
	const digits = "0123456789abcdef"
	var s strings.Builder
	for _, c := range b {
		s.WriteByte(digits[c>>4])
		s.WriteByte(digits[c&15])
	}
	return s.String()
}

func FuzzParsePolicy(f *testing.F) {
	prof, err := NewSynthetic(3, 1, 2)
	if err != nil {
		f.Fatal(err)
	}
	f.Add(prof.PolicyJSON())
	f.Add(NewQuoteOnly().PolicyJSON())
	f.Add([]byte(`{"digests":{"/a":["00"]},"excludes":["/tmp/.*"]}`))
	f.Fuzz(func(t *testing.T, doc []byte) {
		p, err := ParsePolicy(doc)
		if err != nil {
			return
		}
		for path, list := range p.Digests {
			for _, d := range list {
				e := Entry{Path: path, Alg: "sha256", FileDigest: mustUnhex(d)}
				if err := p.Check(e); err != nil {
					t.Fatalf("listed digest %s of %q rejected: %v", d, path, err)
				}
			}
		}
		_ = p.Check(Entry{Path: "/not/listed", FileDigest: bytes.Repeat([]byte{1}, 32)})
	})
}

func mustUnhex(s string) []byte {
	b := make([]byte, len(s)/2)
	for i := range b {
		b[i] = unhexDigit(s[2*i])<<4 | unhexDigit(s[2*i+1])
	}
	return b
}

func unhexDigit(c byte) byte {
	switch {
	case c >= '0' && c <= '9':
		return c - '0'
	case c >= 'a' && c <= 'f':
		return c - 'a' + 10
	default:
		return c - 'A' + 10
	}
}

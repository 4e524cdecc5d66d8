package evidence

import (
	"bytes"
	"strings"
	"testing"
)

func FuzzParseLine(f *testing.F) {
	f.Add(FormatLine("sha256", sha256Of("a"), "/usr/bin/a"))
	f.Add(FormatLine("sha1", make([]byte, 20), "boot_aggregate"))
	f.Add("10 0000 ima-ng sha256:00 /a")
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
		if tb := TemplateBytes(e.Alg, e.FileDigest, e.Path); len(tb) != 4+len(e.Alg)+2+len(e.FileDigest)+4+len(e.Path)+1 {
			t.Fatalf("template length %d", len(tb))
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

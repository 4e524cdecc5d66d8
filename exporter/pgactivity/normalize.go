package pgactivity

import (
	"strings"
	"unicode/utf8"
)

// MaxQueryLen bounds a normalised query text (in bytes, cut at a rune boundary), which becomes a label value.
const MaxQueryLen = 160

// Normalize turns a query text into its shape: string, numeric and dollar-quoted literals and bind parameters
// become "?", lists of them collapse to one, whitespace and comments collapse, and the result is cut to
// MaxQueryLen. Two executions of the same statement with different values give the same text, and no value
// (which may be a secret or an agent id) survives into a label.
func Normalize(q string) string {
	var b strings.Builder
	b.Grow(min(len(q), MaxQueryLen+8))
	space := false
	for i := 0; i < len(q) && b.Len() < MaxQueryLen+8; {
		var tok string
		i, tok = nextToken(q, i)
		if tok == "" {
			space = true
			continue
		}
		if space && b.Len() > 0 {
			b.WriteByte(' ')
		}
		space = false
		b.WriteString(tok)
	}
	s := strings.ToValidUTF8(collapseLists(b.String()), "?")
	if len(s) > MaxQueryLen {
		cut := MaxQueryLen
		for cut > 0 && !utf8.RuneStart(s[cut]) {
			cut--
		}
		s = s[:cut]
	}
	return s
}

// nextToken reads the token of q at i and returns the index after it and its normalised text: "" for whitespace
// and comments, "?" for a literal or a bind parameter, otherwise the token as written.
func nextToken(q string, i int) (int, string) {
	c := q[i]
	switch {
	case c == ' ' || c == '\t' || c == '\n' || c == '\r' || c == '\f':
		return i + 1, ""
	case c == '-' && i+1 < len(q) && q[i+1] == '-':
		for i < len(q) && q[i] != '\n' {
			i++
		}
		return i, ""
	case c == '/' && i+1 < len(q) && q[i+1] == '*':
		end := strings.Index(q[i+2:], "*/")
		if end < 0 {
			return len(q), ""
		}
		return i + end + 4, ""
	case c == '\'' || ((c == 'E' || c == 'e' || c == 'B' || c == 'b' || c == 'X' || c == 'x') &&
		i+1 < len(q) && q[i+1] == '\'' && !identByte(prev(q, i))):
		if c != '\'' {
			i++
		}
		return skipQuoted(q, i), "?"
	case c == '$' && i+1 < len(q) && isDigit(q[i+1]):
		i++
		for i < len(q) && isDigit(q[i]) {
			i++
		}
		return i, "?"
	case c == '$':
		return dollarToken(q, i)
	case isDigit(c) && !identByte(prev(q, i)):
		for i < len(q) && (isDigit(q[i]) || q[i] == '.' || q[i] == 'e' || q[i] == 'E' ||
			((q[i] == '+' || q[i] == '-') && (q[i-1] == 'e' || q[i-1] == 'E'))) {
			i++
		}
		return i, "?"
	case c == '"':
		j := i + 1
		for j < len(q) && q[j] != '"' {
			j++
		}
		j = min(j+1, len(q))
		return j, q[i:j]
	}
	j := i
	for j < len(q) && identByte(q[j]) {
		j++
	}
	if j == i {
		j = i + 1
	}
	return j, q[i:j]
}

// dollarToken reads what starts with the '$' at q[i]: dollar quoting ($$...$$ or $tag$...$tag$) is a literal,
// a lone '$' is itself.
func dollarToken(q string, i int) (int, string) {
	j := i + 1
	for j < len(q) && identByte(q[j]) {
		j++
	}
	if j >= len(q) || q[j] != '$' {
		return i + 1, "$"
	}
	tag := q[i : j+1]
	end := strings.Index(q[j+1:], tag)
	if end < 0 {
		return len(q), "?"
	}
	return j + 1 + end + len(tag), "?"
}

// collapseLists turns "(?, ?, ?)" and "? , ?" runs into a single "?", so IN lists of any length look the same.
func collapseLists(s string) string {
	for {
		n := strings.ReplaceAll(s, "? , ?", "?")
		n = strings.ReplaceAll(n, "?, ?", "?")
		n = strings.ReplaceAll(n, "?,?", "?")
		if n == s {
			return s
		}
		s = n
	}
}

// skipQuoted returns the index after the single-quoted literal starting at q[i] == '\”, honouring ” and \'.
func skipQuoted(q string, i int) int {
	i++
	for i < len(q) {
		switch q[i] {
		case '\\':
			i += 2
			continue
		case '\'':
			if i+1 < len(q) && q[i+1] == '\'' {
				i += 2
				continue
			}
			return i + 1
		}
		i++
	}
	return len(q)
}

func prev(q string, i int) byte {
	if i == 0 {
		return ' '
	}
	return q[i-1]
}

func isDigit(c byte) bool { return c >= '0' && c <= '9' }

func identByte(c byte) bool {
	return c == '_' || isDigit(c) || (c >= 'a' && c <= 'z') || (c >= 'A' && c <= 'Z') || c >= 0x80
}

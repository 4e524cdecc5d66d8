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
	emit := func(s string) {
		if space && b.Len() > 0 {
			b.WriteByte(' ')
		}
		space = false
		b.WriteString(s)
	}
	for i := 0; i < len(q) && b.Len() < MaxQueryLen+8; {
		c := q[i]
		switch {
		case c == ' ' || c == '\t' || c == '\n' || c == '\r' || c == '\f':
			space = true
			i++
		case c == '-' && i+1 < len(q) && q[i+1] == '-':
			for i < len(q) && q[i] != '\n' {
				i++
			}
			space = true
		case c == '/' && i+1 < len(q) && q[i+1] == '*':
			end := strings.Index(q[i+2:], "*/")
			if end < 0 {
				i = len(q)
			} else {
				i += end + 4
			}
			space = true
		case c == '\'' || ((c == 'E' || c == 'e' || c == 'B' || c == 'b' || c == 'X' || c == 'x') &&
			i+1 < len(q) && q[i+1] == '\'' && !identByte(prev(q, i))):
			if c != '\'' {
				i++
			}
			i = skipQuoted(q, i)
			emit("?")
		case c == '$' && i+1 < len(q) && isDigit(q[i+1]):
			i++
			for i < len(q) && isDigit(q[i]) {
				i++
			}
			emit("?")
		case c == '$':
			// Dollar quoting: $$...$$ or $tag$...$tag$.
			j := i + 1
			for j < len(q) && identByte(q[j]) {
				j++
			}
			if j < len(q) && q[j] == '$' {
				tag := q[i : j+1]
				end := strings.Index(q[j+1:], tag)
				if end < 0 {
					i = len(q)
				} else {
					i = j + 1 + end + len(tag)
				}
				emit("?")
			} else {
				emit("$")
				i++
			}
		case isDigit(c) && !identByte(prev(q, i)):
			for i < len(q) && (isDigit(q[i]) || q[i] == '.' || q[i] == 'e' || q[i] == 'E' ||
				((q[i] == '+' || q[i] == '-') && (q[i-1] == 'e' || q[i-1] == 'E'))) {
				i++
			}
			emit("?")
		case c == '"':
			j := i + 1
			for j < len(q) && q[j] != '"' {
				j++
			}
			j = min(j+1, len(q))
			emit(q[i:j])
			i = j
		default:
			j := i
			for j < len(q) && identByte(q[j]) {
				j++
			}
			if j == i {
				j = i + 1
			}
			emit(q[i:j])
			i = j
		}
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

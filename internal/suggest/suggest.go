// Package suggest finds the known name nearest to a mistyped one, for "did you mean" hints in error messages
// (config keys, values, flags, threshold metrics). It knows nothing of what the names are.
package suggest

import "strings"

// Nearest returns the candidate with the smallest edit distance to s, compared without regard to case, and that
// distance; ties go to the candidate that sorts first. With no candidates it returns "" and -1.
func Nearest(s string, candidates []string) (string, int) {
	best, bestD := "", -1
	ls := strings.ToLower(s)
	for _, c := range candidates {
		if d := Distance(ls, strings.ToLower(c)); bestD < 0 || d < bestD || (d == bestD && c < best) {
			best, bestD = c, d
		}
	}
	return best, bestD
}

// Distance is the Levenshtein distance between a and b, counted in bytes (the names it serves are ASCII).
func Distance(a, b string) int {
	prev, cur := make([]int, len(b)+1), make([]int, len(b)+1)
	for j := range prev {
		prev[j] = j
	}
	for i := 1; i <= len(a); i++ {
		cur[0] = i
		for j := 1; j <= len(b); j++ {
			cost := 1
			if a[i-1] == b[j-1] {
				cost = 0
			}
			cur[j] = min(prev[j]+1, cur[j-1]+1, prev[j-1]+cost)
		}
		prev, cur = cur, prev
	}
	return prev[len(b)]
}

package suggest

import "testing"

func TestDistance(t *testing.T) {
	for _, c := range []struct {
		a, b string
		want int
	}{
		{"", "", 0}, {"abc", "", 3}, {"", "ab", 2}, {"closd", "closed", 1}, {"workerz", "workers", 1},
		{"duraton", "duration", 1}, {"kitten", "sitting", 3}, {"flaw", "lawn", 2}, {"same", "same", 0},
	} {
		if got := Distance(c.a, c.b); got != c.want {
			t.Errorf("Distance(%q, %q) = %d, want %d", c.a, c.b, got, c.want)
		}
	}
}

func TestNearest(t *testing.T) {
	if got, d := Nearest("CLOSD", []string{"rate", "closed", "fleet"}); got != "closed" || d != 1 {
		t.Errorf("Nearest = %q, %d; want closed, 1", got, d)
	}
	// Ties go to the candidate that sorts first, whatever the order given.
	if got, d := Nearest("ab", []string{"ac", "aa"}); got != "aa" || d != 1 {
		t.Errorf("Nearest tie = %q, %d; want aa, 1", got, d)
	}
	if got, d := Nearest("x", nil); got != "" || d != -1 {
		t.Errorf("Nearest of nothing = %q, %d; want \"\", -1", got, d)
	}
}

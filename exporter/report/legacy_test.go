package report

import (
	"strings"
	"testing"

	"github.com/attestload/attestload/internal/pyfmt"
)

// TestLegacyRunLineAtSixtySeconds: the run line adds "(N.Ns)" only when the track is over 60 s; at exactly 60 s it
// ends in a single space.
func TestLegacyRunLineAtSixtySeconds(t *testing.T) {
	for track, want := range map[float64]string{
		59.9:  "  Performed 0 attestations in 0:01:00 \n",
		60:    "  Performed 0 attestations in 0:01:00 \n",
		61.25: "  Performed 0 attestations in 0:01:01 (61.2s)\n",
	} {
		var b strings.Builder
		if err := writeLegacy(&b, &Summary{Track: Track{Seconds: track}}, false); err != nil {
			t.Fatal(err)
		}
		if !strings.Contains(b.String(), "\n"+want) {
			t.Errorf("track %v s: no line %q in\n%s", track, want, b.String())
		}
	}
}

// TestLegacyBannerColour: with colour the three banner lines, and only they, are wrapped in the old tool's escape
// codes (bold on black, then reset); without colour no escape code appears.
func TestLegacyBannerColour(t *testing.T) {
	var plain, coloured strings.Builder
	if err := writeLegacy(&plain, &Summary{}, false); err != nil {
		t.Fatal(err)
	}
	if err := writeLegacy(&coloured, &Summary{}, true); err != nil {
		t.Fatal(err)
	}
	if strings.Contains(plain.String(), "\x1b") {
		t.Fatalf("escape codes without colour:\n%q", plain.String())
	}
	want := plain.String()
	for _, l := range []string{strings.Repeat("─", bannerWidth), pyfmt.Center("TEST RESULT SUMMARY", bannerWidth),
		strings.Repeat("═", bannerWidth)} {
		want = strings.Replace(want, l+"\n", "\x1b[40;1m"+l+"\x1b[0m\n", 1)
	}
	if coloured.String() != want {
		t.Fatalf("coloured output:\n%q\nwant\n%q", coloured.String(), want)
	}
}

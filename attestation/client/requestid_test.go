package client

import (
	"encoding/hex"
	"math"
	"testing"
	"time"
)

func TestRequestIDs(t *testing.T) {
	seen := map[string]bool{}
	var prev string
	for range 1000 {
		id := newRequestID()
		if b, err := hex.DecodeString(id); err != nil || len(b) != 16 {
			t.Fatalf("request id %q: want 32 hex digits", id)
		}
		if seen[id] {
			t.Fatalf("request id %q repeated", id)
		}
		seen[id] = true
		if prev != "" && (id[:16] != prev[:16] || id <= prev) {
			t.Fatalf("request ids %q then %q: want the process prefix and a rising counter", prev, id)
		}
		prev = id
	}
}

func TestUnixSecondsMicroseconds(t *testing.T) {
	tm := time.Unix(1796691603, 943742349)
	got := unixSeconds(tm)
	if got != 1796691603.943742 {
		t.Errorf("unixSeconds = %.9f, want 1796691603.943742", got)
	}
	if d := math.Abs(got - float64(tm.UnixNano())/1e9); d > 1e-6 {
		t.Errorf("unixSeconds off by %g s", d)
	}
}

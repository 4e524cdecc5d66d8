package client

import (
	"testing"
	"time"
)

// TestTokenExpiry: the expiry the PoP answer gave while the agent holds its token; zero before it has one and after
// it dropped it.
func TestTokenExpiry(t *testing.T) {
	now := time.Date(2026, 12, 8, 2, 0, 0, 0, time.UTC)
	exp := now.Add(time.Hour)
	a := &Agent{}
	if got := a.TokenExpiry(); !got.IsZero() {
		t.Fatalf("no token yet: expiry %s, want zero", got)
	}
	a.setToken("tok", exp, now)
	if got := a.TokenExpiry(); !got.Equal(exp) {
		t.Fatalf("holding a token: expiry %s, want %s", got, exp)
	}
	a.DropToken()
	if got := a.TokenExpiry(); !got.IsZero() {
		t.Fatalf("token dropped: expiry %s, want zero", got)
	}
}

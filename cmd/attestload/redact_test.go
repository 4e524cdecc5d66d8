package main

import (
	"net"
	"strings"
	"testing"
)

// TestPasswordNeverPrinted: a password pasted with an unescaped '@' (libpq ends it at the first '@', so its tail
// became the "host" in a no-such-host error) is refused as a malformed URL by every command that takes one, and
// no part of it appears on stdout or stderr.
func TestPasswordNeverPrinted(t *testing.T) {
	l, err := net.Listen("tcp", "127.0.0.1:0")
	if err != nil {
		t.Fatal(err)
	}
	addr := l.Addr().String()
	l.Close()
	db := "postgres://attestload:Tr0ub4dor@horse@" + addr + "/postgres?sslmode=disable"
	for _, args := range [][]string{
		{"run", "https://" + addr, db, "-a", "1", "--metrics-listen", "", "--results-dir", t.TempDir(),
			"--key-pool", keyPoolArg()},
		{"cleanup", db, "--timeout", "10s"},
		{"verifier-sim", "--database", db, "--listen", "127.0.0.1:0", "--plain-http"},
	} {
		code, stdout, stderr := runMain(t, args...)
		out := stdout + stderr
		t.Logf("%s: exit %d: %s", args[0], code, strings.TrimSpace(out))
		if code == 0 {
			t.Errorf("%s: exit 0 with a malformed database URL", args[0])
		}
		for _, leak := range []string{"Tr0ub4dor", "horse"} {
			if strings.Contains(out, leak) {
				t.Errorf("%s: output contains %q: %s", args[0], leak, out)
			}
		}
		if !strings.Contains(out, "%40") {
			t.Errorf("%s: output does not say to percent-encode the '@': %s", args[0], out)
		}
	}
}

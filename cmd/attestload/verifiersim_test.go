package main

import (
	"bytes"
	"context"
	"io"
	"log/slog"
	"net"
	"net/http"
	"strings"
	"testing"
	"time"

	"github.com/attestload/attestload/attestation/simverifier"
	"github.com/attestload/attestload/internal/pgtest"
)

func TestVerifierSimUsageErrors(t *testing.T) {
	for _, args := range [][]string{
		{"verifier-sim", "--plain-http", "--fault", "update:error-rate=2"},
		{"verifier-sim", "--plain-http", "--fault", "nowhere:latency=1s"},
		{"verifier-sim"}, // HTTPS without --tls-dir
		{"verifier-sim", "--plain-http", "--init-schema"},
		{"verifier-sim", "--plain-http", "--quote-interval", "-1", "--listen", "127.0.0.1:0"},
	} {
		var stderr bytes.Buffer
		if code := Main(args, io.Discard, &stderr); code != exitUsage {
			t.Errorf("%v: exit %d, want %d (%s)", args, code, exitUsage, stderr.String())
		}
	}
}

func TestRunVerifierSim(t *testing.T) {
	ln, err := net.Listen("tcp", "127.0.0.1:0")
	if err != nil {
		t.Fatal(err)
	}
	addr := ln.Addr().String()
	ln.Close()
	cfg := simverifier.DefaultConfig()
	cfg.PlainHTTP = true
	ctx, cancel := context.WithCancel(context.Background())
	done := make(chan error, 1)
	go func() { done <- runVerifierSim(ctx, cfg, addr, slog.New(slog.DiscardHandler)) }()
	var resp *http.Response
	for range 100 {
		if resp, err = http.Get("http://" + addr + "/versions"); err == nil {
			break
		}
		time.Sleep(20 * time.Millisecond)
	}
	if err != nil {
		t.Fatal(err)
	}
	resp.Body.Close()
	if resp.StatusCode != http.StatusGone {
		t.Errorf("/versions: %d", resp.StatusCode)
	}
	cancel()
	if err := <-done; err != nil {
		t.Fatalf("runVerifierSim: %v", err)
	}
}

// verifier-sim on a database without the verifier's tables names the fix (--init-schema) instead of failing on
// `relation "verifiermain" does not exist`; with --init-schema it starts.
func TestVerifierSimMissingSchema(t *testing.T) {
	db := pgtest.NewDatabase(t)
	var stderr bytes.Buffer
	code := Main([]string{"verifier-sim", "--plain-http", "--listen", "127.0.0.1:0", "--database", db}, io.Discard, &stderr)
	if code != exitUsage || !strings.Contains(stderr.String(), "--init-schema") || strings.Contains(stderr.String(), "relation") {
		t.Errorf("exit %d, stderr %q; want %d naming --init-schema", code, stderr.String(), exitUsage)
	}
}

package main

import (
	"bytes"
	"context"
	"io"
	"log/slog"
	"net"
	"net/http"
	"testing"
	"time"

	"github.com/attestload/attestload/attestation/simverifier"
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

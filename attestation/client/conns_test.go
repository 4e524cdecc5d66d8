package client

import (
	"context"
	"crypto/tls"
	"encoding/pem"
	"errors"
	"io"
	"net/http"
	"net/http/httptest"
	"os"
	"path/filepath"
	"sync"
	"testing"
	"time"
)

// remoteAddrs serves 204s and remembers the client address of every request.
type remoteAddrs struct {
	mu    sync.Mutex
	addrs []string
}

func (ra *remoteAddrs) ServeHTTP(w http.ResponseWriter, r *http.Request) {
	ra.mu.Lock()
	ra.addrs = append(ra.addrs, r.RemoteAddr)
	ra.mu.Unlock()
	w.WriteHeader(http.StatusNoContent)
}

func (ra *remoteAddrs) last() string {
	ra.mu.Lock()
	defer ra.mu.Unlock()
	return ra.addrs[len(ra.addrs)-1]
}

func agentGet(t *testing.T, rt http.RoundTripper, url string, agent int) {
	t.Helper()
	ctx := context.Background()
	if agent >= 0 {
		ctx = WithAgent(ctx, agent)
	}
	req, err := http.NewRequestWithContext(ctx, http.MethodGet, url, nil)
	if err != nil {
		t.Fatal(err)
	}
	resp, err := rt.RoundTrip(req)
	if err != nil {
		t.Fatal(err)
	}
	_, _ = io.Copy(io.Discard, resp.Body)
	resp.Body.Close()
}

// agentServer is a plain-HTTP server remembering client addresses and a per-agent transport to it with budget.
func agentServer(t *testing.T, budget int) (*remoteAddrs, string, *AgentTransport) {
	t.Helper()
	ra := &remoteAddrs{}
	srv := httptest.NewServer(ra)
	t.Cleanup(srv.Close)
	tr, err := NewAgentTransport(TLSOptions{}, budget, 0)
	if err != nil {
		t.Fatal(err)
	}
	t.Cleanup(tr.CloseIdleConnections)
	return ra, srv.URL, tr
}

// TestAgentTransportOneConnectionPerAgent: every agent keeps its own keep-alive connection; agents never share one.
func TestAgentTransportOneConnectionPerAgent(t *testing.T) {
	ra, url, tr := agentServer(t, 100)
	byAgent := map[int]string{}
	for round := range 4 {
		for a := range 3 {
			agentGet(t, tr, url, a)
			addr := ra.last()
			if round == 0 {
				byAgent[a] = addr
			} else if addr != byAgent[a] {
				t.Errorf("agent %d: request %d came from %s, its connection is %s", a, round, addr, byAgent[a])
			}
		}
	}
	if byAgent[0] == byAgent[1] || byAgent[1] == byAgent[2] || byAgent[0] == byAgent[2] {
		t.Errorf("agents share connections: %v", byAgent)
	}
	if st := tr.Counter().Stats(); st.Opened != 3 || st.Open != 3 || st.Handshakes != 0 {
		t.Errorf("stats %+v, want 3 opened, 3 open, no TLS handshake", st)
	}
}

// TestAgentTransportBudget: past the budget, the least recently used idle agent's connection is closed; that agent
// opens a new one when it next attests.
func TestAgentTransportBudget(t *testing.T) {
	_, url, tr := agentServer(t, 2)
	for _, a := range []int{0, 1, 2} {
		agentGet(t, tr, url, a)
	}
	st := tr.Counter().Stats()
	if st.Open > 2 || st.Evicted != 1 || st.Opened != 3 {
		t.Errorf("after 3 agents with a budget of 2: %+v, want at most 2 open, 1 evicted, 3 opened", st)
	}
	agentGet(t, tr, url, 2) // still connected
	if got := tr.Counter().Stats().Opened; got != 3 {
		t.Errorf("agent 2 reconnected (%d opened) although its connection was the most recently used", got)
	}
	agentGet(t, tr, url, 0) // evicted: a new connection, evicting agent 1's
	if st := tr.Counter().Stats(); st.Opened != 4 || st.Evicted != 2 || st.Open > 2 {
		t.Errorf("after agent 0 came back: %+v, want 4 opened, 2 evicted, at most 2 open", st)
	}
}

// TestAgentTransportCountsHandshakes: each new connection to a TLS verifier is one handshake; keep-alive requests
// add none; requests without an agent use the shared pool, counted too.
func TestAgentTransportCountsHandshakes(t *testing.T) {
	srv := httptest.NewTLSServer(&remoteAddrs{})
	defer srv.Close()
	ca := filepath.Join(t.TempDir(), "ca.pem")
	if err := os.WriteFile(ca, pem.EncodeToMemory(&pem.Block{Type: "CERTIFICATE", Bytes: srv.Certificate().Raw}), 0o600); err != nil {
		t.Fatal(err)
	}
	tr, err := NewAgentTransport(TLSOptions{CAFile: ca}, 0, 0)
	if err != nil {
		t.Fatal(err)
	}
	defer tr.CloseIdleConnections()
	for range 3 {
		agentGet(t, tr, srv.URL, 0)
		agentGet(t, tr, srv.URL, 1)
	}
	agentGet(t, tr, srv.URL, -1)
	if st := tr.Counter().Stats(); st.Handshakes != 3 || st.Opened != 3 {
		t.Errorf("stats %+v, want 3 connections and 3 handshakes", st)
	}
}

func TestDefaultConnBudget(t *testing.T) {
	b, limit := DefaultConnBudget(false)
	bs, _ := DefaultConnBudget(true)
	if b < 16 || bs < 16 || (limit > 0 && uint64(b) >= limit) || bs > b {
		t.Errorf("budget %d (with server %d) for a descriptor limit of %d", b, bs, limit)
	}
}

// TestAgentTransportDefaultIdleTimeout: an idle timeout of 0 asks for the default, and the default is a real limit
// (http.Transport reads an IdleConnTimeout of 0 as "never close"), long enough to keep a connection between a
// cycle's requests; a given timeout is used as it is.
func TestAgentTransportDefaultIdleTimeout(t *testing.T) {
	if DefaultAgentIdleTimeout < time.Second {
		t.Fatalf("DefaultAgentIdleTimeout %v: an agent would lose its connection between a cycle's requests", DefaultAgentIdleTimeout)
	}
	srv := httptest.NewServer(&remoteAddrs{})
	defer srv.Close()
	for _, tc := range []struct {
		given, want time.Duration
	}{{0, DefaultAgentIdleTimeout}, {3 * time.Second, 3 * time.Second}} {
		tr, err := NewAgentTransport(TLSOptions{}, 0, tc.given)
		if err != nil {
			t.Fatal(err)
		}
		agentGet(t, tr, srv.URL, 7)
		tr.mu.Lock()
		got := tr.agents[7].t.IdleConnTimeout
		tr.mu.Unlock()
		tr.CloseIdleConnections()
		if got != tc.want {
			t.Errorf("idle timeout %v: the agent's connection closes after %v idle, want %v", tc.given, got, tc.want)
		}
	}
}

// TestHandshakeCountKeepsEarlierCheck: counting handshakes wraps a VerifyConnection already set on the TLS config;
// its refusal still fails the handshake, and a refused handshake is not counted.
func TestHandshakeCountKeepsEarlierCheck(t *testing.T) {
	refused := errors.New("refused by the earlier check")
	var refuse bool
	var c ConnCounter
	tc := &tls.Config{VerifyConnection: func(tls.ConnectionState) error {
		if refuse {
			return refused
		}
		return nil
	}}
	c.countHandshakes(tc)
	if err := tc.VerifyConnection(tls.ConnectionState{}); err != nil {
		t.Fatalf("accepted handshake: %v", err)
	}
	refuse = true
	if err := tc.VerifyConnection(tls.ConnectionState{}); !errors.Is(err, refused) {
		t.Fatalf("refused handshake: error %v, want the earlier check's", err)
	}
	if got := c.Stats().Handshakes; got != 1 {
		t.Errorf("%d handshakes counted, want 1 (the refused one is not)", got)
	}

	// No earlier check: every handshake is counted.
	var c2 ConnCounter
	tc2 := &tls.Config{}
	c2.countHandshakes(tc2)
	if err := tc2.VerifyConnection(tls.ConnectionState{}); err != nil || c2.Stats().Handshakes != 1 {
		t.Errorf("error %v, %d handshakes counted, want nil and 1", err, c2.Stats().Handshakes)
	}
}

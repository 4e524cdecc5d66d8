package simverifier

import (
	"context"
	"io"
	"net"
	"net/http"
	"sync/atomic"
	"syscall"
	"testing"
	"time"
)

// serveProcesses serves v (plain HTTP) through Serve, so that the process model is in force, and returns its base
// URL.
func serveProcesses(t *testing.T, v *Verifier) string {
	t.Helper()
	ln, err := net.Listen("tcp", "127.0.0.1:0")
	if err != nil {
		t.Fatal(err)
	}
	ctx, cancel := context.WithCancel(context.Background())
	done := make(chan error, 1)
	go func() { done <- v.Serve(ctx, ln) }()
	t.Cleanup(func() {
		cancel()
		if err := <-done; err != nil {
			t.Errorf("Serve: %v", err)
		}
	})
	return "http://" + ln.Addr().String()
}

func newProcessVerifier(t *testing.T, processes int) *Verifier {
	t.Helper()
	cfg := DefaultConfig()
	cfg.PlainHTTP = true
	cfg.SessionHashIterations = 1
	cfg.Processes = processes
	cfg.Seed = 7
	v, err := New(cfg)
	if err != nil {
		t.Fatal(err)
	}
	return v
}

// oneConn is a client holding at most one keep-alive connection.
func oneConn() *http.Client {
	return &http.Client{Transport: &http.Transport{MaxConnsPerHost: 1, MaxIdleConnsPerHost: 1}}
}

func get(t *testing.T, c *http.Client, url string) {
	t.Helper()
	resp, err := c.Get(url)
	if err != nil {
		t.Error(err)
		return
	}
	_, _ = io.Copy(io.Discard, resp.Body)
	resp.Body.Close()
	if resp.StatusCode != http.StatusGone {
		t.Errorf("GET %s: %d, want 410", url, resp.StatusCode)
	}
}

// TestProcessPinsConnections: every request of a keep-alive connection is served by the process that accepted it.
func TestProcessPinsConnections(t *testing.T) {
	v := newProcessVerifier(t, 2)
	base := serveProcesses(t, v)
	c := oneConn()
	for range 6 {
		get(t, c, base+"/versions")
	}
	st := v.ProcessStats()
	if len(st) != 2 {
		t.Fatalf("ProcessStats: %d processes, want 2", len(st))
	}
	if st[0].Requests+st[1].Requests != 6 || (st[0].Requests != 6 && st[1].Requests != 6) {
		t.Errorf("requests per process %d/%d, want all 6 on one", st[0].Requests, st[1].Requests)
	}
	if st[0].Connections+st[1].Connections != 1 {
		t.Errorf("connections per process %d/%d, want 1 in all", st[0].Connections, st[1].Connections)
	}
}

// holdRequests makes every request wait in its process until release is closed; entered counts the requests that
// got that far.
func holdRequests(v *Verifier) (entered *atomic.Int32, started chan struct{}, release chan struct{}) {
	entered = &atomic.Int32{}
	started = make(chan struct{}, 16)
	release = make(chan struct{})
	v.beforeRequest = func() {
		entered.Add(1)
		started <- struct{}{}
		<-release
	}
	return entered, started, release
}

// TestBusyProcessDoesNotAccept: while one process is busy, every new connection goes to the idle one, as only an
// idle Tornado worker accepts.
func TestBusyProcessDoesNotAccept(t *testing.T) {
	v := newProcessVerifier(t, 2)
	var n atomic.Int32
	started, release := make(chan struct{}), make(chan struct{})
	v.beforeRequest = func() {
		if n.Add(1) == 1 {
			close(started)
			<-release
		}
	}
	base := serveProcesses(t, v)
	first := make(chan struct{})
	go func() { defer close(first); get(t, oneConn(), base+"/versions") }()
	<-started
	for range 4 {
		get(t, &http.Client{Transport: &http.Transport{DisableKeepAlives: true}}, base+"/versions")
	}
	st := v.ProcessStats()
	busy, idle := st[0], st[1]
	if busy.Requests != 1 {
		busy, idle = idle, busy
	}
	if busy.Requests != 1 || busy.Connections != 1 || idle.Connections != 4 || idle.Requests != 4 {
		t.Errorf("busy process %d connections/%d requests, idle one %d/%d; want 1/1 and 4/4", busy.Connections,
			busy.Requests, idle.Connections, idle.Requests)
	}
	close(release)
	<-first
}

// TestProcessSerialisesRequests: a process serves one request at a time, whatever connection it came on.
func TestProcessSerialisesRequests(t *testing.T) {
	v := newProcessVerifier(t, 1)
	entered, started, release := holdRequests(v)
	base := serveProcesses(t, v)
	d1, d2 := make(chan struct{}), make(chan struct{})
	go func() { defer close(d1); get(t, oneConn(), base+"/versions") }()
	<-started
	go func() { defer close(d2); get(t, oneConn(), base+"/versions") }()
	time.Sleep(100 * time.Millisecond)
	if n := entered.Load(); n != 1 {
		t.Fatalf("%d requests in the one process at once, want 1", n)
	}
	close(release)
	<-d1
	<-started
	<-d2
	if n := entered.Load(); n != 2 {
		t.Errorf("%d requests served, want 2", n)
	}
}

// TestSpendCPU: the calibrated cost is CPU time, not wall time.
func TestSpendCPU(t *testing.T) {
	cpu := func() time.Duration {
		var ru syscall.Rusage
		if err := syscall.Getrusage(syscall.RUSAGE_SELF, &ru); err != nil {
			t.Skip(err)
		}
		return time.Duration(ru.Utime.Nano() + ru.Stime.Nano())
	}
	before := cpu()
	spendCPU(40 * time.Millisecond)
	if got := cpu() - before; got < 40*time.Millisecond {
		t.Errorf("spendCPU(40ms) used %v of CPU", got)
	}
}

func TestVerificationCost(t *testing.T) {
	v := &Verifier{cfg: Config{Costs: Costs{Quote: 10 * time.Millisecond, IMALog: 5 * time.Millisecond,
		IMAEntry: time.Millisecond, UEFILog: 100 * time.Millisecond}}}
	att := &attestation{items: []*evidenceItem{
		{typ: "tpm_quote"},
		{typ: "uefi_log", data: map[string]any{"entries": "AAAA"}},
		{typ: "ima_log", data: map[string]any{"entries": "a\nb\nc\n"}},
	}}
	if got, want := v.verificationCost(att), 118*time.Millisecond; got != want {
		t.Errorf("verificationCost = %v, want %v", got, want)
	}
	if err := (Costs{Quote: -1}).validate(); err == nil {
		t.Error("a negative cost was accepted")
	}
}

// TestTimeoutMonitor: an agent not verified again within the window is marked timed out once; one verified again in
// time is not.
func TestTimeoutMonitor(t *testing.T) {
	v, srv, clock := newTestServer(t, func(c *Config) { c.TimeoutMonitor = true })
	v.timeoutWindow = 50 * time.Millisecond
	k := vectorKey(t, "vec-agent-2")
	if err := v.EnrollAgent(quoteOnlySpec("a1", k)); err != nil {
		t.Fatal(err)
	}
	a := newSimAgent(t, srv.URL, "a1", k)
	a.startSession()
	for i := range 2 {
		clock.Advance(3 * time.Second)
		c := a.create()
		wantStatus(t, "update", a.update("latest", a.evidenceFor(c, nil)), http.StatusAccepted, "")
		if ev, _ := waitVerdict(t, v, "a1", i); ev != evalPass {
			t.Fatalf("verdict %d: %s", i, ev)
		}
		if n := v.Timeouts(); n != 0 {
			t.Fatalf("%d timeouts right after a verification", n)
		}
	}
	deadline := time.Now().Add(10 * time.Second)
	for v.Timeouts() == 0 && time.Now().Before(deadline) {
		time.Sleep(5 * time.Millisecond)
	}
	time.Sleep(100 * time.Millisecond) // a second (stale) timer would fire by now
	if n := v.Timeouts(); n != 1 {
		t.Fatalf("Timeouts() = %d after the window, want 1", n)
	}
	ag := v.agentMem("a1")
	ag.mu.Lock()
	accept := ag.accept
	ag.mu.Unlock()
	if accept {
		t.Error("accept_attestations still true after the timeout")
	}
}

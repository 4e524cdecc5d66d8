package client

import (
	"container/list"
	"context"
	"crypto/tls"
	"fmt"
	"io"
	"net"
	"net/http"
	"sync"
	"sync/atomic"
	"time"
)

// Connection models: how the agents' requests reach the verifier.
const (
	// ConnsPerAgent gives every agent its own connection, as a fleet of real agents has: kept alive while the agent
	// uses it, opened again (a new TCP connection and TLS handshake) once the verifier or the idle timeout closed
	// it. The verifier's worker processes then see as many connections as agents, each pinned to one of them.
	ConnsPerAgent = "per-agent"
	// ConnsShared sends every agent's requests over one pool of keep-alive connections (about as many as requests
	// in flight), fewer connections than agents.
	ConnsShared = "shared"
)

// DefaultAgentIdleTimeout is how long an agent keeps its idle connection open before closing it.
const DefaultAgentIdleTimeout = 90 * time.Second

type agentKey struct{}

// WithAgent marks the requests made with ctx as agent index's, so that an AgentTransport sends them over that
// agent's own connection. Cycle does it for every request of a cycle.
func WithAgent(ctx context.Context, index int) context.Context {
	return context.WithValue(ctx, agentKey{}, index)
}

func agentFrom(ctx context.Context) (int, bool) {
	i, ok := ctx.Value(agentKey{}).(int)
	return i, ok
}

// ConnStats is what a transport's connections did.
type ConnStats struct {
	Opened     int64 // TCP connections opened
	Handshakes int64 // TLS handshakes completed
	Open       int64 // connections open now
	PeakOpen   int64 // most connections open at once
	Evicted    int64 // idle agent connections closed to stay within the descriptor budget
}

// ConnCounter counts a transport's connections and TLS handshakes; safe for concurrent use.
type ConnCounter struct {
	opened, handshakes, open, peak, evicted atomic.Int64
}

// Stats returns the counts so far.
func (c *ConnCounter) Stats() ConnStats {
	return ConnStats{Opened: c.opened.Load(), Handshakes: c.handshakes.Load(), Open: c.open.Load(),
		PeakOpen: c.peak.Load(), Evicted: c.evicted.Load()}
}

func (c *ConnCounter) opening() {
	c.opened.Add(1)
	n := c.open.Add(1)
	for {
		p := c.peak.Load()
		if n <= p || c.peak.CompareAndSwap(p, n) {
			return
		}
	}
}

// countDial wraps dial so that every connection it opens is counted (and its close); onClose, if set, runs once
// when the connection closes.
func (c *ConnCounter) countDial(dial dialFunc, onClose func()) dialFunc {
	return func(ctx context.Context, network, addr string) (net.Conn, error) {
		conn, err := dial(ctx, network, addr)
		if err != nil {
			return nil, err
		}
		c.opening()
		return &countedConn{Conn: conn, c: c, onClose: onClose}, nil
	}
}

// countHandshakes makes tc count every completed handshake.
func (c *ConnCounter) countHandshakes(tc *tls.Config) {
	prev := tc.VerifyConnection
	tc.VerifyConnection = func(cs tls.ConnectionState) error {
		if prev != nil {
			if err := prev(cs); err != nil {
				return err
			}
		}
		c.handshakes.Add(1)
		return nil
	}
}

type dialFunc = func(ctx context.Context, network, addr string) (net.Conn, error)

type countedConn struct {
	net.Conn
	c       *ConnCounter
	onClose func()
	once    sync.Once
}

func (cc *countedConn) Close() error {
	cc.once.Do(func() {
		cc.c.open.Add(-1)
		if cc.onClose != nil {
			cc.onClose()
		}
	})
	return cc.Conn.Close()
}

// AgentTransport gives every agent its own connection (ConnsPerAgent): requests marked with WithAgent go over
// their agent's single keep-alive connection, from the agent's source address (LocalAddrs by agent index). To stay
// within the descriptor budget it closes the idle connections of the agents that used theirs least recently before
// opening one past it. Requests not marked go over a shared pool.
type AgentTransport struct {
	opts    TLSOptions
	tls     *tls.Config
	dialers []dialFunc // one per source address (one kernel-chosen when LocalAddrs is empty)
	idle    time.Duration
	budget  int
	counter *ConnCounter
	shared  *http.Transport

	mu     sync.Mutex
	agents map[int]*agentConn
	lru    *list.List // of *agentConn, most recently used first
}

type agentConn struct {
	index    int
	t        *http.Transport
	elem     *list.Element
	inflight int // requests whose response body is not closed yet (under AgentTransport.mu)
	open     atomic.Int64
}

// NewAgentTransport builds the per-agent transport. budget caps the connections kept open (0: DefaultConnBudget);
// idle is how long an agent keeps an unused connection (0: DefaultAgentIdleTimeout).
func NewAgentTransport(o TLSOptions, budget int, idle time.Duration) (*AgentTransport, error) {
	if budget < 0 {
		return nil, fmt.Errorf("connection budget %d is negative", budget)
	}
	if idle < 0 {
		return nil, fmt.Errorf("agent idle timeout %v is negative", idle)
	}
	counter := &ConnCounter{}
	shared, err := newTransport(o, counter)
	if err != nil {
		return nil, err
	}
	if budget == 0 {
		budget, _ = DefaultConnBudget(false)
	}
	if idle == 0 {
		idle = DefaultAgentIdleTimeout
	}
	t := &AgentTransport{opts: o, tls: shared.TLSClientConfig, idle: idle, budget: budget, counter: counter,
		shared: shared, agents: map[int]*agentConn{}, lru: list.New()}
	addrs := o.LocalAddrs
	if len(addrs) == 0 {
		addrs = []string{""}
	}
	for _, a := range addrs {
		d, err := newDialer(nonEmpty(a), connectTimeoutOf(o))
		if err != nil {
			return nil, err
		}
		t.dialers = append(t.dialers, d)
	}
	return t, nil
}

func nonEmpty(a string) []string {
	if a == "" {
		return nil
	}
	return []string{a}
}

// Budget is the most connections the transport keeps open.
func (t *AgentTransport) Budget() int { return t.budget }

// Counter is the transport's connection counter.
func (t *AgentTransport) Counter() *ConnCounter { return t.counter }

// RoundTrip sends req over its agent's connection.
func (t *AgentTransport) RoundTrip(req *http.Request) (*http.Response, error) {
	idx, ok := agentFrom(req.Context())
	if !ok {
		return t.shared.RoundTrip(req)
	}
	ac := t.acquire(idx)
	resp, err := ac.t.RoundTrip(req)
	if err != nil {
		t.release(ac)
		return nil, err
	}
	resp.Body = &releaseBody{ReadCloser: resp.Body, release: func() { t.release(ac) }}
	return resp, nil
}

// acquire finds or makes idx's transport, marks a request in flight on it, and, when the agent is about to open a
// connection, closes least recently used idle ones beyond the budget.
func (t *AgentTransport) acquire(idx int) *agentConn {
	t.mu.Lock()
	defer t.mu.Unlock()
	ac := t.agents[idx]
	if ac == nil || ac.open.Load() == 0 {
		t.evictLocked(ac)
	}
	if ac == nil {
		ac = &agentConn{index: idx}
		ac.t = t.agentHTTPTransport(ac)
		ac.elem = t.lru.PushFront(ac)
		t.agents[idx] = ac
	} else {
		t.lru.MoveToFront(ac.elem)
	}
	ac.inflight++
	return ac
}

// evictLocked closes idle agent connections, least recently used first, until one more fits the budget (skipping
// keep, the agent about to use its own).
func (t *AgentTransport) evictLocked(keep *agentConn) {
	for e := t.lru.Back(); e != nil && t.counter.open.Load() >= int64(t.budget); {
		prev := e.Prev()
		ac := e.Value.(*agentConn)
		if ac != keep && ac.inflight == 0 {
			had := ac.open.Load()
			ac.t.CloseIdleConnections()
			t.lru.Remove(e)
			delete(t.agents, ac.index)
			if had > 0 {
				t.counter.evicted.Add(had)
			}
		}
		e = prev
	}
}

func (t *AgentTransport) release(ac *agentConn) {
	t.mu.Lock()
	ac.inflight--
	t.mu.Unlock()
}

// agentHTTPTransport is one agent's transport: at most one connection, from the agent's source address.
func (t *AgentTransport) agentHTTPTransport(ac *agentConn) *http.Transport {
	dial := t.dialers[ac.index%len(t.dialers)]
	counted := t.counter.countDial(func(ctx context.Context, network, addr string) (net.Conn, error) {
		c, err := dial(ctx, network, addr)
		if err == nil {
			ac.open.Add(1)
		}
		return c, err
	}, func() { ac.open.Add(-1) })
	return httpTransport(counted, t.tls, connectTimeoutOf(t.opts), 1, 1, t.idle)
}

// CloseIdleConnections closes every idle connection.
func (t *AgentTransport) CloseIdleConnections() {
	t.mu.Lock()
	all := make([]*http.Transport, 0, len(t.agents))
	for _, ac := range t.agents {
		all = append(all, ac.t)
	}
	t.mu.Unlock()
	for _, tr := range all {
		tr.CloseIdleConnections()
	}
	t.shared.CloseIdleConnections()
}

// releaseBody runs release once when the body is closed.
type releaseBody struct {
	io.ReadCloser
	release func()
	once    sync.Once
}

func (b *releaseBody) Close() error {
	err := b.ReadCloser.Close()
	b.once.Do(b.release)
	return err
}

// connReserve is how many descriptors DefaultConnBudget leaves for everything else (results files, metrics,
// database pool, the simulated verifier's own side of loopback connections).
const connReserve = 256

// DefaultConnBudget is how many verifier connections a run keeps open by default: the process's descriptor limit
// (RLIMIT_NOFILE, which Go raises to the hard limit at start) minus a reserve, halved when withServer (the
// simulated verifier runs in the same process and holds the other end of each connection). limit is the
// descriptor limit (0 where it cannot be read; 1024 is assumed then).
func DefaultConnBudget(withServer bool) (budget int, limit uint64) {
	limit = fdLimit()
	l := int(min(limit, 1<<30))
	if limit == 0 {
		l = 1024
	}
	b := l - connReserve
	if withServer {
		b /= 2
	}
	return max(b, 16), limit
}

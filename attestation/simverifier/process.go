package simverifier

import (
	"context"
	"math/rand/v2"
	"net"
	"sync"
	"time"
)

// process is one of the modelled worker processes of the real verifier (Tornado forks one per core). A connection
// belongs to the process that accepted it for its whole life; a process runs one request at a time, and the
// verification that follows a 202 before its next; it accepts new connections only while it is idle, as a Tornado
// IOLoop blocked in a synchronous verification does not accept either.
type process struct {
	index int
	busy  bool // under processes.mu
	// timers are the process's push-agent timeout timers by agent id (the real monitor keeps them per worker, in
	// memory), under processes.mu.
	timers map[string]*timeoutHandle
	// stats, under processes.mu.
	requests  int64
	conns     int64
	busyTime  time.Duration
	busySince time.Time
}

// processes is the set of worker processes and the lock and condition their states share.
type processes struct {
	mu    sync.Mutex
	idle  *sync.Cond // signalled when a process becomes idle
	procs []*process
	rnd   *rand.Rand // under mu: which idle process wins an accept
	now   func() time.Time
	// accepting counts connections waiting for an idle process (under mu). While one waits, an idle process takes
	// it before its next request: Tornado's IOLoop handles the listening socket's event when it returns from a
	// request, so a steady stream of requests on a worker's own connections does not starve new connections.
	accepting int
}

// processSeed seeds which idle process wins an accept: from the configured seed (its own stream, so that the fault
// sequences stay as they were), random without one.
func processSeed(seed uint64) uint64 {
	if seed == 0 {
		return rand.Uint64()
	}
	return seed ^ 0x2545f4914f6cdd1d
}

func newProcesses(n int, seed uint64, now func() time.Time) *processes {
	ps := &processes{procs: make([]*process, n), rnd: rand.New(rand.NewPCG(seed, seed^0x9e3779b97f4a7c15)), now: now}
	ps.idle = sync.NewCond(&ps.mu)
	for i := range ps.procs {
		ps.procs[i] = &process{index: i, timers: map[string]*timeoutHandle{}}
	}
	return ps
}

// acquire makes p busy, waiting while it is busy with another request or ctx ends; false when ctx ended first.
func (ps *processes) acquire(ctx context.Context, p *process) bool {
	stop := context.AfterFunc(ctx, func() {
		ps.mu.Lock()
		ps.idle.Broadcast()
		ps.mu.Unlock()
	})
	defer stop()
	ps.mu.Lock()
	defer ps.mu.Unlock()
	for p.busy || ps.accepting > 0 {
		if ctx.Err() != nil {
			return false
		}
		ps.idle.Wait()
	}
	p.busy = true
	p.busySince = ps.now()
	p.requests++
	return true
}

// release makes p idle again.
func (ps *processes) release(p *process) {
	ps.mu.Lock()
	p.busy = false
	p.busyTime += ps.now().Sub(p.busySince)
	ps.idle.Broadcast()
	ps.mu.Unlock()
}

// pickIdle waits until a process is idle and returns one of the idle ones at random, as whichever idle worker
// wins the race for a new connection; nil once done is closed.
func (ps *processes) pickIdle(done <-chan struct{}) *process {
	ps.mu.Lock()
	ps.accepting++
	defer func() {
		ps.accepting--
		ps.idle.Broadcast()
		ps.mu.Unlock()
	}()
	for {
		select {
		case <-done:
			return nil
		default:
		}
		n := 0
		for _, p := range ps.procs {
			if !p.busy {
				n++
			}
		}
		if n > 0 {
			k := ps.rnd.IntN(n)
			for _, p := range ps.procs {
				if p.busy {
					continue
				}
				if k == 0 {
					p.conns++
					return p
				}
				k--
			}
		}
		ps.idle.Wait()
	}
}

// wake wakes every waiter (at shutdown).
func (ps *processes) wake() {
	ps.mu.Lock()
	ps.idle.Broadcast()
	ps.mu.Unlock()
}

// ProcessStats is what one modelled worker process did.
type ProcessStats struct {
	Index       int
	Connections int64         // connections it accepted
	Requests    int64         // requests it served
	Busy        time.Duration // time spent serving requests and verifying
}

// ProcessStats reports each modelled worker process's connections, requests and busy time (nil without the
// process model).
func (v *Verifier) ProcessStats() []ProcessStats {
	ps := v.procs
	if ps == nil {
		return nil
	}
	ps.mu.Lock()
	defer ps.mu.Unlock()
	out := make([]ProcessStats, len(ps.procs))
	for i, p := range ps.procs {
		busy := p.busyTime
		if p.busy {
			busy += ps.now().Sub(p.busySince)
		}
		out[i] = ProcessStats{Index: p.index, Connections: p.conns, Requests: p.requests, Busy: busy}
	}
	return out
}

// processListener hands each accepted connection to an idle process, as the forked workers sharing the real
// verifier's listening socket do: nobody accepts while every process is busy.
type processListener struct {
	net.Listener
	ps   *processes
	done chan struct{}
	once sync.Once
}

func (l *processListener) Accept() (net.Conn, error) {
	c, err := l.Listener.Accept()
	if err != nil {
		return nil, err
	}
	// The connection waits in the backlog until a process is idle; the client's TCP connect has completed, its
	// TLS handshake waits.
	p := l.ps.pickIdle(l.done)
	if p == nil {
		_ = c.Close()
		return nil, net.ErrClosed
	}
	return &processConn{Conn: c, p: p}, nil
}

func (l *processListener) Close() error {
	l.once.Do(func() { close(l.done); l.ps.wake() })
	return l.Listener.Close()
}

// processConn is a connection pinned to the process that accepted it.
type processConn struct {
	net.Conn
	p *process
}

type processKey struct{}

// connProcess is the process a server connection is pinned to (nil without the process model).
func connProcess(c net.Conn) *process {
	if tc, ok := c.(interface{ NetConn() net.Conn }); ok {
		c = tc.NetConn()
	}
	if pc, ok := c.(*processConn); ok {
		return pc.p
	}
	return nil
}

func processFrom(ctx context.Context) *process {
	p, _ := ctx.Value(processKey{}).(*process)
	return p
}

package verdict

import (
	"context"
	"log/slog"
	"sync"
	"sync/atomic"
	"time"

	"github.com/attestload/attestload/attestation/record"
)

// Sink receives records; it is the engine's Sink interface (daemon/engine), satisfied structurally.
type Sink interface {
	Observe(r *record.Record)
	Close() error
}

// Key names one attestation at the verifier.
type Key struct {
	AgentID string
	Index   int
}

// Result is what a Source learned about one pending attestation. Evaluation is pass or fail, or unknown when the
// source can tell that the verdict will never become readable (stop waiting for it).
type Result struct {
	Evaluation    string
	FailureReason *string
}

// Source looks up verdicts. Resolve returns results for the keys whose verdict is settled; keys it leaves out are
// still pending and are asked again at the next poll. An error means nothing was learned this time.
type Source interface {
	Resolve(ctx context.Context, keys []Key) (map[Key]Result, error)
}

// Options tune a Watcher: the verdict section of the configuration (Timeout, PollInterval and MaxPending; a zero
// one means its default) and what the run adds.
type Options struct {
	Settings
	// FinalWait is how long Close keeps asking the source while records are still pending (the last cycles'
	// evidence is usually still being verified when the run ends); 0 means one last lookup only.
	FinalWait time.Duration
	Logger    *slog.Logger // nil discards
}

// Stats counts what a Watcher did.
type Stats struct {
	Resolved    uint64 // verdict learned from the source
	TimedOut    uint64 // forwarded as unknown after Timeout
	Overflowed  uint64 // forwarded as unknown at once because MaxPending records were held
	Passthrough uint64 // forwarded at once: no accepted evidence, so nothing to wait for
	PollErrors  uint64 // source lookups that failed
	Pending     int    // records held now
}

type entry struct {
	r        *record.Record
	key      Key
	accepted time.Time // evidence accepted: end of the last update attempt
	deadline time.Time
}

// Watcher holds records whose evidence was accepted until their verdict is known or the timeout passes, then
// forwards them to next. It implements Sink; Observe never blocks on the source.
type Watcher struct {
	src  Source
	next Sink
	opts Options
	log  *slog.Logger

	mu      sync.Mutex
	pending map[Key]*entry
	order   []*entry // arrival order = deadline order, since the timeout is the same for all
	closed  bool

	stop      chan struct{}
	done      chan struct{}
	once      sync.Once
	hurry     chan struct{}
	hurryOnce sync.Once

	resolved, timedOut, overflowed, passthrough, pollErrors atomic.Uint64
}

// NewWatcher starts a watcher that forwards records to next. With a nil src every record is forwarded at once
// with an unknown verdict; that is logged once here, not per record.
func NewWatcher(src Source, opts Options, next Sink) *Watcher {
	if opts.Timeout <= 0 {
		opts.Timeout = 30 * time.Second
	}
	if opts.PollInterval <= 0 {
		opts.PollInterval = 500 * time.Millisecond
	}
	if opts.MaxPending <= 0 {
		opts.MaxPending = 100_000
	}
	log := opts.Logger
	if log == nil {
		log = slog.New(slog.DiscardHandler)
	}
	log = log.With("component", "verdict")
	w := &Watcher{src: src, next: next, opts: opts, log: log, pending: make(map[Key]*entry),
		stop: make(chan struct{}), done: make(chan struct{}), hurry: make(chan struct{})}
	if src == nil {
		log.Info("no verdict source configured: every verdict is recorded as unknown")
		close(w.done)
		return w
	}
	go w.loop()
	return w
}

// Observe forwards r at once when there is nothing to wait for, and otherwise holds it until its verdict.
func (w *Watcher) Observe(r *record.Record) {
	if r == nil {
		return
	}
	if r.Verdict.Evaluation == "" {
		r.Verdict.Evaluation = record.EvaluationUnknown
	}
	if w.src == nil || !r.UpdateSuccessful || r.AttestationIndex == nil || r.AgentID == "" ||
		r.Verdict.Evaluation != record.EvaluationUnknown {
		w.passthrough.Add(1)
		w.next.Observe(r)
		return
	}
	now := time.Now()
	e := &entry{r: r, key: Key{AgentID: r.AgentID, Index: *r.AttestationIndex}, accepted: acceptedAt(r, now),
		deadline: now.Add(w.opts.Timeout)}
	w.mu.Lock()
	_, dup := w.pending[e.key]
	if w.closed {
		w.mu.Unlock()
		w.passthrough.Add(1)
		w.next.Observe(r)
		return
	}
	if dup || len(w.pending) >= w.opts.MaxPending {
		w.mu.Unlock()
		// Over the bound (or a duplicate key, which only a confused caller produces): never hold more, never
		// drop a record; it goes on without a verdict and the count shows it.
		w.overflowed.Add(1)
		w.next.Observe(r)
		return
	}
	w.pending[e.key] = e
	w.order = append(w.order, e)
	w.mu.Unlock()
}

func acceptedAt(r *record.Record, fallback time.Time) time.Time {
	if n := len(r.UpdateAttempts); n > 0 && r.UpdateAttempts[n-1].EndTime > 0 {
		return time.Unix(0, int64(r.UpdateAttempts[n-1].EndTime*float64(time.Second)))
	}
	return fallback
}

func (w *Watcher) loop() {
	defer close(w.done)
	t := time.NewTicker(w.opts.PollInterval)
	defer t.Stop()
	failing := false
	for {
		select {
		case <-w.stop:
			return
		case <-t.C:
		}
		err := w.poll()
		switch {
		case err != nil && !failing:
			failing = true
			w.log.Warn("verdict lookup failing; records wait until their timeout", "err", err)
		case err == nil && failing:
			failing = false
			w.log.Info("verdict lookup recovered")
		}
		w.expire(time.Now())
	}
}

// poll asks the source about every pending key once and forwards what it settled.
func (w *Watcher) poll() error {
	w.mu.Lock()
	keys := make([]Key, 0, len(w.pending))
	for k := range w.pending {
		keys = append(keys, k)
	}
	w.mu.Unlock()
	if len(keys) == 0 {
		return nil
	}
	ctx, cancel := context.WithTimeout(context.Background(), max(w.opts.PollInterval*4, 5*time.Second))
	res, err := w.src.Resolve(ctx, keys)
	cancel()
	if err != nil {
		w.pollErrors.Add(1)
	}
	if len(res) == 0 {
		return err
	}
	now := time.Now()
	var out []*entry
	w.mu.Lock()
	for k, v := range res {
		e, ok := w.pending[k]
		if !ok {
			continue
		}
		delete(w.pending, k)
		e.r.Verdict.Evaluation = v.Evaluation
		e.r.Verdict.FailureReason = v.FailureReason
		if v.Evaluation == record.EvaluationPass || v.Evaluation == record.EvaluationFail {
			s := max(now.Sub(e.accepted).Seconds(), 0)
			e.r.Verdict.Seconds = &s
		}
		out = append(out, e)
	}
	w.compact()
	w.mu.Unlock()
	for _, e := range out {
		w.resolved.Add(1)
		w.next.Observe(e.r)
	}
	return err
}

// expire forwards every record whose deadline passed, as unknown.
func (w *Watcher) expire(now time.Time) {
	var out []*entry
	w.mu.Lock()
	i := 0
	for ; i < len(w.order); i++ {
		e := w.order[i]
		if w.pending[e.key] != e {
			continue // already resolved
		}
		if e.deadline.After(now) {
			break
		}
		delete(w.pending, e.key)
		out = append(out, e)
	}
	w.order = w.order[i:]
	w.compact()
	w.mu.Unlock()
	for _, e := range out {
		w.timedOut.Add(1)
		w.next.Observe(e.r)
	}
}

// compact drops resolved entries from order once they dominate it, so order stays proportional to pending.
func (w *Watcher) compact() {
	if len(w.order) < 64 || len(w.order) < 2*len(w.pending) {
		return
	}
	kept := make([]*entry, 0, len(w.pending))
	for _, e := range w.order {
		if w.pending[e.key] == e {
			kept = append(kept, e)
		}
	}
	w.order = kept
}

// Close makes one last lookup, forwards everything still held as unknown, and closes next. Records observed
// after Close are forwarded at once.
func (w *Watcher) Close() error {
	var err error
	w.once.Do(func() {
		close(w.stop)
		<-w.done
		if w.src != nil {
			w.finalPolls()
		}
		w.mu.Lock()
		w.closed = true
		var out []*entry
		for _, e := range w.order {
			if w.pending[e.key] == e {
				out = append(out, e)
			}
		}
		clear(w.pending)
		w.order = nil
		w.mu.Unlock()
		for _, e := range out {
			w.timedOut.Add(1)
			w.next.Observe(e.r)
		}
		err = w.next.Close()
	})
	return err
}

// finalPolls asks the source until nothing is pending, FinalWait passes or a lookup fails. A failing lookup is
// not a close failure: the records still go on, as unknown.
func (w *Watcher) finalPolls() {
	end := time.Now().Add(w.opts.FinalWait)
	for {
		if perr := w.poll(); perr != nil {
			w.log.Warn("final verdict lookup failed", "err", perr)
			return
		}
		w.expire(time.Now())
		w.mu.Lock()
		n := len(w.pending)
		w.mu.Unlock()
		left := time.Until(end)
		if n == 0 || left <= 0 {
			return
		}
		t := time.NewTimer(min(w.opts.PollInterval, left))
		select {
		case <-t.C:
		case <-w.hurry:
			t.Stop()
			return
		}
	}
}

// Hurry makes a Close in progress (or to come) stop waiting for verdicts after its current lookup: the user asked
// to exit at once (a second signal), so what is still pending goes on as unknown.
func (w *Watcher) Hurry() { w.hurryOnce.Do(func() { close(w.hurry) }) }

// Stats returns the watcher's counts.
func (w *Watcher) Stats() Stats {
	w.mu.Lock()
	n := len(w.pending)
	w.mu.Unlock()
	return Stats{Resolved: w.resolved.Load(), TimedOut: w.timedOut.Load(), Overflowed: w.overflowed.Load(),
		Passthrough: w.passthrough.Load(), PollErrors: w.pollErrors.Load(), Pending: n}
}

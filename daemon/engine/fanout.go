package engine

import (
	"errors"
	"sync"
	"sync/atomic"

	"github.com/attestload/attestload/attestation/record"
)

// Fanout delivers every record to all sinks without letting a slow sink slow the cycles.
//
// Records enter a bounded input queue that one fan-out goroutine drains. Ordinary sinks each get their own bounded
// queue and goroutine; when a sink's queue is full the record is dropped for that sink only and counted (a metrics
// sink falling behind must never hold back attestations). Lossless sinks (the results writer) are called directly
// on the fan-out goroutine and may block it: a results line is never dropped. The trade-off is deliberate: while a
// lossless sink is stalled (a hung disk) the input queue fills, and only when it is full does Observe block the
// cycle that finished, so the load slows down instead of results silently going missing. With the default input
// bound of 8192 records and a writer that flushes every second, a disk may stall for several seconds at thousands
// of cycles per second before any cycle notices.
type Fanout struct {
	in       chan *record.Record
	lossless []Sink
	lossy    []*lossySink
	done     chan struct{}
	once     sync.Once
	closeErr error
	blocked  atomic.Uint64
}

type lossySink struct {
	sink    Sink
	ch      chan *record.Record
	dropped atomic.Uint64
	done    chan struct{}
}

// NewFanout starts a fan-out with an input bound of inBound records and a per-sink bound of sinkBound records.
func NewFanout(inBound, sinkBound int, lossless, lossy []Sink) *Fanout {
	if inBound < 1 {
		inBound = 1
	}
	if sinkBound < 1 {
		sinkBound = 1
	}
	f := &Fanout{in: make(chan *record.Record, inBound), lossless: lossless, done: make(chan struct{})}
	for _, s := range lossy {
		ls := &lossySink{sink: s, ch: make(chan *record.Record, sinkBound), done: make(chan struct{})}
		f.lossy = append(f.lossy, ls)
		go func() {
			defer close(ls.done)
			for r := range ls.ch {
				ls.sink.Observe(r)
			}
		}()
	}
	go f.loop()
	return f
}

func (f *Fanout) loop() {
	defer close(f.done)
	for r := range f.in {
		for _, s := range f.lossless {
			s.Observe(r)
		}
		for _, ls := range f.lossy {
			select {
			case ls.ch <- r:
			default:
				ls.dropped.Add(1)
			}
		}
	}
}

// Observe queues r for every sink. It blocks only when the input queue is full, which can only happen while a
// lossless sink is stalled; such waits are counted in Blocked.
func (f *Fanout) Observe(r *record.Record) {
	select {
	case f.in <- r:
	default:
		f.blocked.Add(1)
		f.in <- r
	}
}

// Dropped returns, per lossy sink in the order given, how many records it missed because its queue was full.
func (f *Fanout) Dropped() []uint64 {
	out := make([]uint64, len(f.lossy))
	for i, ls := range f.lossy {
		out[i] = ls.dropped.Load()
	}
	return out
}

// Blocked returns how many Observe calls had to wait for room in the input queue.
func (f *Fanout) Blocked() uint64 { return f.blocked.Load() }

// Close delivers everything queued, then closes every sink and joins their errors. Observe must not be called
// after Close. Close is idempotent, so a stage that wraps the fan-out may close it too.
func (f *Fanout) Close() error {
	f.once.Do(func() {
		close(f.in)
		<-f.done
		var errs []error
		for _, ls := range f.lossy {
			close(ls.ch)
			<-ls.done
		}
		for _, s := range f.lossless {
			errs = append(errs, s.Close())
		}
		for _, ls := range f.lossy {
			errs = append(errs, ls.sink.Close())
		}
		f.closeErr = errors.Join(errs...)
	})
	return f.closeErr
}

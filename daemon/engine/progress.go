package engine

import (
	"fmt"
	"math"
	"sync"
	"time"

	"github.com/attestload/attestload/attestation/record"
)

// histBuckets covers 1 µs to about 28 hours in steps of 5%, which is enough for a live p99 and costs 3 KiB
// whatever the run length.
const (
	histRatio   = 1.05
	histBuckets = 512
)

var histLogRatio = math.Log(histRatio)

// Progress keeps the live figures of a run: counts by outcome and a small streaming histogram of cycle durations.
// It is fed from the cycles' goroutines and read by the status line.
type Progress struct {
	mu      sync.Mutex
	start   time.Time
	ok      uint64
	fail    uint64
	aborted uint64
	counts  [histBuckets]uint64
	n       uint64
}

// NewProgress starts the clock.
func NewProgress(start time.Time) *Progress { return &Progress{start: start} }

// Observe counts one record.
func (p *Progress) Observe(r *record.Record) {
	d := r.EndTime - r.StartTime
	p.mu.Lock()
	defer p.mu.Unlock()
	switch r.Outcome {
	case record.OutcomeSuccess:
		p.ok++
	case record.OutcomeAborted:
		p.aborted++
	default:
		p.fail++
	}
	if d > 0 && !math.IsInf(d, 0) && !math.IsNaN(d) {
		p.counts[bucketOf(d)]++
		p.n++
	}
}

func bucketOf(seconds float64) int {
	us := seconds * 1e6
	if us <= 1 {
		return 0
	}
	b := int(math.Log(us)/histLogRatio) + 1
	return min(b, histBuckets-1)
}

// bucketUpper is the largest duration (seconds) that falls into bucket b.
func bucketUpper(b int) float64 { return math.Pow(histRatio, float64(b)) / 1e6 }

// Quantile returns the q-quantile of cycle durations seen so far (an upper bound within 5%), or 0 with no data.
func (p *Progress) Quantile(q float64) time.Duration {
	p.mu.Lock()
	defer p.mu.Unlock()
	if p.n == 0 {
		return 0
	}
	rank := uint64(math.Ceil(q * float64(p.n)))
	rank = max(rank, 1)
	var seen uint64
	for b, c := range p.counts {
		seen += c
		if seen >= rank {
			return time.Duration(bucketUpper(b) * float64(time.Second))
		}
	}
	return time.Duration(bucketUpper(histBuckets-1) * float64(time.Second))
}

// Snapshot is the live state for a status line or log.
type Snapshot struct {
	Elapsed  time.Duration
	OK       uint64
	Fail     uint64
	Aborted  uint64
	InFlight int64
	P99      time.Duration
}

// Rate is cycles finished per second of elapsed time.
func (s Snapshot) Rate() float64 {
	if s.Elapsed <= 0 {
		return 0
	}
	return float64(s.OK+s.Fail+s.Aborted) / s.Elapsed.Seconds()
}

// Line renders the status line shown on a terminal.
func (s Snapshot) Line() string {
	return fmt.Sprintf("%s  %.1f cycles/s  in flight %d  ok %d  fail %d  p99 %s",
		s.Elapsed.Truncate(time.Second), s.Rate(), s.InFlight, s.OK, s.Fail+s.Aborted, s.P99.Round(time.Millisecond))
}

// Snapshot returns the current figures; inFlight comes from the engine.
func (p *Progress) Snapshot(now time.Time, inFlight int64) Snapshot {
	p99 := p.Quantile(0.99)
	p.mu.Lock()
	defer p.mu.Unlock()
	return Snapshot{Elapsed: now.Sub(p.start), OK: p.ok, Fail: p.fail, Aborted: p.aborted, InFlight: inFlight, P99: p99}
}

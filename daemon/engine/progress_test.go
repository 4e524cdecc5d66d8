package engine

import (
	"strings"
	"testing"
	"time"

	"github.com/attestload/attestload/attestation/record"
)

func TestProgressQuantiles(t *testing.T) {
	p := NewProgress(time.Unix(0, 0))
	for i := 1; i <= 1000; i++ {
		out := record.OutcomeSuccess
		if i%100 == 0 {
			out = record.OutcomeFail
		}
		p.Observe(&record.Record{Outcome: out, StartTime: 100, EndTime: 100 + float64(i)/1000})
	}
	for _, c := range []struct {
		q    float64
		want time.Duration
	}{{0.5, 500 * time.Millisecond}, {0.99, 990 * time.Millisecond}, {1, time.Second}} {
		got := p.Quantile(c.q)
		if got < c.want || float64(got) > float64(c.want)*1.05 {
			t.Errorf("q%.2f = %s, want within [%s, +5%%]", c.q, got, c.want)
		}
	}
	s := p.Snapshot(time.Unix(10, 0), 3)
	if s.OK != 990 || s.Fail != 10 || s.Rate() != 100 {
		t.Fatalf("snapshot %+v rate %v", s, s.Rate())
	}
	if line := s.Line(); !strings.Contains(line, "100.0 cycles/s") || !strings.Contains(line, "in flight 3") ||
		!strings.Contains(line, "p99 9") {
		t.Fatalf("status line %q", line)
	}
	if NewProgress(time.Now()).Quantile(0.99) != 0 {
		t.Fatal("empty histogram has a p99")
	}
}

// Aborted cycles count apart from failures and in the rate.
func TestProgressCountsAborted(t *testing.T) {
	p := NewProgress(time.Unix(0, 0))
	for _, out := range []record.Outcome{record.OutcomeSuccess, record.OutcomeAborted, record.OutcomeAborted, record.OutcomeFail} {
		p.Observe(&record.Record{Outcome: out, StartTime: 1, EndTime: 1.5})
	}
	if s := p.Snapshot(time.Unix(2, 0), 0); s.OK != 1 || s.Fail != 1 || s.Aborted != 2 || s.Rate() != 2 {
		t.Fatalf("snapshot %+v rate %v; want 1 ok, 1 failed, 2 aborted, 2 cycles/s", s, s.Rate())
	}
}

package report

import (
	"encoding/json"
	"fmt"
	"strings"
	"testing"

	"github.com/attestload/attestload/attestation/record"
)

// A cycle counts as late only beyond record.LateTolerance, in the report as in the engine's counter and the
// sidecar: 86.7 µs of timer slop is not late (the report once said "1 of 1 late" where the sidecar said 0).
func TestLateUsesTheTolerance(t *testing.T) {
	var b strings.Builder
	for i, late := range []float64{0, 8.67e-5, record.LateTolerance.Seconds(), 0.0011, 2} {
		line := v0Line(i, 0, true, true, 1000+float64(i), 0.1, 0.2)
		line = strings.TrimSuffix(line, "}") + fmt.Sprintf(`, "schema": 1, "scheduled_time": %v, "late_seconds": %v}`,
			999+float64(i), late)
		b.WriteString(line + "\n")
	}
	out, _, _ := runOn(t, b.String(), Options{Format: FormatJSON})
	var s Summary
	if err := json.Unmarshal(out.Bytes(), &s); err != nil {
		t.Fatal(err)
	}
	if s.Scheduling.Scheduled != 5 || s.Scheduling.Late != 2 {
		t.Fatalf("scheduled %d, late %d; want 5 and 2 (0.0011 s and 2 s are beyond the 1 ms tolerance)",
			s.Scheduling.Scheduled, s.Scheduling.Late)
	}
	text, _, _ := runOn(t, b.String(), Options{Format: FormatText})
	if !strings.Contains(text.String(), "started more than 1 ms after their due time): 2 of 5") {
		t.Errorf("the text does not state the tolerance with the count:\n%s", text.String())
	}
}

package faults

import (
	"bytes"
	"encoding/json"
	"net"
	"os/exec"
	"strconv"
	"strings"
	"testing"
	"time"

	"github.com/attestload/attestload/attestation/record"
	"github.com/attestload/attestload/exporter/report"
	"github.com/attestload/attestload/test/faults/harness"
)

// closedPort is a loopback port nothing listens on: bound, then released.
func closedPort(t *testing.T) string {
	t.Helper()
	ln, err := net.Listen("tcp", "127.0.0.1:0")
	if err != nil {
		t.Fatal(err)
	}
	addr := ln.Addr().String()
	ln.Close()
	return addr
}

// An outage costs nothing: 100 agents in the closed model against a closed port for 30 s write a handful of
// records each, not the tens of thousands of back-to-back retries they used to (56,296 in 5 s). With waits of at
// least 1, 2, 4, 8 and 16 s after failures 1 to 5 (half of 2 s doubling), an agent's sixth cycle cannot start
// before 31 s: at most 5 per agent. The run warns once, with the refusal's text and a hint; /metrics shows the
// verifier down and every agent backing off; the report lists the outage as a time range.
func TestClosedPortOutageCostsNothing(t *testing.T) {
	w := newWorld(t, harness.SimOptions{})
	const agents = 100
	const runFor = 30 * time.Second
	url := "https://" + closedPort(t)
	args := []string{"run", url, w.dbURL, "--key-pool", w.keys, "-a", strconv.Itoa(agents), "-w", "20",
		"--duration", runFor.String(), "--results-dir", w.dir, "--prefix", w.prefix, "--metrics-listen", "127.0.0.1:0",
		"--instance", "faults", "--drain-timeout", "3s"}
	p := harness.Start(t, w.dir, w.baseEnv("ATTESTLOAD_RESULTS_COMPRESSION=zstd"), args...)
	addr := p.MetricsAddr(t, time.Minute)
	results := p.ResultsPath(t, time.Minute)
	p.WaitLog(t, "verifier unreachable", 30*time.Second)
	time.Sleep(3 * time.Second) // every agent has failed by now (20 workers, refusals take microseconds)
	m := harness.Scrape(t, addr)
	if up := m.Sum("attestload_verifier_up"); up != 0 {
		t.Errorf("attestload_verifier_up %v during the outage, want 0", up)
	}
	if b := m.Sum("attestload_agents_backing_off"); b != agents {
		t.Errorf("attestload_agents_backing_off %v during the outage, want %d", b, agents)
	}
	if n := m.Sum("attestload_verifier_outages_total"); n != 1 {
		t.Errorf("attestload_verifier_outages_total %v, want 1", n)
	}
	code := p.Wait(t, 2*time.Minute)
	harness.NoCrash(t, "stderr", p.Stderr.String())
	if code != 1 {
		t.Errorf("exit code %d, want 1 (a run in which every cycle failed exits 1)", code)
	}
	logs := p.Stderr.String()
	if n := strings.Count(logs, "verifier unreachable;"); n != 1 {
		t.Errorf("%d 'verifier unreachable' warnings, want exactly one", n)
	}
	if !strings.Contains(logs, "connection refused") || !strings.Contains(logs, "nothing listens at verifier.url") {
		t.Errorf("the warning lacks the refusal's text or the hint:\n%s", logs)
	}
	if !strings.Contains(logs, "run ended with the verifier unreachable") {
		t.Errorf("no note that the run ended during the outage:\n%s", logs)
	}

	recs, partial := harness.ReadRecords(t, results)
	if partial {
		t.Error("the results file ends in a partial line or a cut frame after a clean exit")
	}
	harness.CheckRecords(t, recs)
	per := map[int]int{}
	for _, r := range recs {
		per[r.AgentIndex]++
		if r.Outcome != record.OutcomeFail || r.Error == nil || *r.Error != record.ClassConnRefused {
			t.Fatalf("record %+v: want a refused connection", r)
		}
	}
	worst := 0
	for _, n := range per {
		worst = max(worst, n)
	}
	t.Logf("closed port for %s, %d agents: %d records, %.2f per agent, at most %d", runFor, agents, len(recs),
		float64(len(recs))/agents, worst)
	if len(per) != agents || worst > 5 {
		t.Errorf("%d agents wrote records, at most %d each; want all %d agents, at most 5 each", len(per), worst, agents)
	}

	// The report shows the outage as a time range, from the sidecar, in text and JSON.
	out, err := exec.Command(harness.Binary(t), "report", results).Output()
	if err != nil {
		t.Fatalf("report: %v", err)
	}
	if !strings.Contains(string(out), "Verifier outages") || !strings.Contains(string(out), "(run ended)") ||
		!strings.Contains(string(out), record.ClassConnRefused.String()) {
		t.Errorf("the report does not list the outage:\n%s", out)
	}
	js, err := exec.Command(harness.Binary(t), "report", "--format", "json", results).Output()
	if err != nil {
		t.Fatalf("report --format json: %v", err)
	}
	var s report.Summary
	if err := json.NewDecoder(bytes.NewReader(js)).Decode(&s); err != nil {
		t.Fatal(err)
	}
	if len(s.Runs) != 1 || len(s.Runs[0].Outages) != 1 {
		t.Fatalf("runs %+v; want one run with one outage", s.Runs)
	}
	o := s.Runs[0].Outages[0]
	if !o.Ongoing || o.Error != record.ClassConnRefused || o.End-o.Start < runFor.Seconds()-5 {
		t.Errorf("outage %+v; want an ongoing conn_refused outage over the whole run", o)
	}
	w.checkClean()
}

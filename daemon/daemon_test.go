package daemon

import (
	"net"
	"strings"
	"testing"
	"time"
)

// The composition root end to end, as the command line drives it: New, Run to the end of the schedule, Close;
// metrics served on port 0 while the load runs, every record written, the endpoint gone after Close.
func TestDaemonRunAndClose(t *testing.T) {
	cfg := testConfig(t, t.TempDir())
	cfg.Metrics.Listen = "127.0.0.1:0"
	d, err := New(cfg, Options{})
	if err != nil {
		t.Fatal(err)
	}
	sum, err := d.Run(t.Context())
	if err != nil {
		t.Fatal(err)
	}
	if !sum.Started || sum.RunID != d.RunID() || sum.Stats.Finished != 8 {
		t.Fatalf("summary %+v", sum)
	}
	addr := d.tel.srv.Addr()
	if err := d.Close(t.Context()); err != nil {
		t.Fatal(err)
	}
	if recs := readRecords(t, sum.ResultsPath); len(recs) != 8 {
		t.Fatalf("%d records, want 8", len(recs))
	}
	if _, _, n := d.ResultsBytes(); n != 8 {
		t.Fatalf("results bytes count %d records, want 8", n)
	}
	if c, err := net.Dial("tcp", addr); err == nil {
		c.Close()
		t.Fatalf("metrics endpoint %s still accepts connections after Close", addr)
	}
	if _, err := d.Run(t.Context()); err == nil {
		t.Fatal("a second Run did not fail")
	}
}

// Abort (the second signal) also ends the wait for the final scrape, which would otherwise last the whole
// metrics.final_scrape_wait since nothing scrapes here.
func TestAbortEndsTheFinalScrapeWait(t *testing.T) {
	cfg := testConfig(t, t.TempDir())
	cfg.Metrics.Listen = "127.0.0.1:0"
	cfg.Metrics.FinalScrapeWait = time.Hour
	d, err := New(cfg, Options{})
	if err != nil {
		t.Fatal(err)
	}
	if _, err := d.Run(t.Context()); err != nil {
		t.Fatal(err)
	}
	closed := make(chan error, 1)
	go func() { closed <- d.Close(t.Context()) }()
	d.Abort()
	select {
	case err := <-closed:
		if err != nil {
			t.Fatal(err)
		}
	case <-time.After(2 * time.Minute):
		t.Fatal("Close still waits for a final scrape after Abort")
	}
}

// The shard arithmetic: --shard i/n drives the i-th of n equal parts of the agents, and a shard without agents is
// refused.
func TestShardOption(t *testing.T) {
	cfg := testConfig(t, t.TempDir())
	cfg.Run.Agents = 10
	d, err := New(cfg, Options{Shard: "1/3"})
	if err != nil {
		t.Fatal(err)
	}
	if c := d.Config(); c.Run.FirstIndex != 4 || c.Run.Agents != 3 {
		t.Fatalf("shard 1/3 of 10: first %d, agents %d; want 4, 3", c.Run.FirstIndex, c.Run.Agents)
	}
	cfg.Run.Agents = 2
	if _, err := New(cfg, Options{Shard: "2/3"}); err == nil || !strings.Contains(err.Error(), "no agents left") {
		t.Fatalf("shard 2/3 of 2 agents: %v", err)
	}
	if _, err := New(cfg, Options{Shard: "x"}); err == nil || !strings.HasPrefix(err.Error(), "--shard: ") {
		t.Fatalf("shard x: %v", err)
	}
}

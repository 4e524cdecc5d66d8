package main

import (
	"context"
	"encoding/json"
	"net"
	"path/filepath"
	"sync"
	"testing"

	"github.com/attestload/attestload/attestation/simverifier"
	"github.com/attestload/attestload/internal/pgtest"
)

// Two daemons with --shard 0/2 and --shard 1/2 drive one simulated verifier on a shared database at the same
// time: they attest disjoint agents that together are the whole fleet, and `attestload report` on both results
// files counts the cycles of both.
func TestTwoShardsAgainstOneVerifier(t *testing.T) {
	dbURL := pgtest.NewKeylimeDatabase(t)
	pool := pgtest.Pool(t, dbURL)

	cfg := simverifier.DefaultConfig()
	cfg.PlainHTTP = true
	cfg.QuoteInterval = 0
	cfg.SessionHashIterations = 1000
	cfg.RateLimits = simverifier.RateLimits{}
	sim, err := simverifier.New(cfg)
	if err != nil {
		t.Fatal(err)
	}
	defer sim.Close()
	if _, err := sim.UseDatabase(t.Context(), pool); err != nil {
		t.Fatal(err)
	}
	ln, err := net.Listen("tcp", "127.0.0.1:0")
	if err != nil {
		t.Fatal(err)
	}
	ctx, stop := context.WithCancel(context.Background())
	served := make(chan error, 1)
	go func() { served <- sim.Serve(ctx, ln) }()
	defer func() { stop(); <-served }()

	const agents, tasks = 20, 3
	dir := t.TempDir()
	files := make([]string, 2)
	var wg sync.WaitGroup
	for i := range 2 {
		wg.Go(func() {
			shard := []string{"0/2", "1/2"}[i]
			res := filepath.Join(dir, "results-"+shard[:1])
			code, _, stderr := runMain(t, "run", "http://"+ln.Addr().String(), dbURL, "--shard", shard,
				"-a", "20", "-t", "3", "-w", "4", "--profile", "quote-only", "--results-dir", res,
				"--key-pool", filepath.Join(dir, "keys-"+shard[:1]+".pem"))
			if code != 0 {
				t.Errorf("shard %s: exit %d:\n%s", shard, code, stderr)
				return
			}
			files[i] = onlyResults(t, res)
		})
	}
	wg.Wait()
	if t.Failed() {
		return
	}

	owner := map[string]int{}
	// Agent ids carry the run's marker, so they differ between runs anyway; the agent indexes are the fleet slice.
	indexes := map[int]int{}
	for i, f := range files {
		recs, partial := readJSONL(t, f)
		if partial || len(recs) != agents/2*tasks {
			t.Fatalf("shard %d: %d records (partial %v), want %d", i, len(recs), partial, agents/2*tasks)
		}
		for _, r := range recs {
			if o, seen := owner[r.AgentID]; seen && o != i {
				t.Fatalf("agent %s attested by both shards", r.AgentID)
			}
			owner[r.AgentID] = i
			if o, seen := indexes[r.AgentIndex]; seen && o != i {
				t.Fatalf("agent index %d attested by both shards", r.AgentIndex)
			}
			indexes[r.AgentIndex] = i
			if r.Outcome != "success" {
				t.Errorf("shard %d agent %s task %d: outcome %s", i, r.AgentID, r.TaskIndex, r.Outcome)
			}
		}
	}
	if len(owner) != agents || len(indexes) != agents {
		t.Fatalf("%d distinct agent ids and %d agent indexes over both shards, want %d each", len(owner), len(indexes), agents)
	}

	code, out, stderr := runMain(t, "report", "--format", "json", files[0], files[1])
	if code != 0 {
		t.Fatalf("report: exit %d: %s", code, stderr)
	}
	var sum struct {
		Records  int64 `json:"records"`
		Agents   int   `json:"agents"`
		Outcomes struct {
			Success int64 `json:"success"`
		} `json:"outcomes"`
	}
	if err := json.Unmarshal([]byte(out), &sum); err != nil {
		t.Fatalf("report JSON: %v", err)
	}
	if sum.Records != agents*tasks || sum.Outcomes.Success != agents*tasks || sum.Agents != agents {
		t.Fatalf("merged report: %d records, %d success, %d agents; want %d, %d, %d", sum.Records,
			sum.Outcomes.Success, sum.Agents, agents*tasks, agents*tasks, agents)
	}
	// Both runs cleaned up their own rows.
	if n := countRows(t, pool, `SELECT count(*) FROM verifiermain`); n != 0 {
		t.Fatalf("%d agent rows left after both shards exited", n)
	}
}

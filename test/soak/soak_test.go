package soak

import (
	"bytes"
	"context"
	"encoding/json"
	"os"
	"path/filepath"
	"sort"
	"strconv"
	"strings"
	"syscall"
	"testing"
	"time"

	"github.com/jackc/pgx/v5"

	"github.com/attestload/attestload/attestation/record"
	"github.com/attestload/attestload/exporter/report"
	"github.com/attestload/attestload/exporter/results"

	"github.com/attestload/attestload/internal/pgtest"
	"github.com/attestload/attestload/test/faults/harness"
)

func TestMain(m *testing.M) { os.Exit(harness.Main(m)) }

// Settings come from the environment so that make can pass them through `go test`.
const (
	envDuration  = "ATTESTLOAD_SOAK_DURATION"   // e.g. 1h; unset: skip
	envAgents    = "ATTESTLOAD_SOAK_AGENTS"     // default 100
	envInterval  = "ATTESTLOAD_SOAK_INTERVAL"   // each agent's attestation interval (fleet model); default 10s
	envWarmup    = "ATTESTLOAD_SOAK_WARMUP"     // default: a fifth of the duration, at most 5m
	envMaxGrowth = "ATTESTLOAD_SOAK_MAX_GROWTH" // RSS growth allowed after warm-up, MiB; default 48
	envSample    = "ATTESTLOAD_SOAK_SAMPLE"     // sampling period; default 5s
	envOut       = "ATTESTLOAD_SOAK_OUT"        // file receiving the samples and figures as JSON (optional)
	// Results rotation and compression are on in a soak, as in a long run: every part must read on its own and
	// the report over all of them must count what the parts hold.
	envRotate      = "ATTESTLOAD_SOAK_ROTATE"      // results.rotate_interval; default a sixth of the duration, at least 1m
	envCompression = "ATTESTLOAD_SOAK_COMPRESSION" // results.compression; default zstd
)

// Part is one results part after the run.
type Part struct {
	Name    string `json:"name"`
	Bytes   int64  `json:"bytes"`
	Records int    `json:"records"`
	// ReportRecords is what attestload report counts in this part alone.
	ReportRecords int64 `json:"report_records"`
}

// Sample is one observation of the daemon.
type Sample struct {
	Elapsed    float64 `json:"elapsed_s"`
	RSSKiB     int64   `json:"rss_kib"`
	Threads    int64   `json:"threads"`
	FDs        int     `json:"fds"`
	Goroutines float64 `json:"goroutines"` // -1 when /metrics has no go_goroutines
	Cycles     float64 `json:"cycles"`
	Success    float64 `json:"success"`
	Fail       float64 `json:"fail"`
	InFlight   float64 `json:"in_flight"`
}

// Figures summarise a soak for the closing note.
type Figures struct {
	Duration            string                    `json:"duration"`
	Agents              int                       `json:"agents"`
	Interval            string                    `json:"interval"`
	RSSStartKiB         int64                     `json:"rss_start_kib"`
	RSSWarmKiB          int64                     `json:"rss_after_warmup_kib"`
	RSS5MinKiB          int64                     `json:"rss_after_5min_kib"`
	RSSEndKiB           int64                     `json:"rss_end_kib"`
	RSSPeakKiB          int64                     `json:"rss_peak_kib"`
	ThreadsMax          int64                     `json:"threads_max"`
	FDsWarm             int                       `json:"fds_after_warmup"`
	FDsMaxWarmup        int                       `json:"fds_max_during_warmup"` // connections come and go; this is the reference
	FDsMax              int                       `json:"fds_max_after_warmup"`
	GoroutinesMaxWarmup float64                   `json:"goroutines_max_during_warmup"` // -1 when /metrics has no go_goroutines
	GoroutinesMax       float64                   `json:"goroutines_max_after_warmup"`
	GoroutinesEnd       float64                   `json:"goroutines_end"`
	Records             int                       `json:"records"`
	Parts               []Part                    `json:"parts"`
	ReportRecords       int64                     `json:"report_records"` // attestload report over every part of the run
	DiskBytes           int64                     `json:"disk_bytes"`
	BytesPerCycle       float64                   `json:"bytes_per_cycle"`
	Outcomes            map[record.Outcome]int    `json:"outcomes"`
	AttemptErrors       map[record.ErrorClass]int `json:"attempt_errors"`
	PartialLastLine     bool                      `json:"partial_last_line"`
	ExitCode            int                       `json:"exit_code"`
	Samples             []Sample                  `json:"samples"`
}

func envDur(t *testing.T, key string, def time.Duration) time.Duration {
	t.Helper()
	v := os.Getenv(key)
	if v == "" {
		return def
	}
	d, err := time.ParseDuration(v)
	if err != nil || d <= 0 {
		t.Fatalf("%s=%q: want a positive Go duration such as 30m", key, v)
	}
	return d
}

func envInt(t *testing.T, key string, def int) int {
	t.Helper()
	v := os.Getenv(key)
	if v == "" {
		return def
	}
	n, err := strconv.Atoi(v)
	if err != nil || n <= 0 {
		t.Fatalf("%s=%q: want a positive integer", key, v)
	}
	return n
}

func TestSoak(t *testing.T) {
	if os.Getenv(envDuration) == "" {
		t.Skipf("%s is not set (make soak DURATION=1h AGENTS=500 runs this)", envDuration)
	}
	duration := envDur(t, envDuration, time.Hour)
	agents := envInt(t, envAgents, 100)
	interval := envDur(t, envInterval, 10*time.Second)
	warmup := envDur(t, envWarmup, min(duration/5, 5*time.Minute))
	maxGrowth := int64(envInt(t, envMaxGrowth, 48)) * 1024
	period := envDur(t, envSample, 5*time.Second)
	// The warm-up must hold samples: its peaks are what the rest of the run is compared with.
	warmup = max(warmup, 2*period)
	rotate := envDur(t, envRotate, max(duration/6, time.Minute))
	compression := os.Getenv(envCompression)
	if compression == "" {
		compression = "zstd"
	}

	dbURL := pgtest.NewKeylimeDatabase(t)
	prepareDatabase(t, dbURL)
	sim := harness.StartSim(t, dbURL, harness.SimOptions{})
	dir := t.TempDir()
	keys := harness.KeyPool(t, 16)
	prefix := "soak-"
	// 16 distinct keys are plenty: the verifier checks signatures, not that keys differ between agents.
	p := harness.Start(t, dir, []string{"ATTESTLOAD_RUN_DISTINCT_KEYS=16", "ATTESTLOAD_RESULTS_COMPRESSION=" + compression,
		"ATTESTLOAD_RESULTS_ROTATE_INTERVAL=" + rotate.String()}, "run", sim.URL(), dbURL,
		"--verifier-ca", sim.CAFile(), "--key-pool", keys, "-a", strconv.Itoa(agents),
		"--model", "fleet", "--interval", interval.String(), "--duration", duration.String(),
		"--results-dir", dir, "--metrics-listen", "127.0.0.1:0", "--prefix", prefix, "--instance", "soak",
		"--drain-timeout", "60s")
	addr := p.MetricsAddr(t, time.Minute)
	results := p.ResultsPath(t, 5*time.Minute)
	start := time.Now()
	fig := Figures{Duration: duration.String(), Agents: agents, Interval: interval.String()}
	defer func() {
		if out := os.Getenv(envOut); out != "" {
			b, _ := json.MarshalIndent(fig, "", "  ")
			if err := os.WriteFile(out, b, 0o644); err != nil {
				t.Errorf("write %s: %v", out, err)
			}
		}
	}()

	var warm *Sample
	tick := time.NewTicker(period)
	defer tick.Stop()
	logEvery := max(time.Minute, period)
	lastLog := time.Time{}
sampling:
	for {
		select {
		case <-p.Done():
			break sampling
		case <-tick.C:
		}
		st, err := p.ProcStatus()
		if err != nil {
			break // exited between the tick and the read
		}
		fds, _ := p.FDs()
		s := Sample{Elapsed: time.Since(start).Seconds(), RSSKiB: st.RSSKiB, Threads: st.Threads, FDs: fds, Goroutines: -1}
		if m, err := harness.TryScrape(addr); err == nil {
			if g, ok := m["go_goroutines"]; ok {
				s.Goroutines = g
			}
			s.Cycles = m.Sum("attestload_cycles_total")
			s.Success = m.Sum("attestload_cycles_total", "outcome=success")
			s.Fail = m.Sum("attestload_cycles_total", "outcome=fail")
			s.InFlight = m.Sum("attestload_cycles_in_flight")
		}
		fig.Samples = append(fig.Samples, s)
		el := time.Since(start)
		if fig.RSSStartKiB == 0 {
			fig.RSSStartKiB = s.RSSKiB
		}
		if fig.RSS5MinKiB == 0 && el >= 5*time.Minute {
			fig.RSS5MinKiB = s.RSSKiB
		}
		if warm == nil && el >= warmup {
			w := s
			warm = &w
			fig.RSSWarmKiB, fig.FDsWarm = s.RSSKiB, s.FDs
		}
		fig.RSSEndKiB = s.RSSKiB
		fig.RSSPeakKiB = max(fig.RSSPeakKiB, s.RSSKiB)
		fig.ThreadsMax = max(fig.ThreadsMax, s.Threads)
		if warm == nil {
			fig.FDsMaxWarmup = max(fig.FDsMaxWarmup, s.FDs)
			fig.GoroutinesMaxWarmup = max(fig.GoroutinesMaxWarmup, s.Goroutines)
		} else {
			fig.FDsMax = max(fig.FDsMax, s.FDs)
			fig.GoroutinesMax = max(fig.GoroutinesMax, s.Goroutines)
		}
		if s.Goroutines >= 0 {
			fig.GoroutinesEnd = s.Goroutines
		}
		if time.Since(lastLog) >= logEvery {
			lastLog = time.Now()
			t.Logf("soak %s: rss %d MiB, threads %d, fds %d, goroutines %v, cycles %v (ok %v, fail %v), in flight %v",
				el.Truncate(time.Second), s.RSSKiB/1024, s.Threads, s.FDs, s.Goroutines, s.Cycles, s.Success, s.Fail, s.InFlight)
		}
		if warm != nil && s.RSSKiB-warm.RSSKiB > maxGrowth {
			t.Errorf("resident memory grew from %d KiB after warm-up to %d KiB at %s (bound %d KiB)", warm.RSSKiB,
				s.RSSKiB, el.Truncate(time.Second), maxGrowth)
			p.Signal(t, syscall.SIGINT)
			break
		}
	}
	fig.ExitCode = p.Wait(t, 5*time.Minute)
	harness.NoCrash(t, "stderr", p.Stderr.String())
	if fig.ExitCode != 0 {
		t.Errorf("exit code %d, want 0", fig.ExitCode)
	}
	recs, parts := readParts(t, results, &fig)
	harness.CheckRecords(t, recs)
	fig.Records = len(recs)
	fig.Outcomes, fig.AttemptErrors = harness.Outcomes(recs), harness.AttemptErrors(recs)
	if want := int(duration / rotate); len(parts) < want {
		t.Errorf("%d results parts with a %s rotation over %s, want at least %d", len(parts), rotate, duration, want)
	}
	// The report over the whole run, found by its stamp as a user would ask for it, counts what the parts hold.
	stamp := strings.SplitN(filepath.Base(parts[0]), ".", 2)[0]
	var out, errOut bytes.Buffer
	if res, err := report.Generate(context.Background(), report.Options{Inputs: []string{stamp}, ResultsDir: dir,
		Format: report.FormatJSON}, &out, &errOut); err != nil || res.ThresholdsCrossed {
		t.Fatalf("report over the run %s: %+v, %v\n%s", stamp, res, err, errOut.String())
	}
	var sum report.Summary
	if err := json.Unmarshal(out.Bytes(), &sum); err != nil {
		t.Fatal(err)
	}
	fig.ReportRecords = sum.Records
	// Each part on its own, through the report too: it counts what that part holds, and the parts add up to the
	// report over the run.
	var perPart int64
	for i, part := range parts {
		n := reportRecords(t, part)
		fig.Parts[i].ReportRecords = n
		perPart += n
		if n != int64(fig.Parts[i].Records) {
			t.Errorf("report over part %s alone: %d records; the part holds %d", part, n, fig.Parts[i].Records)
		}
	}
	if perPart != sum.Records {
		t.Errorf("the reports over each part count %d records in all; the report over the run %d", perPart, sum.Records)
	}
	if sum.Records != int64(len(recs)) || sum.SkippedLines != 0 || len(sum.Inputs) != len(parts) {
		t.Errorf("report over %d inputs: %d records, %d skipped; the %d parts hold %d records", len(sum.Inputs),
			sum.Records, sum.SkippedLines, len(parts), len(recs))
	}
	if warm == nil {
		t.Errorf("the run ended before the warm-up (%s) was over; nothing was checked", warmup)
	} else if limit := max(fig.FDsMaxWarmup, fig.FDsWarm) + agents/10 + 16; fig.FDsMax > limit {
		t.Errorf("file descriptors reached %d after warm-up, more than the %d allowed (%d at most during warm-up)",
			fig.FDsMax, limit, fig.FDsMaxWarmup)
	}
	// Goroutines follow the connections (two per connection to the verifier), like descriptors.
	if warm != nil && fig.GoroutinesMaxWarmup > 0 {
		if limit := fig.GoroutinesMaxWarmup + float64(agents)/5 + 32; fig.GoroutinesMax > limit {
			t.Errorf("goroutines reached %v after warm-up, more than the %v allowed (%v at most during warm-up)",
				fig.GoroutinesMax, limit, fig.GoroutinesMaxWarmup)
		}
	}
	// A soak against a healthy simulator should hardly fail cycles; on a shared machine a database restart or a
	// CPU stall elsewhere may fail a few, so the bound is 0.1 % (the figures always list them).
	if f := fig.Outcomes["fail"]; f*1000 > len(recs) {
		t.Errorf("%d of %d cycles failed (errors %v)", f, len(recs), fig.AttemptErrors)
	}
	if left := harness.CountRows(t, dbURL, prefix); left.Total() != 0 {
		t.Errorf("rows left in the database after exit: %+v", left)
	}
	t.Logf("soak figures: duration %s, agents %d, interval %s; RSS start %d KiB, after warm-up %d KiB, after 5 min %d KiB, "+
		"end %d KiB, peak %d KiB; threads max %d; fds at most %d during warm-up, %d after; goroutines at most %v during warm-up, %v after, %v at the end; "+
		"records %d %v; attempt errors %v",
		fig.Duration, agents, fig.Interval, fig.RSSStartKiB, fig.RSSWarmKiB, fig.RSS5MinKiB, fig.RSSEndKiB, fig.RSSPeakKiB,
		fig.ThreadsMax, fig.FDsMaxWarmup, fig.FDsMax, fig.GoroutinesMaxWarmup, fig.GoroutinesMax, fig.GoroutinesEnd, fig.Records, fig.Outcomes, fig.AttemptErrors)
}

// prepareDatabase tunes the soak's throwaway database so that the soak measures attestload rather than the
// simulated verifier's database: synchronous_commit off (the simulator writes several rows per cycle, and WAL
// flushes on a shared test machine are slow), and an index on evidence_items(agent_id, attestation_index), which
// Keylime's schema lacks, so that the simulator's per-cycle UPDATE and DELETE of evidence items are not sequential
// scans (the first 1-hour soak without it saturated PostgreSQL's CPU and held all 500 agents in flight).
func prepareDatabase(t *testing.T, dbURL string) {
	t.Helper()
	ctx, cancel := context.WithTimeout(context.Background(), 30*time.Second)
	defer cancel()
	conn, err := pgx.Connect(ctx, dbURL)
	if err != nil {
		t.Fatal(err)
	}
	defer conn.Close(ctx)
	var name string
	if err := conn.QueryRow(ctx, "SELECT current_database()").Scan(&name); err != nil {
		t.Fatal(err)
	}
	for _, sql := range []string{
		"ALTER DATABASE " + pgx.Identifier{name}.Sanitize() + " SET synchronous_commit = off",
		"CREATE INDEX IF NOT EXISTS soak_evidence_items_agent ON evidence_items (agent_id, attestation_index)",
	} {
		if _, err := conn.Exec(ctx, sql); err != nil {
			t.Fatalf("prepare the soak database: %v", err)
		}
	}
}

// readParts reads every part of the run whose first part is first, each on its own: each must be a complete file
// (no partial line, no cut compressed frame) after a clean exit.
func readParts(t *testing.T, first string, fig *Figures) ([]record.Record, []string) {
	t.Helper()
	base := results.RunBase(first)
	parts, err := filepath.Glob(base + ".part*.jsonl*")
	if err != nil || len(parts) == 0 {
		parts = []string{first} // not rotating
	}
	sort.Strings(parts)
	var all []record.Record
	for _, p := range parts {
		recs, partial := harness.ReadRecords(t, p)
		if partial {
			fig.PartialLastLine = true
			t.Errorf("results part %s ends in a partial line or a cut frame after a clean exit", p)
		}
		fi, err := os.Stat(p)
		if err != nil {
			t.Fatal(err)
		}
		fig.Parts = append(fig.Parts, Part{Name: filepath.Base(p), Bytes: fi.Size(), Records: len(recs)})
		fig.DiskBytes += fi.Size()
		all = append(all, recs...)
	}
	if len(all) > 0 {
		fig.BytesPerCycle = float64(fig.DiskBytes) / float64(len(all))
	}
	t.Logf("results: %d parts, %d records, %d bytes on disk (%.1f per cycle): %+v", len(parts), len(all),
		fig.DiskBytes, fig.BytesPerCycle, fig.Parts)
	return all, parts
}

// reportRecords runs the report over one results part and returns the records it counted; it must skip nothing.
func reportRecords(t *testing.T, path string) int64 {
	t.Helper()
	var out, errOut bytes.Buffer
	res, err := report.Generate(context.Background(), report.Options{Inputs: []string{path}, Format: report.FormatJSON},
		&out, &errOut)
	if err != nil || res.ThresholdsCrossed {
		t.Fatalf("report over %s: %+v, %v\n%s", path, res, err, errOut.String())
	}
	var sum report.Summary
	if err := json.Unmarshal(out.Bytes(), &sum); err != nil {
		t.Fatal(err)
	}
	if sum.SkippedLines != 0 {
		t.Errorf("report over %s skipped %d lines", path, sum.SkippedLines)
	}
	return sum.Records
}

package main

import (
	"context"
	"errors"
	"fmt"
	"io"
	"log/slog"
	"os"
	"os/signal"
	"sync"
	"syscall"
	"time"

	"github.com/spf13/cobra"

	"github.com/attestload/attestload/daemon"
	"github.com/attestload/attestload/daemon/engine"
	"github.com/attestload/attestload/exporter/report"
	"github.com/attestload/attestload/internal/conf"
)

// closeTimeout bounds the daemon's teardown; it leaves time to delete a large run's rows (after a second signal
// the daemon shortens that itself). statusTick is how often the terminal's status line is redrawn.
const (
	closeTimeout = 5 * time.Minute
	statusTick   = 500 * time.Millisecond
)

func newRunCmd(stdout, stderr io.Writer) *cobra.Command {
	var (
		configFile string
		shardFlag  string
	)
	cmd := &cobra.Command{
		Use:   "run [VERIFIER_URL [DB_URL]]",
		Short: "Drive attestations against a verifier (or the built-in simulated one) and record every cycle",
		Long: `Enrolls mock agents in the verifier's PostgreSQL, attests them at the pace asked, writes every cycle to
results/<YYYYmmddHHMMSS>.jsonl.zst (zstd; results.compression: none writes plain JSONL), removes the agents
again and prints the summary tables.

With no verifier configured it starts the simulated verifier in-process on 127.0.0.1 (TLS) and enrolls in memory.

The old form works as before: attestload run https://verifier:8881 postgresql://postgres:postgres@db/verifierdb -w 4 -a 8 -t 3

Ctrl+C stops starting cycles and drains running ones (run.drain_timeout); a second Ctrl+C aborts them at once.
Exit status: 0 ok; 1 runtime failure, or every cycle failed; 2 usage or configuration error; 99 a threshold was
crossed.`,
		Args: func(_ *cobra.Command, args []string) error {
			if len(args) > 2 {
				return &usageError{fmt.Errorf("run takes at most two arguments, VERIFIER_URL and DB_URL (got %d)", len(args))}
			}
			return nil
		},
		RunE: func(cmd *cobra.Command, args []string) error {
			cfg, err := loadRunConfig(cmd, configFile, args)
			if err != nil {
				return err
			}
			return runLoad(cmd.Context(), cfg, shardFlag, stdout, stderr)
		},
	}
	f := cmd.Flags()
	f.StringVar(&configFile, "config", "", "YAML configuration file (see config.example.yaml)")
	f.StringVar(&shardFlag, "shard", "", "drive only the i-th of n equal parts of the agents, as i/n")
	// Every other flag is a config key: its name, shorthand and help come from the key's tags.
	daemon.BindFlags(f)
	return cmd
}

// loadRunConfig reads the configuration: defaults < config file < environment < flags < the positional URLs.
func loadRunConfig(cmd *cobra.Command, configFile string, args []string) (daemon.Config, error) {
	positional := func(c *daemon.Config) {
		if len(args) > 0 {
			c.Verifier.URL = args[0]
		}
		if len(args) > 1 {
			c.Database.URL = args[1]
		}
	}
	cfg, err := daemon.Loader{File: configFile, Environ: os.Environ(), Flags: cmd.Flags(), Override: positional}.Load()
	if err != nil {
		if _, ok := errors.AsType[*conf.Error](err); ok {
			return daemon.Config{}, err
		}
		return daemon.Config{}, &usageError{err}
	}
	return *cfg, nil
}

// runLoad is the run as the command line sees it: the daemon, the signals, the summary and the exit status.
func runLoad(parent context.Context, cfg daemon.Config, shardFlag string, stdout, stderr io.Writer) error {
	// On a terminal, log lines and -v lines go through the status line, which clears itself before them.
	status := &statusLine{w: stderr, tty: isTerminal(stderr)}
	stderr = status
	log := slog.New(slog.NewTextHandler(stderr, &slog.HandlerOptions{Level: slog.LevelInfo}))
	o := daemon.Options{Logger: log, Version: version, Revision: buildCommit(), Shard: shardFlag,
		Progress: status.progress(log)}
	if status.tty {
		o.ProgressInterval = statusTick
	}
	if cfg.Run.Verbose {
		o.Verbose = stderr
	}
	d, err := daemon.New(cfg, o)
	if err != nil {
		return err
	}
	cfg = d.Config()
	ctx, stop := onSignals(parent, d, log, cfg.Run.DrainTimeout)
	defer stop()
	sum, runErr := d.Run(ctx)
	cctx, cancel := context.WithTimeout(context.Background(), closeTimeout)
	closeErr := d.Close(cctx)
	cancel()
	if !sum.Started {
		return errors.Join(runErr, closeErr)
	}
	log.Info("run finished", "cycles", sum.Stats.Finished, "success", sum.Stats.Success, "fail", sum.Stats.Fail,
		"aborted", sum.Stats.Aborted, "dropped", sum.Stats.Dropped, "late", sum.Stats.Late,
		"elapsed", sum.Elapsed.Round(time.Millisecond), "results", sum.ResultsPath)
	if disk, raw, n := d.ResultsBytes(); n > 0 {
		log.Info("results size", "records", n, "parts", len(sum.ResultsPaths), "compression", cfg.Results.Compression,
			"bytes_on_disk", disk, "bytes_per_cycle", fmt.Sprintf("%.1f", float64(disk)/float64(n)),
			"uncompressed_bytes_per_cycle", fmt.Sprintf("%.1f", float64(raw)/float64(n)))
	}
	if sum.DiskLow != nil {
		runErr = errors.Join(runErr, fmt.Errorf("run stopped early: %w", sum.DiskLow))
	}
	code, repErr := printSummary(cfg, sum, stdout, stderr)
	runHints(log, cfg, sum.Stats, sum.LoadTime)
	if st := sum.Stats; st.Success == 0 && st.Fail > 0 {
		// Nothing got through: a run like that is a failure whatever the tables look like.
		runErr = errors.Join(runErr, fmt.Errorf("every cycle failed (%d failed, none succeeded): the first error of "+
			"each class and what to try are logged above", st.Fail))
	}
	if err := errors.Join(runErr, closeErr, repErr); err != nil {
		return err
	}
	if code != 0 {
		return &exitCodeError{code: code}
	}
	return nil
}

// onSignals turns the first SIGINT or SIGTERM into the cancellation of the returned context (no new cycles,
// running ones drain for run.drain_timeout) and the second into d.Abort (running cycles end at once, cleanup
// becomes a short best effort). stop releases the signals.
func onSignals(parent context.Context, d *daemon.Daemon, log *slog.Logger, drain time.Duration) (_ context.Context, stop func()) {
	ctx, cancel := context.WithCancel(parent)
	sigs := make(chan os.Signal, 2)
	signal.Notify(sigs, os.Interrupt, syscall.SIGTERM)
	done := make(chan struct{})
	go func() {
		select {
		case s := <-sigs:
			log.Info("signal received: no new cycles, draining running ones (signal again to abort them)",
				"signal", s.String(), "drain_timeout", drain)
			cancel()
		case <-done:
			return
		}
		select {
		case s := <-sigs:
			log.Warn("second signal: aborting running cycles and exiting", "signal", s.String())
			d.Abort()
		case <-done:
		}
	}()
	return ctx, func() { signal.Stop(sigs); close(done); cancel() }
}

// printSummary prints the same text `attestload report` prints for the run's files and returns the report's exit
// status (a crossed threshold).
func printSummary(cfg daemon.Config, sum daemon.Summary, stdout, stderr io.Writer) (int, error) {
	inputs := sum.ResultsPaths
	if len(inputs) == 0 {
		inputs = []string{sum.ResultsPath}
	}
	ropts := report.Options{Inputs: inputs, Thresholds: cfg.Thresholds, Color: isTerminal(stdout)}
	res, err := report.Generate(context.Background(), ropts, stdout, stderr)
	err = flagError(ropts, err)
	code := reportStatus(res, false)
	if errors.Is(err, report.ErrNoRecords) && sum.Stats.Finished == 0 && len(cfg.Thresholds) == 0 {
		// Stopped before any cycle started: nothing to summarise is not a failure of the run itself (a
		// threshold given for it would still have nothing to pass, so that case keeps the error).
		fmt.Fprintln(stdout, "No attestation cycle was started, so there is no summary.")
		return 0, nil
	}
	return code, err
}

// runHints says, after the summary, when the load asked for could not be produced: the rate model dropped ticks
// because every agent was busy (its defaults, 8 agents at 10/s, cannot keep up with slow cycles), or a fleet run
// was too short for its agents to attest more than once.
func runHints(log *slog.Logger, cfg daemon.Config, st engine.Stats, loadTime time.Duration) {
	if w := daemon.LoadShapeWarning(cfg, st, loadTime); w != "" {
		log.Warn(w)
	}
	switch cfg.Scheduler.Model {
	case engine.ModelRate:
		if due := st.Started + st.Dropped; st.Dropped > 0 {
			log.Warn(fmt.Sprintf("the rate model dropped %d of %d scheduled cycles (%.0f%%): at their tick no agent was "+
				"idle or no worker free, so the target rate was not reached; raise --agents (now %d) and --workers "+
				"(now %d)", st.Dropped, due, 100*float64(st.Dropped)/float64(due), cfg.Run.Agents, cfg.Run.Workers))
		}
	case engine.ModelFleet:
		if iv := cfg.Scheduler.Fleet.Interval; loadTime < 2*iv {
			log.Warn(fmt.Sprintf("this fleet run lasted %s at an attestation interval of %s, so each agent attested "+
				"at most %d time(s); run longer (--duration) or shorten --interval for a steady state",
				loadTime.Round(time.Second), iv, int(loadTime/iv)+1))
		}
	}
}

// statusLine is stderr with the status line kept on the terminal's last line: whatever else is written (log lines,
// -v lines) first clears it and then draws it again, so no line starts after the status text. Off a terminal it
// passes writes through.
type statusLine struct {
	mu   sync.Mutex
	w    io.Writer
	tty  bool
	line string // shown now; "" when none
}

const clearLine = "\r\x1b[K"

func (s *statusLine) Write(p []byte) (int, error) {
	s.mu.Lock()
	defer s.mu.Unlock()
	if s.line == "" {
		return s.w.Write(p)
	}
	if _, err := io.WriteString(s.w, clearLine); err != nil {
		return 0, err
	}
	n, err := s.w.Write(p)
	if err == nil && len(p) > 0 && p[len(p)-1] == '\n' {
		_, err = io.WriteString(s.w, s.line)
	}
	return n, err
}

// show draws line in place of the current status line; "" removes it.
func (s *statusLine) show(line string) {
	s.mu.Lock()
	defer s.mu.Unlock()
	io.WriteString(s.w, clearLine+line)
	s.line = line
}

// progress is the daemon's progress callback: a status line redrawn in place on a terminal, otherwise a log
// line every run.status_interval. When the load ends the line is removed.
func (s *statusLine) progress(log *slog.Logger) func(engine.Snapshot, bool) {
	return func(snap engine.Snapshot, done bool) {
		switch {
		case s.tty && done:
			s.show("")
		case s.tty:
			s.show(snap.Line())
		case !done:
			log.Info("progress", "elapsed", snap.Elapsed.Truncate(time.Second), "cycles_per_second",
				fmt.Sprintf("%.1f", snap.Rate()), "in_flight", snap.InFlight, "ok", snap.OK, "fail", snap.Fail,
				"aborted", snap.Aborted, "p99", snap.P99.Round(time.Millisecond))
		}
	}
}

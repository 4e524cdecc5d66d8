package main

import (
	"errors"
	"fmt"
	"io"
	"os"
	"runtime/debug"

	"github.com/spf13/cobra"

	"github.com/attestload/attestload/exporter/report"
	"github.com/attestload/attestload/exporter/threshold"
)

// exitCodeError carries a non-zero exit status that is not an error message (a crossed threshold, skipped lines
// under --strict). The root command maps it to os.Exit without printing anything more.
type exitCodeError struct{ code int }

func (e *exitCodeError) Error() string { return fmt.Sprintf("exit status %d", e.code) }

// ExitCode returns the process exit status to use.
func (e *exitCodeError) ExitCode() int { return e.code }

// Exit statuses of a report besides 0, 1 (an error) and 2 (a usage error).
const (
	exitSkipped          = 3  // --strict, and at least one line was skipped as malformed
	exitThresholdCrossed = 99 // at least one threshold was crossed; wins over exitSkipped
)

// reportStatus is the exit status a report's result calls for.
func reportStatus(res report.Result, strict bool) int {
	switch {
	case res.ThresholdsCrossed:
		return exitThresholdCrossed
	case strict && res.SkippedLines > 0:
		return exitSkipped
	}
	return 0
}

// flagError names the flag behind a report option error: --format, --legacy or --threshold.
func flagError(opts report.Options, err error) error {
	var oe *report.OptionError
	if !errors.As(err, &oe) {
		return err
	}
	switch oe.Option {
	case report.OptionFormat:
		return fmt.Errorf("--format %w", oe.Err)
	case report.OptionLegacy:
		return errors.New("--legacy prints the old text tables only; it cannot be combined with --format " + opts.Format)
	default:
		return fmt.Errorf("--threshold: %w", oe.Err)
	}
}

// newReportCmd builds `attestload report`. All logic is in exporter/report; this only maps flags.
func newReportCmd() *cobra.Command {
	var (
		opts   report.Options
		color  string
		format string
		strict bool
	)
	cmd := &cobra.Command{
		Use:   "report FILE|TIMESTAMP|GLOB...",
		Short: "Summarise results files: the old tables, then percentiles, verdicts, errors and throughput",
		Long: `Reads one or more results files (JSONL, old v0 layout or the current one) and prints one merged report.
Each argument is a file, a run timestamp looked up under --results-dir (with or without .jsonl), or a glob.
Malformed or truncated lines are skipped and reported on stderr.

Exit status: 0 ok; 1 error; 2 usage error; 3 lines were skipped and --strict was given; 99 a --threshold was crossed.`,
		Args: func(_ *cobra.Command, args []string) error {
			if len(args) == 0 {
				return errors.New("report needs at least one results file, run timestamp or glob")
			}
			return nil
		},
		RunE: func(cmd *cobra.Command, args []string) error {
			opts.Inputs = args
			opts.Format = format
			switch color {
			case "always":
				opts.Color = true
			case "never":
				opts.Color = false
			case "auto":
				opts.Color = isTerminal(cmd.OutOrStdout())
			default:
				return &usageError{fmt.Errorf("--color %q: want auto, always or never", color)}
			}
			if err := opts.Validate(); err != nil {
				return &usageError{flagError(opts, err)}
			}
			reportGC()
			res, err := report.Generate(cmd.Context(), opts, cmd.OutOrStdout(), cmd.ErrOrStderr())
			if err != nil {
				return flagError(opts, err)
			}
			if code := reportStatus(res, strict); code != 0 {
				cmd.SilenceErrors, cmd.SilenceUsage = true, true
				return &exitCodeError{code: code}
			}
			return nil
		},
	}
	f := cmd.Flags()
	f.StringVar(&opts.ResultsDir, "results-dir", "results", "directory where run timestamps are looked up")
	f.StringVar(&format, "format", report.FormatText, "output format: text, json, markdown or html")
	f.BoolVar(&opts.Legacy, "legacy", false, "print exactly the old summary tables and nothing else")
	f.BoolVar(&strict, "strict", false, "exit with status 3 when any line was skipped")
	f.StringArrayVar(&opts.Thresholds, "threshold", nil,
		"pass/fail check such as 'evidence.p99<2s' (repeatable; durations need a unit); a crossed one is also "+
			"printed on stderr and exits with status 99. Metrics: "+threshold.MetricsHelp)
	f.StringVar(&color, "color", "auto", "colour the legacy banner: auto (only on a terminal), always or never")
	return cmd
}

// reportGC tunes the collector for a report, unless GOGC or GOMEMLIMIT say otherwise: the report's live heap is a
// few MiB whatever the input (a bounded pipeline of chunks, histograms), so collecting when the heap has grown by
// 400% rather than 100% skips most collections, and a soft limit of 48 MiB keeps the peak resident set well under
// 64 MiB on any input.
func reportGC() {
	if os.Getenv("GOGC") == "" {
		debug.SetGCPercent(400)
	}
	if os.Getenv("GOMEMLIMIT") == "" {
		debug.SetMemoryLimit(48 << 20)
	}
}

// isTerminal reports whether w is a character device, the usual test for an interactive terminal.
func isTerminal(w io.Writer) bool {
	f, ok := w.(*os.File)
	if !ok {
		return false
	}
	fi, err := f.Stat()
	return err == nil && fi.Mode()&os.ModeCharDevice != 0
}

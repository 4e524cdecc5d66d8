package report

import (
	"context"
	"errors"
	"fmt"
	"io"

	"github.com/attestload/attestload/exporter/threshold"
)

// Exit statuses of Run besides 0.
const (
	// ExitError: the report could not be made (bad input, bad flag); Run also returns the error.
	ExitError = 1
	// ExitSkipped: with Options.Strict, at least one line was skipped as malformed.
	ExitSkipped = 3
	// ExitThresholdCrossed: at least one threshold was crossed. It wins over ExitSkipped.
	ExitThresholdCrossed = 99
)

// Formats accepted by Options.Format.
const (
	FormatText     = "text"
	FormatJSON     = "json"
	FormatMarkdown = "markdown"
	FormatHTML     = "html"
)

// Options select the inputs and the output of Run.
type Options struct {
	Inputs     []string // files, run timestamps (looked up under ResultsDir) or globs
	ResultsDir string   // where run timestamps are looked up; "results" when empty
	Format     string   // text (default), json, markdown or html
	Legacy     bool     // only the old tables, exactly (text format only)
	Strict     bool     // exit with ExitSkipped when any line was skipped
	Thresholds []string // threshold expressions, see package threshold
	Color      bool     // colour the legacy banner; the caller decides whether the output is a terminal
}

// format is the output format, text when none was given.
func (opts Options) format() string {
	if opts.Format == "" {
		return FormatText
	}
	return opts.Format
}

// Validate checks the options that come from the command line (format, legacy, thresholds) without reading
// any input, so a caller can tell a usage mistake from a failure to read the results. The error names the flag.
func (opts Options) Validate() error {
	format := opts.format()
	switch format {
	case FormatText, FormatJSON, FormatMarkdown, FormatHTML:
	default:
		return fmt.Errorf("--format %q: want text, json, markdown or html", opts.Format)
	}
	if opts.Legacy && format != FormatText {
		return errors.New("--legacy prints the old text tables only; it cannot be combined with --format " + format)
	}
	if _, err := threshold.ParseAll(opts.Thresholds); err != nil {
		return fmt.Errorf("--threshold: %w", err)
	}
	return nil
}

// Run makes the report and writes it to stdout; diagnostics (skipped lines, legacy-mode threshold results) go to
// stderr. It returns the exit status the command should use, and an error when no report could be made.
func Run(ctx context.Context, opts Options, stdout, stderr io.Writer) (int, error) {
	if err := opts.Validate(); err != nil {
		return ExitError, err
	}
	format := opts.format()
	ts, err := threshold.ParseAll(opts.Thresholds)
	if err != nil {
		return ExitError, fmt.Errorf("--threshold: %w", err)
	}
	dir := opts.ResultsDir
	if dir == "" {
		dir = "results"
	}
	paths, err := ResolveInputs(opts.Inputs, dir)
	if err != nil {
		return ExitError, err
	}
	s, err := Load(ctx, paths, stderr)
	if err != nil {
		return ExitError, err
	}
	s.Thresholds = threshold.Evaluate(ts, s)
	if err := Write(stdout, s, format, opts.Legacy, opts.Color); err != nil {
		return ExitError, fmt.Errorf("write report: %w", err)
	}
	if opts.Legacy {
		// The legacy output must stay exactly the old tables, so threshold results go to stderr.
		for _, r := range s.Thresholds {
			fmt.Fprintf(stderr, "threshold %s\n", r)
		}
	} else if stderr != nil {
		// The report on stdout lists every threshold; a crossed one also gets a line on stderr, where a run's
		// log and a CI job's eye look (the exit status is 99).
		for _, r := range s.Thresholds {
			if !r.Passed {
				fmt.Fprintf(stderr, "threshold %s\n", r)
			}
		}
	}
	switch {
	case threshold.AnyCrossed(s.Thresholds):
		return ExitThresholdCrossed, nil
	case opts.Strict && s.SkippedLines > 0:
		return ExitSkipped, nil
	}
	return 0, nil
}

// Write renders s in the given format.
func Write(w io.Writer, s *Summary, format string, legacy, color bool) error {
	switch {
	case legacy:
		return writeLegacy(w, s, color)
	case format == FormatJSON:
		b, err := s.JSON()
		if err != nil {
			return err
		}
		_, err = w.Write(b)
		return err
	case format == FormatMarkdown:
		return writeMarkdown(w, s)
	case format == FormatHTML:
		return writeHTML(w, s)
	default:
		if err := writeTables(w, s, color); err != nil {
			return err
		}
		return writeText(w, s)
	}
}

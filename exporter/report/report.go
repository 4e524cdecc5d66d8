package report

import (
	"context"
	"errors"
	"fmt"
	"io"

	"github.com/attestload/attestload/exporter/threshold"
)

// Formats accepted by Options.Format.
const (
	FormatText     = "text"
	FormatJSON     = "json"
	FormatMarkdown = "markdown"
	FormatHTML     = "html"
)

// Options select the inputs and the output of Generate.
type Options struct {
	Inputs     []string // files, run timestamps (looked up under ResultsDir) or globs
	ResultsDir string   // where run timestamps are looked up; "results" when empty
	Format     string   // text (default), json, markdown or html
	Legacy     bool     // only the old tables, exactly (text format only)
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

// Options named by OptionError.
const (
	OptionFormat    = "format"
	OptionLegacy    = "legacy"
	OptionThreshold = "threshold"
)

// OptionError is a bad option. Option says which one (OptionFormat, OptionLegacy, OptionThreshold), so that a
// command can name its own flag or key; Err says what is wrong.
type OptionError struct {
	Option string
	Err    error
}

func (e *OptionError) Error() string { return "report option " + e.Option + ": " + e.Err.Error() }

func (e *OptionError) Unwrap() error { return e.Err }

// Validate checks the options (format, legacy, thresholds) without reading any input, so a caller can tell a
// usage mistake from a failure to read the results. Its errors are *OptionError.
func (opts Options) Validate() error {
	format := opts.format()
	switch format {
	case FormatText, FormatJSON, FormatMarkdown, FormatHTML:
	default:
		return &OptionError{OptionFormat, fmt.Errorf("%q: want text, json, markdown or html", opts.Format)}
	}
	if opts.Legacy && format != FormatText {
		return &OptionError{OptionLegacy, errors.New("the old text tables cannot be combined with format " + format)}
	}
	if _, err := threshold.ParseAll(opts.Thresholds); err != nil {
		return &OptionError{OptionThreshold, err}
	}
	return nil
}

// Result is what a report found that decides how a command exits.
type Result struct {
	SkippedLines      int64 // malformed lines skipped
	ThresholdsCrossed bool  // at least one threshold was crossed
}

// Generate makes the report and writes it to stdout; diagnostics (skipped lines, legacy-mode threshold results)
// go to stderr. It returns what the command's exit status depends on, and an error when no report could be made.
func Generate(ctx context.Context, opts Options, stdout, stderr io.Writer) (Result, error) {
	if err := opts.Validate(); err != nil {
		return Result{}, err
	}
	format := opts.format()
	ts, err := threshold.ParseAll(opts.Thresholds)
	if err != nil {
		return Result{}, &OptionError{OptionThreshold, err}
	}
	dir := opts.ResultsDir
	if dir == "" {
		dir = "results"
	}
	paths, err := ResolveInputs(opts.Inputs, dir)
	if err != nil {
		return Result{}, err
	}
	load := Load
	if opts.Legacy && len(ts) == 0 {
		load = loadOld // only the old tables are printed, and no threshold needs the other figures
	}
	s, err := load(ctx, paths, stderr)
	if err != nil {
		return Result{}, err
	}
	s.Thresholds = threshold.Evaluate(ts, s)
	if err := Write(stdout, s, format, opts.Legacy, opts.Color); err != nil {
		return Result{}, fmt.Errorf("write report: %w", err)
	}
	if opts.Legacy {
		// The legacy output must stay exactly the old tables, so threshold results go to stderr.
		for _, r := range s.Thresholds {
			fmt.Fprintf(stderr, "threshold %s\n", r)
		}
	} else if stderr != nil {
		// The report on stdout lists every threshold; a crossed one also gets a line on stderr, where a run's
		// log and a CI job's eye look.
		for _, r := range s.Thresholds {
			if !r.Passed {
				fmt.Fprintf(stderr, "threshold %s\n", r)
			}
		}
	}
	return Result{SkippedLines: s.SkippedLines, ThresholdsCrossed: threshold.AnyCrossed(s.Thresholds)}, nil
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

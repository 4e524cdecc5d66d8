package results

import (
	"bufio"
	"bytes"
	"encoding/json"
	"errors"
	"fmt"
	"io/fs"
	"log/slog"
	"os"
	"path/filepath"
	"sync"
	"sync/atomic"
	"time"

	"github.com/attestload/attestload/attestation/record"
)

// StampLayout is the time layout of results file names (the old tool's YYYYmmddHHMMSS).
const StampLayout = "20060102150405"

// Options configure a Writer.
type Options struct {
	// FlushInterval bounds how long a line may sit in memory; 0 means one second.
	FlushInterval time.Duration
	// BufferBytes is the in-memory buffer; a line that does not fit triggers a flush first. 0 means 256 KiB.
	BufferBytes int
	// OnError is called (once per failure, from the writer's goroutines) when a write, flush or sync fails, so that
	// the run can stop or carry on as configured. It must not block.
	OnError func(error)
	// Logger receives a line for every failure; nil discards.
	Logger *slog.Logger
	// RunID is the run's marker. Create puts it in the file name (<stamp>-<run_id>.jsonl) when another run has
	// already taken <stamp>.jsonl in the same directory; without it such a clash is an error.
	RunID string
}

// Writer appends records to a JSONL file. It is safe for concurrent use.
type Writer struct {
	path   string
	opts   Options
	mu     sync.Mutex
	f      *os.File
	buf    *bufio.Writer
	line   bytes.Buffer
	enc    *json.Encoder
	stop   chan struct{}
	done   chan struct{}
	once   sync.Once
	cerr   error
	broken error // first write error; later lines are counted as failed without touching the file

	written atomic.Uint64
	failed  atomic.Uint64
}

// Create creates dir if needed and opens a new results file named after start: results/<stamp>.jsonl, or
// results/<stamp>-<run_id>.jsonl (opts.RunID) when that name, or its sidecar's, is already taken, which happens
// when two runs start in the same second in one directory (shards on one host, a quick restart). It never
// overwrites a file: the name is claimed by an exclusive create, and a clash on both names is an error.
func Create(dir string, start time.Time, opts Options) (*Writer, error) {
	if err := os.MkdirAll(dir, 0o755); err != nil {
		return nil, fmt.Errorf("results directory: %w", err)
	}
	stamp := start.Format(StampLayout)
	first := filepath.Join(dir, stamp+".jsonl")
	if !exists(SidecarPath(first)) {
		w, err := Open(first, opts)
		if err == nil || !errors.Is(err, fs.ErrExist) {
			return w, err
		}
	}
	if opts.RunID == "" {
		return nil, fmt.Errorf("results file %s (or its sidecar) already exists: another run started in the same "+
			"second in this directory, and no run id was given to name this one apart", first)
	}
	if err := checkRunID(opts.RunID); err != nil {
		return nil, err
	}
	second := filepath.Join(dir, stamp+"-"+opts.RunID+".jsonl")
	if exists(SidecarPath(second)) {
		return nil, fmt.Errorf("results files %s and %s: both names are taken, and neither is overwritten", first, second)
	}
	w, err := Open(second, opts)
	if errors.Is(err, fs.ErrExist) {
		return nil, fmt.Errorf("results files %s and %s: both names are taken, and neither is overwritten", first, second)
	}
	return w, err
}

// exists reports whether something is at path; a path that cannot be checked counts as taken, so that Create
// moves on rather than risk replacing it.
func exists(path string) bool {
	_, err := os.Lstat(path)
	return !errors.Is(err, fs.ErrNotExist)
}

// checkRunID refuses a run id that cannot be part of a file name in the results directory.
func checkRunID(id string) error {
	for _, r := range id {
		if !(r >= 'a' && r <= 'z' || r >= 'A' && r <= 'Z' || r >= '0' && r <= '9' || r == '-' || r == '_') {
			return fmt.Errorf("results file name: run id %q has %q; only letters, digits, '-' and '_' can name a file", id, r)
		}
	}
	return nil
}

// Open creates the results file at path (which must not exist) and starts the periodic flush.
func Open(path string, opts Options) (*Writer, error) {
	if opts.FlushInterval <= 0 {
		opts.FlushInterval = time.Second
	}
	if opts.BufferBytes <= 0 {
		opts.BufferBytes = 256 << 10
	}
	if opts.Logger == nil {
		opts.Logger = slog.New(slog.DiscardHandler)
	}
	f, err := os.OpenFile(path, os.O_WRONLY|os.O_CREATE|os.O_EXCL, 0o644)
	if err != nil {
		return nil, fmt.Errorf("results file: %w", err)
	}
	w := &Writer{path: path, opts: opts, f: f, buf: bufio.NewWriterSize(f, opts.BufferBytes),
		stop: make(chan struct{}), done: make(chan struct{})}
	w.enc = json.NewEncoder(&w.line)
	w.enc.SetEscapeHTML(false)
	go w.flusher()
	return w, nil
}

// Path is the file being written.
func (w *Writer) Path() string { return w.path }

// Written is the number of lines handed to the file (flushed or buffered).
func (w *Writer) Written() uint64 { return w.written.Load() }

// Failed is the number of records that could not be written.
func (w *Writer) Failed() uint64 { return w.failed.Load() }

func (w *Writer) flusher() {
	defer close(w.done)
	t := time.NewTicker(w.opts.FlushInterval)
	defer t.Stop()
	for {
		select {
		case <-w.stop:
			return
		case <-t.C:
			w.mu.Lock()
			if w.broken == nil && w.buf.Buffered() > 0 {
				if err := w.buf.Flush(); err != nil {
					w.fail(fmt.Errorf("flush results file %s: %w", w.path, err))
				}
			}
			w.mu.Unlock()
		}
	}
}

// fail records the first error and reports it; callers hold mu.
func (w *Writer) fail(err error) {
	if w.broken == nil {
		w.broken = err
		w.opts.Logger.Error("results file write failed; records are being lost", "path", w.path, "err", err)
		if w.opts.OnError != nil {
			w.opts.OnError(err)
		}
	}
}

// Observe encodes r as one line. The line goes to the buffer whole: when it does not fit, the buffer is flushed
// first, so the file only ever ends mid-line if the process dies inside a write. It blocks while a flush is in
// progress; the engine's fan-out allows this sink to (see daemon.Fanout).
func (w *Writer) Observe(r *record.Record) {
	w.mu.Lock()
	defer w.mu.Unlock()
	if w.broken != nil {
		w.failed.Add(1)
		return
	}
	w.line.Reset()
	if err := w.enc.Encode(r); err != nil {
		// A record that cannot be encoded (a NaN duration) is a bug upstream; lose that line only.
		w.failed.Add(1)
		w.opts.Logger.Error("results record not encodable", "agent_id", r.AgentID, "task", r.TaskIndex, "err", err)
		return
	}
	if w.line.Len() > w.buf.Available() && w.buf.Buffered() > 0 {
		if err := w.buf.Flush(); err != nil {
			w.failed.Add(1)
			w.fail(fmt.Errorf("flush results file %s: %w", w.path, err))
			return
		}
	}
	if _, err := w.buf.Write(w.line.Bytes()); err != nil {
		w.failed.Add(1)
		w.fail(fmt.Errorf("write results file %s: %w", w.path, err))
		return
	}
	w.written.Add(1)
}

// Flush writes buffered lines to the file now.
func (w *Writer) Flush() error {
	w.mu.Lock()
	defer w.mu.Unlock()
	if w.broken != nil {
		return w.broken
	}
	if err := w.buf.Flush(); err != nil {
		w.fail(fmt.Errorf("flush results file %s: %w", w.path, err))
		return w.broken
	}
	return nil
}

// Close flushes, fsyncs and closes the file. It returns the first write error of the run, if any, so a run that
// lost lines cannot end quietly. Close is idempotent.
func (w *Writer) Close() error {
	w.once.Do(func() {
		close(w.stop)
		<-w.done
		w.mu.Lock()
		defer w.mu.Unlock()
		var errs []error
		if w.broken == nil {
			if err := w.buf.Flush(); err != nil {
				w.fail(fmt.Errorf("flush results file %s: %w", w.path, err))
			} else if err := w.f.Sync(); err != nil {
				w.fail(fmt.Errorf("sync results file %s: %w", w.path, err))
			}
		}
		errs = append(errs, w.broken)
		if err := w.f.Close(); err != nil && w.broken == nil {
			errs = append(errs, fmt.Errorf("close results file %s: %w", w.path, err))
		}
		if n := w.failed.Load(); n > 0 {
			errs = append(errs, fmt.Errorf("results file %s: %d records were not written", w.path, n))
		}
		w.cerr = errors.Join(errs...)
	})
	return w.cerr
}

// SidecarPath is the path of the .run.json sidecar that belongs to a results file.
func SidecarPath(resultsPath string) string {
	return resultsPath[:len(resultsPath)-len(filepath.Ext(resultsPath))] + ".run.json"
}

// WriteSidecar writes info (the report package's RunInfo) as indented JSON next to the results file, atomically:
// a temporary file is written, synced and renamed, so readers never see half a sidecar. It is written at start and
// rewritten at exit with the end time and counters.
func WriteSidecar(resultsPath string, info any) error {
	path := SidecarPath(resultsPath)
	b, err := json.MarshalIndent(info, "", "  ")
	if err != nil {
		return fmt.Errorf("encode run sidecar: %w", err)
	}
	b = append(b, '\n')
	tmp, err := os.CreateTemp(filepath.Dir(path), ".run-*.json")
	if err != nil {
		return fmt.Errorf("write run sidecar: %w", err)
	}
	_, werr := tmp.Write(b)
	cherr := tmp.Chmod(0o644) // CreateTemp makes 0600; the sidecar is as readable as the results file
	werr = errors.Join(werr, cherr)
	serr := tmp.Sync()
	cerr := tmp.Close()
	if err := errors.Join(werr, serr, cerr); err != nil {
		os.Remove(tmp.Name())
		return fmt.Errorf("write run sidecar %s: %w", path, err)
	}
	if err := os.Rename(tmp.Name(), path); err != nil {
		os.Remove(tmp.Name())
		return fmt.Errorf("write run sidecar %s: %w", path, err)
	}
	return nil
}

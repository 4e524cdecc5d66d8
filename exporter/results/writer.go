package results

import (
	"bufio"
	"bytes"
	"encoding/json"
	"errors"
	"fmt"
	"io"
	"io/fs"
	"log/slog"
	"os"
	"path/filepath"
	"slices"
	"strings"
	"sync"
	"sync/atomic"
	"time"

	"github.com/klauspost/compress/zstd"

	"github.com/attestload/attestload/attestation/record"
)

// StampLayout is the time layout of results file names (the old tool's YYYYmmddHHMMSS).
const StampLayout = "20060102150405"

// Compression settings.
const (
	CompressionNone = "none" // plain JSONL, readable by the old tool's report_results
	CompressionZstd = "zstd" // zstd frames, one per flush; a crash loses at most the frame being written
)

// Options configure a Writer: the results section of the configuration (its Dir is Create's argument, its
// OnError what the run does about a failure, its Buffer the engine's) and what the run adds.
type Options struct {
	Settings
	// BufferBytes is the in-memory buffer; a line that does not fit triggers a flush first. 0 means 256 KiB.
	BufferBytes int
	// OnError is called (once per failure, from the writer's goroutines) when a write, flush or sync fails, so that
	// the run can stop or carry on as configured (Settings.OnError). It must not block.
	OnError func(error)
	// Logger receives a line for every failure; nil discards.
	Logger *slog.Logger
	// RunID is the run's marker. Create puts it in the file name (<stamp>-<run_id>.jsonl) when another run has
	// already taken <stamp>.jsonl in the same directory; without it such a clash is an error.
	RunID string
	// OnDiskLow is called once (from the writer's goroutine) when free space drops below MinFreeDisk. It must not
	// block. The writer keeps writing: the run is expected to stop and drain.
	OnDiskLow func(error)
}

// rotating reports whether parts are named with a part number.
func (o Options) rotating() bool { return o.RotateSize > 0 || o.RotateInterval > 0 }

// ext is the file extension of a part.
func (o Options) ext() string {
	if o.Compression == CompressionZstd {
		return ".jsonl.zst"
	}
	return ".jsonl"
}

func (o Options) check() error {
	switch o.Compression {
	case "", CompressionNone, CompressionZstd:
	default:
		return fmt.Errorf("results compression %q: want none or zstd", o.Compression)
	}
	if o.RotateSize < 0 || o.RotateInterval < 0 || o.MinFreeDisk < 0 {
		return errors.New("results: rotate size, rotate interval and min free disk must not be negative")
	}
	return nil
}

// countingWriter counts the bytes that reached the file.
type countingWriter struct {
	f *os.File
	n int64
}

func (c *countingWriter) Write(p []byte) (int, error) {
	n, err := c.f.Write(p)
	c.n += int64(n)
	return n, err
}

// Writer appends records to a JSONL file, or a sequence of parts when rotating. It is safe for concurrent use.
type Writer struct {
	dir    string
	base   string // <stamp> or <stamp>-<run_id>; every part and the sidecar start with it
	opts   Options
	mu     sync.Mutex
	part   int // current part number (1-based; only in names when rotating)
	path   string
	paths  []string // every part so far, in order
	f      *os.File
	cw     *countingWriter
	zw     *zstd.Encoder // nil without compression
	frame  bool          // the current zstd frame holds data
	buf    *bufio.Writer
	lines  int64     // lines in the current part
	opened time.Time // when the current part was opened
	done0  int64     // bytes on disk of the closed parts
	line   bytes.Buffer
	enc    *record.Encoder
	stop   chan struct{}
	done   chan struct{}
	once   sync.Once
	cerr   error
	broken error // first write error; later lines are counted as failed without touching the file
	diskLo bool  // OnDiskLow was called
	now    func() time.Time
	free   func(dir string) (int64, bool)

	written atomic.Uint64
	failed  atomic.Uint64
	raw     atomic.Int64 // uncompressed JSONL bytes handed to the file
}

// claimed lists the names that would make base ambiguous: any results file or sidecar a run of that base writes.
func claimed(dir, base string) bool {
	for _, suffix := range []string{".run.json", ".jsonl", ".jsonl.zst", ".jsonl.gz",
		partName(1) + ".jsonl", partName(1) + ".jsonl.zst", partName(1) + ".jsonl.gz"} {
		if exists(filepath.Join(dir, base+suffix)) {
			return true
		}
	}
	return false
}

// partName is the part suffix of part n: ".part0001". Four digits keep names sorted for the first 9999 parts.
func partName(n int) string { return fmt.Sprintf(".part%04d", n) }

// Create creates dir if needed and opens a new results file named after start: results/<stamp>.jsonl, or
// results/<stamp>-<run_id>.jsonl (opts.RunID) when that name, or its sidecar's, is already taken, which happens
// when two runs start in the same second in one directory (shards on one host, a quick restart). It never
// overwrites a file: the name is claimed by an exclusive create, and a clash on both names is an error.
//
// With compression the extension is .jsonl.zst; when rotating, every part carries its number:
// <stamp>.part0001.jsonl.zst, <stamp>.part0002.jsonl.zst, ... The sidecar is <stamp>.run.json either way.
func Create(dir string, start time.Time, opts Options) (*Writer, error) {
	if err := opts.check(); err != nil {
		return nil, err
	}
	if err := os.MkdirAll(dir, 0o755); err != nil {
		return nil, fmt.Errorf("results directory: %w", err)
	}
	if opts.MinFreeDisk > 0 {
		if free, ok := freeBytes(dir); ok && free < int64(opts.MinFreeDisk) {
			return nil, fmt.Errorf("results directory %s: %s free, below results.min_free_disk (%s); free some "+
				"space or lower the setting", dir, FormatBytes(free), FormatBytes(int64(opts.MinFreeDisk)))
		}
	}
	stamp := start.Format(StampLayout)
	if !claimed(dir, stamp) {
		w, err := openBase(dir, stamp, opts)
		if err == nil || !errors.Is(err, fs.ErrExist) {
			return w, err
		}
	}
	first := filepath.Join(dir, stamp+firstSuffix(opts))
	if opts.RunID == "" {
		return nil, fmt.Errorf("results file %s (or its sidecar) already exists: another run started in the same "+
			"second in this directory, and no run id was given to name this one apart", first)
	}
	if err := checkRunID(opts.RunID); err != nil {
		return nil, err
	}
	base := stamp + "-" + opts.RunID
	second := filepath.Join(dir, base+firstSuffix(opts))
	if claimed(dir, base) {
		return nil, fmt.Errorf("results files %s and %s: both names are taken, and neither is overwritten", first, second)
	}
	w, err := openBase(dir, base, opts)
	if errors.Is(err, fs.ErrExist) {
		return nil, fmt.Errorf("results files %s and %s: both names are taken, and neither is overwritten", first, second)
	}
	return w, err
}

func firstSuffix(opts Options) string {
	if opts.rotating() {
		return partName(1) + opts.ext()
	}
	return opts.ext()
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

// Open creates the results file at path (which must not exist) and starts the periodic flush. It never rotates:
// rotation needs the names Create chooses.
func Open(path string, opts Options) (*Writer, error) {
	if err := opts.check(); err != nil {
		return nil, err
	}
	opts.RotateSize, opts.RotateInterval = 0, 0
	name := filepath.Base(path)
	w := newWriter(filepath.Dir(path), strings.TrimSuffix(strings.TrimSuffix(name, ".zst"), ".jsonl"), opts)
	if err := w.openPart(path); err != nil {
		return nil, err
	}
	go w.flusher()
	return w, nil
}

func openBase(dir, base string, opts Options) (*Writer, error) {
	w := newWriter(dir, base, opts)
	if err := w.openPart(w.partPath(1)); err != nil {
		return nil, err
	}
	go w.flusher()
	return w, nil
}

func newWriter(dir, base string, opts Options) *Writer {
	if opts.FlushInterval <= 0 {
		opts.FlushInterval = time.Second
	}
	if opts.BufferBytes <= 0 {
		opts.BufferBytes = 256 << 10
	}
	if opts.Logger == nil {
		opts.Logger = slog.New(slog.DiscardHandler)
	}
	if opts.Compression == "" {
		opts.Compression = CompressionNone
	}
	w := &Writer{dir: dir, base: base, opts: opts, stop: make(chan struct{}), done: make(chan struct{}),
		now: time.Now, free: freeBytes}
	w.enc = record.NewEncoder(&w.line)
	return w
}

func (w *Writer) partPath(n int) string {
	if w.opts.rotating() {
		return filepath.Join(w.dir, w.base+partName(n)+w.opts.ext())
	}
	return filepath.Join(w.dir, w.base+w.opts.ext())
}

// openPart creates the file at path exclusively and points the buffer at it; callers hold mu (or own w).
func (w *Writer) openPart(path string) error {
	f, err := os.OpenFile(path, os.O_WRONLY|os.O_CREATE|os.O_EXCL, 0o644)
	if err != nil {
		return fmt.Errorf("results file: %w", err)
	}
	w.part++
	w.f, w.path = f, path
	w.paths = append(w.paths, path)
	w.cw = &countingWriter{f: f}
	w.lines, w.opened = 0, w.now()
	var dst io.Writer = w.cw
	if w.opts.Compression == CompressionZstd {
		if w.zw == nil {
			// One goroutine and a 1 MiB window (a frame holds at most a flush interval's lines, about 1 MiB at
			// 720 cycles/s). The best level: an ima-profile cycle takes 82-85 bytes where the better level takes 93
			// (frames of 720 records), the difference between 15 and 17 GB in a three-day soak at full rate; it
			// costs about 36 MiB of tables and 3.6% of a core at 720 cycles/s (better: 6 MiB and 0.7%).
			zw, err := zstd.NewWriter(w.cw, zstd.WithEncoderLevel(zstd.SpeedBestCompression),
				zstd.WithEncoderConcurrency(1), zstd.WithWindowSize(1<<20), zstd.WithEncoderCRC(true))
			if err != nil {
				f.Close()
				return fmt.Errorf("results file %s: zstd: %w", path, err)
			}
			w.zw = zw
		} else {
			w.zw.Reset(w.cw)
		}
		w.frame = false
		dst = w.zw
	}
	if w.buf == nil {
		w.buf = bufio.NewWriterSize(dst, w.opts.BufferBytes)
	} else {
		w.buf.Reset(dst)
	}
	return nil
}

// Path is the file being written (the current part when rotating).
func (w *Writer) Path() string {
	w.mu.Lock()
	defer w.mu.Unlock()
	return w.path
}

// Paths lists every part written so far, in order; without rotation it is just Path.
func (w *Writer) Paths() []string {
	w.mu.Lock()
	defer w.mu.Unlock()
	return slices.Clone(w.paths)
}

// SidecarPath is where this run's sidecar goes: <base>.run.json beside the parts.
func (w *Writer) SidecarPath() string { return filepath.Join(w.dir, w.base+".run.json") }

// Written is the number of lines handed to the file (flushed or buffered).
func (w *Writer) Written() uint64 { return w.written.Load() }

// Failed is the number of records that could not be written.
func (w *Writer) Failed() uint64 { return w.failed.Load() }

// RawBytes is the uncompressed JSONL bytes written so far.
func (w *Writer) RawBytes() int64 { return w.raw.Load() }

// DiskBytes is the bytes that reached the disk so far, every part included (after Close: the final sizes).
func (w *Writer) DiskBytes() int64 {
	w.mu.Lock()
	defer w.mu.Unlock()
	return w.done0 + w.cw.n
}

func (w *Writer) flusher() {
	defer close(w.done)
	t := time.NewTicker(w.opts.FlushInterval)
	defer t.Stop()
	lastDisk := time.Time{}
	for {
		select {
		case <-w.stop:
			return
		case <-t.C:
			w.mu.Lock()
			if w.broken == nil && (w.buf.Buffered() > 0 || w.frame) {
				if err := w.flushLocked(); err != nil {
					w.fail(fmt.Errorf("flush results file %s: %w", w.path, err))
				}
			}
			if w.broken == nil && w.opts.RotateInterval > 0 && w.lines > 0 && w.now().Sub(w.opened) >= w.opts.RotateInterval {
				w.rotateLocked()
			}
			check := w.opts.MinFreeDisk > 0 && !w.diskLo && time.Since(lastDisk) >= diskCheckEvery
			w.mu.Unlock()
			if check {
				lastDisk = time.Now()
				w.checkDisk()
			}
		}
	}
}

// diskCheckEvery is how often the free space is looked at (a statfs call).
const diskCheckEvery = 2 * time.Second

func (w *Writer) checkDisk() {
	free, ok := w.free(w.dir)
	if !ok || free >= int64(w.opts.MinFreeDisk) {
		return
	}
	w.mu.Lock()
	already := w.diskLo
	w.diskLo = true
	w.mu.Unlock()
	if already {
		return
	}
	err := fmt.Errorf("results directory %s: only %s free, below results.min_free_disk (%s)", w.dir,
		FormatBytes(free), FormatBytes(int64(w.opts.MinFreeDisk)))
	w.opts.Logger.Error("disk almost full; stopping the run before it fills", "path", w.dir, "free_bytes", free,
		"min_free_disk", int64(w.opts.MinFreeDisk))
	if w.opts.OnDiskLow != nil {
		w.opts.OnDiskLow(err)
	}
}

// flushLocked empties the buffer into the file; with zstd it ends the current frame, so that everything flushed
// is readable even if the process dies right after. Callers hold mu.
func (w *Writer) flushLocked() error {
	if err := w.buf.Flush(); err != nil {
		return err
	}
	if w.zw != nil && w.frame {
		if err := w.zw.Close(); err != nil {
			return err
		}
		w.zw.Reset(w.cw)
		w.frame = false
	}
	return nil
}

// rotateLocked closes the current part (flushed, synced) and opens the next. A failure is the writer's first
// error, as for any write. Callers hold mu.
func (w *Writer) rotateLocked() {
	if err := w.flushLocked(); err != nil {
		w.fail(fmt.Errorf("flush results file %s: %w", w.path, err))
		return
	}
	if err := w.f.Sync(); err != nil {
		w.fail(fmt.Errorf("sync results file %s: %w", w.path, err))
		return
	}
	if err := w.f.Close(); err != nil {
		w.fail(fmt.Errorf("close results file %s: %w", w.path, err))
		return
	}
	w.done0 += w.cw.n
	prev := w.path
	if err := w.openPart(w.partPath(w.part + 1)); err != nil {
		// Nothing to write to any more; Close must not touch the closed file again.
		w.f, w.cw = nil, &countingWriter{}
		w.fail(fmt.Errorf("rotate results file after %s: %w", prev, err))
		return
	}
	w.opts.Logger.Info("results part started", "path", w.path, "previous", prev)
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
// progress; the engine's fan-out allows this sink to (see engine.Fanout).
func (w *Writer) Observe(r *record.Record) {
	w.mu.Lock()
	defer w.mu.Unlock()
	if w.broken != nil {
		w.failed.Add(1)
		return
	}
	if w.opts.RotateInterval > 0 && w.lines > 0 && w.now().Sub(w.opened) >= w.opts.RotateInterval {
		w.rotateLocked()
		if w.broken != nil {
			w.failed.Add(1)
			return
		}
	}
	w.line.Reset()
	if err := w.enc.Encode(r); err != nil {
		// A record that cannot be encoded (a NaN duration) is a bug upstream; lose that line only.
		w.failed.Add(1)
		w.opts.Logger.Error("results record not encodable", "agent_id", r.AgentID, "task", r.TaskIndex, "err", err)
		return
	}
	if w.line.Len() > w.buf.Available() && w.buf.Buffered() > 0 {
		// Plain: the buffer goes to the file whole lines at a time. Zstd: the lines go into the current frame,
		// which the encoder writes out in whole blocks; the frame ends at the next periodic flush.
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
	w.frame = w.zw != nil
	w.lines++
	w.raw.Add(int64(w.line.Len()))
	w.written.Add(1)
	if w.opts.RotateSize > 0 {
		size := w.cw.n
		if w.zw == nil {
			size += int64(w.buf.Buffered())
		}
		// With zstd the size on disk moves a block (or a frame) at a time, so a part ends at most that far past
		// the bound.
		if size >= int64(w.opts.RotateSize) {
			w.rotateLocked()
		}
	}
}

// Flush writes buffered lines to the file now (ending the zstd frame).
func (w *Writer) Flush() error {
	w.mu.Lock()
	defer w.mu.Unlock()
	if w.broken != nil {
		return w.broken
	}
	if err := w.flushLocked(); err != nil {
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
			if err := w.flushLocked(); err != nil {
				w.fail(fmt.Errorf("flush results file %s: %w", w.path, err))
			} else if err := w.f.Sync(); err != nil {
				w.fail(fmt.Errorf("sync results file %s: %w", w.path, err))
			}
		}
		errs = append(errs, w.broken)
		if w.f != nil {
			if err := w.f.Close(); err != nil && w.broken == nil {
				errs = append(errs, fmt.Errorf("close results file %s: %w", w.path, err))
			}
		}
		if n := w.failed.Load(); n > 0 {
			errs = append(errs, fmt.Errorf("results file %s: %d records were not written", w.path, n))
		}
		w.cerr = errors.Join(errs...)
	})
	return w.cerr
}

// FormatBytes prints a byte count with a binary unit: 512 B, 1.5 KiB, 20.0 GiB.
func FormatBytes(n int64) string {
	const unit = 1024
	if n < unit && n > -unit {
		return fmt.Sprintf("%d B", n)
	}
	f := float64(n)
	for _, u := range []string{"KiB", "MiB", "GiB", "TiB"} {
		f /= unit
		if f < unit && f > -unit || u == "TiB" {
			return fmt.Sprintf("%.1f %s", f, u)
		}
	}
	return fmt.Sprintf("%d B", n)
}

// SidecarPath is the path of the .run.json sidecar that belongs to a results file or part:
// <base>.run.json for <base>.jsonl, <base>.jsonl.zst and <base>.partNNNN.jsonl.zst alike.
func SidecarPath(resultsPath string) string {
	return RunBase(resultsPath) + ".run.json"
}

// RunBase strips a results path of its compression extension, its .jsonl and its part number: what every file
// of the run starts with.
func RunBase(resultsPath string) string {
	p := resultsPath
	for _, ext := range []string{".zst", ".gz"} {
		p = strings.TrimSuffix(p, ext)
	}
	p = strings.TrimSuffix(p, ".jsonl")
	if i := strings.LastIndex(p, ".part"); i >= 0 && i+5 < len(p) && allDigits(p[i+5:]) {
		p = p[:i]
	}
	return p
}

func allDigits(s string) bool {
	for _, c := range []byte(s) {
		if c < '0' || c > '9' {
			return false
		}
	}
	return s != ""
}

// WriteSidecar writes info as indented JSON next to the results file, atomically: a temporary file is written,
// synced and renamed, so readers never see half a sidecar. It is written at start and rewritten at exit with the
// end time and counters.
func WriteSidecar(resultsPath string, info record.RunInfo) error {
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

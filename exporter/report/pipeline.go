package report

import (
	"bytes"
	"context"
	"errors"
	"fmt"
	"io"
	"runtime"
	"sync"

	"github.com/attestload/attestload/attestation/record"
)

// The report reads its inputs through a pipeline so that decoding, its cost, runs on every core while memory
// stays flat: one goroutine reads (and decompresses) the files in chunks of whole lines, Workers goroutines decode
// the chunks into cycles, and the calling goroutine aggregates the decoded chunks strictly in input order, so that
// every sum is added up in the same order as a sequential reading would (the old tables reproduce the old tool's
// float arithmetic to the last digit). At most pipelineDepth chunks exist at any time, whatever the input size.

// chunkBytes is the size of a chunk of lines handed to a decoding worker.
const chunkBytes = 128 << 10

// chunk is a run of whole lines of one file, or one over-long line (tooLong) that was not kept.
type chunk struct {
	seq     int64
	file    int // index in the inputs
	data    []byte
	tooLong bool
	// Filled by the worker.
	cycles  []record.Line
	n       int   // cycles used
	lines   int64 // lines in the chunk (its skips count them from 1; the aggregation adds the file's line before it)
	skips   []lineSkip
	endFile bool // the file's last chunk (its record count can be checked)
	readErr error
}

type lineSkip struct {
	line int64
	why  string
}

// decodeChunk decodes every line of c.
func decodeChunk(d *record.Decoder, c *chunk) {
	c.n, c.skips = 0, c.skips[:0]
	if c.tooLong {
		c.lines = 1
		c.skips = append(c.skips, lineSkip{1, fmt.Sprintf("line longer than %d bytes", MaxLineBytes)})
		return
	}
	data := c.data
	line := int64(1)
	for len(data) > 0 {
		i := bytes.IndexByte(data, '\n')
		var l []byte
		terminated := i >= 0
		if terminated {
			l, data = data[:i+1], data[i+1:]
		} else {
			l, data = data, nil
		}
		switch {
		case len(l) > MaxLineBytes:
			c.skips = append(c.skips, lineSkip{line, fmt.Sprintf("line longer than %d bytes", MaxLineBytes)})
		case len(bytes.TrimSpace(l)) != 0:
			if c.n == len(c.cycles) {
				c.cycles = append(c.cycles, record.Line{})
			}
			if err := d.Decode(l, &c.cycles[c.n]); err != nil {
				why := err.Error()
				if !terminated {
					why = "truncated last line (" + why + ")"
				}
				c.skips = append(c.skips, lineSkip{line, why})
			} else {
				c.n++
			}
		}
		line++
	}
	c.lines = line - 1
}

// runPipeline reads every path in order. perFile is called on the aggregating goroutine after each file's last
// chunk with the file's index, and onReadEnd with each file's close error (a cut compressed stream).
func runPipeline(ctx context.Context, paths []string, workers int, agg *aggregator, skips *skipLog,
	perFile func(file int, closeErr error)) error {
	if workers < 1 {
		workers = 1
	}
	depth := 2*workers + 2
	free := make(chan *chunk, depth)
	for range depth {
		free <- &chunk{data: make([]byte, 0, chunkBytes)}
	}
	work := make(chan *chunk, depth)
	decoded := make(chan *chunk, depth)
	ctx, cancel := context.WithCancel(ctx)
	defer cancel()

	var rerr error
	closeErrs := make([]error, len(paths))
	go func() {
		defer close(work)
		rerr = readChunks(ctx, paths, free, work, closeErrs)
	}()
	startDecoders(workers, work, decoded)

	// Aggregate in sequence order.
	pending := map[int64]*chunk{}
	var next int64
	lines := fileLines{file: -1}
	var failed error
	for c := range decoded {
		pending[c.seq] = c
		for {
			c, ok := pending[next]
			if !ok {
				break
			}
			delete(pending, next)
			next++
			if failed == nil {
				if c.readErr != nil {
					failed = c.readErr
					cancel()
				} else {
					aggregateChunk(c, &lines, agg, skips, paths, closeErrs, perFile)
				}
			}
			recycle(c, free)
		}
	}
	if failed != nil {
		return failed
	}
	if rerr != nil {
		return rerr
	}
	return ctx.Err()
}

// startDecoders starts workers goroutines that decode the chunks from work and pass them on to decoded, which
// is closed once work is drained.
func startDecoders(workers int, work <-chan *chunk, decoded chan<- *chunk) {
	var wg sync.WaitGroup
	for range workers {
		wg.Go(func() {
			var d record.Decoder
			for c := range work {
				if !c.tooLong && c.readErr == nil {
					decodeChunk(&d, c)
				}
				decoded <- c
			}
		})
	}
	go func() { wg.Wait(); close(decoded) }()
}

// fileLines is how many lines of the file being aggregated came before the current chunk.
type fileLines struct {
	file   int
	before int64
}

// aggregateChunk adds a decoded chunk's records to agg and reports its skipped lines with their line numbers in
// the file; after a file's last chunk it calls perFile.
func aggregateChunk(c *chunk, lines *fileLines, agg *aggregator, skips *skipLog, paths []string, closeErrs []error,
	perFile func(file int, closeErr error)) {
	if c.tooLong {
		decodeChunk(nil, c)
	}
	if c.file != lines.file {
		lines.file, lines.before = c.file, 0
	}
	for i := range c.n {
		agg.add(&c.cycles[i])
	}
	for _, s := range c.skips {
		skips.skip(paths[c.file], lines.before+s.line, s.why)
	}
	lines.before += c.lines
	if c.endFile && perFile != nil {
		perFile(c.file, closeErrs[c.file])
	}
}

// recycle empties c and returns it to free (unless free is full).
func recycle(c *chunk, free chan<- *chunk) {
	c.data, c.tooLong, c.endFile, c.readErr = c.data[:0], false, false, nil
	if cap(c.data) > 4*chunkBytes {
		c.data = make([]byte, 0, chunkBytes) // do not keep a huge line's buffer
	}
	select {
	case free <- c:
	default:
	}
}

// readChunks cuts the files into chunks of whole lines. A line longer than the chunk grows its chunk up to
// MaxLineBytes; a longer one is passed on as tooLong, without its bytes. Every file ends with an endFile chunk.
func readChunks(ctx context.Context, paths []string, free <-chan *chunk, work chan<- *chunk, closeErrs []error) error {
	var seq int64
	get := func() (*chunk, error) {
		select {
		case c := <-free:
			c.seq = seq
			seq++
			return c, nil
		case <-ctx.Done():
			return nil, ctx.Err()
		}
	}
	for fi, p := range paths {
		rr, err := openResults(p)
		if err != nil {
			c, gerr := get()
			if gerr != nil {
				return gerr
			}
			c.file, c.readErr = fi, err
			work <- c
			return err
		}
		if err := readFileChunks(ctx, fi, p, rr, get, work, closeErrs); err != nil {
			return err
		}
	}
	return nil
}

// readFileChunks cuts the open file fi (path p) into chunks taken from get, and closes it.
func readFileChunks(ctx context.Context, fi int, p string, rr *resultsReader, get func() (*chunk, error),
	work chan<- *chunk, closeErrs []error) error {
	var carry []byte // the start of a line the previous chunk did not finish
	eof := false
	for !eof {
		c, err := get()
		if err != nil {
			rr.Close()
			return err
		}
		c.file = fi
		c.data = append(c.data[:0], carry...)
		carry = carry[:0]
		if eof, carry, err = fillChunk(rr, c, carry); err != nil {
			rr.Close()
			c.readErr = fmt.Errorf("read %s: %w", p, err)
			work <- c
			return c.readErr
		}
		if eof {
			if cerr := rr.Close(); cerr != nil {
				closeErrs[fi] = cerr
			}
			c.endFile = true
		}
		select {
		case work <- c:
		case <-ctx.Done():
			if !eof {
				rr.Close()
			}
			return ctx.Err()
		}
	}
	return nil
}

// fillChunk reads whole lines into c: if the chunk holds no newline it keeps growing it for one long line, up to
// MaxLineBytes (past that c is tooLong and the line is skipped). What follows the last newline goes to carry, for
// the next chunk. eof is true at the end of the stream; err is a read error other than the end.
func fillChunk(rr io.Reader, c *chunk, carry []byte) (eof bool, _ []byte, err error) {
	for {
		n, rerr := readFull(rr, c.data[len(c.data):cap(c.data)])
		c.data = c.data[:len(c.data)+n]
		if rerr != nil {
			if !errors.Is(rerr, io.EOF) {
				return false, carry, rerr
			}
			eof = true
			break
		}
		if bytes.IndexByte(c.data, '\n') >= 0 {
			break
		}
		if len(c.data) > MaxLineBytes {
			// Skip the rest of this line without keeping it.
			c.tooLong = true
			rest, serr := skipLine(rr)
			carry = append(carry, rest...)
			if serr != nil {
				eof = true
			}
			c.data = c.data[:0]
			break
		}
		c.data = append(c.data, make([]byte, chunkBytes)...)[:len(c.data)]
	}
	if !c.tooLong && !eof {
		cut := bytes.LastIndexByte(c.data, '\n') + 1
		carry = append(carry, c.data[cut:]...)
		c.data = c.data[:cut]
	}
	return eof, carry, nil
}

// readFull reads until p is full or the stream ends.
func readFull(r io.Reader, p []byte) (int, error) {
	n := 0
	for n < len(p) {
		m, err := r.Read(p[n:])
		n += m
		if err != nil {
			return n, err
		}
	}
	return n, nil
}

// skipLine discards the rest of an over-long line and returns what followed its newline in the last read.
func skipLine(r io.Reader) ([]byte, error) {
	buf := make([]byte, 64<<10)
	for {
		n, err := r.Read(buf)
		if i := bytes.IndexByte(buf[:n], '\n'); i >= 0 {
			return append([]byte(nil), buf[i+1:n]...), err
		}
		if err != nil {
			return nil, err
		}
	}
}

// decodeWorkers is how many goroutines decode: one per core the process may use.
func decodeWorkers() int { return runtime.GOMAXPROCS(0) }

package report

import (
	"bufio"
	"bytes"
	"compress/gzip"
	"errors"
	"fmt"
	"io"
	"os"

	"github.com/klauspost/compress/zstd"
)

var (
	zstdMagic = []byte{0x28, 0xb5, 0x2f, 0xfd}
	gzipMagic = []byte{0x1f, 0x8b}
)

// maxZstdWindow bounds the memory a zstd input may ask for. attestload writes 1 MiB windows; 64 MiB leaves room
// for files recompressed with the zstd tool's defaults without letting a hostile file claim gigabytes.
const maxZstdWindow = 64 << 20

// resultsReader is an opened results file, decompressed when it is zstd or gzip (told by its first bytes, not its
// name). A compressed stream that breaks off (a part whose writer died inside a frame) reads as ending there; Close
// then reports the break, so the caller can count it after using every line before it.
type resultsReader struct {
	io.Reader
	f      *os.File
	zr     *zstd.Decoder
	broken error
	path   string
}

// openResults opens path for reading records, whatever its compression.
func openResults(path string) (*resultsReader, error) {
	f, err := os.Open(path)
	if err != nil {
		return nil, fmt.Errorf("open results file: %w", err)
	}
	br := bufio.NewReaderSize(f, 64<<10)
	head, _ := br.Peek(4)
	rr := &resultsReader{f: f, path: path}
	switch {
	case bytes.HasPrefix(head, zstdMagic):
		zr, err := zstd.NewReader(br, zstd.WithDecoderConcurrency(1), zstd.WithDecoderLowmem(true),
			zstd.WithDecoderMaxWindow(maxZstdWindow))
		if err != nil {
			f.Close()
			return nil, fmt.Errorf("results file %s: zstd: %w", path, err)
		}
		rr.zr = zr
		rr.Reader = &breakReader{r: zr, rr: rr}
	case bytes.HasPrefix(head, gzipMagic):
		gr, err := gzip.NewReader(br)
		if err != nil {
			f.Close()
			return nil, fmt.Errorf("results file %s: gzip: %w", path, err)
		}
		rr.Reader = &breakReader{r: gr, rr: rr}
	default:
		rr.Reader = br
	}
	return rr, nil
}

// breakReader turns a decompression error into the end of the stream and remembers it.
type breakReader struct {
	r  io.Reader
	rr *resultsReader
}

func (b *breakReader) Read(p []byte) (int, error) {
	n, err := b.r.Read(p)
	if err != nil && !errors.Is(err, io.EOF) {
		if b.rr.broken == nil {
			b.rr.broken = err
		}
		return n, io.EOF
	}
	return n, err
}

// Close closes the file; its error is the decompression break, if the stream had one.
func (rr *resultsReader) Close() error {
	if rr.zr != nil {
		rr.zr.Close()
	}
	rr.f.Close()
	if rr.broken != nil {
		if errors.Is(rr.broken, io.ErrUnexpectedEOF) {
			return fmt.Errorf("compressed stream cut off (the writer stopped inside a frame); lines after the last complete frame are lost")
		}
		return fmt.Errorf("compressed stream broken (%v); the lines before the break were read", rr.broken)
	}
	return nil
}

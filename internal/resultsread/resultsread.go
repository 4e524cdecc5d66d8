// Package resultsread reads a whole results file for tests, whatever its compression: plain JSONL, zstd (the
// default) or gzip, told apart by their first bytes as the report does.
package resultsread

import (
	"bytes"
	"compress/gzip"
	"fmt"
	"io"
	"os"

	"github.com/klauspost/compress/zstd"
)

// Bytes returns the JSONL bytes of the results file at path. cut reports a compressed stream that breaks off (a
// process killed while writing): b then holds what its complete frames or blocks decoded to.
func Bytes(path string) (b []byte, cut bool, err error) {
	raw, err := os.ReadFile(path)
	if err != nil {
		return nil, false, err
	}
	var r io.Reader
	switch {
	case bytes.HasPrefix(raw, []byte{0x28, 0xb5, 0x2f, 0xfd}):
		d, err := zstd.NewReader(bytes.NewReader(raw), zstd.WithDecoderConcurrency(1))
		if err != nil {
			return nil, false, fmt.Errorf("read results %s: %w", path, err)
		}
		defer d.Close()
		r = d
	case bytes.HasPrefix(raw, []byte{0x1f, 0x8b}):
		g, err := gzip.NewReader(bytes.NewReader(raw))
		if err != nil {
			return nil, false, fmt.Errorf("read results %s: %w", path, err)
		}
		r = g
	default:
		return raw, false, nil
	}
	var out bytes.Buffer
	_, err = out.ReadFrom(r)
	return out.Bytes(), err != nil, nil
}

//go:build !unix

package results

// freeBytes cannot be read on this system; the disk guard stays off.
func freeBytes(string) (int64, bool) { return 0, false }

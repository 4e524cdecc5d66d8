//go:build !unix

package client

// fdLimit cannot be read here.
func fdLimit() uint64 { return 0 }

//go:build !linux

package simverifier

import "time"

// threadCPU cannot read a thread's CPU time here; spendCPU burns wall time instead.
func threadCPU() (time.Duration, bool) { return 0, false }

package shard

import (
	"errors"
	"fmt"
	"strconv"
	"strings"
)

// Shard is the slice of the fleet one instance drives: the Index-th of Count equal parts. The zero Shard means
// "not sharded" and behaves like 0/1, so a daemon can keep a Shard value without special-casing its absence.
type Shard struct {
	Index int // 0-based position of this instance
	Count int // number of instances sharing the fleet; 0 is read as 1
}

// ErrInvalid is wrapped by every parsing error of this package.
var ErrInvalid = errors.New("invalid shard")

// Parse reads the "i/n" form of the --shard flag: 0 <= i < n.
func Parse(s string) (Shard, error) {
	is, ns, ok := strings.Cut(strings.TrimSpace(s), "/")
	if !ok {
		return Shard{}, fmt.Errorf("%w %q: want the form i/n, e.g. 0/2", ErrInvalid, s)
	}
	i, err := strconv.Atoi(is)
	if err != nil {
		return Shard{}, fmt.Errorf("%w %q: index %q is not an integer", ErrInvalid, s, is)
	}
	n, err := strconv.Atoi(ns)
	if err != nil {
		return Shard{}, fmt.Errorf("%w %q: count %q is not an integer", ErrInvalid, s, ns)
	}
	return New(i, n)
}

// New checks and returns the shard i of n.
func New(i, n int) (Shard, error) {
	if n < 1 {
		return Shard{}, fmt.Errorf("%w %d/%d: count must be at least 1", ErrInvalid, i, n)
	}
	if i < 0 || i >= n {
		return Shard{}, fmt.Errorf("%w %d/%d: index must be in [0, %d]", ErrInvalid, i, n, n-1)
	}
	return Shard{Index: i, Count: n}, nil
}

// FromOrdinal derives the shard of a StatefulSet pod from its name (which is also its hostname), whose last
// dash-separated part is the pod's ordinal: "attestload-3" with n = 4 is shard 3/4. A fully qualified hostname is
// cut at its first dot. The ordinal must be below n, otherwise the StatefulSet's replica count and the shard
// count disagree and agents would be left out or driven twice.
func FromOrdinal(hostname string, n int) (Shard, error) {
	name, _, _ := strings.Cut(hostname, ".")
	dash := strings.LastIndexByte(name, '-')
	if dash < 0 || dash == len(name)-1 {
		return Shard{}, fmt.Errorf("%w: hostname %q does not end in -<ordinal> like a StatefulSet pod name", ErrInvalid, hostname)
	}
	digits := name[dash+1:]
	for _, c := range digits {
		if c < '0' || c > '9' {
			return Shard{}, fmt.Errorf("%w: hostname %q does not end in -<ordinal> like a StatefulSet pod name", ErrInvalid, hostname)
		}
	}
	i, err := strconv.Atoi(digits)
	if err != nil {
		return Shard{}, fmt.Errorf("%w: ordinal %q of hostname %q: %v", ErrInvalid, digits, hostname, err)
	}
	if n >= 1 && i >= n {
		return Shard{}, fmt.Errorf("%w: ordinal %d of hostname %q is not below the shard count %d (replicas and shard count disagree)",
			ErrInvalid, i, hostname, n)
	}
	return New(i, n)
}

// String gives the "i/n" form that Parse reads.
func (s Shard) String() string {
	return strconv.Itoa(s.Index) + "/" + strconv.Itoa(s.count())
}

func (s Shard) count() int {
	if s.Count < 1 {
		return 1
	}
	return s.Count
}

// Range returns the agent indexes [first, first+count) of this shard out of totalAgents. The ranges of shards
// 0..n-1 are disjoint and cover [0, totalAgents) in order; their sizes differ by at most one, the larger ones
// first. A negative total is read as 0, and an invalid shard (which Parse and New never return) gets nothing.
func (s Shard) Range(totalAgents int) (first, count int) {
	n := s.count()
	if totalAgents <= 0 || s.Index < 0 || s.Index >= n {
		return 0, 0
	}
	// base/extra rather than i*total/n: no overflow of i*total for large fleets.
	base, extra := totalAgents/n, totalAgents%n
	first = s.Index*base + min(s.Index, extra)
	count = base
	if s.Index < extra {
		count++
	}
	return first, count
}

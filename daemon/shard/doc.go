// Package shard splits a fleet of mock agents between several attestload instances.
//
// An instance started with --shard i/n (or, in Kubernetes, as the i-th pod of a StatefulSet with n replicas)
// drives only its own contiguous slice of the agent indexes, so n instances together cover the whole fleet once,
// with no agent driven twice. The split is a pure function of (i, n, total): every instance computes the same
// partition without talking to the others.
//
// This package knows nothing of configuration files, flags, the scheduler or the verifier; it only does the
// arithmetic and the parsing, so that the daemon, the deployment tests and the documentation agree on it.
package shard

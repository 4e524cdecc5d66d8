// Package verdict learns each attestation's verdict after the fact and attaches it to the cycle's record.
//
// The agent never sees pass or fail: the verifier judges evidence after answering 202. A Watcher holds the
// records of accepted evidence (bounded), asks a Source about them at an interval, and forwards each record to the
// next sink once its verdict is known, or as unknown when the timeout passes. Sources: the verifier's database
// (DBSource), its admin API (AdminAPISource), or a function such as the simulated verifier's Verdict method
// (SourceFunc).
//
// This package must not know the daemon, Prometheus or OpenTelemetry; it sees records, a Source and a Sink.
package verdict

// Package enroll writes attestload's mock push agents and their policies straight into a Keylime verifier's
// PostgreSQL database, and removes them again.
//
// Keylime v3 has no working agent enrollment endpoint, so a load test enrolls its agents by SQL (see the
// push-protocol spec, section 5). Everything one run writes carries a run marker: agent ids and policy names are
// built from a prefix and a short run id, and each verifiermain row holds {"attestload_run":"<run>"} in meta_data,
// a column the verifier ignores for push agents. Cleanup deletes only rows that carry the marker, so a verifier
// database shared with real agents (or with agents that merely look like ours) is never damaged.
//
// The package also owns the verifier schema that attestload's tests and simulated verifier create (InitSchema),
// and the check that a real verifier's schema is the one attestload was written for (CheckSchema).
//
// It must not know about HTTP, the attestation protocol, metrics, tracing or configuration files: it takes a
// URL and plain values, and returns errors that name what is wrong. Database passwords never leave it: every
// error and log line shows the URL through RedactURL.
package enroll

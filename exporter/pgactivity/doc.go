// Package pgactivity samples the verifier's PostgreSQL database while a run is going on and exposes what it sees
// as attestload_pg_* metrics: backends by state and wait event, the oldest transaction and query, the most frequent
// normalised query texts among the backends' current or last statements (a fixed top N), pg_stat_database counters, and locks by mode.
//
// It uses one dedicated connection, never a pool, with a timeout on every query, so sampling adds one backend and
// a few cheap catalogue reads to a busy server. A failing sample is counted, logged once per failing streak, and
// retried with backoff; it never stops or slows the run.
//
// This package must not know the daemon, the verifier's tables or what attestload writes into them; it reads
// only PostgreSQL's statistics views. Query texts are normalised (literals removed) before they become labels.
package pgactivity

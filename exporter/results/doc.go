// Package results writes the run's results file, results/<YYYYmmddHHMMSS>.jsonl.zst (or .jsonl without
// compression; one record.Record per line, the layout of docs/results-and-report.md), or its rotated parts
// <stamp>.partNNNN.jsonl.zst, and its sidecar <stamp>.run.json describing the run. A run that starts in the same
// second as another one in the same directory writes <stamp>-<run_id>.jsonl.zst and <stamp>-<run_id>.run.json.
//
// The writer is a Sink: it buffers lines in memory, flushes them whole at least every FlushInterval and on Close,
// and fsyncs on Close, so a crash loses at most the line being written and memory stays bounded however long the
// run. It knows nothing of schedulers, HTTP or metrics; write failures are reported through a callback and counters.
package results

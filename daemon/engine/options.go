package engine

import (
	"log/slog"

	"github.com/attestload/attestload/attestation/record"
)

// Option configures an Engine.
type Option func(*options)

type options struct {
	lossless  []Sink
	lossy     []Sink
	stages    []func(downstream Sink) Sink
	observer  Observer
	logger    *slog.Logger
	inBound   int
	sinkBound int
	onRecord  func(*record.Record)
	errDetail func() string
}

// WithSink adds a sink that receives every record through its own bounded queue; when it falls behind, records
// are dropped for it and counted (Fanout.Dropped). Metrics sinks go here.
func WithSink(s Sink) Option { return func(o *options) { o.lossy = append(o.lossy, s) } }

// WithResultsSink adds a sink that must see every record (the JSONL writer). It may apply back-pressure; see
// Fanout.
func WithResultsSink(s Sink) Option { return func(o *options) { o.lossless = append(o.lossless, s) } }

// WithStage puts a stage between the cycles and the fan-out: wrap receives the fan-out and returns the Sink the
// engine feeds. The verdict watcher plugs in here (it holds a record until its verdict is known, then forwards).
// Stages added later are closer to the cycles. The engine closes the outermost stage first, then the fan-out.
func WithStage(wrap func(downstream Sink) Sink) Option {
	return func(o *options) { o.stages = append(o.stages, wrap) }
}

// WithObserver sets the receiver of scheduler events (live metrics).
func WithObserver(obs Observer) Option { return func(o *options) { o.observer = obs } }

// WithLogger sets the logger; the default discards.
func WithLogger(l *slog.Logger) Option { return func(o *options) { o.logger = l } }

// WithQueueBounds sets the fan-out's input bound and per-sink bound, in records.
func WithQueueBounds(in, perSink int) Option {
	return func(o *options) { o.inBound, o.sinkBound = in, perSink }
}

// WithTransportErrorDetail gives the engine the text of the last transport error (the x509 detail of a TLS
// failure, say), for the warning it logs when the verifier becomes unreachable. Records keep only the error class.
func WithTransportErrorDetail(f func() string) Option { return func(o *options) { o.errDetail = f } }

// WithRecordHook is for the run's own bookkeeping (progress, verbose log): f is called with every finished record
// on the cycle's goroutine, before the record enters the sinks, so it must be quick.
func WithRecordHook(f func(*record.Record)) Option { return func(o *options) { o.onRecord = f } }

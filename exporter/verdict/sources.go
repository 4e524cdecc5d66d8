package verdict

import (
	"context"

	"github.com/attestload/attestload/attestation/record"
)

// SourceFunc adapts a per-attestation lookup, such as the simulated verifier's
// (*Verifier).Verdict(agentID, index) (evaluation, failureReason string, done, ok bool), to a Source. done false
// means still pending; ok false means the attestation is unknown or has left the lookup's history, so its verdict
// can never be learned and it resolves as unknown.
type SourceFunc func(agentID string, index int) (evaluation, failureReason string, done, ok bool)

// Resolve implements Source.
func (f SourceFunc) Resolve(ctx context.Context, keys []Key) (map[Key]Result, error) {
	out := make(map[Key]Result)
	for _, k := range keys {
		if err := ctx.Err(); err != nil {
			return out, err
		}
		ev, reason, done, ok := f(k.AgentID, k.Index)
		switch {
		case !ok:
			out[k] = Result{Evaluation: record.EvaluationUnknown}
		case done:
			out[k] = result(ev, reason)
		}
	}
	return out, nil
}

// result normalises a verifier evaluation: anything but pass or fail (e.g. a column value this version does not
// know) is reported as unknown rather than invented.
func result(evaluation, reason string) Result {
	r := Result{Evaluation: record.EvaluationUnknown}
	switch evaluation {
	case record.EvaluationPass, record.EvaluationFail:
		r.Evaluation = evaluation
	}
	if reason != "" {
		r.FailureReason = &reason
	}
	return r
}

package verdict

import (
	"context"
	"errors"
	"fmt"

	"github.com/jackc/pgx/v5"

	"github.com/attestload/attestload/attestation/record"
)

// Querier is the part of a pgx pool or connection the database source uses.
type Querier interface {
	Query(ctx context.Context, sql string, args ...any) (pgx.Rows, error)
}

// DBOptions tune a DBSource.
type DBOptions struct {
	BatchSize int // agents per query; 0 means 1000
}

// DBSource reads verdicts from the verifier's attestations table.
type DBSource struct {
	q     Querier
	batch int
}

// NewDBSource returns a Source that polls the verifier's database through q (a *pgxpool.Pool in the daemon).
func NewDBSource(q Querier, opts DBOptions) (*DBSource, error) {
	if q == nil {
		return nil, errors.New("verdict: database source needs a connection pool")
	}
	if opts.BatchSize < 0 {
		return nil, fmt.Errorf("verdict: batch size %d is negative", opts.BatchSize)
	}
	if opts.BatchSize == 0 {
		opts.BatchSize = 1000
	}
	return &DBSource{q: q, batch: opts.BatchSize}, nil
}

// The query reads, for each agent with pending attestations, its rows from the oldest pending index on: the
// pending rows themselves and the later ones that explain a vanished row. The (agent_id, index) primary key
// serves it; an agent's older rows (failed attestations are kept forever) are never read.
const dbQuery = `SELECT a.agent_id, a.index, a.evaluation, coalesce(a.failure_reason, '')
FROM attestations a
JOIN unnest($1::varchar[], $2::int[]) AS p(agent_id, min_index)
  ON a.agent_id = p.agent_id AND a.index >= p.min_index`

type row struct {
	index      int
	evaluation string
	reason     string
}

// Resolve implements Source. A pending row that is gone is resolved as pass when a later attestation of the same
// agent exists and passed: the verifier deletes an attestation only after it passed and its successor passed
// (protocol spec §5.3), so a successor's pass proves the vanished one passed too. A row that is gone with no
// passed successor (e.g. the agent was cleaned up) can never be read again and resolves as unknown.
func (s *DBSource) Resolve(ctx context.Context, keys []Key) (map[Key]Result, error) {
	byAgent := make(map[string][]int)
	for _, k := range keys {
		byAgent[k.AgentID] = append(byAgent[k.AgentID], k.Index)
	}
	agents := make([]string, 0, len(byAgent))
	for a := range byAgent {
		agents = append(agents, a)
	}
	out := make(map[Key]Result, len(keys))
	for start := 0; start < len(agents); start += s.batch {
		batch := agents[start:min(start+s.batch, len(agents))]
		mins := make([]int32, len(batch))
		for i, a := range batch {
			m := byAgent[a][0]
			for _, idx := range byAgent[a][1:] {
				m = min(m, idx)
			}
			mins[i] = int32(m)
		}
		rows, err := s.q.Query(ctx, dbQuery, batch, mins)
		if err != nil {
			return out, fmt.Errorf("verdict: query attestations: %w", err)
		}
		seen := make(map[string][]row, len(batch))
		var r row
		var agent string
		_, err = pgx.ForEachRow(rows, []any{&agent, &r.index, &r.evaluation, &r.reason}, func() error {
			seen[agent] = append(seen[agent], r)
			return nil
		})
		if err != nil {
			return out, fmt.Errorf("verdict: read attestations: %w", err)
		}
		for _, a := range batch {
			for _, idx := range byAgent[a] {
				if res, ok := settle(seen[a], idx); ok {
					out[Key{AgentID: a, Index: idx}] = res
				}
			}
		}
	}
	return out, nil
}

// settle decides one pending attestation from its agent's rows at or after it.
func settle(rows []row, index int) (Result, bool) {
	laterPass := false
	for _, r := range rows {
		if r.index == index {
			if r.evaluation == "pending" {
				return Result{}, false
			}
			return result(r.evaluation, r.reason), true
		}
		if r.index > index && r.evaluation == record.EvaluationPass {
			laterPass = true
		}
	}
	if laterPass {
		return Result{Evaluation: record.EvaluationPass}, true
	}
	return Result{Evaluation: record.EvaluationUnknown}, true
}

package simverifier

import (
	"context"
	"encoding/base64"
	"encoding/hex"
	"encoding/json"
	"errors"
	"fmt"
	"log/slog"
	"strings"
	"time"

	"github.com/jackc/pgx/v5"
	"github.com/jackc/pgx/v5/pgxpool"
)

// database is PostgreSQL mode: agents and policies come from verifiermain/allowlists/mbpolicies, and the
// simulator writes attestations, evidence_items and sessions rows the way the real verifier does, so it can stand
// in for one on a shared database. Write failures are logged and do not fail requests (the state in memory stays
// authoritative for the protocol); reads of a missing agent fall back to the database so that agents enrolled
// while the simulator runs are found.
type database struct {
	pool *pgxpool.Pool
	log  *slog.Logger
}

// dbTimeout bounds each database statement so that a stuck database cannot hold a worker forever.
const dbTimeout = 10 * time.Second

// UseDatabase switches the verifier to PostgreSQL mode on an open pool (Config.DatabaseURL is the usual way; this
// is for callers that manage the pool). It loads every enrolled agent and returns how many were loaded.
func (v *Verifier) UseDatabase(ctx context.Context, pool *pgxpool.Pool) (int, error) {
	v.db = &database{pool: pool, log: v.log}
	return v.LoadAgents(ctx)
}

// LoadAgents (re)reads every agent of verifiermain with its policies, and the IMA and clock state its next
// attestation needs from the attestations already in the database.
func (v *Verifier) LoadAgents(ctx context.Context) (int, error) {
	if v.db == nil {
		return 0, errors.New("load agents: not in database mode")
	}
	ids, err := v.db.agentIDs(ctx)
	if err != nil {
		return 0, err
	}
	n := 0
	for _, id := range ids {
		if err := v.loadAgent(ctx, id); err != nil {
			// One malformed row must not stop the others; it is named in the log.
			v.log.Warn("agent not loaded from database", "agent_id", id, "err", err)
			continue
		}
		n++
	}
	return n, nil
}

func (d *database) agentIDs(ctx context.Context) ([]string, error) {
	ctx, cancel := context.WithTimeout(ctx, dbTimeout*6)
	defer cancel()
	rows, err := d.pool.Query(ctx, `SELECT agent_id FROM verifiermain ORDER BY agent_id`)
	if err != nil {
		return nil, fmt.Errorf("list agents: %w", err)
	}
	ids, err := pgx.CollectRows(rows, pgx.RowTo[string])
	if err != nil {
		return nil, fmt.Errorf("list agents: %w", err)
	}
	return ids, nil
}

// loadAgent reads one agent into memory, enrolling it with its policies and restoring its attestation state.
func (v *Verifier) loadAgent(ctx context.Context, id string) error {
	ctx, cancel := context.WithTimeout(ctx, dbTimeout)
	defer cancel()
	var (
		akB64, tpmPolicy, hashAlgs, signAlgs, imaPolicy, mbPolicy *string
		generator, count, failures                                *int
		imaID, mbID                                               *int
	)
	err := v.db.pool.QueryRow(ctx, `
		SELECT v.ak_tpm, v.tpm_policy, v.accept_tpm_hash_algs, v.accept_tpm_signing_algs, v.ima_policy_id,
		       v.mb_policy_id, v.attestation_count, v.consecutive_attestation_failures,
		       a.ima_policy, a.generator, m.mb_policy
		FROM verifiermain v
		LEFT JOIN allowlists a ON a.id = v.ima_policy_id
		LEFT JOIN mbpolicies m ON m.id = v.mb_policy_id
		WHERE v.agent_id = $1`, id).Scan(&akB64, &tpmPolicy, &hashAlgs, &signAlgs, &imaID, &mbID, &count, &failures,
		&imaPolicy, &generator, &mbPolicy)
	if err != nil {
		return fmt.Errorf("read agent: %w", err)
	}
	if akB64 == nil {
		return errors.New("ak_tpm is NULL")
	}
	ak, err := base64.StdEncoding.DecodeString(*akB64)
	if err != nil {
		return fmt.Errorf("ak_tpm is not base64: %w", err)
	}
	if tpmPolicy == nil {
		return errors.New("tpm_policy is NULL (the real verifier crashes on it)")
	}
	if imaID == nil || mbID == nil {
		return errors.New("ima_policy_id or mb_policy_id is NULL (the real verifier crashes after the 202)")
	}
	spec := AgentSpec{ID: id, AKPublic: ak, MBPolicy: mbPolicy}
	if spec.TPMPolicy, err = ParseTPMPolicy(*tpmPolicy); err != nil {
		return err
	}
	for _, l := range []struct {
		text *string
		dst  *[]string
		name string
	}{{hashAlgs, &spec.AcceptHashAlgs, "accept_tpm_hash_algs"}, {signAlgs, &spec.AcceptSignAlgs, "accept_tpm_signing_algs"}} {
		if l.text != nil {
			if err := json.Unmarshal([]byte(*l.text), l.dst); err != nil {
				return fmt.Errorf("%s is not a JSON list: %w", l.name, err)
			}
		}
	}
	if generator != nil && *generator > 1 {
		if imaPolicy == nil {
			return errors.New("allowlists.ima_policy is NULL with generator > 1")
		}
		spec.IMAGenerator, spec.IMAPolicyJSON = *generator, []byte(*imaPolicy)
	}
	if err := v.EnrollAgent(spec); err != nil {
		return err
	}
	a := v.agentMem(id)
	if a == nil {
		return nil
	}
	a.mu.Lock()
	defer a.mu.Unlock()
	if count != nil {
		a.attestationCount = *count
	}
	if failures != nil {
		a.consecutiveFailures = *failures
	}
	return v.db.restoreState(ctx, a)
}

// restoreState sets the next index, the row count, the last passed attestation's IMA state and the last
// authenticated clock from the attestations already stored. Called with a.mu held.
func (d *database) restoreState(ctx context.Context, a *agent) error {
	var maxIndex *int
	if err := d.pool.QueryRow(ctx, `SELECT max(index), count(*) FROM attestations WHERE agent_id = $1`, a.id).
		Scan(&maxIndex, &a.rows); err != nil {
		return fmt.Errorf("read attestations: %w", err)
	}
	if maxIndex != nil {
		a.nextIndex = *maxIndex + 1
	}
	rows, err := d.pool.Query(ctx, `
		SELECT t.index, t.evaluation, coalesce(t.failure_reason, ''), t.system_info__boot_time,
		       e.evidence_type, coalesce(e.data__meta, ''), coalesce(e.chosen_parameters__starting_offset, 0),
		       coalesce(e.results__certified_entry_count, 0)
		FROM attestations t JOIN evidence_items e ON e.agent_id = t.agent_id AND e.attestation_index = t.index
		WHERE t.agent_id = $1 AND t.stage = 'verification_complete'
		ORDER BY t.index DESC, e.id`, a.id)
	if err != nil {
		return fmt.Errorf("read evidence: %w", err)
	}
	defer rows.Close()
	for rows.Next() {
		var (
			index, offset, certified int
			eval, reason, boot, typ  string
			meta                     string
		)
		if err := rows.Scan(&index, &eval, &reason, &boot, &typ, &meta, &offset, &certified); err != nil {
			return fmt.Errorf("read evidence: %w", err)
		}
		var m struct {
			PCRs      map[string]map[string]string `json:"pcrs"`
			ClockInfo *clockInfo                   `json:"clock_info"`
		}
		if typ == "tpm_quote" && meta != "" {
			_ = json.Unmarshal([]byte(meta), &m)
		}
		if typ == "tpm_quote" && !a.hasPrevAuth && reason != FailureBrokenEvidenceChain && m.ClockInfo != nil {
			a.prevAuth, a.hasPrevAuth = *m.ClockInfo, true
		}
		if eval != evalPass {
			continue
		}
		if a.passed == nil {
			bt, _ := parseBootTime(boot)
			a.passed = &passedState{index: index, bootTime: bt, hadPrev: true}
		}
		if a.passed.index != index {
			continue
		}
		switch typ {
		case "ima_log":
			a.passed.startingOffset, a.passed.certified = offset, certified
		case "tpm_quote":
			for _, bank := range m.PCRs {
				if s, ok := bank["10"]; ok {
					a.passed.pcr10, _ = hex.DecodeString(strings.TrimPrefix(s, "0x"))
				}
			}
		}
	}
	return rows.Err()
}

func (d *database) exec(ctx context.Context, what string, fn func(ctx context.Context, tx pgx.Tx) error) {
	ctx, cancel := context.WithTimeout(ctx, dbTimeout)
	defer cancel()
	if err := pgx.BeginFunc(ctx, d.pool, func(tx pgx.Tx) error { return fn(ctx, tx) }); err != nil {
		d.log.Error("database write failed", "what", what, "err", err)
	}
}

// saveSession writes the session row of a passed PoP, replacing the agent's other sessions.
func (d *database) saveSession(ctx context.Context, p *pendingSession, now, expires time.Time, message, signature string) {
	attest, _ := decodeBinary(message)
	sig, _ := decodeBinary(signature)
	d.exec(context.WithoutCancel(ctx), "session", func(ctx context.Context, tx pgx.Tx) error {
		if _, err := tx.Exec(ctx, `DELETE FROM sessions WHERE agent_id = $1`, p.agentID); err != nil {
			return err
		}
		_, err := tx.Exec(ctx, `INSERT INTO sessions (session_id, token_hash, token_salt, agent_id, active, nonce,
			hash_algorithm, signing_scheme, ak_attest, ak_sign, nonce_created_at, nonce_expires_at, pop_received_at,
			token_expires_at) VALUES ($1,$2,$3,$4,true,$5,'sha256','rsassa',$6,$7,$8,$9,$10,$11)`,
			p.id, p.tokenHash, p.tokenSalt, p.agentID, p.nonce, attest, sig, timestamp(p.createdAt),
			timestamp(p.expiresAt), timestamp(now), timestamp(expires))
		return err
	})
}

func jsonText(v any) *string {
	if v == nil {
		return nil
	}
	b, err := json.Marshal(v)
	if err != nil {
		return nil
	}
	s := string(b)
	return &s
}

// saveCreated writes the attestation row and one evidence_items row per requested item.
func (d *database) saveCreated(ctx context.Context, agentID string, att *attestation) {
	d.exec(context.WithoutCancel(ctx), "attestation create", func(ctx context.Context, tx pgx.Tx) error {
		if _, err := tx.Exec(ctx, `INSERT INTO attestations (agent_id, index, stage, evaluation,
			system_info__boot_time, capabilities_received_at, challenges_expire_at) VALUES ($1,$2,$3,$4,$5,$6,$7)`,
			agentID, att.index, att.stage, att.evaluation, timestamp(att.bootTime),
			timestamp(att.capabilitiesReceivedAt), timestamp(att.challengesExpireAt)); err != nil {
			return err
		}
		for _, it := range att.items {
			c, _, _ := decodeObject(it.capabilities)
			var challenge []byte
			var scheme, hashAlg, selected, certKey *string
			var offset *int
			var format string
			switch it.typ {
			case "tpm_quote":
				challenge = it.challenge
				scheme, hashAlg = &it.signScheme, &it.hashAlg
				selected, certKey = jsonText(it.chosenParameters()["selected_subjects"]), rawText(it.certKey)
			case "ima_log":
				o := it.startingOffset
				offset, format = &o, "text/plain"
			default:
				format = "application/octet-stream"
			}
			var formatPtr *string
			if format != "" {
				formatPtr = &format
			}
			cv, _ := asString(c["component_version"])
			var entryCount *int
			if n, ok := asInt(c["entry_count"]); ok {
				entryCount = &n
			}
			partial, hasPartial := asBool(c["supports_partial_access"])
			appendable, hasAppendable := asBool(c["appendable"])
			if _, err := tx.Exec(ctx, `INSERT INTO evidence_items (agent_id, attestation_index, evidence_class,
				evidence_type, capabilities__component_version, capabilities__signature_schemes,
				capabilities__hash_algorithms, capabilities__available_subjects, capabilities__certification_keys,
				capabilities__entry_count, capabilities__supports_partial_access, capabilities__appendable,
				capabilities__formats, chosen_parameters__challenge, chosen_parameters__signature_scheme,
				chosen_parameters__hash_algorithm, chosen_parameters__selected_subjects,
				chosen_parameters__certification_key, chosen_parameters__starting_offset, chosen_parameters__format)
				VALUES ($1,$2,$3,$4,$5,$6,$7,$8,$9,$10,$11,$12,$13,$14,$15,$16,$17,$18,$19,$20)`,
				agentID, att.index, it.class, it.typ, nullString(cv), jsonText(c["signature_schemes"]),
				jsonText(c["hash_algorithms"]), jsonText(c["available_subjects"]), jsonText(c["certification_keys"]),
				entryCount, nullBool(partial, hasPartial), nullBool(appendable, hasAppendable),
				jsonText(c["formats"]), challenge, scheme, hashAlg, selected, certKey, offset, formatPtr); err != nil {
				return err
			}
		}
		return nil
	})
}

func rawText(b json.RawMessage) *string {
	if b == nil {
		return nil
	}
	s := string(b)
	return &s
}

func nullString(s string) *string {
	if s == "" {
		return nil
	}
	return &s
}

func nullBool(b, present bool) *bool {
	if !present {
		return nil
	}
	return &b
}

// saveEvidence records the PATCH: stage, evidence_received_at and the submitted data.
func (d *database) saveEvidence(ctx context.Context, agentID string, att *attestation) {
	d.exec(context.WithoutCancel(ctx), "attestation evidence", func(ctx context.Context, tx pgx.Tx) error {
		if _, err := tx.Exec(ctx, `UPDATE attestations SET stage = $3, evidence_received_at = $4
			WHERE agent_id = $1 AND index = $2`, agentID, att.index, att.stage, timestamp(att.evidenceReceivedAt)); err != nil {
			return err
		}
		for _, it := range att.items {
			var subject, entries *string
			var message, signature []byte
			var entryCount *int
			switch it.typ {
			case "tpm_quote":
				s, _ := asString(it.data["subject_data"])
				subject = &s
				ms, _ := asString(it.data["message"])
				ss, _ := asString(it.data["signature"])
				message, _ = decodeBinary(ms)
				signature, _ = decodeBinary(ss)
			default:
				s, _ := asString(it.data["entries"])
				entries = &s
				if it.typ == "ima_log" {
					n := strings.Count(s, "\n")
					entryCount = &n
				}
			}
			var meta *string
			if it.meta != nil {
				m := string(it.meta)
				meta = &m
			}
			if _, err := tx.Exec(ctx, `UPDATE evidence_items SET data__subject_data = $4, data__message = $5,
				data__signature = $6, data__entry_count = $7, data__entries = $8, data__meta = $9
				WHERE agent_id = $1 AND attestation_index = $2 AND evidence_type = $3`,
				agentID, att.index, it.typ, subject, message, signature, entryCount, entries, meta); err != nil {
				return err
			}
		}
		return nil
	})
}

// saveVerdict records the verification result and the verifiermain updates of tpm_engine.
func (d *database) saveVerdict(ctx context.Context, agentID string, att *attestation, o outcome, count, failures int, now time.Time) {
	d.exec(ctx, "attestation verdict", func(ctx context.Context, tx pgx.Tx) error {
		if _, err := tx.Exec(ctx, `UPDATE attestations SET stage = $3, evaluation = $4, failure_reason = $5
			WHERE agent_id = $1 AND index = $2`, agentID, att.index, att.stage, att.evaluation,
			nullString(att.failureReason)); err != nil {
			return err
		}
		for _, it := range att.items {
			if it.typ != "ima_log" {
				continue
			}
			if _, err := tx.Exec(ctx, `UPDATE evidence_items SET results__certified_entry_count = $3
				WHERE agent_id = $1 AND attestation_index = $2 AND evidence_type = 'ima_log'`,
				agentID, att.index, it.certified); err != nil {
				return err
			}
		}
		unix := now.Unix()
		var err error
		if o.reason == "" {
			_, err = tx.Exec(ctx, `UPDATE verifiermain SET attestation_count = $2, accept_attestations = true,
				operational_state = CASE WHEN operational_state IS NULL OR operational_state = 1 THEN 3 ELSE operational_state END,
				last_received_quote = $3, last_successful_attestation = $3,
				consecutive_attestation_failures = $4 WHERE agent_id = $1`, agentID, count, unix, failures)
		} else {
			_, err = tx.Exec(ctx, `UPDATE verifiermain SET consecutive_attestation_failures = $2,
				accept_attestations = true, last_received_quote = $3 WHERE agent_id = $1`, agentID, failures, unix)
		}
		return err
	})
}

// deleteAttestation is the rolling deletion of the previous passed attestation and its evidence items.
func (d *database) deleteAttestation(ctx context.Context, agentID string, index int) {
	d.exec(ctx, "attestation rolling delete", func(ctx context.Context, tx pgx.Tx) error {
		if _, err := tx.Exec(ctx, `DELETE FROM evidence_items WHERE agent_id = $1 AND attestation_index = $2`, agentID, index); err != nil {
			return err
		}
		_, err := tx.Exec(ctx, `DELETE FROM attestations WHERE agent_id = $1 AND index = $2`, agentID, index)
		return err
	})
}

package enroll

import (
	"context"
	"crypto/rand"
	"crypto/sha256"
	"encoding/base64"
	"encoding/binary"
	"encoding/hex"
	"encoding/json"
	"errors"
	"fmt"
	"math"
	"regexp"
	"slices"
	"strconv"

	"github.com/jackc/pgx/v5"
	"github.com/jackc/pgx/v5/pgconn"
	"github.com/jackc/pgx/v5/pgxpool"
)

// DefaultPrefix starts every agent id and policy name attestload writes unless the plan says otherwise.
const DefaultPrefix = "attestload-"

// Limits from the verifier's schema.
const (
	maxAgentIDLen = 80  // verifiermain.agent_id VARCHAR(80)
	maxAKLen      = 500 // verifiermain.ak_tpm VARCHAR(500)
	maxPrefixLen  = 40  // leaves room for the run id and a seven-digit index
)

var (
	prefixPattern = regexp.MustCompile(`^[A-Za-z0-9._-]+$`)
	runIDPattern  = regexp.MustCompile(`^[a-z0-9]{1,16}$`)
)

// Plan describes one run's enrollment: Count agents with ids Prefix+RunID+"-"+index for index FirstIndex ..
// FirstIndex+Count-1, all sharing one IMA policy row and one measured-boot row (measured boot off unless MBPolicy
// is set).
type Plan struct {
	// Prefix starts every id and policy name; DefaultPrefix when empty. Letters, digits, '.', '_' and '-'.
	Prefix string
	// RunID marks every row of the run; NewRunID() when empty. 1 to 16 lower-case letters and digits.
	RunID string
	// Count is the number of agents to enroll (at least 1).
	Count int
	// FirstIndex is the index of the first agent, so that shards of one fleet get disjoint ids.
	FirstIndex int
	// Keys returns agent index i's AK as stored in verifiermain.ak_tpm: standard base64 of a TPM2B_PUBLIC.
	// It is called once per agent with the absolute index (FirstIndex <= i < FirstIndex+Count).
	Keys func(i int) (akTPMBase64 string)
	// TPMPolicy maps PCR numbers ("0".."23") to acceptable hex digests; nil or empty means no PCR policy ({}).
	TPMPolicy map[string][]string
	// IMAPolicyJSON is the runtime policy document stored in allowlists.ima_policy (a JSON object).
	IMAPolicyJSON []byte
	// IMAGenerator is stored in allowlists.generator: the verifier checks IMA only when it is greater than 1.
	IMAGenerator int
	// MBPolicy is the measured-boot reference state stored in mbpolicies.mb_policy (a JSON object); nil stores
	// NULL, which turns measured boot off. With it the verifier requests a UEFI event log with every attestation.
	MBPolicy []byte
}

// Enrollment is what Enroll wrote: the exact rows that Cleanup will remove.
type Enrollment struct {
	Prefix        string
	RunID         string
	FirstIndex    int
	AgentIDs      []string // AgentIDs[k] is the agent with index FirstIndex+k
	IMAPolicyID   int32
	IMAPolicyName string
	MBPolicyID    int32
	MBPolicyName  string
}

// NewRunID returns a fresh random run id: 8 lower-case hex digits.
func NewRunID() string {
	var b [4]byte
	_, _ = rand.Read(b[:]) // crypto/rand.Read never fails on supported platforms
	return hex.EncodeToString(b[:])
}

// AgentID returns the agent id attestload uses for index i of a run.
func AgentID(prefix, runID string, i int) string {
	return prefix + runID + "-" + strconv.Itoa(i)
}

// IMAPolicyName returns the name of a run's shared IMA runtime-policy row (allowlists).
func IMAPolicyName(prefix, runID string) string { return prefix + runID + "-ima" }

// MBPolicyName returns the name of a run's shared measured-boot policy row (whose mb_policy is NULL unless the run
// has measured boot).
func MBPolicyName(prefix, runID string) string { return prefix + runID + "-mb" }

// runMarker is the meta_data value that proves a verifiermain row belongs to the run. The verifier ignores
// meta_data for push agents. The exact text is compared, so it is never parsed as JSON in SQL (rows of other
// tools may hold anything there).
func runMarker(runID string) string {
	return `{"attestload_run":"` + runID + `"}`
}

// markerRunPattern extracts the run id from a marker in SQL (POSIX regex).
const markerRunPattern = `^\{"attestload_run":"([a-z0-9]{1,16})"\}$`

// normalize fills defaults and checks every field, naming the one at fault.
func (p *Plan) normalize() error {
	if p.Prefix == "" {
		p.Prefix = DefaultPrefix
	}
	if err := validatePrefix(p.Prefix); err != nil {
		return err
	}
	if p.RunID == "" {
		p.RunID = NewRunID()
	}
	if !runIDPattern.MatchString(p.RunID) {
		return fmt.Errorf("run id %q: must be 1 to 16 lower-case letters and digits", p.RunID)
	}
	if p.Count < 1 {
		return fmt.Errorf("agent count %d: must be at least 1", p.Count)
	}
	if p.FirstIndex < 0 {
		return fmt.Errorf("first agent index %d: must not be negative", p.FirstIndex)
	}
	if p.FirstIndex > math.MaxInt-p.Count {
		return fmt.Errorf("first agent index %d plus count %d overflows", p.FirstIndex, p.Count)
	}
	if last := AgentID(p.Prefix, p.RunID, p.FirstIndex+p.Count-1); len(last) > maxAgentIDLen {
		return fmt.Errorf("agent id %q is %d characters, the verifier allows %d: shorten the prefix",
			last, len(last), maxAgentIDLen)
	}
	if p.Keys == nil {
		return errors.New("plan has no Keys function for the agents' AKs")
	}
	if len(p.IMAPolicyJSON) == 0 {
		return errors.New("IMA policy JSON is empty: give the runtime policy (an empty policy with generator 1 " +
			"for quote-only agents)")
	}
	var doc map[string]any
	if err := json.Unmarshal(p.IMAPolicyJSON, &doc); err != nil {
		return fmt.Errorf("IMA policy JSON is not a JSON object: %w", err)
	}
	if p.MBPolicy != nil {
		var mb map[string]any
		if err := json.Unmarshal(p.MBPolicy, &mb); err != nil {
			return fmt.Errorf("measured-boot policy is not a JSON object: %w", err)
		}
	}
	if p.IMAGenerator < 0 {
		return fmt.Errorf("IMA policy generator %d: must not be negative", p.IMAGenerator)
	}
	for pcr, digests := range p.TPMPolicy {
		n, err := strconv.Atoi(pcr)
		if err != nil || n < 0 || n > 23 || strconv.Itoa(n) != pcr {
			return fmt.Errorf("TPM policy key %q: must be a PCR number 0..23", pcr)
		}
		if len(digests) == 0 {
			return fmt.Errorf("TPM policy PCR %s: no acceptable digests", pcr)
		}
		for _, d := range digests {
			if _, err := hex.DecodeString(d); err != nil || d == "" {
				return fmt.Errorf("TPM policy PCR %s: digest %q is not hex", pcr, d)
			}
		}
	}
	return nil
}

func validatePrefix(prefix string) error {
	if prefix == "" {
		return errors.New("prefix is empty")
	}
	if len(prefix) > maxPrefixLen {
		return fmt.Errorf("prefix %q: longer than %d characters", prefix, maxPrefixLen)
	}
	if !prefixPattern.MatchString(prefix) {
		return fmt.Errorf("prefix %q: only letters, digits, '.', '_' and '-' are allowed", prefix)
	}
	return nil
}

// checkAK catches keys in the wrong encoding before the verifier does (it would only fail at the first quote):
// standard base64 whose bytes are a TPM2B (2-byte big-endian size, then exactly that many bytes).
// It returns the key's algorithm columns.
func checkAK(i int, ak string) (algorithmColumns, error) {
	if ak == "" {
		return algorithmColumns{}, fmt.Errorf("agent %d: AK is empty", i)
	}
	if len(ak) > maxAKLen {
		return algorithmColumns{}, fmt.Errorf("agent %d: AK is %d base64 characters, verifiermain.ak_tpm holds %d (RSA-2048 is 376)",
			i, len(ak), maxAKLen)
	}
	var buf [maxAKLen]byte
	n, err := base64.StdEncoding.Decode(buf[:], []byte(ak))
	if err != nil {
		return algorithmColumns{}, fmt.Errorf("agent %d: AK is not standard base64: %w", i, err)
	}
	raw := buf[:n]
	if len(raw) < 4 || int(binary.BigEndian.Uint16(raw)) != len(raw)-2 {
		return algorithmColumns{}, fmt.Errorf("agent %d: AK is not a TPM2B_PUBLIC (size field does not match %d bytes)", i, len(raw))
	}
	switch binary.BigEndian.Uint16(raw[2:]) {
	case tpmAlgRSA:
		return rsaColumns, nil
	case tpmAlgECC:
		return eccColumns, nil
	}
	return algorithmColumns{}, fmt.Errorf("agent %d: AK type 0x%04x is neither RSA (0x0001) nor ECC (0x0023)", i,
		binary.BigEndian.Uint16(raw[2:]))
}

// TPMT_PUBLIC types.
const (
	tpmAlgRSA = 0x0001
	tpmAlgECC = 0x0023
)

// algorithmColumns are the verifiermain columns that must match the AK's algorithm: the verifier picks the quote's
// signature scheme from accept_tpm_signing_algs among those the key can make (rsassa for RSA, ecdsa for ECC).
// accept_tpm_encryption_algs is not used in push mode; it names the key's algorithm as the tenant would.
type algorithmColumns struct{ signing, encryption string }

var (
	rsaColumns = algorithmColumns{signing: `["rsassa"]`, encryption: `["rsa"]`}
	eccColumns = algorithmColumns{signing: `["ecdsa"]`, encryption: `["ecc"]`}
)

// Enroll writes the plan's policy rows and agents in one transaction, so that a failure leaves nothing behind.
// Agents go in through COPY: 100,000 agents take seconds, not the minutes of row-by-row INSERTs.
//
// The verifier needs, per push agent (spec section 5.1): a base64 TPM2B_PUBLIC AK, a non-NULL tpm_policy,
// non-NULL ima_policy_id and mb_policy_id (NULL crashes verification after the 202), attestation_count 0
// (NULL crashes after the first pass) and accept_attestations true. ip, port and operational_state stay NULL,
// which is how the verifier recognises a push agent.
func Enroll(ctx context.Context, pool *pgxpool.Pool, plan Plan) (*Enrollment, error) {
	if err := plan.normalize(); err != nil {
		return nil, fmt.Errorf("enroll: %w", err)
	}
	if err := CheckSchema(ctx, pool); err != nil {
		return nil, fmt.Errorf("enroll: %w", err)
	}
	tpmPolicy := []byte("{}")
	if len(plan.TPMPolicy) > 0 {
		var err error
		if tpmPolicy, err = json.Marshal(plan.TPMPolicy); err != nil {
			return nil, fmt.Errorf("enroll: encode TPM policy: %w", err)
		}
	}
	sum := sha256.Sum256(plan.IMAPolicyJSON)
	e := &Enrollment{
		Prefix:        plan.Prefix,
		RunID:         plan.RunID,
		FirstIndex:    plan.FirstIndex,
		AgentIDs:      make([]string, 0, plan.Count),
		IMAPolicyName: IMAPolicyName(plan.Prefix, plan.RunID),
		MBPolicyName:  MBPolicyName(plan.Prefix, plan.RunID),
	}

	err := pgx.BeginFunc(ctx, pool, func(tx pgx.Tx) error {
		err := tx.QueryRow(ctx,
			`INSERT INTO allowlists (name, ima_policy, checksum, generator) VALUES ($1, $2, $3, $4) RETURNING id`,
			e.IMAPolicyName, string(plan.IMAPolicyJSON), hex.EncodeToString(sum[:]), plan.IMAGenerator,
		).Scan(&e.IMAPolicyID)
		if err != nil {
			return fmt.Errorf("insert IMA policy %q: %w", e.IMAPolicyName, explainWriteError(err))
		}
		var mbPolicy *string
		if plan.MBPolicy != nil {
			s := string(plan.MBPolicy)
			mbPolicy = &s
		}
		err = tx.QueryRow(ctx, `INSERT INTO mbpolicies (name, mb_policy) VALUES ($1, $2) RETURNING id`,
			e.MBPolicyName, mbPolicy).Scan(&e.MBPolicyID)
		if err != nil {
			return fmt.Errorf("insert measured-boot policy %q: %w", e.MBPolicyName, explainWriteError(err))
		}
		src := &agentRows{plan: &plan, e: e, tpmPolicy: string(tpmPolicy), marker: runMarker(plan.RunID)}
		n, err := tx.CopyFrom(ctx, pgx.Identifier{"verifiermain"}, agentColumns, src)
		if err != nil {
			if src.err != nil {
				return src.err
			}
			return fmt.Errorf("copy agents: %w", explainWriteError(err))
		}
		if n != int64(plan.Count) {
			return fmt.Errorf("copy agents: wrote %d rows, expected %d", n, plan.Count)
		}
		return nil
	})
	if err != nil {
		return nil, fmt.Errorf("enroll %d agents of run %s: %w", plan.Count, plan.RunID, err)
	}
	return e, nil
}

var agentColumns = []string{
	"agent_id", "ak_tpm", "tpm_policy", "accept_tpm_hash_algs", "accept_tpm_signing_algs",
	"accept_tpm_encryption_algs", "ima_policy_id", "mb_policy_id", "attestation_count", "accept_attestations",
	"meta_data",
}

// agentRows feeds COPY one agent at a time, so memory stays flat however many agents are enrolled.
type agentRows struct {
	plan      *Plan
	e         *Enrollment
	tpmPolicy string
	marker    string
	k         int
	row       []any
	err       error
}

func (r *agentRows) Next() bool {
	if r.err != nil || r.k >= r.plan.Count {
		return false
	}
	i := r.plan.FirstIndex + r.k
	r.k++
	ak := r.plan.Keys(i)
	cols, err := checkAK(i, ak)
	if err != nil {
		r.err = err
		return false
	}
	id := AgentID(r.plan.Prefix, r.plan.RunID, i)
	r.e.AgentIDs = append(r.e.AgentIDs, id)
	r.row = []any{id, ak, r.tpmPolicy, `["sha256"]`, cols.signing, cols.encryption,
		r.e.IMAPolicyID, r.e.MBPolicyID, int32(0), true, r.marker}
	return true
}

func (r *agentRows) Values() ([]any, error) { return r.row, nil }

func (r *agentRows) Err() error { return r.err }

// explainWriteError adds the likely cause to constraint violations that a user can act on.
func explainWriteError(err error) error {
	var pgErr *pgconn.PgError
	if !errors.As(err, &pgErr) {
		return err
	}
	switch {
	case pgErr.Code == "23505" && pgErr.ConstraintName == "verifiermain_pkey":
		return fmt.Errorf("%w (an agent with this id is already enrolled: leftovers of an earlier run with the same "+
			"run id? remove them with attestload cleanup)", err)
	case pgErr.Code == "23505" && slices.Contains([]string{"uniq_allowlists0name", "uniq_mbpolicies_name"}, pgErr.ConstraintName):
		return fmt.Errorf("%w (the run id is already in use: pick another or clean the old run up)", err)
	case pgErr.Code == "42P01":
		return fmt.Errorf("%w: %w", ErrSchemaMissing, err)
	case pgErr.Code == "42501":
		return fmt.Errorf("%w (the database user lacks INSERT/DELETE rights on the verifier's tables)", err)
	}
	return err
}

package conformance

import (
	"bytes"
	"context"
	"crypto/sha256"
	"encoding/base64"
	"encoding/hex"
	"encoding/json"
	"errors"
	"fmt"
	"io"
	"net/http"
	"slices"
	"strconv"
	"strings"
	"time"

	"github.com/jackc/pgx/v5/pgxpool"

	"github.com/attestload/attestload/attestation/client"
	"github.com/attestload/attestload/attestation/enroll"
	"github.com/attestload/attestload/attestation/evidence"
	"github.com/attestload/attestload/attestation/measuredboot"
	"github.com/attestload/attestload/attestation/softtpm"
)

// Target is a verifier under test: its URL and CA, the database it reads agents from (the exchanges enroll their
// agents there), and a loopback source address of the case's own (the verifier rate-limits session creation per
// client IP for its whole lifetime).
type Target struct {
	URL    string
	CAFile string
	Pool   *pgxpool.Pool
	// Source is the client's source address for the case, e.g. 127.0.40.1; empty lets the kernel choose.
	Source string
	// Keys are attestation keys to use (at least two: one agent's and "another key").
	Keys []*softtpm.Key
	// QuoteInterval is the verifier's quote_interval in seconds (the exchanges wait it out between attestations).
	QuoteInterval int
}

// Answer is what a verifier said to the step under test: the HTTP status, the JSON:API error code, and, when the
// step was accepted evidence, the verdict it reached (from its attestations table).
type Answer struct {
	Status        int
	Code          string
	Evaluation    string
	FailureReason string
	// Detail is the error's detail text, for messages; it is not compared.
	Detail string
}

// Same reports whether a and b agree on everything but Detail.
func (a Answer) Same(b Answer) bool {
	a.Detail, b.Detail = "", ""
	return a == b
}

func (a Answer) String() string {
	s := strconv.Itoa(a.Status)
	if a.Code != "" {
		s += " " + a.Code
	}
	if a.Evaluation != "" {
		s += ", " + a.Evaluation
		if a.FailureReason != "" {
			s += " (" + a.FailureReason + ")"
		}
	}
	return s
}

// exchange is one scripted agent talking to a Target: raw requests, so that every field can be made wrong.
type exchange struct {
	ctx   context.Context
	t     Target
	http  *http.Client
	id    string
	key   *softtpm.Key
	en    *enroll.Enrollment
	token string

	// TPM state, kept here rather than in softtpm.TPM so that a case can replay a clock.
	clock      uint64
	resetCount uint32
	lastClock  softtpm.ClockInfo
	pcrs       [softtpm.NumPCRs][]byte

	bootTime time.Time
	log      *imaLog
	// Measured boot: the boot the agent's TPM went through (nil without), the UEFI log it sends (base64, a case
	// may change it) and whether its capabilities offer that log.
	boot      *measuredboot.Boot
	uefiLog   string
	offerUEFI bool

	// The open negotiation.
	index     int
	challenge []byte
	selected  []int
	offset    int
	requested []string // evidence types in the order requested
}

// imaLog is the agent's IMA log: ima-ng lines of files the policy lists (or not), with PCR 10 after each.
type imaLog struct {
	lines []string
	after [][]byte
}

func (l *imaLog) add(path string) {
	d := sha256.Sum256([]byte("conformance:" + path))
	l.addDigest(path, d[:])
}

// addDigest appends an entry measuring path with file digest d.
func (l *imaLog) addDigest(path string, d []byte) {
	line := evidence.FormatLine("sha256", d, path)
	e, _ := evidence.ParseLine(strings.TrimSuffix(line, "\n"))
	prev := make([]byte, sha256.Size)
	if n := len(l.after); n > 0 {
		prev = l.after[n-1]
	}
	l.lines = append(l.lines, line)
	l.after = append(l.after, evidence.Extend(prev, evidence.ExtendValue(e)))
}

func (l *imaLog) pcr10() []byte {
	if len(l.after) == 0 {
		return make([]byte, sha256.Size)
	}
	return l.after[len(l.after)-1]
}

// policyFiles is how many files the runtime policy allows; fileName(i) for i below it is in the policy.
const policyFiles = 64

func fileName(i int) string { return "/usr/bin/conformance-" + strconv.Itoa(i) }

func runtimePolicy() []byte {
	digests := map[string][]string{}
	for i := range policyFiles {
		d := sha256.Sum256([]byte("conformance:" + fileName(i)))
		digests[fileName(i)] = []string{fmt.Sprintf("%x", d)}
	}
	doc := map[string]any{
		"meta": map[string]any{"version": 1, "generator": evidence.GeneratorCompatible}, "release": 0,
		"digests": digests, "excludes": []string{}, "keyrings": map[string]any{},
		"ima":     map[string]any{"ignored_keyrings": []string{}, "log_hash_alg": "sha1", "dm_policy": nil},
		"ima-buf": map[string]any{}, "verification-keys": "",
	}
	b, _ := json.Marshal(doc)
	return b
}

// agentOptions shape an enrolled agent.
type agentOptions struct {
	noIMA        bool                // an agent without IMA (then a PCR policy makes the verifier ask for a quote)
	tpmPolicy    map[string][]string // verifiermain.tpm_policy
	measuredBoot bool                // the captured reference state in mbpolicies, the captured UEFI log sent
}

// newExchange enrolls an agent in the target's database (removed when ctx's case ends, by the returned cleanup)
// and prepares a client bound to the case's source address.
func newExchange(ctx context.Context, t Target, prefix string, o agentOptions) (*exchange, func(), error) {
	if len(t.Keys) < 2 {
		return nil, nil, errors.New("conformance: a target needs at least two keys")
	}
	tr, err := client.NewTransport(client.TLSOptions{CAFile: t.CAFile, LocalAddrs: sourceAddrs(t.Source)})
	if err != nil {
		return nil, nil, err
	}
	x := &exchange{ctx: ctx, t: t, key: t.Keys[0], log: &imaLog{},
		http: &http.Client{Transport: tr, Timeout: 60 * time.Second,
			CheckRedirect: func(*http.Request, []*http.Request) error { return http.ErrUseLastResponse }},
		clock: uint64(time.Now().UnixMilli()), bootTime: time.Now().Add(-time.Hour).UTC().Truncate(time.Second)}
	for i := range x.pcrs {
		x.pcrs[i] = make([]byte, sha256.Size)
	}
	for i := range 8 {
		x.log.add(fileName(i))
	}
	plan := enroll.Plan{Prefix: prefix, Count: 1, Keys: func(int) string { return x.key.PublicBase64() },
		IMAPolicyJSON: runtimePolicy(), IMAGenerator: evidence.GeneratorCompatible, TPMPolicy: o.tpmPolicy}
	if o.noIMA {
		plan.IMAPolicyJSON, plan.IMAGenerator = []byte(`{}`), evidence.GeneratorEmpty
		x.log = nil
	}
	if o.measuredBoot {
		if x.boot, err = measuredboot.Captured(); err != nil {
			tr.CloseIdleConnections()
			return nil, nil, err
		}
		plan.MBPolicy, x.uefiLog, x.offerUEFI = x.boot.Refstate(), x.boot.LogBase64(), true
		x.bootPCRs()
	}
	en, err := enroll.Enroll(ctx, t.Pool, plan)
	if err != nil {
		tr.CloseIdleConnections()
		return nil, nil, err
	}
	x.en, x.id = en, en.AgentIDs[0]
	cleanup := func() {
		tr.CloseIdleConnections()
		cctx, cancel := context.WithTimeout(context.Background(), time.Minute)
		defer cancel()
		_, _ = en.Cleanup(cctx, t.Pool)
	}
	return x, cleanup, nil
}

func sourceAddrs(s string) []string {
	if s == "" {
		return nil
	}
	return []string{s}
}

// call sends one request and returns the status, the error code (errors[0].code) and the body.
func (x *exchange) call(method, path string, body any, token string) (int, string, []byte, http.Header, error) {
	st, code, _, b, hdr, err := x.callDetail(method, path, body, token)
	return st, code, b, hdr, err
}

// callDetail is call that also returns errors[0].detail.
func (x *exchange) callDetail(method, path string, body any, token string) (int, string, string, []byte, http.Header, error) {
	var rd io.Reader
	if body != nil {
		b, err := json.Marshal(body)
		if err != nil {
			return 0, "", "", nil, nil, err
		}
		rd = bytes.NewReader(b)
	}
	req, err := http.NewRequestWithContext(x.ctx, method, x.t.URL+path, rd)
	if err != nil {
		return 0, "", "", nil, nil, err
	}
	req.Header.Set("Content-Type", "application/vnd.api+json")
	req.Header.Set("Accept", "application/json")
	if token != "" {
		req.Header.Set("Authorization", "Bearer "+token)
	}
	resp, err := x.http.Do(req)
	if err != nil {
		return 0, "", "", nil, nil, err
	}
	defer resp.Body.Close()
	b, err := io.ReadAll(io.LimitReader(resp.Body, 8<<20))
	if err != nil {
		return 0, "", "", nil, nil, err
	}
	var doc struct {
		Errors []struct {
			Code   any `json:"code"`
			Detail any `json:"detail"`
		} `json:"errors"`
	}
	code, detail := "", ""
	if json.Unmarshal(b, &doc) == nil && len(doc.Errors) > 0 {
		code, _ = doc.Errors[0].Code.(string)
		detail, _ = doc.Errors[0].Detail.(string)
	}
	return resp.StatusCode, code, detail, b, resp.Header, nil
}

// session opens a PoP session and proves possession with key (nil: the agent's own); a passing PoP stores the
// token. It answers the PATCH's status, code and evaluation.
func (x *exchange) session(key *softtpm.Key) (Answer, error) {
	if key == nil {
		key = x.key
	}
	st, code, body, _, err := x.call(http.MethodPost, "/v3.0/sessions", map[string]any{"data": map[string]any{
		"type": "session", "attributes": map[string]any{"agent_id": x.id,
			"authentication_supported": []any{map[string]any{"authentication_class": "pop", "authentication_type": "tpm_pop"}}}}}, "")
	if err != nil {
		return Answer{}, err
	}
	if st != http.StatusOK {
		return Answer{Status: st, Code: code}, nil
	}
	var created struct {
		Data struct {
			ID         string `json:"id"`
			Attributes struct {
				Requested []struct {
					Params struct {
						Challenge string `json:"challenge"`
					} `json:"chosen_parameters"`
				} `json:"authentication_requested"`
			} `json:"attributes"`
		} `json:"data"`
	}
	if err := json.Unmarshal(body, &created); err != nil || len(created.Data.Attributes.Requested) == 0 {
		return Answer{}, fmt.Errorf("session POST answer %s", body)
	}
	nonce, err := base64.StdEncoding.DecodeString(created.Data.Attributes.Requested[0].Params.Challenge)
	if err != nil {
		return Answer{}, err
	}
	x.clock++
	msg, err := softtpm.BuildCertifyAttest(softtpm.CertifyParams{QualifiedSigner: key.Name, ExtraData: nonce,
		Clock: softtpm.ClockInfo{Clock: x.clock, ResetCount: x.resetCount, Safe: true}, FirmwareVersion: softtpm.DefaultFirmwareVersion,
		CertifiedName: key.Name, QualifiedName: key.Name})
	if err != nil {
		return Answer{}, err
	}
	sig, err := softtpm.Sign(key, msg)
	if err != nil {
		return Answer{}, err
	}
	st, code, body, _, err = x.call(http.MethodPatch, "/v3.0/sessions/"+created.Data.ID, map[string]any{"data": map[string]any{
		"type": "session", "id": created.Data.ID, "attributes": map[string]any{"agent_id": x.id,
			"authentication_provided": []any{map[string]any{"authentication_class": "pop", "authentication_type": "tpm_pop",
				"data": map[string]any{"message": base64.StdEncoding.EncodeToString(msg),
					"signature": base64.StdEncoding.EncodeToString(sig)}}}}}}, "")
	if err != nil {
		return Answer{}, err
	}
	var pop struct {
		Data struct {
			Attributes struct {
				Evaluation string `json:"evaluation"`
				Token      string `json:"token"`
			} `json:"attributes"`
		} `json:"data"`
	}
	_ = json.Unmarshal(body, &pop)
	a := Answer{Status: st, Code: code, Evaluation: pop.Data.Attributes.Evaluation}
	if a.Evaluation == "pass" {
		x.token = pop.Data.Attributes.Token
	}
	return a, nil
}

// capabilities is the POST body: a quote over sha256 with the agent's AK, and the IMA log's entry count.
func (x *exchange) capabilities(entryCount int) map[string]any {
	all := make([]int, softtpm.NumPCRs)
	for i := range all {
		all[i] = i
	}
	supported := []any{map[string]any{"evidence_class": "certification", "evidence_type": "tpm_quote",
		"capabilities": map[string]any{"component_version": "2.0", "hash_algorithms": []string{"sha256"},
			"signature_schemes": []string{"rsassa"}, "available_subjects": map[string]any{"sha256": all},
			"certification_keys": []any{map[string]any{"key_class": "asymmetric", "key_algorithm": "rsa", "key_size": 2048,
				"server_identifier": "ak", "local_identifier": "att_local_identifier", "public": x.key.PublicBase64()}}}}}
	if x.log != nil {
		supported = append(supported, map[string]any{"evidence_class": "log", "evidence_type": "ima_log",
			"capabilities": map[string]any{"entry_count": entryCount, "supports_partial_access": true, "appendable": true,
				"formats": []string{"text/plain"}}})
	}
	if x.offerUEFI {
		supported = append(supported, map[string]any{"evidence_class": "log", "evidence_type": "uefi_log",
			"capabilities": map[string]any{"entry_count": x.boot.Events(), "supports_partial_access": false,
				"appendable": false, "formats": []string{"application/octet-stream"}}})
	}
	return map[string]any{"data": map[string]any{"type": "attestation", "attributes": map[string]any{
		"evidence_supported": supported, "system_info": map[string]any{"boot_time": x.bootTime.Format(time.RFC3339)}}}}
}

// create negotiates an attestation; a 201 stores the challenge, the selected PCRs and the IMA offset.
func (x *exchange) create() (Answer, error) {
	n := 0
	if x.log != nil {
		n = len(x.log.lines)
	}
	return x.createWith(x.id, x.capabilities(n))
}

func (x *exchange) createWith(agentID string, body map[string]any) (Answer, error) {
	st, code, detail, b, hdr, err := x.callDetail(http.MethodPost, "/v3.0/agents/"+agentID+"/attestations", body, x.token)
	if err != nil {
		return Answer{}, err
	}
	a := Answer{Status: st, Code: code, Detail: detail}
	if st != http.StatusCreated {
		return a, nil
	}
	var doc struct {
		Data struct {
			Attributes struct {
				Requested []struct {
					Type   string `json:"evidence_type"`
					Params struct {
						Challenge string           `json:"challenge"`
						Subjects  map[string][]int `json:"selected_subjects"`
						Offset    int              `json:"starting_offset"`
					} `json:"chosen_parameters"`
				} `json:"evidence_requested"`
			} `json:"attributes"`
		} `json:"data"`
	}
	if err := json.Unmarshal(b, &doc); err != nil {
		return a, fmt.Errorf("create answer: %w", err)
	}
	loc := hdr.Get("Location")
	idx, err := strconv.Atoi(loc[strings.LastIndexByte(loc, '/')+1:])
	if err != nil {
		return a, fmt.Errorf("create answer: Location %q", loc)
	}
	x.index, x.requested, x.selected, x.challenge, x.offset = idx, nil, nil, nil, 0
	for _, r := range doc.Data.Attributes.Requested {
		x.requested = append(x.requested, r.Type)
		switch r.Type {
		case "tpm_quote":
			if x.challenge, err = base64.StdEncoding.DecodeString(r.Params.Challenge); err != nil {
				return a, err
			}
			x.selected = slices.Sorted(slices.Values(r.Params.Subjects["sha256"]))
		case "ima_log":
			x.offset = r.Params.Offset
		}
	}
	return a, nil
}

// evidenceMods make the evidence wrong in one way.
type evidenceMods struct {
	nonce     []byte                  // quote this instead of the challenge
	sameClock bool                    // reuse the last quote's clock
	reorder   bool                    // send the requested items in reverse order
	pcrs      map[int][]byte          // PCR values to quote instead of the agent's
	mutate    func(items []any) []any // anything else
	noVerdict bool                    // answer at the 202, without waiting for the verdict
}

// evidence answers the open negotiation; a 202 is followed by waiting for the verdict.
func (x *exchange) evidence(m evidenceMods) (Answer, error) {
	x.clock++
	clock := softtpm.ClockInfo{Clock: x.clock, ResetCount: x.resetCount, Safe: true}
	if m.sameClock {
		clock = x.lastClock
	}
	pcrs := x.pcrs
	if x.log != nil {
		pcrs[10] = x.log.pcr10()
	}
	for i, v := range m.pcrs {
		pcrs[i] = v
	}
	values := make([][]byte, len(x.selected))
	for i, p := range x.selected {
		values[i] = pcrs[p]
	}
	nonce := x.challenge
	if m.nonce != nil {
		nonce = m.nonce
	}
	msg, err := softtpm.BuildQuoteAttest(softtpm.QuoteParams{QualifiedSigner: x.key.Name, ExtraData: nonce, Clock: clock,
		FirmwareVersion: softtpm.DefaultFirmwareVersion, Bank: softtpm.AlgSHA256, PCRs: x.selected, PCRValues: values})
	if err != nil {
		return Answer{}, err
	}
	x.lastClock = clock
	sig, err := softtpm.Sign(x.key, msg)
	if err != nil {
		return Answer{}, err
	}
	blob, err := softtpm.EncodePCRBlob(softtpm.AlgSHA256, x.selected, values)
	if err != nil {
		return Answer{}, err
	}
	var items []any
	for _, typ := range x.requested {
		switch typ {
		case "tpm_quote":
			items = append(items, map[string]any{"evidence_class": "certification", "evidence_type": "tpm_quote",
				"data": map[string]any{"subject_data": base64.StdEncoding.EncodeToString(blob),
					"message": base64.StdEncoding.EncodeToString(msg), "signature": base64.StdEncoding.EncodeToString(sig)}})
		case "ima_log":
			from := min(x.offset, len(x.log.lines))
			items = append(items, map[string]any{"evidence_class": "log", "evidence_type": "ima_log",
				"data": map[string]any{"entry_count": len(x.log.lines) - from, "entries": strings.Join(x.log.lines[from:], "")}})
		case "uefi_log":
			items = append(items, map[string]any{"evidence_class": "log", "evidence_type": "uefi_log",
				"data": map[string]any{"entries": x.uefiLog}})
		default:
			return Answer{}, fmt.Errorf("the verifier requested %s, which the exchange cannot provide", typ)
		}
	}
	if m.reorder {
		slices.Reverse(items)
	}
	if m.mutate != nil {
		items = m.mutate(items)
	}
	st, code, detail, _, _, err := x.callDetail(http.MethodPatch, "/v3.0/agents/"+x.id+"/attestations/latest", map[string]any{
		"data": map[string]any{"type": "attestation", "attributes": map[string]any{"evidence_collected": items}}}, x.token)
	if err != nil {
		return Answer{}, err
	}
	a := Answer{Status: st, Code: code, Detail: detail}
	if st != http.StatusAccepted || m.noVerdict {
		return a, nil
	}
	a.Evaluation, a.FailureReason, err = x.verdict(x.index)
	return a, err
}

// verdict waits until the verifier's attestations row of index is judged.
func (x *exchange) verdict(index int) (string, string, error) {
	deadline := time.Now().Add(90 * time.Second)
	for {
		var eval, reason string
		err := x.t.Pool.QueryRow(x.ctx, `SELECT evaluation, coalesce(failure_reason, '') FROM attestations
			WHERE agent_id = $1 AND index = $2`, x.id, index).Scan(&eval, &reason)
		if err == nil && eval != "pending" {
			return eval, reason, nil
		}
		if time.Now().After(deadline) {
			return "", "", fmt.Errorf("attestation %d of %s not judged within 90 s (last: %q, %v)", index, x.id, eval, err)
		}
		select {
		case <-x.ctx.Done():
			return "", "", x.ctx.Err()
		case <-time.After(100 * time.Millisecond):
		}
	}
}

// waitInterval waits out the verifier's quote_interval after accepted evidence.
func (x *exchange) waitInterval() {
	select {
	case <-x.ctx.Done():
	case <-time.After(time.Duration(x.t.QuoteInterval)*time.Second + 300*time.Millisecond):
	}
}

// pass runs a whole passing attestation (session first if there is no token) and fails unless it passes.
func (x *exchange) pass() error {
	if x.token == "" {
		a, err := x.session(nil)
		if err != nil {
			return err
		}
		if a.Evaluation != "pass" {
			return fmt.Errorf("session: %v", a)
		}
	}
	a, err := x.create()
	if err != nil {
		return err
	}
	if a.Status != http.StatusCreated {
		return fmt.Errorf("create: %v (%q)", a, a.Detail)
	}
	a, err = x.evidence(evidenceMods{})
	if err != nil {
		return err
	}
	if a.Evaluation != "pass" {
		return fmt.Errorf("evidence: %v (%q), want a pass", a, a.Detail)
	}
	return nil
}

// reboot models a reboot: a later boot_time, a TPM reset (counter up, PCRs cleared) and a log that restarts with
// n entries.
func (x *exchange) reboot(n int) {
	x.bootTime = x.bootTime.Add(30 * time.Minute)
	x.resetCount++
	for i := range x.pcrs {
		x.pcrs[i] = make([]byte, sha256.Size)
	}
	x.bootPCRs()
	x.log = &imaLog{}
	for i := range n {
		x.log.add(fileName(i))
	}
}

// bootPCRs sets the PCRs a measured boot leaves behind: the values the UEFI log replays to.
func (x *exchange) bootPCRs() {
	if x.boot == nil {
		return
	}
	for n, v := range x.boot.PCRs() {
		x.pcrs[n] = v
	}
}

// tamperUEFILog changes one byte of the sha256 digest of the log's first PCR 4 event (a boot application): the log
// still parses but no longer replays to the quoted PCR 4.
func (x *exchange) tamperUEFILog() error {
	raw, err := base64.StdEncoding.DecodeString(x.uefiLog)
	if err != nil {
		return err
	}
	l, err := measuredboot.Parse(raw)
	if err != nil {
		return err
	}
	for _, e := range l.Events {
		if e.PCR == 4 {
			if i := bytes.Index(raw, e.Digests[measuredboot.AlgSHA256]); i >= 0 {
				raw[i] ^= 0x01
				x.uefiLog = base64.StdEncoding.EncodeToString(raw)
				return nil
			}
		}
	}
	return errors.New("the UEFI log has no PCR 4 event")
}

// bootAggregateFirst restarts the IMA log with a boot_aggregate entry holding the UEFI log's sha256 aggregate of
// PCRs 0-9 (which the runtime policy does not list), followed by the usual 8 files.
func (x *exchange) bootAggregateFirst() error {
	aggs := measuredboot.BootAggregates(measuredboot.AlgSHA256, x.boot.PCRs())
	if len(aggs) != 2 {
		return fmt.Errorf("the UEFI log gives %d boot aggregates, want 2", len(aggs))
	}
	d, err := hex.DecodeString(aggs[1])
	if err != nil {
		return err
	}
	x.log = &imaLog{}
	x.log.addDigest("boot_aggregate", d)
	for i := range 8 {
		x.log.add(fileName(i))
	}
	return nil
}

// cutUEFILog drops the last bytes of the log, inside its last event: tpm2_eventlog cannot parse it.
func (x *exchange) cutUEFILog() error {
	raw, err := base64.StdEncoding.DecodeString(x.uefiLog)
	if err != nil {
		return err
	}
	x.uefiLog = base64.StdEncoding.EncodeToString(raw[:len(raw)-9])
	return nil
}

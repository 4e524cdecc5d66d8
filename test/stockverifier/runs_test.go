package stockverifier

import (
	"context"
	"crypto/rand"
	"encoding/json"
	"fmt"
	"os"
	"strconv"
	"strings"
	"syscall"
	"testing"
	"time"

	"github.com/attestload/attestload/attestation/enroll"
	"github.com/attestload/attestload/attestation/record"
	"github.com/attestload/attestload/attestation/softtpm"
	"github.com/attestload/attestload/exporter/results"
	"github.com/attestload/attestload/internal/pgtest"
	"github.com/attestload/attestload/internal/sharedtest"
	"github.com/attestload/attestload/test/faults/harness"
)

// 30 agents x 10 cycles, IMA evidence, closed model, verdicts from the verifier's database: every cycle passes
// but those the verifier rejects by its evidence-order defect, which are counted (and named in the summary), and
// every JSONL verdict equals the verifier's row wherever it kept one.
func TestIMAClosedDatabaseVerdicts(t *testing.T) {
	const agents, tasks = 30, 10
	w := newWorld(t, "ima", 2)
	rows := watchRows(t, w.k.DBURL, w.prefix)
	d := w.start(w.env(), w.args(agents, "-t", "10", "--model", "closed", "-w", "30")...)
	recs := w.finish(d, 8*time.Minute, 0)
	if len(recs) != agents*tasks {
		t.Errorf("%d records, want %d", len(recs), agents*tasks)
	}
	defects := checkVerdicts(t, recs)
	compared := rows.compare(t, recs)
	if compared < agents {
		t.Errorf("only %d verdicts compared with the verifier's rows, want at least one per agent (%d)", compared, agents)
	}
	noSession429(t, recs)
	checkDefectLine(t, d, "Keylime evidence-order defect: ", defects)
	t.Logf("%d cycles, %d evidence-order 422s (verifier defect), %d verdicts equal to the verifier's rows",
		len(recs), defects, compared)
}

// passingRun runs agents × tasks cycles with one worker per agent and checks what a run of passing cycles must
// show: a record per cycle, every verdict pass (but the evidence-order defect's), and at least one verdict per
// agent compared equal to the verifier's own row.
func (w *world) passingRun(agents, tasks int, env []string, more ...string) *daemon {
	w.t.Helper()
	rows := watchRows(w.t, w.k.DBURL, w.prefix)
	args := append([]string{"-t", strconv.Itoa(tasks), "-w", strconv.Itoa(agents)}, more...)
	d := w.start(env, w.args(agents, args...)...)
	recs := w.finish(d, 4*time.Minute, 0)
	if len(recs) != agents*tasks {
		w.t.Errorf("%d records, want %d", len(recs), agents*tasks)
	}
	checkVerdicts(w.t, recs)
	if n := rows.compare(w.t, recs); n < agents {
		w.t.Errorf("only %d verdicts compared with the verifier's rows, want at least %d", n, agents)
	}
	return d
}

// The same verdicts learned through the verifier's admin API with its client certificate.
func TestAdminAPIVerdicts(t *testing.T) {
	w := newWorld(t, "admin", 1)
	d := w.passingRun(8, 4, w.env("ATTESTLOAD_VERDICT_SOURCE=admin_api", "ATTESTLOAD_VERDICT_ADMIN_CERT_FILE="+w.k.AdminCert,
		"ATTESTLOAD_VERDICT_ADMIN_KEY_FILE="+w.k.AdminKey))
	if !strings.Contains(d.Stderr.String(), "source=admin_api") {
		t.Errorf("the run did not say it learns verdicts from the admin API:\n%s", d.Stderr.String())
	}
}

// A quote with no IMA log: the verifier checks the quote and the PCR policy only.
func TestQuoteOnly(t *testing.T) {
	const agents, tasks = 8, 4
	w := newWorld(t, "quote", 1)
	d := w.start(w.env(), w.args(agents, "-t", "4", "-w", "8", "--profile", "quote-only")...)
	recs := w.finish(d, 3*time.Minute, 0)
	if len(recs) != agents*tasks {
		t.Errorf("%d records, want %d", len(recs), agents*tasks)
	}
	checkVerdicts(t, recs)
	for _, r := range recs {
		if r.Profile != "quote-only" || (r.IMAEntriesSent != nil && *r.IMAEntriesSent != 0) {
			t.Fatalf("record of profile %q with %v IMA entries", r.Profile, r.IMAEntriesSent)
		}
	}
}

// The captured IMA log (780 entries of a real machine) replayed under fresh quotes.
func TestCapturedLog(t *testing.T) {
	const agents, tasks = 4, 3
	w := newWorld(t, "captured", 1)
	log := sharedtest.Testdata(t, "captured-evidence", "ima_log.txt")
	d := w.start(w.env("ATTESTLOAD_EVIDENCE_CAPTURED_LOG="+log), w.args(agents, "-t", "3", "-w", "4", "--profile", "captured")...)
	recs := w.finish(d, 3*time.Minute, 0)
	if len(recs) != agents*tasks {
		t.Errorf("%d records, want %d", len(recs), agents*tasks)
	}
	checkVerdicts(t, recs)
	full := false
	for _, r := range recs {
		if r.IMAEntriesSent != nil && *r.IMAEntriesSent >= 780 {
			full = true
		}
	}
	if !full {
		t.Error("no cycle sent the whole captured log")
	}
}

// The fleet model with more agents than one source address may open sessions for in a minute (50): spread over
// verifier.local_addrs, no session is rate limited.
func TestFleetOverLocalAddrs(t *testing.T) {
	const agents = 60
	w := newWorld(t, "fleet", 3)
	d := w.start(w.env(), w.args(agents, "--model", "fleet", "--interval", "30s", "--duration", "32s",
		"--profile", "quote-only", "--drain-timeout", "60s")...)
	recs := w.finish(d, 3*time.Minute, 0)
	if len(recs) < agents {
		t.Errorf("%d records, want at least one per agent (%d)", len(recs), agents)
	}
	checkVerdicts(t, recs)
	if sessions := noSession429(t, recs); sessions <= 50 {
		t.Errorf("%d sessions opened: the case needs more than one address's 50 per minute", sessions)
	}
}

// SIGINT mid-run: the running cycles finish, every cycle is in the JSONL, the run's rows are gone.
func TestSIGINTMidRun(t *testing.T) {
	w := newWorld(t, "sigint", 1)
	d := w.start(w.env(), w.args(8, "-w", "8", "--drain-timeout", "60s")...)
	d.waitCycles(t, record.OutcomeSuccess, 8, 2*time.Minute)
	m := harness.Scrape(t, d.addr)
	d.Signal(t, syscall.SIGINT)
	recs := w.finish(d, 2*time.Minute, 0)
	if started := int(m.Sum("attestload_cycles_started_total")); len(recs) < started {
		t.Errorf("%d records, but %d cycles had started before the signal", len(recs), started)
	}
	checkVerdicts(t, recs)
}

// kill -9 leaves the run's rows behind; `attestload cleanup` removes exactly them and keeps a planted agent of the
// same prefix that attestload did not create.
func TestKillThenCleanup(t *testing.T) {
	w := newWorld(t, "kill", 1)
	planted := plantAgent(t, w.k.DBURL, w.prefix)
	d := w.start(w.env(), w.args(6, "-w", "6")...)
	d.waitCycles(t, record.OutcomeSuccess, 6, 2*time.Minute)
	d.Signal(t, syscall.SIGKILL)
	d.Wait(t, time.Minute)
	if left := harness.CountRows(t, w.k.DBURL, w.prefix); left.Agents <= 1 {
		t.Fatalf("after kill -9 the run's agents should still be there: %+v", left)
	}
	p, code := harness.Run(t, w.dir, nil, time.Minute, "cleanup", w.k.DBURL, "--prefix", w.prefix)
	harness.NoCrash(t, "cleanup stderr", p.Stderr.String())
	if code != 0 {
		t.Fatalf("cleanup exit code %d:\n%s", code, p.Stderr.String())
	}
	left := harness.CountRows(t, w.k.DBURL, w.prefix)
	want := harness.RowCounts{Agents: 1, IMAPolicies: 1, MBPolicies: 1}
	if left != want {
		t.Errorf("after cleanup: %+v, want only the planted agent and its policies %+v", left, want)
	}
	if !agentExists(t, w.k.DBURL, planted) {
		t.Errorf("cleanup removed the planted agent %s", planted)
	}
}

// A CA that did not sign the verifier's certificate: every cycle fails with class tls, and the log names the
// certificate problem.
func TestWrongCA(t *testing.T) {
	w := newWorld(t, "wrongca", 1)
	args := w.args(3, "-t", "2")
	for i, a := range args {
		if a == w.k.CAFile {
			args[i] = otherCA(t)
		}
	}
	d := w.start(w.env(), args...)
	// Every cycle fails, so the run exits 1 (the summary says so).
	recs := w.finish(d, 2*time.Minute, 1)
	if len(recs) != 6 {
		t.Errorf("%d records, want 6", len(recs))
	}
	for _, r := range recs {
		if r.Outcome != record.OutcomeFail || r.Error == nil || *r.Error != record.ClassTLS {
			t.Errorf("%s task %d: outcome %s, error %s, want fail/tls", r.AgentID, r.TaskIndex, r.Outcome, deref(r.Error))
		}
	}
	if s := d.Stderr.String(); !strings.Contains(s, "certificate signed by unknown authority") {
		t.Errorf("stderr does not name the certificate problem:\n%s", s)
	}
}

// plantAgent enrolls one agent under prefix the way another tool would (no attestload run marker) and returns
// its id.
func plantAgent(t *testing.T, dbURL, prefix string) string {
	t.Helper()
	ctx, cancel := context.WithTimeout(context.Background(), 30*time.Second)
	defer cancel()
	pool := pgtest.Pool(t, dbURL)
	key, err := softtpm.GenerateKey(rand.Reader)
	if err != nil {
		t.Fatal(err)
	}
	en, err := enroll.Enroll(ctx, pool, enroll.Plan{Prefix: prefix, RunID: "planted", Count: 1,
		Keys: func(int) string { return key.PublicBase64() }, IMAPolicyJSON: []byte(`{}`), IMAGenerator: 1})
	if err != nil {
		t.Fatal(err)
	}
	if _, err := pool.Exec(ctx, `UPDATE verifiermain SET meta_data = NULL WHERE agent_id = $1`, en.AgentIDs[0]); err != nil {
		t.Fatal(err)
	}
	t.Cleanup(func() {
		ctx, cancel := context.WithTimeout(context.Background(), 30*time.Second)
		defer cancel()
		_, _ = pool.Exec(ctx, `DELETE FROM verifiermain WHERE agent_id = $1`, en.AgentIDs[0])
		_, _ = pool.Exec(ctx, `DELETE FROM allowlists WHERE name = $1`, en.IMAPolicyName)
		_, _ = pool.Exec(ctx, `DELETE FROM mbpolicies WHERE name = $1`, en.MBPolicyName)
	})
	return en.AgentIDs[0]
}

func agentExists(t *testing.T, dbURL, id string) bool {
	t.Helper()
	ctx, cancel := context.WithTimeout(context.Background(), 30*time.Second)
	defer cancel()
	var n int
	if err := pgtest.Pool(t, dbURL).QueryRow(ctx, `SELECT count(*) FROM verifiermain WHERE agent_id = $1`, id).Scan(&n); err != nil {
		t.Fatal(err)
	}
	return n == 1
}

// ECC P-256 agents, as Keylime's push agent reports them (signature scheme ecdsa, key algorithm ecc, algorithm
// columns ["ecdsa"]/["ecc"]). This Keylime refuses them by its own defect before it verifies any ECDSA signature:
// POST /sessions fixes the session's signing scheme to rsassa, so every ECDSA proof of possession is refused
// (docs/ecc.md). The case pins that behaviour down: every cycle fails as pop_rejected, the verifier says why, and
// nothing is left behind. When a Keylime release fixes it, this case fails and must become a passing one.
func TestECCRefusedByTheVerifierDefect(t *testing.T) {
	const agents, tasks = 4, 2
	w := newWorld(t, "ecc", 1)
	d := w.start(w.env(), w.args(agents, "-t", "2", "--profile", "quote-only", "--key-type", "ecc-p256")...)
	// Every cycle fails, so the run exits 1.
	recs := w.finish(d, 3*time.Minute, 1)
	if len(recs) != agents*tasks {
		t.Errorf("%d records, want %d", len(recs), agents*tasks)
	}
	for _, r := range recs {
		if r.Outcome != record.OutcomeFail || len(r.SessionAttempts) == 0 ||
			deref(r.SessionAttempts[len(r.SessionAttempts)-1].Error) != record.ClassPoPRejected {
			t.Fatalf("agent %d task %d: outcome %s, session attempts %d; want every ECC cycle refused at the PoP",
				r.AgentIndex, r.TaskIndex, r.Outcome, len(r.SessionAttempts))
		}
	}
	if log := w.k.LogTail(200000); !strings.Contains(log, "SignatureAlgorithmMismatch: signature algorithm was 0x18, expected 0x14 (rsassa)") {
		t.Errorf("the verifier's log does not give the expected reason for refusing the ECDSA PoP")
	}
}

// checkDefectLine asserts that the run's summary names a verifier defect in one line with its count when the run
// met it, and does not mention it otherwise.
func checkDefectLine(t *testing.T, d *daemon, prefix string, n int) {
	t.Helper()
	out := d.Stdout.String()
	want := fmt.Sprintf("%s%d cycle(s)", prefix, n)
	switch {
	case n > 0 && !strings.Contains(out, want):
		t.Errorf("the run summary does not say %q:\n%s", want, out)
	case n == 0 && strings.Contains(out, prefix):
		t.Errorf("the run summary names a defect the run did not meet (%q)", prefix)
	}
}

// Every default: more agents than one source address may open sessions for in a minute (50), no
// verifier.local_addrs. The run picks loopback source addresses itself, so no session is refused, and each agent
// holds its own connection (the sidecar says per-agent, with a connection and a TLS handshake per agent at least).
func TestDefaultsSpreadAgentsWithOwnConnections(t *testing.T) {
	const agents = 60
	w := newWorld(t, "defaults", 0)
	var env []string
	for _, e := range w.env() {
		if !strings.HasPrefix(e, "ATTESTLOAD_VERIFIER_LOCAL_ADDRS=") {
			env = append(env, e)
		}
	}
	d := w.start(env, w.args(agents, "-t", "2", "-w", "8", "--profile", "quote-only")...)
	recs := w.finish(d, 6*time.Minute, 0)
	if len(recs) != 2*agents {
		t.Errorf("%d records, want %d", len(recs), 2*agents)
	}
	checkVerdicts(t, recs)
	if sessions := noSession429(t, recs); sessions < agents {
		t.Errorf("%d sessions opened, want at least one per agent (%d)", sessions, agents)
	}
	if !strings.Contains(d.Stderr.String(), "agents spread over loopback source addresses") {
		t.Errorf("the run did not say it spread its agents over source addresses:\n%s", d.Stderr.String())
	}
	raw, err := os.ReadFile(results.SidecarPath(d.results))
	if err != nil {
		t.Fatal(err)
	}
	var info record.RunInfo
	if err := json.Unmarshal(raw, &info); err != nil {
		t.Fatal(err)
	}
	c := info.Connections
	if c == nil || c.Model != "per-agent" || c.Opened < agents || c.TLSHandshakes < agents || c.SourceAddrs < 2 {
		t.Errorf("sidecar connections %+v, want per-agent with at least %d connections and handshakes from 2+ addresses", c, agents)
	}
}

package stockverifier

import (
	"context"
	"crypto/ecdsa"
	"crypto/elliptic"
	"crypto/rand"
	"crypto/x509"
	"crypto/x509/pkix"
	"encoding/pem"
	"fmt"
	"math/big"
	"os"
	"path/filepath"
	"strconv"
	"strings"
	"sync"
	"sync/atomic"
	"testing"
	"time"

	"github.com/attestload/attestload/attestation/record"
	"github.com/attestload/attestload/internal/pgtest"
	"github.com/attestload/attestload/test/faults/harness"
)

func TestMain(m *testing.M) { os.Exit(harness.KeylimeMain(m)) }

// keysInPool is how many distinct AKs the runs share.
const keysInPool = 4

// subnet hands every case loopback source addresses of its own (127.0.N.1, 127.0.N.2, ...): the verifier limits
// session creations per client IP for its whole lifetime (the block after a breach never decays), so cases that
// shared 127.0.0.1 would throttle each other.
var subnet atomic.Int32

// world is one case: the shared verifier, a prefix and results directory of its own, its source addresses.
type world struct {
	t      *testing.T
	k      *harness.Keylime
	dir    string
	prefix string
	keys   string
	addrs  []string
}

func newWorld(t *testing.T, name string, addrs int) *world {
	t.Helper()
	k := harness.KeylimeFor(t)
	n := 10 + subnet.Add(1)
	w := &world{t: t, k: k, dir: t.TempDir(), prefix: "kv-" + name + "-", keys: harness.KeyPool(t, keysInPool)}
	for i := 1; i <= addrs; i++ {
		w.addrs = append(w.addrs, fmt.Sprintf("127.0.%d.%d", n, i))
	}
	t.Cleanup(func() {
		if t.Failed() {
			t.Logf("verifier log (end):\n%s", k.LogTail(6000))
		}
	})
	return w
}

// env is what every run shares; extra entries come last and win.
func (w *world) env(extra ...string) []string {
	env := []string{
		"ATTESTLOAD_RUN_DISTINCT_KEYS=" + strconv.Itoa(keysInPool),
		"ATTESTLOAD_VERIFIER_LOCAL_ADDRS=" + strings.Join(w.addrs, ","),
		"ATTESTLOAD_RUN_STATUS_INTERVAL=2s",
		"ATTESTLOAD_EVIDENCE_IMA_INITIAL=40",
		"ATTESTLOAD_EVIDENCE_IMA_UNIVERSE=200",
		"ATTESTLOAD_VERDICT_TIMEOUT=90s",
		// Generous: the verifier verifies inside the worker that answers, so requests queue behind verifications,
		// and a loaded 2-core machine stretches that further.
		"ATTESTLOAD_VERIFIER_REQUEST_TIMEOUT=120s",
		"ATTESTLOAD_VERDICT_SOURCE=database",
	}
	return append(env, extra...)
}

// args is a run of agents against the verifier, metrics on a port of its own.
func (w *world) args(agents int, more ...string) []string {
	args := []string{"run", w.k.URL, w.k.DBURL, "--verifier-ca", w.k.CAFile, "--key-pool", w.keys,
		"-a", strconv.Itoa(agents), "--results-dir", w.dir, "--prefix", w.prefix,
		"--metrics-listen", "127.0.0.1:0", "--instance", "stockverifier"}
	return append(args, more...)
}

// daemon is a started run.
type daemon struct {
	*harness.Proc
	addr    string
	results string
}

func (w *world) start(env []string, args ...string) *daemon {
	w.t.Helper()
	p := harness.Start(w.t, w.dir, env, args...)
	return &daemon{Proc: p, addr: p.MetricsAddr(w.t, 2*time.Minute), results: p.ResultsPath(w.t, 2*time.Minute)}
}

// waitCycles waits until /metrics counts at least n cycles with the outcome.
func (d *daemon) waitCycles(t *testing.T, outcome record.Outcome, n int, timeout time.Duration) {
	t.Helper()
	deadline := time.Now().Add(timeout)
	for {
		if m, err := harness.TryScrape(d.addr); err == nil && int(m.Sum("attestload_cycles_total", "outcome="+outcome.String())) >= n {
			return
		}
		if time.Now().After(deadline) {
			t.Fatalf("fewer than %d %s cycles after %s", n, outcome, timeout)
		}
		select {
		case <-d.Done():
			t.Fatalf("attestload exited while waiting for %d %s cycles:\n%s", n, outcome, d.Stderr.String())
		case <-time.After(200 * time.Millisecond):
		}
	}
}

// finish waits for the run's exit and returns its records, checked for what every run must satisfy, and asserts
// that the run left no rows in the verifier's database.
func (w *world) finish(d *daemon, timeout time.Duration, wantCode int) []record.Record {
	w.t.Helper()
	code := d.Wait(w.t, timeout)
	harness.NoCrash(w.t, "stderr", d.Stderr.String())
	if code != wantCode {
		w.t.Errorf("exit code %d, want %d", code, wantCode)
	}
	recs, partial := harness.ReadRecords(w.t, d.results)
	if partial {
		w.t.Error("results file ends in a partial line")
	}
	harness.CheckRecords(w.t, recs)
	if left := harness.CountRows(w.t, w.k.DBURL, w.prefix); left.Total() != 0 {
		w.t.Errorf("rows left in the verifier's database after exit: %+v", left)
	}
	return recs
}

// row is an attestation as the verifier's database last showed it.
type row struct{ evaluation, failureReason string }

type rowKey struct {
	agent string
	index int
}

// rowWatch polls the verifier's attestations of a prefix while a run goes on (the run removes them at exit, and
// the verifier itself deletes older ones as newer ones pass), keeping the last state seen of each.
type rowWatch struct {
	mu   sync.Mutex
	rows map[rowKey]row
	stop chan struct{}
	done chan struct{}
}

func watchRows(t *testing.T, dbURL, prefix string) *rowWatch {
	t.Helper()
	pool := pgtest.Pool(t, dbURL)
	rw := &rowWatch{rows: map[rowKey]row{}, stop: make(chan struct{}), done: make(chan struct{})}
	like := strings.NewReplacer(`\`, `\\`, `%`, `\%`, `_`, `\_`).Replace(prefix) + "%"
	go func() {
		defer close(rw.done)
		for {
			ctx, cancel := context.WithTimeout(context.Background(), 10*time.Second)
			rows, err := pool.Query(ctx, `SELECT agent_id, index, evaluation, coalesce(failure_reason, '')
				FROM attestations WHERE agent_id LIKE $1`, like)
			if err == nil {
				rw.mu.Lock()
				for rows.Next() {
					var k rowKey
					var r row
					if rows.Scan(&k.agent, &k.index, &r.evaluation, &r.failureReason) == nil {
						rw.rows[k] = r
					}
				}
				rw.mu.Unlock()
				rows.Close()
			}
			cancel()
			select {
			case <-rw.stop:
				return
			case <-time.After(150 * time.Millisecond):
			}
		}
	}()
	t.Cleanup(rw.close)
	return rw
}

func (rw *rowWatch) close() {
	select {
	case <-rw.stop:
	default:
		close(rw.stop)
	}
	<-rw.done
}

// compare asserts that each record's verdict equals the verifier's evaluation (and failure reason) wherever the
// watcher saw that attestation judged, and returns how many it compared.
func (rw *rowWatch) compare(t *testing.T, recs []record.Record) int {
	t.Helper()
	rw.close()
	n := 0
	for _, r := range recs {
		if r.AttestationIndex == nil {
			continue
		}
		got, ok := rw.rows[rowKey{r.AgentID, *r.AttestationIndex}]
		if !ok || (got.evaluation != "pass" && got.evaluation != "fail") {
			continue
		}
		n++
		reason := ""
		if r.Verdict.FailureReason != nil {
			reason = *r.Verdict.FailureReason
		}
		if r.Verdict.Evaluation != got.evaluation || reason != got.failureReason {
			t.Errorf("%s attestation %d: JSONL verdict %s/%q, the verifier's row %s/%q", r.AgentID,
				*r.AttestationIndex, r.Verdict.Evaluation, reason, got.evaluation, got.failureReason)
		}
	}
	return n
}

// checkVerdicts asserts that every cycle passed except those the verifier rejected by its evidence-order defect
// (422 "same order", error class evidence_order, verdict unknown), and returns how many those were.
func checkVerdicts(t *testing.T, recs []record.Record) (orderDefects int) {
	t.Helper()
	for _, r := range recs {
		switch {
		case r.Outcome == record.OutcomeSuccess && r.Verdict.Evaluation == "pass":
		case r.Outcome == record.OutcomeFail && r.Error != nil && *r.Error == record.ClassEvidenceOrder:
			orderDefects++
			if r.Verdict.Evaluation != "unknown" {
				t.Errorf("%s task %d: evidence-order 422 with verdict %s", r.AgentID, r.TaskIndex, r.Verdict.Evaluation)
			}
		default:
			t.Errorf("%s task %d: outcome %s, error %s, verdict %s (reason %s), want pass", r.AgentID, r.TaskIndex,
				r.Outcome, deref(r.Error), r.Verdict.Evaluation, deref(r.Verdict.FailureReason))
		}
	}
	return orderDefects
}

// noSession429 asserts that no session request was rate limited.
func noSession429(t *testing.T, recs []record.Record) (sessions int) {
	t.Helper()
	for _, r := range recs {
		for _, a := range r.SessionAttempts {
			if a.Method == "POST" {
				sessions++
			}
			if a.Status != nil && *a.Status == 429 {
				t.Errorf("%s: session %s answered 429", r.AgentID, a.Method)
			}
		}
	}
	return sessions
}

func deref[T ~string](s *T) T {
	if s == nil {
		return "<nil>"
	}
	return *s
}

// otherCA writes a CA certificate that did not sign the verifier's.
func otherCA(t *testing.T) string {
	t.Helper()
	key, err := ecdsa.GenerateKey(elliptic.P256(), rand.Reader)
	if err != nil {
		t.Fatal(err)
	}
	tmpl := &x509.Certificate{SerialNumber: big.NewInt(9), Subject: pkix.Name{CommonName: "not the Keylime CA"},
		NotBefore: time.Now().Add(-time.Hour), NotAfter: time.Now().Add(time.Hour), IsCA: true,
		BasicConstraintsValid: true, KeyUsage: x509.KeyUsageCertSign}
	der, err := x509.CreateCertificate(rand.Reader, tmpl, tmpl, &key.PublicKey, key)
	if err != nil {
		t.Fatal(err)
	}
	p := filepath.Join(t.TempDir(), "other-ca.crt")
	if err := os.WriteFile(p, pem.EncodeToMemory(&pem.Block{Type: "CERTIFICATE", Bytes: der}), 0o600); err != nil {
		t.Fatal(err)
	}
	return p
}

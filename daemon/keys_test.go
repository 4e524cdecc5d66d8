package daemon

import (
	"encoding/json"
	"os"
	"strings"
	"testing"

	"github.com/jackc/pgx/v5"

	"github.com/attestload/attestload/attestation/enroll"
	"github.com/attestload/attestload/attestation/record"
	"github.com/attestload/attestload/attestation/softtpm"
	"github.com/attestload/attestload/exporter/results"
	"github.com/attestload/attestload/internal/pgtest"
)

func TestParseKeyType(t *testing.T) {
	for _, c := range []struct {
		in   string
		want []KeyShare
		err  string
	}{
		{in: "rsa2048", want: []KeyShare{{softtpm.RSA2048, 1}}},
		{in: " ecc-p256 ", want: []KeyShare{{softtpm.ECCP256, 1}}},
		{in: "rsa2048=30%,ecc-p256=70%", want: []KeyShare{{softtpm.RSA2048, 0.3}, {softtpm.ECCP256, 0.7}}},
		{in: "rsa2048=1, ecc-p256=3", want: []KeyShare{{softtpm.RSA2048, 0.25}, {softtpm.ECCP256, 0.75}}},
		{in: "ecc-p256=0.5", want: []KeyShare{{softtpm.ECCP256, 1}}},
		{in: "", err: "is empty"},
		{in: "rsa4096", err: `key type "rsa4096" is unknown`},
		{in: "rsa2048,ecc-p256", err: "needs a share"},
		{in: "rsa2048=50%,rsa2048=50%", err: "given twice"},
		{in: "rsa2048=-1%,ecc-p256=1", err: "positive number"},
		{in: "rsa2048=x,ecc-p256=1", err: "positive number"},
		{in: "rsa2048=0,ecc-p256=1", err: "positive number"},
	} {
		got, err := ParseKeyType(c.in)
		if c.err != "" {
			if err == nil || !strings.Contains(err.Error(), c.err) {
				t.Errorf("%q: %v, want an error containing %q", c.in, err, c.err)
			}
			continue
		}
		if err != nil || len(got) != len(c.want) {
			t.Errorf("%q: %v, %v; want %v", c.in, got, err, c.want)
			continue
		}
		for i := range got {
			if got[i].Type != c.want[i].Type || got[i].Share-c.want[i].Share > 1e-9 || c.want[i].Share-got[i].Share > 1e-9 {
				t.Errorf("%q: %v, want %v", c.in, got, c.want)
			}
		}
	}
	cfg := DefaultConfig()
	cfg.Run.KeyType = "dsa"
	if err := cfg.Validate(); err == nil || !strings.Contains(err.Error(), "run.key_type") {
		t.Errorf("Validate with key_type dsa: %v, want an error naming run.key_type", err)
	}
}

// A mix gives every stretch of indexes (a shard, a small run) about the configured shares, and an agent keeps its
// type whatever the shard.
func TestKeyTypeForSpreadsTheMix(t *testing.T) {
	mix, err := ParseKeyType("rsa2048=30%,ecc-p256=70%")
	if err != nil {
		t.Fatal(err)
	}
	for _, span := range []struct{ first, n int }{{0, 10}, {0, 1000}, {12345, 100}, {999_000, 1000}} {
		ecc := 0
		for i := span.first; i < span.first+span.n; i++ {
			if keyTypeFor(mix, i) == softtpm.ECCP256 {
				ecc++
			}
		}
		if want := 0.7 * float64(span.n); float64(ecc) < want-2 || float64(ecc) > want+2 {
			t.Errorf("indexes %d..%d: %d ECC agents, want %.0f±2", span.first, span.first+span.n-1, ecc, want)
		}
	}
}

// A mixed fleet against the simulated verifier reading the enrolled rows: RSA agents share the pool, every ECC
// agent has its own key, the algorithm columns match each key, every verdict is pass, and the sidecar counts the
// agents by key type.
func TestMixedKeyFleetPasses(t *testing.T) {
	dbURL := pgtest.NewKeylimeDatabase(t)
	dir := t.TempDir()
	cfg := testConfig(t, dir)
	cfg.Database.URL = dbURL
	cfg.Run.Agents, cfg.Run.Workers, cfg.Run.Tasks, cfg.Run.DistinctKeys = 6, 3, 2, 1
	cfg.Run.KeyType = "rsa2048=50%,ecc-p256=50%"
	ctx := t.Context()
	r, err := newLoad(ctx, cfg, loadOptions{})
	if err != nil {
		t.Fatal(err)
	}

	conn, err := pgx.Connect(ctx, dbURL)
	if err != nil {
		t.Fatal(err)
	}
	defer conn.Close(ctx)
	rows, err := conn.Query(ctx, `SELECT ak_tpm, accept_tpm_signing_algs, accept_tpm_encryption_algs FROM verifiermain
		WHERE agent_id LIKE $1 ORDER BY agent_id`, enroll.DefaultPrefix+"%")
	if err != nil {
		t.Fatal(err)
	}
	byType := map[string]map[string]bool{}
	for rows.Next() {
		var ak, sign, enc string
		if err := rows.Scan(&ak, &sign, &enc); err != nil {
			t.Fatal(err)
		}
		kind := sign + " " + enc
		if byType[kind] == nil {
			byType[kind] = map[string]bool{}
		}
		byType[kind][ak] = true
		if (len(ak) == 120) != (kind == `["ecdsa"] ["ecc"]`) || (len(ak) == 376) != (kind == `["rsassa"] ["rsa"]`) {
			t.Errorf("AK of %d base64 characters enrolled with %s", len(ak), kind)
		}
	}
	if rows.Err() != nil {
		t.Fatal(rows.Err())
	}
	if len(byType[`["ecdsa"] ["ecc"]`]) != 3 || len(byType[`["rsassa"] ["rsa"]`]) != 1 {
		t.Fatalf("distinct AKs by algorithm columns: %v; want 3 ECC keys and 1 shared RSA key", byType)
	}

	sum := executeAndClose(t, ctx, r)
	recs := readRecords(t, sum.ResultsPath)
	if len(recs) != 12 {
		t.Fatalf("%d records, want 12", len(recs))
	}
	for _, rec := range recs {
		if rec.Outcome != record.OutcomeSuccess || rec.Verdict.Evaluation != record.EvaluationPass {
			t.Fatalf("agent %d task %d: outcome %s, verdict %+v", rec.AgentIndex, rec.TaskIndex, rec.Outcome, rec.Verdict)
		}
	}
	var info struct {
		KeyTypes map[string]int `json:"key_types"`
	}
	b, err := os.ReadFile(results.SidecarPath(sum.ResultsPath))
	if err != nil || json.Unmarshal(b, &info) != nil {
		t.Fatalf("sidecar: %v %s", err, b)
	}
	if info.KeyTypes["rsa2048"] != 3 || info.KeyTypes["ecc-p256"] != 3 || len(info.KeyTypes) != 2 {
		t.Fatalf("sidecar key_types %v, want 3 rsa2048 and 3 ecc-p256", info.KeyTypes)
	}
}

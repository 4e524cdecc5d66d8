package simverifier

import (
	"strings"
	"testing"

	"github.com/attestload/attestload/attestation/softtpm"
)

// Agents share what is the same for many of them: an RSA key of the pool (parsed once), the normalised TPM policy
// and the common algorithm lists; an ECC agent keeps its key's bytes, not a parsed key.
func TestEnrolledAgentsShareWhatIsTheSame(t *testing.T) {
	v, err := New(testConfig(newFakeClock(), nil))
	if err != nil {
		t.Fatal(err)
	}
	rsaKey := vectorKey(t, "vec-agent-1")
	ecc1, err := softtpm.GenerateECCKey(nil)
	if err != nil {
		t.Fatal(err)
	}
	policy := map[string][]string{"0": {"0x" + strings.Repeat("AB", 32)}, "1": {}}
	enroll := func(id string, k *softtpm.Key, algs []string) *agent {
		t.Helper()
		// Each call passes a new map with the same content, as an enrolment per agent does.
		pol := map[string][]string{}
		for n, vals := range policy {
			pol[n] = append([]string(nil), vals...)
		}
		if err := v.EnrollAgent(AgentSpec{ID: id, AKPublic: k.Public, TPMPolicy: pol, AcceptSignAlgs: algs}); err != nil {
			t.Fatal(err)
		}
		return v.agentMem(id)
	}
	r1, r2 := enroll("r1", rsaKey, nil), enroll("r2", rsaKey, []string{"rsassa"})
	e1 := enroll("e1", ecc1, []string{"ecdsa"})
	if r1.rsaAK == nil || r1.rsaAK != r2.rsaAK || r1.akPub != nil {
		t.Fatalf("RSA agents of one key: parsed keys %p and %p, bytes kept %d", r1.rsaAK, r2.rsaAK, len(r1.akPub))
	}
	if e1.rsaAK != nil || len(e1.akPub) != softtpm.ECCPublicSize {
		t.Fatalf("ECC agent keeps %d bytes of its key and a parsed RSA key %p", len(e1.akPub), e1.rsaAK)
	}
	if pub, err := e1.publicKey(); err != nil || pub == nil {
		t.Fatalf("ECC agent's key: %v %v", pub, err)
	}
	if name, err := e1.akName(); err != nil || string(name) != string(ecc1.Name) {
		t.Fatalf("ECC agent's AK name %x (%v), want %x", name, err, ecc1.Name)
	}
	if !r1.isAK(rsaKey.PublicBase64()) || !e1.isAK(ecc1.PublicBase64()) || r1.isAK(ecc1.PublicBase64()) ||
		e1.isAK(rsaKey.PublicBase64()) || e1.isAK(ecc1.PublicBase64()[1:]) {
		t.Fatal("agents do not recognise exactly their own AK among offered keys")
	}
	if &r1.signAlgs[0] != &r2.signAlgs[0] || &r1.hashAlgs[0] != &e1.hashAlgs[0] || e1.signAlgs[0] != "ecdsa" {
		t.Fatal("the common algorithm lists are not shared")
	}
	if len(r1.tpmPolicy) != 1 || r1.tpmPolicy[0][0] != strings.Repeat("ab", 32) {
		t.Fatalf("policy %v, want PCR 0 in lower case and the empty PCR 1 left out", r1.tpmPolicy)
	}
	r1.tpmPolicy[99] = nil // the maps are one: a change shows in the other agents
	if _, ok := e1.tpmPolicy[99]; !ok {
		t.Fatal("agents with the same TPM policy hold separate maps")
	}
	if err := v.EnrollAgent(AgentSpec{ID: "bad", AKPublic: rsaKey.Public, TPMPolicy: map[string][]string{"24": {"00"}}}); err == nil ||
		!strings.Contains(err.Error(), `PCR "24"`) {
		t.Fatalf("PCR 24: %v", err)
	}
}

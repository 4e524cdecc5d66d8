package simverifier

import (
	"crypto"
	"crypto/rsa"
	"crypto/sha256"
	"encoding/base64"
	"encoding/hex"
	"fmt"
	"strconv"
	"strings"
	"sync"

	"github.com/attestload/attestload/attestation/softtpm"
)

// What keeps an enrolled agent small: a fleet of a million agents is enrolled in one simulator, and most of them
// are idle at any time. Agents share what is the same for many of them (the policies, the accepted algorithms, an
// RSA key of the run's pool), and an ECC AK is kept as its 90-byte TPM2B_PUBLIC, parsed when a signature is
// checked, instead of as an *ecdsa.PublicKey (about 450 bytes).

// Common accepted-algorithm lists, shared by every agent that accepts exactly one of them.
var commonAlgs = map[string][]string{"sha256": {"sha256"}, "rsassa": {"rsassa"}, "ecdsa": {"ecdsa"}}

// internAlgs returns algs, or a shared copy when it is one common algorithm, or the shared list of def when algs
// is empty.
func internAlgs(algs []string, def string) []string {
	if len(algs) == 0 {
		return commonAlgs[def]
	}
	if len(algs) == 1 {
		if c, ok := commonAlgs[algs[0]]; ok {
			return c
		}
	}
	return algs
}

// akKeys parses AKs for agents: an RSA key once per distinct key (agents share the run's pool of RSA keys), an
// ECC key not at all at enrolment (its bytes are checked and kept; signatures parse them).
type akKeys struct {
	mu  sync.Mutex
	rsa map[[32]byte]*parsedAK // by SHA-256 of the TPM2B_PUBLIC
}

type parsedAK struct {
	pub     crypto.PublicKey
	name    []byte
	b64Hash [32]byte // SHA-256 of the base64 AK, to recognise it among offered keys
}

// set checks the AK of a and stores it in a: akPub always (an ECC agent's key), ak and akName for RSA.
func (k *akKeys) set(a *agent, public []byte) error {
	pub, err := softtpm.ParsePublic(public)
	if err != nil {
		return fmt.Errorf("ak public: %w", err)
	}
	name, err := softtpm.NameOf(public)
	if err != nil {
		return fmt.Errorf("ak name: %w", err)
	}
	if _, ok := pub.(*rsa.PublicKey); !ok {
		a.akPub = public
		return nil
	}
	h := sha256.Sum256(public)
	k.mu.Lock()
	defer k.mu.Unlock()
	if k.rsa == nil {
		k.rsa = map[[32]byte]*parsedAK{}
	}
	p := k.rsa[h]
	if p == nil {
		p = &parsedAK{pub: pub, name: name, b64Hash: sha256.Sum256([]byte(base64.StdEncoding.EncodeToString(public)))}
		k.rsa[h] = p
	}
	a.rsaAK = p
	return nil
}

// publicKey is the agent's AK for checking signatures.
func (a *agent) publicKey() (crypto.PublicKey, error) {
	if a.rsaAK != nil {
		return a.rsaAK.pub, nil
	}
	return softtpm.ParsePublic(a.akPub)
}

// isAK reports whether pub, a certification key's base64 public, is the agent's AK.
func (a *agent) isAK(pub string) bool {
	if a.rsaAK != nil {
		return sha256.Sum256([]byte(pub)) == a.rsaAK.b64Hash
	}
	var buf [2 * softtpm.ECCPublicSize]byte
	return len(a.akPub) > 0 && string(base64.StdEncoding.AppendEncode(buf[:0], a.akPub)) == pub
}

// akName is the TPM Name of the agent's AK.
func (a *agent) akName() ([]byte, error) {
	if a.rsaAK != nil {
		return a.rsaAK.name, nil
	}
	return softtpm.NameOf(a.akPub)
}

// tpmPolicies normalises TPM policies (PCR number to lowercase hex values) and keeps one copy of each distinct
// policy. The maps it returns are shared and never changed.
type tpmPolicies struct {
	mu   sync.Mutex
	seen map[string]map[int][]string // by canonical text
}

func (t *tpmPolicies) intern(spec map[string][]string) (map[int][]string, error) {
	pol := map[int][]string{}
	for k, vals := range spec {
		n, err := strconv.Atoi(k)
		if err != nil || n < 0 || n > 23 {
			return nil, fmt.Errorf("tpm policy: PCR %q is not a number from 0 to 23", k)
		}
		var norm []string
		for _, s := range vals {
			s = strings.ToLower(strings.TrimPrefix(strings.TrimPrefix(s, "0x"), "0X"))
			if _, err := hex.DecodeString(s); err != nil {
				return nil, fmt.Errorf("tpm policy: PCR %d value %q is not hex", n, s)
			}
			norm = append(norm, s)
		}
		if len(norm) > 0 {
			pol[n] = norm
		}
	}
	var key strings.Builder
	for _, n := range sortedKeys(pol) {
		fmt.Fprintf(&key, "%d=%s;", n, strings.Join(pol[n], ","))
	}
	t.mu.Lock()
	defer t.mu.Unlock()
	if t.seen == nil {
		t.seen = map[string]map[int][]string{}
	}
	if p, ok := t.seen[key.String()]; ok {
		return p, nil
	}
	t.seen[key.String()] = pol
	return pol, nil
}

package daemon

import (
	"fmt"
	"io"
	"math"
	"slices"
	"strconv"
	"strings"

	"github.com/attestload/attestload/attestation/softtpm"
)

// KeyShare is one attestation-key type of the fleet and the share of agents that have it.
type KeyShare struct {
	Type  softtpm.KeyType
	Share float64 // 0 < Share <= 1; the shares of a mix add up to 1
}

// ParseKeyType reads run.key_type: one type (rsa2048 or ecc-p256), or a mix by share such as
// "rsa2048=30%,ecc-p256=70%" (percentages, fractions such as 0.3, or weights; they are scaled to add up to 1).
func ParseKeyType(s string) ([]KeyShare, error) {
	s = strings.TrimSpace(s)
	if s == "" {
		return nil, fmt.Errorf("is empty: give %s, %s or a mix such as %s=30%%,%s=70%%", softtpm.RSA2048,
			softtpm.ECCP256, softtpm.RSA2048, softtpm.ECCP256)
	}
	var out []KeyShare
	var sum float64
	for part := range strings.SplitSeq(s, ",") {
		name, weight, hasWeight := strings.Cut(strings.TrimSpace(part), "=")
		t := softtpm.KeyType(strings.TrimSpace(name))
		if t != softtpm.RSA2048 && t != softtpm.ECCP256 {
			return nil, fmt.Errorf("key type %q is unknown: use %s or %s", name, softtpm.RSA2048, softtpm.ECCP256)
		}
		if slices.ContainsFunc(out, func(k KeyShare) bool { return k.Type == t }) {
			return nil, fmt.Errorf("key type %s is given twice", t)
		}
		w := 1.0
		if hasWeight {
			weight = strings.TrimSpace(weight)
			pct := strings.HasSuffix(weight, "%")
			v, err := strconv.ParseFloat(strings.TrimSuffix(weight, "%"), 64)
			if err != nil || v <= 0 || math.IsInf(v, 0) || math.IsNaN(v) {
				return nil, fmt.Errorf("share %q of %s must be a positive number (e.g. 30%% or 0.3)", weight, t)
			}
			if pct {
				v /= 100
			}
			w = v
		} else if strings.Contains(s, ",") {
			return nil, fmt.Errorf("key type %s in a mix needs a share, e.g. %s=50%%", t, t)
		}
		out = append(out, KeyShare{Type: t, Share: w})
		sum += w
	}
	for i := range out {
		out[i].Share /= sum
	}
	return out, nil
}

// keyTypeFor is the key type of the agent with absolute index i. The types are spread evenly over the indexes
// (a golden-ratio sequence), so every shard of a fleet and every prefix of it has about the configured mix, and
// an agent keeps its type across runs and shards.
func keyTypeFor(mix []KeyShare, i int) softtpm.KeyType {
	if len(mix) == 1 {
		return mix[0].Type
	}
	const phi = 0.6180339887498949
	_, u := math.Modf(float64(i+1) * phi)
	for _, k := range mix[:len(mix)-1] {
		if u < k.Share {
			return k.Type
		}
		u -= k.Share
	}
	return mix[len(mix)-1].Type
}

// agentKeys gives every agent of a run its AK: ECC agents each get a key of their own (key generation costs
// microseconds); RSA agents share rsaPool round-robin in index order. It returns the keys by agent position and
// the number of agents of each type.
func agentKeys(mix []KeyShare, first, n int, rsaPool func(count int) ([]*softtpm.Key, error), entropy io.Reader) ([]*softtpm.Key, map[string]int, error) {
	types := make([]softtpm.KeyType, n)
	counts := map[string]int{}
	for k := range n {
		types[k] = keyTypeFor(mix, first+k)
		counts[string(types[k])]++
	}
	var pool []*softtpm.Key
	if nr := counts[string(softtpm.RSA2048)]; nr > 0 {
		var err error
		if pool, err = rsaPool(nr); err != nil {
			return nil, nil, err
		}
		if len(pool) == 0 {
			return nil, nil, fmt.Errorf("no RSA keys for %d RSA agents", nr)
		}
	}
	keys := make([]*softtpm.Key, n)
	nextRSA := 0
	for k, t := range types {
		if t == softtpm.RSA2048 {
			keys[k] = pool[nextRSA%len(pool)]
			nextRSA++
			continue
		}
		key, err := softtpm.GenerateECCKey(entropy)
		if err != nil {
			return nil, nil, err
		}
		keys[k] = key
	}
	return keys, counts, nil
}

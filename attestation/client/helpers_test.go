package client

import (
	"crypto/rand"
	"os"
	"sync"
	"testing"

	"github.com/attestload/attestload/attestation/evidence"
	"github.com/attestload/attestload/attestation/softtpm"
)

// RSA-2048 key generation costs tens of milliseconds; the tests share one pool.
var (
	keysOnce sync.Once
	keys     []*softtpm.Key
	keysErr  error
)

const keyPoolSize = 12

func testKey(t testing.TB, i int) *softtpm.Key {
	t.Helper()
	keysOnce.Do(func() {
		for range keyPoolSize {
			k, err := softtpm.GenerateKey(rand.Reader)
			if err != nil {
				keysErr = err
				return
			}
			keys = append(keys, k)
		}
	})
	if keysErr != nil {
		t.Fatal(keysErr)
	}
	return keys[i%keyPoolSize]
}

func imaProfile(t testing.TB, initial int) evidence.Profile {
	t.Helper()
	p, err := evidence.NewSynthetic(initial, 1, 64)
	if err != nil {
		t.Fatal(err)
	}
	return p
}

// newIMAAgent is an agent with the "ima" profile: a log of initial entries growing by one per cycle.
func newIMAAgent(t testing.TB, id string, index, initial int) *Agent {
	t.Helper()
	return NewAgent(id, index, softtpm.NewTPM(testKey(t, index)), imaProfile(t, initial))
}

func writeFile(path string, b []byte) error { return os.WriteFile(path, b, 0o600) }

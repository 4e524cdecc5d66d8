package enroll_test

import (
	"context"
	"encoding/base64"
	"encoding/binary"
	"testing"
	"time"
)

// testCtx returns a context that ends with the test, bounded so a stuck database fails the test.
func testCtx(t testing.TB) context.Context {
	ctx, cancel := context.WithTimeout(context.Background(), 2*time.Minute)
	t.Cleanup(cancel)
	return ctx
}

// fakeAK builds a structurally valid RSA-2048 TPM2B_PUBLIC (the layout of spec section 4.1) whose modulus
// encodes i, so every agent gets a distinct, recognisable key without generating RSA keys.
func fakeAK(i int) string {
	head := []byte{
		0x01, 0x18, // size 280
		0x00, 0x01, 0x00, 0x0b, 0x00, 0x05, 0x00, 0x72, 0x00, 0x00, // RSA, sha256, attributes, empty policy
		0x00, 0x10, 0x00, 0x14, 0x00, 0x0b, 0x08, 0x00, 0x00, 0x00, 0x00, 0x00, // NULL sym, RSASSA-sha256, 2048, e
		0x01, 0x00, // modulus size 256
	}
	modulus := make([]byte, 256)
	modulus[0] = 0xc0
	binary.BigEndian.PutUint64(modulus[248:], uint64(i))
	return base64.StdEncoding.EncodeToString(append(head, modulus...))
}

const testIMAPolicy = `{"meta": {"version": 1, "generator": 2}, "release": 0, "digests": {}, "excludes": [], "keyrings": {}, "ima": {"ignored_keyrings": [], "log_hash_alg": "sha1", "dm_policy": null}, "ima-buf": {}, "verification-keys": ""}`

// testMBPolicy is a measured-boot reference state (the shape of keylime's mb_refstate, shortened).
const testMBPolicy = `{"has_secureboot": false, "scrtm_and_bios": [{"scrtm": {"sha256": "0x9449171f10bdd73ea99c5df8651579f698b4caa1c53542126b6b56ffbffeea01"}}]}`

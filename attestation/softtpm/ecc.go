package softtpm

import (
	"crypto/ecdsa"
	"crypto/elliptic"
	"crypto/rand"
	"crypto/sha256"
	"errors"
	"fmt"
	"io"
	"math/big"

	"github.com/google/go-tpm/tpm2"
)

// KeyType names an AK algorithm the way the configuration does.
type KeyType string

// The AK types a software TPM can hold.
const (
	RSA2048 KeyType = "rsa2048"
	ECCP256 KeyType = "ecc-p256"
)

// ECCPublicSize is the length of a NIST P-256 AK's TPM2B_PUBLIC.
const ECCPublicSize = 90

// p256Size is the byte length of a P-256 coordinate, scalar and signature half.
const p256Size = 32

// Signature scheme identifier of ECDSA (TPM_ALG_ID).
const AlgECDSA uint16 = 0x0018

// NewECCKey wraps a NIST P-256 private key as an AK: TPMT_PUBLIC type ECC, nameAlg SHA-256, the attributes of a
// restricted signing key, symmetric NULL, scheme ECDSA/SHA-256, curve TPM_ECC_NIST_P256, KDF NULL, and the point
// as two 32-byte coordinates (TPM 2.0 Part 2, 12.2.3.6 TPMS_ECC_PARMS and 11.2.5.2 TPMS_ECC_POINT). The key keeps
// only the scalar and these encodings (one allocation for TPM2B_PUBLIC and Name).
func NewECCKey(priv *ecdsa.PrivateKey) (*Key, error) {
	if priv == nil {
		return nil, errors.New("softtpm: private key is nil")
	}
	if priv.Curve != elliptic.P256() {
		return nil, fmt.Errorf("softtpm: ECC AK must be on NIST P-256, got %s", priv.Curve.Params().Name)
	}
	point, err := priv.PublicKey.Bytes() // 04 || X || Y, fixed width
	if err != nil {
		return nil, fmt.Errorf("softtpm: ECC AK public point: %w", err)
	}
	d, err := priv.Bytes()
	if err != nil {
		return nil, fmt.Errorf("softtpm: ECC AK scalar: %w", err)
	}
	k := &Key{ec: true}
	copy(k.ecD[:], d)
	// Appended by hand rather than through go-tpm's reflection, which costs ~50 times more: a fleet generates a
	// key per agent. The tests check these bytes against go-tpm's reading and marshalling of the same structure.
	buf := make([]byte, 0, ECCPublicSize+2+sha256.Size)
	public := append(buf, eccPublicHeader[:]...)
	public = append(public, 0, p256Size)
	public = append(public, point[1:1+p256Size]...)
	public = append(public, 0, p256Size)
	public = append(public, point[1+p256Size:]...)
	sum := sha256.Sum256(public[2:])
	name := append(public[len(public):len(public)], 0x00, 0x0b)
	name = append(name, sum[:]...)
	k.Public, k.Name = public[:len(public):len(public)], name
	return k, nil
}

// ECDSA expands a P-256 key to a *ecdsa.PrivateKey (nil for an RSA key). It allocates; the key itself keeps only
// the scalar.
func (k *Key) ECDSA() *ecdsa.PrivateKey {
	if !k.ec {
		return nil
	}
	x, y := eccPoint(k.Public)
	return &ecdsa.PrivateKey{
		PublicKey: ecdsa.PublicKey{Curve: elliptic.P256(), X: new(big.Int).SetBytes(x), Y: new(big.Int).SetBytes(y)},
		D:         new(big.Int).SetBytes(k.ecD[:]),
	}
}

// eccPoint returns the coordinates in a P-256 AK's TPM2B_PUBLIC as NewECCKey lays it out.
func eccPoint(public []byte) (x, y []byte) {
	return public[len(eccPublicHeader)+2 : len(eccPublicHeader)+2+p256Size], public[len(eccPublicHeader)+4+p256Size:]
}

// isCanonicalECCPublic reports whether b is a P-256 TPM2B_PUBLIC laid out exactly as NewECCKey makes it (the
// header of eccPublicHeader and two 32-byte coordinates), which ParsePublic and NameOf then read without go-tpm.
func isCanonicalECCPublic(b []byte) bool {
	h := len(eccPublicHeader)
	return len(b) == ECCPublicSize && [len(eccPublicHeader)]byte(b[:h]) == eccPublicHeader &&
		b[h] == 0 && b[h+1] == p256Size && b[h+2+p256Size] == 0 && b[h+3+p256Size] == p256Size
}

// parseCanonicalECCPublic decodes the point of a canonical P-256 TPM2B_PUBLIC (isCanonicalECCPublic), checking
// that it lies on the curve, as parseECCPublic does for any layout.
func parseCanonicalECCPublic(b []byte) (*ecdsa.PublicKey, error) {
	var raw [1 + 2*p256Size]byte
	raw[0] = 4
	x, y := eccPoint(b)
	copy(raw[1:], x)
	copy(raw[1+p256Size:], y)
	k, err := ecdsa.ParseUncompressedPublicKey(elliptic.P256(), raw[:])
	if err != nil {
		return nil, fmt.Errorf("ECC point: %w", err)
	}
	return k, nil
}

// eccPublicHeader is a P-256 AK's TPM2B_PUBLIC up to its point: size 0x0058, type ECC 0x0023, nameAlg SHA-256,
// objectAttributes 0x00050072 (as akAttributes), empty authPolicy, symmetric NULL, scheme ECDSA 0x0018 with
// SHA-256, curve NIST P-256 0x0003, KDF NULL.
var eccPublicHeader = [...]byte{0x00, 0x58, 0x00, 0x23, 0x00, 0x0b, 0x00, 0x05, 0x00, 0x72, 0x00, 0x00,
	0x00, 0x10, 0x00, 0x18, 0x00, 0x0b, 0x00, 0x03, 0x00, 0x10}

// GenerateECCKey creates a fresh NIST P-256 AK from the entropy source r (crypto/rand when r is nil). It takes
// microseconds, so every agent can have its own.
func GenerateECCKey(r io.Reader) (*Key, error) {
	var priv *ecdsa.PrivateKey
	var err error
	if r == nil {
		priv, err = ecdsa.GenerateKey(elliptic.P256(), rand.Reader)
	} else {
		// ecdsa.GenerateKey ignores a non-default reader since Go 1.26 unless the key is derived explicitly.
		priv, err = deriveP256(r)
	}
	if err != nil {
		return nil, fmt.Errorf("softtpm: generate P-256 key: %w", err)
	}
	return NewECCKey(priv)
}

// deriveP256 turns 32 bytes from r into a P-256 private key, drawing again in the rare case the bytes are not a
// valid scalar, so that a seeded reader gives reproducible keys.
func deriveP256(r io.Reader) (*ecdsa.PrivateKey, error) {
	var d [p256Size]byte
	for range 100 {
		if _, err := io.ReadFull(r, d[:]); err != nil {
			return nil, err
		}
		if k, err := ecdsa.ParseRawPrivateKey(elliptic.P256(), d[:]); err == nil {
			return k, nil
		}
	}
	return nil, errors.New("no valid P-256 scalar in 100 draws from the entropy source")
}

// parseECCPublic decodes a P-256 AK with the verifier's restrictions (pubkey_parms_from_tpm2b_public): symmetric
// NULL, KDF NULL (the verifier's parser assumes no KDF details follow), a known curve, and coordinates of at most
// the curve's size that are a point on it.
func parseECCPublic(pub *tpm2.TPMTPublic) (*ecdsa.PublicKey, error) {
	parms, err := pub.Parameters.ECCDetail()
	if err != nil {
		return nil, fmt.Errorf("ECC parameters: %w", err)
	}
	if parms.Symmetric.Algorithm != tpm2.TPMAlgNull {
		return nil, fmt.Errorf("symmetric algorithm 0x%04x is not NULL (0x0010)", uint16(parms.Symmetric.Algorithm))
	}
	if parms.KDF.Scheme != tpm2.TPMAlgNull {
		return nil, fmt.Errorf("KDF scheme 0x%04x is not NULL (0x0010)", uint16(parms.KDF.Scheme))
	}
	if parms.CurveID != tpm2.TPMECCNistP256 {
		return nil, fmt.Errorf("curve 0x%04x is not NIST P-256 (0x0003)", uint16(parms.CurveID))
	}
	point, err := pub.Unique.ECC()
	if err != nil {
		return nil, fmt.Errorf("ECC point: %w", err)
	}
	x, y := point.X.Buffer, point.Y.Buffer
	if len(x) == 0 || len(x) > p256Size || len(y) == 0 || len(y) > p256Size {
		return nil, fmt.Errorf("ECC point coordinates are %d and %d bytes, want 1..%d", len(x), len(y), p256Size)
	}
	raw := make([]byte, 1+2*p256Size)
	raw[0] = 4
	copy(raw[1+p256Size-len(x):], x)
	copy(raw[1+2*p256Size-len(y):], y)
	k, err := ecdsa.ParseUncompressedPublicKey(elliptic.P256(), raw)
	if err != nil {
		return nil, fmt.Errorf("ECC point: %w", err)
	}
	return k, nil
}

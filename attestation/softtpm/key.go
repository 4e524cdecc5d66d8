package softtpm

import (
	"crypto"
	"crypto/rand"
	"crypto/rsa"
	"crypto/sha256"
	"crypto/x509"
	"encoding/base64"
	"encoding/pem"
	"errors"
	"fmt"
	"io"
	"math/big"
	"os"
	"path/filepath"

	"github.com/google/go-tpm/tpm2"
)

// KeyBits is the only AK size supported: larger keys overflow verifiermain.ak_tpm (VARCHAR(500)).
const KeyBits = 2048

// PublicSize is the length of an RSA-2048 AK's TPM2B_PUBLIC.
const PublicSize = 282

// defaultExponent is what a TPM means by an exponent field of 0.
const defaultExponent = 65537

// Key is an attestation key with its TPM encodings precomputed, so that signing a quote never re-marshals the key.
// An RSA-2048 key has Private set; a NIST P-256 key keeps only its 32-byte scalar (its public point is in Public),
// since a fleet holds one per agent and an expanded *ecdsa.PrivateKey costs about 600 bytes more: ECDSA expands it
// for the moment of signing.
type Key struct {
	Private *rsa.PrivateKey
	Public  []byte // TPM2B_PUBLIC: 282 bytes for RSA-2048, 90 for P-256
	Name    []byte // 000b || sha256(TPMT_PUBLIC)

	ecD [p256Size]byte // the P-256 scalar, big-endian; set when ec
	ec  bool
}

// Type is the key's algorithm.
func (k *Key) Type() KeyType {
	if k.ec {
		return ECCP256
	}
	return RSA2048
}

// SignatureScheme is the scheme the key signs with, as the verifier names it: rsassa or ecdsa.
func (k *Key) SignatureScheme() string {
	if k.ec {
		return "ecdsa"
	}
	return "rsassa"
}

// KeyAlgorithm is the key's algorithm as a push agent reports it in certification_keys: rsa or ecc.
func (k *Key) KeyAlgorithm() string {
	if k.ec {
		return "ecc"
	}
	return "rsa"
}

// KeySize is the key's size in bits as reported in certification_keys.
func (k *Key) KeySize() int {
	if k.ec {
		return 256
	}
	return KeyBits
}

// akAttributes are the object attributes 0x00050072 of a restricted signing key created inside a TPM. The verifier
// does not check them, but they are part of the Name, so they are fixed here.
var akAttributes = tpm2.TPMAObject{
	FixedTPM:            true,
	FixedParent:         true,
	SensitiveDataOrigin: true,
	UserWithAuth:        true,
	Restricted:          true,
	SignEncrypt:         true,
}

// NewKey wraps an RSA-2048 private key as an AK.
func NewKey(priv *rsa.PrivateKey) (*Key, error) {
	if priv == nil {
		return nil, errors.New("softtpm: private key is nil")
	}
	if bits := priv.N.BitLen(); bits != KeyBits {
		return nil, fmt.Errorf("softtpm: AK must be RSA-%d, got a %d-bit modulus", KeyBits, bits)
	}
	if priv.E < 3 || priv.E > 0xffffffff {
		return nil, fmt.Errorf("softtpm: RSA public exponent %d does not fit a TPM (3..2^32-1)", priv.E)
	}
	exp := uint32(priv.E)
	if priv.E == defaultExponent {
		exp = 0
	}
	modulus := priv.N.FillBytes(make([]byte, KeyBits/8))
	pub := tpm2.TPMTPublic{
		Type:             tpm2.TPMAlgRSA,
		NameAlg:          tpm2.TPMAlgSHA256,
		ObjectAttributes: akAttributes,
		Parameters: tpm2.NewTPMUPublicParms(tpm2.TPMAlgRSA, &tpm2.TPMSRSAParms{
			Symmetric: tpm2.TPMTSymDefObject{Algorithm: tpm2.TPMAlgNull},
			Scheme: tpm2.TPMTRSAScheme{
				Scheme:  tpm2.TPMAlgRSASSA,
				Details: tpm2.NewTPMUAsymScheme(tpm2.TPMAlgRSASSA, &tpm2.TPMSSigSchemeRSASSA{HashAlg: tpm2.TPMAlgSHA256}),
			},
			KeyBits:  KeyBits,
			Exponent: exp,
		}),
		Unique: tpm2.NewTPMUPublicID(tpm2.TPMAlgRSA, &tpm2.TPM2BPublicKeyRSA{Buffer: modulus}),
	}
	public := tpm2.Marshal(tpm2.New2B(pub))
	name, err := NameOf(public)
	if err != nil {
		return nil, fmt.Errorf("softtpm: name of new AK: %w", err)
	}
	return &Key{Private: priv, Public: public, Name: name}, nil
}

// GenerateKey creates a fresh RSA-2048 AK from the entropy source r (crypto/rand when r is nil).
func GenerateKey(r io.Reader) (*Key, error) {
	if r == nil {
		r = rand.Reader
	}
	priv, err := rsa.GenerateKey(r, KeyBits)
	if err != nil {
		return nil, fmt.Errorf("softtpm: generate RSA-%d key: %w", KeyBits, err)
	}
	return NewKey(priv)
}

// PublicBase64 is the AK as stored in verifiermain.ak_tpm: standard base64 of TPM2B_PUBLIC.
func (k *Key) PublicBase64() string {
	return base64.StdEncoding.EncodeToString(k.Public)
}

// splitPublic checks the TPM2B size prefix and decodes the TPMT_PUBLIC inside, rejecting trailing bytes.
func splitPublic(tpm2bPublic []byte) (*tpm2.TPMTPublic, []byte, error) {
	if len(tpm2bPublic) < 2 {
		return nil, nil, fmt.Errorf("TPM2B_PUBLIC is %d bytes, too short for its size field", len(tpm2bPublic))
	}
	size := int(tpm2bPublic[0])<<8 | int(tpm2bPublic[1])
	inner := tpm2bPublic[2:]
	if size != len(inner) {
		return nil, nil, fmt.Errorf("TPM2B_PUBLIC size field says %d bytes but %d follow", size, len(inner))
	}
	pub, err := unmarshal[tpm2.TPMTPublic](inner)
	if err != nil {
		return nil, nil, fmt.Errorf("TPMT_PUBLIC: %w", err)
	}
	if n := len(tpm2.Marshal(*pub)); n != len(inner) {
		return nil, nil, fmt.Errorf("TPMT_PUBLIC has %d trailing bytes", len(inner)-n)
	}
	return pub, inner, nil
}

// NameOf computes the TPM Name of a TPM2B_PUBLIC: nameAlg || H_nameAlg(TPMT_PUBLIC). Only SHA-256 names are
// supported, as the verifier only ever sees those from this tool.
func NameOf(tpm2bPublic []byte) ([]byte, error) {
	if isCanonicalECCPublic(tpm2bPublic) {
		sum := sha256.Sum256(tpm2bPublic[2:])
		return append([]byte{0x00, 0x0b}, sum[:]...), nil
	}
	pub, inner, err := splitPublic(tpm2bPublic)
	if err != nil {
		return nil, fmt.Errorf("softtpm: name: %w", err)
	}
	if pub.NameAlg != tpm2.TPMAlgSHA256 {
		return nil, fmt.Errorf("softtpm: name: nameAlg 0x%04x is not SHA-256 (0x000b)", uint16(pub.NameAlg))
	}
	sum := sha256.Sum256(inner)
	return append([]byte{0x00, 0x0b}, sum[:]...), nil
}

// ParsePublic decodes an AK from TPM2B_PUBLIC with the same restrictions as the verifier's
// pubkey_parms_from_tpm2b_public. RSA (*rsa.PublicKey): symmetric NULL, keyBits equal to the modulus size. ECC
// (*ecdsa.PublicKey): NIST P-256 only, symmetric and KDF NULL, a point on the curve.
func ParsePublic(tpm2bPublic []byte) (crypto.PublicKey, error) {
	if isCanonicalECCPublic(tpm2bPublic) {
		// The layout every P-256 AK of this tool has: read without go-tpm's reflection, which allocates about
		// 24 KB per key (a simulated verifier enrolling a million agents parses a million of them).
		k, err := parseCanonicalECCPublic(tpm2bPublic)
		if err != nil {
			return nil, fmt.Errorf("softtpm: parse AK: %w", err)
		}
		return k, nil
	}
	pub, _, err := splitPublic(tpm2bPublic)
	if err != nil {
		return nil, fmt.Errorf("softtpm: parse AK: %w", err)
	}
	switch pub.Type {
	case tpm2.TPMAlgRSA:
		return parseRSAPublic(pub)
	case tpm2.TPMAlgECC:
		k, err := parseECCPublic(pub)
		if err != nil {
			return nil, fmt.Errorf("softtpm: parse AK: %w", err)
		}
		return k, nil
	}
	return nil, fmt.Errorf("softtpm: parse AK: type 0x%04x is neither RSA (0x0001) nor ECC (0x0023)", uint16(pub.Type))
}

func parseRSAPublic(pub *tpm2.TPMTPublic) (*rsa.PublicKey, error) {
	parms, err := pub.Parameters.RSADetail()
	if err != nil {
		return nil, fmt.Errorf("softtpm: parse AK: RSA parameters: %w", err)
	}
	if parms.Symmetric.Algorithm != tpm2.TPMAlgNull {
		return nil, fmt.Errorf("softtpm: parse AK: symmetric algorithm 0x%04x is not NULL (0x0010)", uint16(parms.Symmetric.Algorithm))
	}
	unique, err := pub.Unique.RSA()
	if err != nil {
		return nil, fmt.Errorf("softtpm: parse AK: modulus: %w", err)
	}
	modulus := unique.Buffer
	if len(modulus) == 0 {
		return nil, errors.New("softtpm: parse AK: modulus is empty")
	}
	if int(parms.KeyBits) != len(modulus)*8 {
		return nil, fmt.Errorf("softtpm: parse AK: keyBits %d does not match a %d-byte modulus", parms.KeyBits, len(modulus))
	}
	n := new(big.Int).SetBytes(modulus)
	if n.BitLen() != int(parms.KeyBits) {
		return nil, fmt.Errorf("softtpm: parse AK: modulus has %d significant bits, keyBits says %d", n.BitLen(), parms.KeyBits)
	}
	e := int(parms.Exponent)
	if parms.Exponent == 0 {
		e = defaultExponent
	}
	if e < 3 || e%2 == 0 {
		return nil, fmt.Errorf("softtpm: parse AK: invalid public exponent %d", parms.Exponent)
	}
	return &rsa.PublicKey{N: n, E: e}, nil
}

// unmarshal wraps tpm2.Unmarshal so that a malformed input can never crash the caller, whatever go-tpm does with it.
func unmarshal[T tpm2.Marshallable, P interface {
	*T
	tpm2.Unmarshallable
}](b []byte) (v *T, err error) {
	defer func() {
		if r := recover(); r != nil {
			v, err = nil, fmt.Errorf("malformed structure (%v)", r)
		}
	}()
	return tpm2.Unmarshal[T, P](b)
}

// LoadOrCreateKeyPool returns n AKs. With a path, keys are read from and kept in that file (concatenated PKCS#8
// PEM blocks, mode 0600) so that enrolled agents keep their AKs across runs; when the file holds fewer than n keys,
// new ones are generated from r and the file is rewritten atomically. Extra keys in the file are kept but not
// returned. With path "", keys are generated in memory only.
func LoadOrCreateKeyPool(path string, n int, r io.Reader) ([]*Key, error) {
	if n < 0 {
		return nil, fmt.Errorf("softtpm: key pool size %d is negative", n)
	}
	var keys []*Key
	var existing []byte
	if path != "" {
		b, err := os.ReadFile(path)
		switch {
		case err == nil:
			existing = b
			keys, err = decodeKeyFile(b)
			if err != nil {
				return nil, fmt.Errorf("softtpm: key pool %s: %w", path, err)
			}
		case errors.Is(err, os.ErrNotExist):
		default:
			return nil, fmt.Errorf("softtpm: key pool: %w", err)
		}
	}
	if len(keys) >= n {
		return keys[:n], nil
	}
	added := make([]byte, 0, (n-len(keys))*1800)
	for len(keys) < n {
		k, err := GenerateKey(r)
		if err != nil {
			return nil, fmt.Errorf("softtpm: key pool: %w", err)
		}
		der, err := x509.MarshalPKCS8PrivateKey(k.Private)
		if err != nil {
			return nil, fmt.Errorf("softtpm: key pool: encode key %d: %w", len(keys), err)
		}
		added = append(added, pem.EncodeToMemory(&pem.Block{Type: "PRIVATE KEY", Bytes: der})...)
		keys = append(keys, k)
	}
	if path != "" {
		if err := writeFileAtomic(path, append(existing, added...)); err != nil {
			return nil, fmt.Errorf("softtpm: key pool: %w", err)
		}
	}
	return keys, nil
}

func decodeKeyFile(b []byte) ([]*Key, error) {
	var keys []*Key
	rest := b
	for {
		var block *pem.Block
		block, rest = pem.Decode(rest)
		if block == nil {
			break
		}
		idx := len(keys)
		if block.Type != "PRIVATE KEY" {
			return nil, fmt.Errorf("key %d: PEM block type %q, want \"PRIVATE KEY\" (PKCS#8)", idx, block.Type)
		}
		parsed, err := x509.ParsePKCS8PrivateKey(block.Bytes)
		if err != nil {
			return nil, fmt.Errorf("key %d: %w", idx, err)
		}
		priv, ok := parsed.(*rsa.PrivateKey)
		if !ok {
			return nil, fmt.Errorf("key %d: %T is not an RSA key", idx, parsed)
		}
		k, err := NewKey(priv)
		if err != nil {
			return nil, fmt.Errorf("key %d: %w", idx, err)
		}
		keys = append(keys, k)
	}
	for _, c := range rest {
		if c != ' ' && c != '\n' && c != '\r' && c != '\t' {
			return nil, fmt.Errorf("after key %d: data that is not a PEM block", len(keys))
		}
	}
	return keys, nil
}

// writeFileAtomic replaces path so that a crash never leaves a truncated pool, which would silently orphan the
// AKs of agents already enrolled in the verifier.
func writeFileAtomic(path string, data []byte) error {
	f, err := os.CreateTemp(filepath.Dir(path), "."+filepath.Base(path)+".tmp*")
	if err != nil {
		return err
	}
	tmp := f.Name()
	defer os.Remove(tmp) // no-op after a successful rename
	if err := f.Chmod(0o600); err != nil {
		f.Close()
		return err
	}
	if _, err := f.Write(data); err != nil {
		f.Close()
		return err
	}
	if err := f.Sync(); err != nil {
		f.Close()
		return err
	}
	if err := f.Close(); err != nil {
		return err
	}
	return os.Rename(tmp, path)
}

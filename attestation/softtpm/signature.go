package softtpm

import (
	"crypto"
	"crypto/ecdsa"
	"crypto/rand"
	"crypto/rsa"
	"crypto/sha256"
	"encoding/binary"
	"errors"
	"fmt"
	"math/big"
)

// Signature scheme identifiers (TPM_ALG_ID).
const (
	AlgRSASSA uint16 = 0x0014
	AlgRSAPSS uint16 = 0x0016
)

// Sign signs message the way a TPM signs a TPMS_ATTEST with the AK and returns the TPMT_SIGNATURE (TPM 2.0 Part 2,
// 11.3.4). RSA: 0014 000b 0100 followed by the PKCS#1 v1.5 signature of SHA-256(message), deterministic. ECC:
// 0018 000b, then r and s of the ECDSA signature of SHA-256(message) as two TPM2B_ECC_PARAMETERs of 32 bytes each
// (TPMS_SIGNATURE_ECC), randomized as a TPM's is.
func Sign(k *Key, message []byte) ([]byte, error) {
	if k == nil || (k.Private == nil && !k.ec) {
		return nil, errors.New("softtpm: sign: no key")
	}
	digest := sha256.Sum256(message)
	if k.ec {
		r, s, err := ecdsa.Sign(rand.Reader, k.ECDSA(), digest[:])
		if err != nil {
			return nil, fmt.Errorf("softtpm: sign: %w", err)
		}
		out := make([]byte, 4+2*(2+p256Size))
		binary.BigEndian.PutUint16(out[0:], AlgECDSA)
		binary.BigEndian.PutUint16(out[2:], AlgSHA256)
		binary.BigEndian.PutUint16(out[4:], p256Size)
		r.FillBytes(out[6 : 6+p256Size])
		binary.BigEndian.PutUint16(out[6+p256Size:], p256Size)
		s.FillBytes(out[8+p256Size:])
		return out, nil
	}
	sig, err := rsa.SignPKCS1v15(nil, k.Private, crypto.SHA256, digest[:])
	if err != nil {
		return nil, fmt.Errorf("softtpm: sign: %w", err)
	}
	out := make([]byte, 6, 6+len(sig))
	binary.BigEndian.PutUint16(out[0:], AlgRSASSA)
	binary.BigEndian.PutUint16(out[2:], AlgSHA256)
	binary.BigEndian.PutUint16(out[4:], uint16(len(sig)))
	return append(out, sig...), nil
}

// ParseSignature splits a TPMT_SIGNATURE of scheme RSASSA, RSAPSS or ECDSA into its algorithm, hash and signature
// bytes, rejecting other schemes, short input and trailing bytes. For RSA the signature is the TPM2B's content; for
// ECDSA it is r and s, each as its TPM2B_ECC_PARAMETER (see ParseECDSASignature).
func ParseSignature(b []byte) (sigAlg, hashAlg uint16, sig []byte, err error) {
	if len(b) < 6 {
		return 0, 0, nil, fmt.Errorf("softtpm: TPMT_SIGNATURE is %d bytes, too short for its header", len(b))
	}
	sigAlg = binary.BigEndian.Uint16(b)
	hashAlg = binary.BigEndian.Uint16(b[2:])
	switch sigAlg {
	case AlgRSASSA, AlgRSAPSS:
	case AlgECDSA:
		if _, _, err := ParseECDSASignature(b[4:]); err != nil {
			return 0, 0, nil, err
		}
		return sigAlg, hashAlg, b[4:], nil
	default:
		return 0, 0, nil, fmt.Errorf("softtpm: TPMT_SIGNATURE sigAlg 0x%04x is not RSASSA (0x0014), RSAPSS (0x0016) "+
			"or ECDSA (0x0018)", sigAlg)
	}
	size := int(binary.BigEndian.Uint16(b[4:]))
	if rest := len(b) - 6; rest != size {
		return 0, 0, nil, fmt.Errorf("softtpm: TPMT_SIGNATURE size field says %d bytes but %d follow", size, rest)
	}
	return sigAlg, hashAlg, b[6:], nil
}

// ParseECDSASignature splits the body of an ECDSA TPMT_SIGNATURE (after sigAlg and hash) into r and s, each 1 to
// 32 bytes as the verifier accepts for P-256, with nothing after s.
func ParseECDSASignature(b []byte) (r, s []byte, err error) {
	r, rest, err := cutTPM2B(b)
	if err != nil {
		return nil, nil, fmt.Errorf("softtpm: ECDSA signature r: %w", err)
	}
	s, rest, err = cutTPM2B(rest)
	if err != nil {
		return nil, nil, fmt.Errorf("softtpm: ECDSA signature s: %w", err)
	}
	if len(rest) != 0 {
		return nil, nil, fmt.Errorf("softtpm: ECDSA signature has %d trailing bytes", len(rest))
	}
	if len(r) == 0 || len(r) > p256Size || len(s) == 0 || len(s) > p256Size {
		return nil, nil, fmt.Errorf("softtpm: ECDSA signature r and s are %d and %d bytes, want 1..%d", len(r), len(s), p256Size)
	}
	return r, s, nil
}

func cutTPM2B(b []byte) (v, rest []byte, err error) {
	if len(b) < 2 {
		return nil, nil, fmt.Errorf("%d bytes, too short for a size field", len(b))
	}
	n := int(binary.BigEndian.Uint16(b))
	if len(b)-2 < n {
		return nil, nil, fmt.Errorf("size field says %d bytes but %d follow", n, len(b)-2)
	}
	return b[2 : 2+n], b[2+n:], nil
}

// VerifySignature checks a TPMT_SIGNATURE over message like the verifier does: for an RSA AK only RSASSA, for an
// ECC AK only ECDSA, in both cases with SHA-256.
func VerifySignature(pub crypto.PublicKey, message, tpmtSignature []byte) error {
	sigAlg, hashAlg, sig, err := ParseSignature(tpmtSignature)
	if err != nil {
		return err
	}
	if hashAlg != AlgSHA256 {
		return fmt.Errorf("softtpm: verify: hash 0x%04x is not SHA-256 (0x000b)", hashAlg)
	}
	digest := sha256.Sum256(message)
	switch pub := pub.(type) {
	case *rsa.PublicKey:
		if pub == nil {
			break
		}
		if sigAlg != AlgRSASSA {
			return fmt.Errorf("softtpm: verify: signature scheme 0x%04x is not accepted for RSA keys (only RSASSA 0x0014)", sigAlg)
		}
		if len(sig) != pub.Size() {
			return fmt.Errorf("softtpm: verify: signature is %d bytes, key needs %d", len(sig), pub.Size())
		}
		if err := rsa.VerifyPKCS1v15(pub, crypto.SHA256, digest[:], sig); err != nil {
			return fmt.Errorf("softtpm: verify: %w", err)
		}
		return nil
	case *ecdsa.PublicKey:
		if pub == nil {
			break
		}
		if sigAlg != AlgECDSA {
			return fmt.Errorf("softtpm: verify: signature scheme 0x%04x is not accepted for EC keys (only ECDSA 0x0018)", sigAlg)
		}
		r, s, err := ParseECDSASignature(sig)
		if err != nil {
			return err
		}
		if !ecdsa.Verify(pub, digest[:], new(big.Int).SetBytes(r), new(big.Int).SetBytes(s)) {
			return errors.New("softtpm: verify: ECDSA signature does not verify")
		}
		return nil
	}
	return fmt.Errorf("softtpm: verify: no usable public key (%T)", pub)
}

package softtpm

import (
	"crypto"
	"crypto/rsa"
	"crypto/sha256"
	"encoding/binary"
	"errors"
	"fmt"
)

// Signature scheme identifiers (TPM_ALG_ID).
const (
	AlgRSASSA uint16 = 0x0014
	AlgRSAPSS uint16 = 0x0016
)

// Sign signs message the way a TPM signs a TPMS_ATTEST with an RSASSA/SHA-256 AK and returns the TPMT_SIGNATURE:
// 0014 000b 0100 followed by the PKCS#1 v1.5 signature of SHA-256(message). The signature is deterministic.
func Sign(k *Key, message []byte) ([]byte, error) {
	if k == nil || k.Private == nil {
		return nil, errors.New("softtpm: sign: no key")
	}
	digest := sha256.Sum256(message)
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

// ParseSignature splits an RSA TPMT_SIGNATURE (RSASSA or RSAPSS) into its algorithm, hash and signature bytes,
// rejecting other schemes, short input and trailing bytes.
func ParseSignature(b []byte) (sigAlg, hashAlg uint16, sig []byte, err error) {
	if len(b) < 6 {
		return 0, 0, nil, fmt.Errorf("softtpm: TPMT_SIGNATURE is %d bytes, too short for its header", len(b))
	}
	sigAlg = binary.BigEndian.Uint16(b)
	hashAlg = binary.BigEndian.Uint16(b[2:])
	if sigAlg != AlgRSASSA && sigAlg != AlgRSAPSS {
		return 0, 0, nil, fmt.Errorf("softtpm: TPMT_SIGNATURE sigAlg 0x%04x is not RSASSA (0x0014) or RSAPSS (0x0016)", sigAlg)
	}
	size := int(binary.BigEndian.Uint16(b[4:]))
	if rest := len(b) - 6; rest != size {
		return 0, 0, nil, fmt.Errorf("softtpm: TPMT_SIGNATURE size field says %d bytes but %d follow", size, rest)
	}
	return sigAlg, hashAlg, b[6:], nil
}

// VerifySignature checks a TPMT_SIGNATURE over message like the verifier does for RSA AKs: only RSASSA with SHA-256.
func VerifySignature(pub *rsa.PublicKey, message, tpmtSignature []byte) error {
	if pub == nil {
		return errors.New("softtpm: verify: no public key")
	}
	sigAlg, hashAlg, sig, err := ParseSignature(tpmtSignature)
	if err != nil {
		return err
	}
	if sigAlg != AlgRSASSA {
		return fmt.Errorf("softtpm: verify: signature scheme 0x%04x is not accepted for RSA keys (only RSASSA 0x0014)", sigAlg)
	}
	if hashAlg != AlgSHA256 {
		return fmt.Errorf("softtpm: verify: hash 0x%04x is not SHA-256 (0x000b)", hashAlg)
	}
	if len(sig) != pub.Size() {
		return fmt.Errorf("softtpm: verify: signature is %d bytes, key needs %d", len(sig), pub.Size())
	}
	digest := sha256.Sum256(message)
	if err := rsa.VerifyPKCS1v15(pub, crypto.SHA256, digest[:], sig); err != nil {
		return fmt.Errorf("softtpm: verify: %w", err)
	}
	return nil
}

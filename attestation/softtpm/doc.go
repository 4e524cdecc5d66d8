// Package softtpm is a software stand-in for an agent's TPM 2.0: it holds an RSA-2048 attestation key (AK) and
// produces the exact bytes a Keylime verifier expects from a hardware TPM in push mode: the AK as TPM2B_PUBLIC, its
// TPM Name, TPMS_ATTEST structures for TPM2_Quote and TPM2_Certify (the PoP), TPMT_SIGNATURE and the tpm2-tools PCR
// blob sent as subject_data. It also parses all of them back, strictly, for the simulated verifier and for tests.
//
// Everything here is pure computation over bytes, keys and a per-agent clock. The package must not know about HTTP,
// JSON:API bodies, challenges' transport encodings, IMA logs (the caller sets PCR values), configuration, metrics or
// the verifier's database.
package softtpm

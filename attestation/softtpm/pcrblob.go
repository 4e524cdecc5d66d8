package softtpm

import (
	"encoding/binary"
	"fmt"
)

// Layout of the tpm2-tools `tpm2_quote -o` PCR file: an in-memory dump of TPML_PCR_SELECTION followed by a count
// and that many TPML_DIGEST, all little-endian and with C struct padding.
const (
	blobSelSlots     = 16 // TPML_PCR_SELECTION.pcrSelections[HASH_COUNT]
	blobSelSlotSize  = 8  // u16 hash, u8 sizeofSelect, u8 pcrSelect[4], 1 pad byte (documented as [3] + 2 pad)
	blobDigestsPer   = 8  // TPML_DIGEST.digests[8]
	blobDigestBuf    = 64 // TPM2B_DIGEST buffer is sizeof(TPMU_HA)
	blobDigestSlot   = 2 + blobDigestBuf
	blobListSize     = 4 + blobDigestsPer*blobDigestSlot // 532
	blobHeaderSize   = 4 + blobSelSlots*blobSelSlotSize  // 132
	blobSizeofSelect = 3
)

// EncodePCRBlob writes the tpm2-tools PCR file for one bank (spec §4.3): the selection in slot 0 and the values in
// ascending PCR order, eight per TPML_DIGEST. The result is what the verifier recomputes pcrDigest from.
func EncodePCRBlob(bank uint16, pcrs []int, values [][]byte) ([]byte, error) {
	sel, err := pcrSelectBits(pcrs)
	if err != nil {
		return nil, fmt.Errorf("softtpm: PCR blob: %w", err)
	}
	if err := checkPCRValues(bank, pcrs, values); err != nil {
		return nil, fmt.Errorf("softtpm: PCR blob: %w", err)
	}
	nLists := (len(pcrs) + blobDigestsPer - 1) / blobDigestsPer
	b := make([]byte, blobHeaderSize+4+nLists*blobListSize)
	binary.LittleEndian.PutUint32(b, 1)
	binary.LittleEndian.PutUint16(b[4:], bank)
	b[6] = blobSizeofSelect
	copy(b[7:10], sel[:])
	binary.LittleEndian.PutUint32(b[blobHeaderSize:], uint32(nLists))
	off := blobHeaderSize + 4
	for l := 0; l < nLists; l++ {
		chunk := values[l*blobDigestsPer : min(len(values), (l+1)*blobDigestsPer)]
		binary.LittleEndian.PutUint32(b[off:], uint32(len(chunk)))
		for i, v := range chunk {
			slot := off + 4 + i*blobDigestSlot
			binary.LittleEndian.PutUint16(b[slot:], uint16(len(v)))
			copy(b[slot+2:], v)
		}
		off += blobListSize
	}
	return b, nil
}

// ParsePCRBlob decodes a tpm2-tools PCR file as strictly as the verifier's tpm_util: sizeofSelect must be 0 or 3,
// the blob must end exactly after the announced digest lists, and the values must map one to one onto the selected
// PCRs. Only single-bank blobs (selection count 1, one slot with a non-empty mask) are accepted; the verifier's
// multi-bank handling is only correct in special cases (spec §4.3). Values must be digest-sized for the bank.
// order lists the PCRs in blob order (ascending).
func ParsePCRBlob(b []byte) (bank uint16, values map[int][]byte, order []int, err error) {
	fail := func(format string, args ...any) (uint16, map[int][]byte, []int, error) {
		return 0, nil, nil, fmt.Errorf("softtpm: PCR blob: "+format, args...)
	}
	if len(b) < blobHeaderSize+4 {
		return fail("%d bytes, shorter than the %d-byte header", len(b), blobHeaderSize+4)
	}
	count := binary.LittleEndian.Uint32(b)
	if count != 1 {
		return fail("selection count is %d, only single-bank blobs (1) are supported", count)
	}
	var mask []byte
	found := false
	for s := 0; s < blobSelSlots; s++ {
		slot := b[4+s*blobSelSlotSize:]
		alg := binary.LittleEndian.Uint16(slot)
		size := slot[2]
		if size != 0 && size != blobSizeofSelect {
			return fail("selection slot %d: sizeofSelect %d, must be 0 or 3", s, size)
		}
		if size == 0 || (slot[3]|slot[4]|slot[5]) == 0 {
			continue
		}
		if found {
			return fail("selection slot %d selects a second bank (0x%04x)", s, alg)
		}
		found, bank, mask = true, alg, slot[3:6]
	}
	if !found {
		return fail("no PCRs selected")
	}
	digestSize := DigestSize(bank)
	if digestSize == 0 {
		return fail("unsupported bank 0x%04x", bank)
	}
	nLists := binary.LittleEndian.Uint32(b[blobHeaderSize:])
	if want := uint64(blobHeaderSize+4) + uint64(nLists)*blobListSize; want != uint64(len(b)) {
		return fail("%d digest lists need %d bytes, blob has %d", nLists, want, len(b))
	}
	var raw [][]byte
	off := blobHeaderSize + 4
	for l := 0; l < int(nLists); l++ {
		// The verifier ignores TPML_DIGEST.count and relies on size 0 for unused slots; so does this parser.
		for i := 0; i < blobDigestsPer; i++ {
			slot := off + 4 + i*blobDigestSlot
			sz := int(binary.LittleEndian.Uint16(b[slot:]))
			if sz == 0 {
				continue
			}
			if sz != digestSize {
				return fail("list %d value %d is %d bytes, bank 0x%04x needs %d", l, i, sz, bank, digestSize)
			}
			raw = append(raw, b[slot+2:slot+2+sz])
		}
		off += blobListSize
	}
	order = pcrsFromBits(mask)
	if len(raw) != len(order) {
		return fail("%d values for %d selected PCRs", len(raw), len(order))
	}
	values = make(map[int][]byte, len(order))
	for i, p := range order {
		values[p] = append([]byte(nil), raw[i]...)
	}
	return bank, values, order, nil
}

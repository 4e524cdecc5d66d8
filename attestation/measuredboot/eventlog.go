package measuredboot

import (
	"bytes"
	"crypto"
	_ "crypto/sha1" // registers the hashes a log's banks may use
	_ "crypto/sha256"
	_ "crypto/sha512"
	"encoding/binary"
	"errors"
	"fmt"
)

// TPM_ALG_ID values of the banks a TCG2 log can carry.
const (
	AlgSHA1   uint16 = 0x0004
	AlgSHA256 uint16 = 0x000B
	AlgSHA384 uint16 = 0x000C
	AlgSHA512 uint16 = 0x000D
)

// Event types the replay treats specially.
const (
	evNoAction  uint32 = 0x00000003
	numPCRs            = 24
	maxEventLen        = 16 << 20 // no firmware event is anywhere near this; a larger size is a corrupt log
	maxDigests         = 16       // TPML_DIGEST_VALUES holds at most HASH_COUNT entries
)

var (
	specIDSignature   = []byte("Spec ID Event03\x00")
	startupLocalitySg = []byte("StartupLocality\x00")
)

// Event is one measurement of a crypto-agile (TCG2) event log.
type Event struct {
	PCR     int
	Type    uint32
	Digests map[uint16][]byte // by TPM_ALG_ID
	Data    []byte
}

// Log is a parsed TCG2 event log: the banks its Spec ID header declares and the events after it.
type Log struct {
	// DigestSizes are the banks the header declares, by TPM_ALG_ID.
	DigestSizes map[uint16]int
	Events      []Event
	// locality is the startup locality from a StartupLocality event (0 without one).
	locality byte
}

// Parse decodes a binary TCG2 event log (/sys/kernel/security/tpm0/binary_bios_measurements): a SHA-1 format
// Spec ID Event03 header, then TCG_PCR_EVENT2 records. It rejects what tpm2_eventlog --eventlog-version=2 (the
// verifier's parser) cannot read: another header, a bank the header does not declare, a PCR index beyond 23, or a
// record cut short.
func Parse(raw []byte) (*Log, error) {
	r := &reader{b: raw}
	l := &Log{DigestSizes: map[uint16]int{}}
	if err := l.parseHeader(r); err != nil {
		return nil, fmt.Errorf("measuredboot: event log header: %w", err)
	}
	for n := 1; r.left() > 0; n++ {
		e, err := l.parseEvent(r)
		if err != nil {
			return nil, fmt.Errorf("measuredboot: event %d at byte %d: %w", n, r.off, err)
		}
		if e.Type == evNoAction {
			if bytes.HasPrefix(e.Data, startupLocalitySg) && len(e.Data) > len(startupLocalitySg) {
				l.locality = e.Data[len(startupLocalitySg)]
			}
		}
		l.Events = append(l.Events, e)
	}
	return l, nil
}

// parseHeader reads the first record (TCG_PCClientPCREvent with a SHA-1 sized digest) holding the
// TCG_EfiSpecIdEvent that lists the banks and their digest sizes.
func (l *Log) parseHeader(r *reader) error {
	pcr, typ := r.u32(), r.u32()
	r.skip(20)
	data := r.bytes(int(r.u32()))
	if r.err != nil {
		return r.err
	}
	if pcr != 0 || typ != evNoAction || !bytes.HasPrefix(data, specIDSignature) {
		return errors.New("not a crypto-agile log: the first event is not a Spec ID Event03")
	}
	h := &reader{b: data[len(specIDSignature):]}
	h.skip(4 + 4) // platformClass, specVersionMinor/Major, specErrata, uintnSize
	n := h.u32()
	if h.err == nil && (n == 0 || n > maxDigests) {
		return fmt.Errorf("Spec ID event declares %d algorithms", n)
	}
	for range n {
		alg, size := h.u16(), h.u16()
		if h.err != nil {
			break
		}
		l.DigestSizes[alg] = int(size)
	}
	if h.err != nil {
		return fmt.Errorf("Spec ID event: %w", h.err)
	}
	return nil
}

func (l *Log) parseEvent(r *reader) (Event, error) {
	e := Event{PCR: int(r.u32()), Type: r.u32()}
	count := r.u32()
	if r.err != nil {
		return e, r.err
	}
	if e.PCR >= numPCRs {
		return e, fmt.Errorf("PCR index %d beyond %d", e.PCR, numPCRs-1)
	}
	if count > maxDigests {
		return e, fmt.Errorf("%d digests", count)
	}
	e.Digests = make(map[uint16][]byte, count)
	for range count {
		alg := r.u16()
		size, ok := l.DigestSizes[alg]
		if r.err == nil && !ok {
			return e, fmt.Errorf("digest of algorithm %#04x, which the header does not declare", alg)
		}
		e.Digests[alg] = r.bytes(size)
	}
	size := r.u32()
	if r.err == nil && size > maxEventLen {
		return e, fmt.Errorf("event size %d", size)
	}
	e.Data = r.bytes(int(size))
	return e, r.err
}

// Replay extends every event's digest of bank alg into PCRs that start at zero (PCR 0 at the startup locality
// when the log names one), skipping EV_NO_ACTION, as tpm2_eventlog computes the "pcrs" it reports. It returns the
// PCRs the log touched; the others keep their reset value (zero) on a TPM that booted with this log.
func (l *Log) Replay(alg uint16) (map[int][]byte, error) {
	h, size, err := bank(alg)
	if err != nil {
		return nil, err
	}
	if s, ok := l.DigestSizes[alg]; !ok || s != size {
		return nil, fmt.Errorf("measuredboot: the log has no %s bank", algName(alg))
	}
	pcrs := map[int][]byte{}
	for i, e := range l.Events {
		if e.Type == evNoAction {
			continue
		}
		d, ok := e.Digests[alg]
		if !ok {
			return nil, fmt.Errorf("measuredboot: event %d has no %s digest", i+1, algName(alg))
		}
		cur, ok := pcrs[e.PCR]
		if !ok {
			cur = make([]byte, size)
			if e.PCR == 0 {
				cur[size-1] = l.locality
			}
		}
		hh := h.New()
		hh.Write(cur)
		hh.Write(d)
		pcrs[e.PCR] = hh.Sum(nil)
	}
	return pcrs, nil
}

// BootAggregates are the IMA boot_aggregate values the verifier derives from a replay (tpm2_tools_elparser):
// H(PCR 0 || ... || PCR 7) and H(PCR 0 || ... || PCR 9), hex, each only when all its PCRs are in the replay.
func BootAggregates(alg uint16, pcrs map[int][]byte) []string {
	h, _, err := bank(alg)
	if err != nil {
		return nil
	}
	var out []string
	for _, n := range []int{8, 10} {
		hh := h.New()
		complete := true
		for i := range n {
			v, ok := pcrs[i]
			if !ok {
				complete = false
				break
			}
			hh.Write(v)
		}
		if complete {
			out = append(out, fmt.Sprintf("%x", hh.Sum(nil)))
		}
	}
	return out
}

func bank(alg uint16) (crypto.Hash, int, error) {
	var h crypto.Hash
	switch alg {
	case AlgSHA1:
		h = crypto.SHA1
	case AlgSHA256:
		h = crypto.SHA256
	case AlgSHA384:
		h = crypto.SHA384
	case AlgSHA512:
		h = crypto.SHA512
	default:
		return 0, 0, fmt.Errorf("measuredboot: unsupported bank %#04x", alg)
	}
	return h, h.Size(), nil
}

func algName(alg uint16) string {
	switch alg {
	case AlgSHA1:
		return "sha1"
	case AlgSHA256:
		return "sha256"
	case AlgSHA384:
		return "sha384"
	case AlgSHA512:
		return "sha512"
	}
	return fmt.Sprintf("%#04x", alg)
}

// reader reads little-endian fields and remembers the first short read.
type reader struct {
	b   []byte
	off int
	err error
}

func (r *reader) left() int { return len(r.b) - r.off }

func (r *reader) take(n int) []byte {
	if r.err != nil {
		return nil
	}
	if n < 0 || n > r.left() {
		r.err = fmt.Errorf("%d bytes needed at byte %d, %d left", n, r.off, r.left())
		return nil
	}
	b := r.b[r.off : r.off+n]
	r.off += n
	return b
}

func (r *reader) skip(n int) { r.take(n) }

func (r *reader) bytes(n int) []byte { return bytes.Clone(r.take(n)) }

func (r *reader) u16() uint16 {
	if b := r.take(2); b != nil {
		return binary.LittleEndian.Uint16(b)
	}
	return 0
}

func (r *reader) u32() uint32 {
	if b := r.take(4); b != nil {
		return binary.LittleEndian.Uint32(b)
	}
	return 0
}

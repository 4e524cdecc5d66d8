package measuredboot

import (
	"bytes"
	"crypto/sha256"
	"encoding/base64"
	"encoding/binary"
	"encoding/hex"
	"encoding/json"
	"strings"
	"testing"
)

// What tpm2_eventlog --eventlog-version=2 (tpm2-tools 5.4, the verifier's parser) reports for the captured log's
// sha256 bank.
var tpm2EventlogSHA256 = map[int]string{
	0:  "2ddcc62896c1bddd24a2b381ed091c988a2f01a2a95b04b6c3d404ddb9b5d7f9",
	1:  "fec4ad3fa469ce087afb59f0fe0a6160dba8d093dd538c05a6fec885cd1becb0",
	2:  "d1f352d62da95c9b86ce3b71d8ae4d699915e17cf997fc1cfce6c76668bbc569",
	3:  "3d458cfe55cc03ea1f443f1562beec8df51c75e14a9fcf9a7234a13f198e7969",
	4:  "abe8b3fa6aecb36c2fd93c6f6edde661c21b353d007410a2739d69bfa7e1b9be",
	5:  "f41ec4569d0ab9befd78ab58969f19019dc99c1fb93d93f5e82a216f4d42f7dd",
	6:  "63d508240a9542e283121862db7bf0756a89f8f74cf642d6a29285c82e14dc63",
	7:  "89841f5a9ab230d94ce59592b15bd839b595e7f18c04a6278ab6dc355712cc5a",
	8:  "69452a93e0a416374b21f7760f082132d27ef38bbb8af8410f68601c0e354638",
	9:  "830a265e890df66b3898944b3fa85cd3003eeafaa9398910b91105b67698c194",
	14: "306f9d8b94f17d93dc6e7cf8f5c79d652eb4c6c4d13de2dddc24af416e13ecaf",
}

func capturedRaw(t *testing.T) []byte {
	t.Helper()
	raw, err := base64.StdEncoding.DecodeString(strings.TrimSpace(capturedLog))
	if err != nil {
		t.Fatal(err)
	}
	return raw
}

func TestCapturedReplayMatchesTpm2Eventlog(t *testing.T) {
	b, err := Captured()
	if err != nil {
		t.Fatal(err)
	}
	got := b.PCRs()
	if len(got) != len(tpm2EventlogSHA256) {
		t.Errorf("replay touched %d PCRs, tpm2_eventlog reports %d", len(got), len(tpm2EventlogSHA256))
	}
	for pcr, want := range tpm2EventlogSHA256 {
		if hex.EncodeToString(got[pcr]) != want {
			t.Errorf("PCR %d = %x, tpm2_eventlog says %s", pcr, got[pcr], want)
		}
	}
	if b.Events() != 152 {
		t.Errorf("%d events after the header, want 152", b.Events())
	}
	if b.LogBase64() != strings.TrimSpace(capturedLog) {
		t.Error("LogBase64 is not the captured log")
	}
}

// The reference state describes this log: its S-CRTM and platform-firmware digests are the log's first PCR 0
// measurements, and its kernel's shim, GRUB and kernel digests are boot applications the log measured.
func TestRefstateDescribesTheLog(t *testing.T) {
	l, err := Parse(capturedRaw(t))
	if err != nil {
		t.Fatal(err)
	}
	var ref struct {
		SCRTM []struct {
			SCRTM    map[string]string   `json:"scrtm"`
			Firmware []map[string]string `json:"platform_firmware"`
		} `json:"scrtm_and_bios"`
		Kernels []map[string]any `json:"kernels"`
	}
	if err := json.Unmarshal(capturedRefstate, &ref); err != nil {
		t.Fatal(err)
	}
	digest := func(i int) string { return "0x" + hex.EncodeToString(l.Events[i].Digests[AlgSHA256]) }
	if len(ref.SCRTM) != 1 || ref.SCRTM[0].SCRTM["sha256"] != digest(0) {
		t.Errorf("refstate S-CRTM %v, the log's first event has %s", ref.SCRTM, digest(0))
	}
	for i, fw := range ref.SCRTM[0].Firmware {
		if fw["sha256"] != digest(1+i) || l.Events[1+i].PCR != 0 {
			t.Errorf("refstate platform_firmware[%d] %s, log event %d (PCR %d) has %s", i, fw["sha256"], 2+i,
				l.Events[1+i].PCR, digest(1+i))
		}
	}
	measured := map[string]bool{}
	for i := range l.Events {
		measured[digest(i)] = true
	}
	if len(ref.Kernels) == 0 {
		t.Fatal("refstate lists no kernel")
	}
	for k, v := range ref.Kernels[0] {
		if s, ok := v.(string); ok && strings.HasSuffix(k, "_authcode_sha256") && !measured[s] {
			t.Errorf("refstate kernel %s %s is not a digest the log measured", k, s)
		}
	}
}

func TestTamperedLogReplaysElsewhere(t *testing.T) {
	raw := capturedRaw(t)
	l, err := Parse(raw)
	if err != nil {
		t.Fatal(err)
	}
	// Flip a byte of the sha256 digest of the first PCR 4 event (a boot application).
	want := l.Events[0].Digests[AlgSHA256]
	for _, e := range l.Events {
		if e.PCR == 4 && e.Type != evNoAction {
			want = e.Digests[AlgSHA256]
			break
		}
	}
	i := bytes.Index(raw, want)
	if i < 0 {
		t.Fatal("PCR 4 digest not found in the raw log")
	}
	bad := bytes.Clone(raw)
	bad[i] ^= 0xff
	tl, err := Parse(bad)
	if err != nil {
		t.Fatalf("a flipped digest byte must still parse: %v", err)
	}
	pcrs, err := tl.Replay(AlgSHA256)
	if err != nil {
		t.Fatal(err)
	}
	for pcr, v := range tpm2EventlogSHA256 {
		changed := hex.EncodeToString(pcrs[pcr]) != v
		if changed != (pcr == 4) {
			t.Errorf("PCR %d changed=%v after tampering with a PCR 4 digest", pcr, changed)
		}
	}
}

func TestParseRejectsBrokenLogs(t *testing.T) {
	raw := capturedRaw(t)
	cases := map[string][]byte{
		"empty":          nil,
		"cut in a event": raw[:len(raw)-7],
		"cut in header":  raw[:40],
		"sha1 log":       append(append([]byte{}, raw[:32]...), bytes.Repeat([]byte{0}, 40)...),
	}
	pcr99 := bytes.Clone(raw)
	hdrLen := 32 + int(binary.LittleEndian.Uint32(raw[28:]))
	binary.LittleEndian.PutUint32(pcr99[hdrLen:], 99)
	cases["PCR 99"] = pcr99
	for name, b := range cases {
		if _, err := Parse(b); err == nil {
			t.Errorf("%s: parsed without error", name)
		}
	}
	if _, err := New(raw, []byte(`{}`)); err == nil {
		t.Error("an empty reference state was accepted")
	}
	if _, err := New(raw, []byte(`[1]`)); err == nil {
		t.Error("a reference state that is not an object was accepted")
	}
}

// A StartupLocality event (locality 3, as with an H-CRTM) makes PCR 0 start at 0...03 instead of zero.
func TestStartupLocality(t *testing.T) {
	raw := capturedRaw(t)
	hdrLen := 32 + int(binary.LittleEndian.Uint32(raw[28:]))
	data := append([]byte("StartupLocality\x00"), 3)
	ev := binary.LittleEndian.AppendUint32(nil, 0)
	ev = binary.LittleEndian.AppendUint32(ev, uint32(evNoAction))
	ev = binary.LittleEndian.AppendUint32(ev, 2)
	ev = binary.LittleEndian.AppendUint16(ev, AlgSHA256)
	ev = append(ev, make([]byte, 32)...)
	ev = binary.LittleEndian.AppendUint16(ev, AlgSHA384)
	ev = append(ev, make([]byte, 48)...)
	ev = binary.LittleEndian.AppendUint32(ev, uint32(len(data)))
	ev = append(ev, data...)
	withLoc := append(append(append([]byte{}, raw[:hdrLen]...), ev...), raw[hdrLen:]...)
	l, err := Parse(withLoc)
	if err != nil {
		t.Fatal(err)
	}
	pcrs, err := l.Replay(AlgSHA256)
	if err != nil {
		t.Fatal(err)
	}
	start := make([]byte, 32)
	start[31] = 3
	cur := start
	for _, e := range l.Events {
		if e.PCR == 0 && e.Type != evNoAction {
			s := sha256.Sum256(append(append([]byte{}, cur...), e.Digests[AlgSHA256]...))
			cur = s[:]
		}
	}
	if !bytes.Equal(pcrs[0], cur) || hex.EncodeToString(pcrs[0]) == tpm2EventlogSHA256[0] {
		t.Errorf("PCR 0 with locality 3 = %x, want %x", pcrs[0], cur)
	}
}

func TestBootAggregates(t *testing.T) {
	b, err := Captured()
	if err != nil {
		t.Fatal(err)
	}
	aggs := BootAggregates(AlgSHA256, b.PCRs())
	if len(aggs) != 2 {
		t.Fatalf("%d boot aggregates, want 2 (PCRs 0-7 and 0-9)", len(aggs))
	}
	h := sha256.New()
	for i := range 8 {
		v, _ := hex.DecodeString(tpm2EventlogSHA256[i])
		h.Write(v)
	}
	if aggs[0] != hex.EncodeToString(h.Sum(nil)) {
		t.Errorf("boot aggregate over PCRs 0-7 %s", aggs[0])
	}
	if got := BootAggregates(AlgSHA256, map[int][]byte{0: make([]byte, 32)}); len(got) != 0 {
		t.Errorf("aggregates %v from an incomplete replay", got)
	}
}

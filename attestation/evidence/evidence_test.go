package evidence

import (
	"bytes"
	"crypto/sha256"
	"encoding/hex"
	"encoding/json"
	"os"
	"path/filepath"
	"reflect"
	"strconv"
	"strings"
	"testing"

	"github.com/attestload/attestload/internal/sharedtest"
)

func readVector(t testing.TB, name string) map[string]any {
	t.Helper()
	var v map[string]any
	sharedtest.DecodeVector(t, name, &v)
	return v
}

// field returns the value of the first key of m that starts with prefix (vector keys carry explanations).
func field(t testing.TB, m map[string]any, prefix string) any {
	t.Helper()
	for k, v := range m {
		if k == prefix || strings.HasPrefix(k, prefix+" ") {
			return v
		}
	}
	t.Fatalf("no key %q", prefix)
	return nil
}

func unhex(t testing.TB, s any) []byte {
	t.Helper()
	b, err := hex.DecodeString(s.(string))
	if err != nil {
		t.Fatal(err)
	}
	return b
}

func splitLines(text string) []string {
	if text == "" {
		return nil
	}
	parts := strings.SplitAfter(text, "\n")
	if parts[len(parts)-1] == "" {
		parts = parts[:len(parts)-1]
	}
	return parts
}

func TestVectorIMA(t *testing.T) {
	// The reference agent's log is the synthetic log with the "vec" prefix: 4 entries, growing by 1 per cycle.
	s, err := newSynthetic("vec", 4, 1, 5)
	if err != nil {
		t.Fatal(err)
	}
	log := s.NewAgentLog()
	for cycle, name := range []string{"02-agent1-cycle1.json", "03-agent1-cycle2.json", "04-agent1-cycle3.json"} {
		t.Run(name, func(t *testing.T) {
			v := readVector(t, name)
			ima := v["ima"].(map[string]any)
			full := ima["full_log_so_far"].(string)
			offset := int(field(t, ima, "starting_offset").(float64))
			sent := ima["entries_sent"].(string)
			trace := field(t, ima, "entries_trace").([]any)
			lines := splitLines(full)
			if len(lines) != len(trace) {
				t.Fatalf("%d lines, %d trace entries", len(lines), len(trace))
			}
			pcr := make([]byte, 32)
			for i, l := range lines {
				tr := trace[i].(map[string]any)
				e, err := ParseLine(l)
				if err != nil {
					t.Fatalf("line %d: %v", i, err)
				}
				if got := TemplateBytes(e.Alg, e.FileDigest, e.Path); !bytes.Equal(got, unhex(t, tr["template_hex"])) {
					t.Errorf("entry %d template %x", i, got)
				}
				if got := ExtendValue(e); !bytes.Equal(got, unhex(t, tr["pcr10_extend_value_hex"])) {
					t.Errorf("entry %d extend %x", i, got)
				}
				pcr = Extend(pcr, ExtendValue(e))
				if !bytes.Equal(pcr, unhex(t, tr["pcr10_after_hex"])) {
					t.Errorf("entry %d PCR10 %x", i, pcr)
				}
				if err := e.CheckTemplateHash(); err != nil {
					t.Errorf("entry %d: %v", i, err)
				}
				if FormatLine(e.Alg, e.FileDigest, e.Path) != l {
					t.Errorf("entry %d: FormatLine does not reproduce %q", i, l)
				}
			}
			if strings.Join(lines[offset:], "") != sent {
				t.Errorf("lines from offset %d are not entries_sent", offset)
			}

			// The synthetic generator reproduces the same log, offsets and PCR 10 (the quoted value).
			if cycle > 0 {
				log.Grow()
			}
			if log.EntryCount() != len(lines) {
				t.Fatalf("synthetic log has %d entries, want %d", log.EntryCount(), len(lines))
			}
			all, n, err := log.Entries(0)
			if err != nil || all != full || n != len(lines) {
				t.Errorf("Entries(0) = %d lines, %v; differs from full_log_so_far", n, err)
			}
			part, n, err := log.Entries(offset)
			if err != nil || part != sent || n != len(lines)-offset {
				t.Errorf("Entries(%d) = %q, %d, %v; want %q", offset, part, n, err, sent)
			}
			quoted := field(t, v["inputs"].(map[string]any), "pcr_values_hex").(map[string]any)["10"]
			if !bytes.Equal(log.PCR10(), unhex(t, quoted)) || !bytes.Equal(log.PCR10(), pcr) {
				t.Errorf("PCR10 %x, quoted %s", log.PCR10(), quoted)
			}
		})
	}
}

// jsonEqual compares two JSON texts as values (the vectors were written by Python with other spacing).
func jsonEqual(t *testing.T, a, b []byte) bool {
	t.Helper()
	var x, y any
	if err := json.Unmarshal(a, &x); err != nil {
		t.Fatal(err)
	}
	if err := json.Unmarshal(b, &y); err != nil {
		t.Fatal(err)
	}
	return reflect.DeepEqual(x, y)
}

func TestVectorPolicies(t *testing.T) {
	v := readVector(t, "00-enrollment.json")
	s, err := newSynthetic("vec", 4, 1, 5)
	if err != nil {
		t.Fatal(err)
	}
	if !jsonEqual(t, s.PolicyJSON(), []byte(v["ima_policy_json"].(string))) {
		t.Errorf("synthetic policy\n%s\ndiffers from the vector's\n%s", s.PolicyJSON(), v["ima_policy_json"])
	}
	q := NewQuoteOnly()
	if !jsonEqual(t, q.PolicyJSON(), []byte(field(t, v, "empty_policy_json").(string))) {
		t.Errorf("quote-only policy %s differs from the vector's empty policy", q.PolicyJSON())
	}
	// Quote-only PCRs follow the vector's derivation, with our own labels.
	var want map[string][]string
	if err := json.Unmarshal([]byte(v["agent2_tpm_policy"].(string)), &want); err != nil {
		t.Fatal(err)
	}
	if hex.EncodeToString(measuredOnce("vec-firmware")) != want["0"][0] || hex.EncodeToString(measuredOnce("vec-secureboot")) != want["7"][0] {
		t.Error("measuredOnce does not follow the vector's PCR 0/7 derivation")
	}
	tp := q.TPMPolicy()
	st := q.StaticPCRs()
	if len(tp) != 2 || len(st) != 2 || tp["0"][0] != hex.EncodeToString(st[0]) || tp["7"][0] != hex.EncodeToString(st[7]) {
		t.Errorf("quote-only TPM policy %v does not match its static PCRs %x", tp, st)
	}
	if q.HasIMA() || q.Generator() != 1 || q.Name() != ProfileQuoteOnly {
		t.Error("quote-only profile metadata")
	}
	l := q.NewAgentLog()
	l.Grow()
	if text, n, err := l.Entries(0); l.EntryCount() != 0 || text != "" || n != 0 || err != nil || !bytes.Equal(l.PCR10(), make([]byte, 32)) {
		t.Error("quote-only agent log should be empty")
	}
	if s.Generator() != 2 || !s.HasIMA() || len(s.TPMPolicy()) != 0 || len(s.StaticPCRs()) != 0 || s.Name() != ProfileIMA {
		t.Error("ima profile metadata")
	}
}

// replayAndCheck replays text from start, checks every entry against the policy and its template hash, and returns
// the final PCR 10.
func replayAndCheck(t *testing.T, p *Policy, start []byte, text string) []byte {
	t.Helper()
	after, entries, err := Replay(start, text)
	if err != nil {
		t.Fatal(err)
	}
	for i, e := range entries {
		if err := p.Check(e); err != nil {
			t.Fatalf("entry %d: %v", i, err)
		}
		if err := e.CheckTemplateHash(); err != nil {
			t.Fatalf("entry %d: %v", i, err)
		}
	}
	if len(after) == 0 {
		return start
	}
	return after[len(after)-1]
}

func TestSyntheticReplays(t *testing.T) {
	for _, c := range []struct{ entries, universe int }{{10, 3}, {50_000, 1000}} {
		t.Run(strconv.Itoa(c.entries), func(t *testing.T) {
			prof, err := NewSynthetic(c.entries, 7, c.universe)
			if err != nil {
				t.Fatal(err)
			}
			p, err := ParsePolicy(prof.PolicyJSON())
			if err != nil {
				t.Fatal(err)
			}
			if len(p.Digests) != c.universe+1 || p.Generator != 2 || p.LogHashAlg != "sha1" {
				t.Errorf("policy has %d paths (want %d), generator %d, %s", len(p.Digests), c.universe+1, p.Generator, p.LogHashAlg)
			}
			log := prof.NewAgentLog()
			text, n, err := log.Entries(0)
			if err != nil || n != c.entries {
				t.Fatalf("Entries(0): %d %v", n, err)
			}
			if got := replayAndCheck(t, p, make([]byte, 32), text); !bytes.Equal(got, log.PCR10()) {
				t.Errorf("replay gives %x, PCR10() %x", got, log.PCR10())
			}
			if !strings.HasPrefix(text, FormatLine("sha256", sha256Of("lt-boot-aggregate"), "boot_aggregate")) {
				t.Error("entry 0 is not boot_aggregate")
			}
		})
	}
}

func sha256Of(s string) []byte {
	d := sha256.Sum256([]byte(s))
	return d[:]
}

func TestGrowRebootEntries(t *testing.T) {
	prof, err := NewSynthetic(5, 3, 4)
	if err != nil {
		t.Fatal(err)
	}
	p, _ := ParsePolicy(prof.PolicyJSON())
	log := prof.NewAgentLog()
	other := prof.NewAgentLog()
	initialPCR := log.PCR10()
	full, _, _ := log.Entries(0)
	for cycle := 1; cycle <= 4; cycle++ {
		before := log.EntryCount()
		beforePCR := log.PCR10()
		log.Grow()
		if log.EntryCount() != before+3 {
			t.Fatalf("cycle %d: %d entries after growing from %d", cycle, log.EntryCount(), before)
		}
		// The incremental batch replays from the previous PCR 10 to the new one, as the verifier does.
		text, n, err := log.Entries(before)
		if err != nil || n != 3 {
			t.Fatalf("Entries(%d): %d %v", before, n, err)
		}
		if got := replayAndCheck(t, p, beforePCR, text); !bytes.Equal(got, log.PCR10()) {
			t.Fatalf("cycle %d: incremental replay %x, PCR10 %x", cycle, got, log.PCR10())
		}
		all, _, _ := log.Entries(0)
		if !strings.HasPrefix(all, full) || !strings.HasSuffix(all, text) {
			t.Fatal("the log is not append-only")
		}
		for k := 0; k <= log.EntryCount(); k++ {
			part, n, err := log.Entries(k)
			if err != nil || n != log.EntryCount()-k || part != strings.Join(splitLines(all)[k:], "") {
				t.Fatalf("Entries(%d) inconsistent with Entries(0)", k)
			}
		}
		full = all
	}
	if _, _, err := log.Entries(log.EntryCount() + 1); err == nil || !strings.Contains(err.Error(), "outside the log") {
		t.Errorf("offset past the end: %v", err)
	}
	if _, _, err := log.Entries(-1); err == nil {
		t.Error("negative offset accepted")
	}
	if other.EntryCount() != 5 || !bytes.Equal(other.PCR10(), initialPCR) {
		t.Error("growing one agent's log changed another's")
	}
	log.Reboot()
	if log.EntryCount() != 5 || !bytes.Equal(log.PCR10(), initialPCR) {
		t.Error("Reboot did not return to the initial log")
	}
	pcr := log.PCR10()
	pcr[0] ^= 1
	if bytes.Equal(pcr, log.PCR10()) {
		t.Error("PCR10 returned internal state")
	}
	if a := testing.AllocsPerRun(20, log.Grow); a != 0 {
		t.Errorf("Grow allocates %v times; per-agent state must stay constant", a)
	}
}

func TestNewSyntheticRanges(t *testing.T) {
	for _, c := range []struct {
		initial, grow, universe int
		want                    string
	}{
		{0, 1, 1, "initial IMA entries 0"},
		{1_000_001, 1, 1, "initial IMA entries 1000001"},
		{1, -1, 1, "growth per cycle -1"},
		{1, 100_001, 1, "growth per cycle 100001"},
		{1, 1, 0, "universe 0"},
		{1, 1, 200_001, "universe 200001"},
	} {
		if _, err := NewSynthetic(c.initial, c.grow, c.universe); err == nil || !strings.Contains(err.Error(), c.want) {
			t.Errorf("NewSynthetic(%d,%d,%d) = %v, want %q", c.initial, c.grow, c.universe, err, c.want)
		}
	}
}

func TestCaptured(t *testing.T) {
	path := sharedtest.Testdata(t, "captured-evidence", "ima_log.txt")
	prof, err := LoadCaptured(path)
	if err != nil {
		t.Fatal(err)
	}
	raw, err := os.ReadFile(path)
	if err != nil {
		t.Fatal(err)
	}
	log := prof.NewAgentLog()
	if log.EntryCount() != 780 {
		t.Fatalf("%d entries, want 780", log.EntryCount())
	}
	text, _, _ := log.Entries(0)
	if text != string(raw) {
		t.Error("captured lines are not sent as read")
	}
	p, err := ParsePolicy(prof.PolicyJSON())
	if err != nil {
		t.Fatal(err)
	}
	if len(p.Digests) != 779 { // one path is measured twice with different digests
		t.Errorf("policy has %d paths, want 779", len(p.Digests))
	}
	if got := replayAndCheck(t, p, make([]byte, 32), text); !bytes.Equal(got, log.PCR10()) {
		t.Errorf("replay %x != PCR10 %x", got, log.PCR10())
	}
	pcr := log.PCR10()
	log.Grow()
	if log.EntryCount() != 780 || !bytes.Equal(log.PCR10(), pcr) {
		t.Error("a captured log must not grow")
	}
	if prof.Name() != ProfileCaptured || !prof.HasIMA() || prof.Generator() != 2 {
		t.Error("captured profile metadata")
	}
}

func TestCapturedBadLines(t *testing.T) {
	good := FormatLine("sha256", sha256Of("x"), "/bin/x")
	dir := t.TempDir()
	for _, c := range []struct {
		name, content, want string
	}{
		{"bad pcr", good + good + strings.Replace(good, "10 ", "11 ", 1), "line 3: PCR field \"11\""},
		{"template", good + strings.Replace(good, "ima-ng", "ima-sig", 1), "line 2: template \"ima-sig\""},
		{"fields", "10 abc\n", "line 1: want 5"},
		{"empty line", good + "\n" + good, "line 2: empty line"},
		{"empty file", "", "no entries"},
		{"long line", strings.Repeat("a", 70_000) + "\n", "after line 0"},
	} {
		p := filepath.Join(dir, strings.ReplaceAll(c.name, " ", "_"))
		if err := os.WriteFile(p, []byte(c.content), 0o600); err != nil {
			t.Fatal(err)
		}
		_, err := LoadCaptured(p)
		if err == nil || !strings.Contains(err.Error(), c.want) {
			t.Errorf("%s: %v, want %q", c.name, err, c.want)
		}
	}
	if _, err := LoadCaptured(filepath.Join(dir, "missing")); err == nil {
		t.Error("missing file accepted")
	}
}

func TestParseLineErrors(t *testing.T) {
	d := strings.Repeat("ab", 32)
	th := strings.Repeat("cd", 20)
	for _, c := range []struct{ line, want string }{
		{"", "empty line"},
		{"10 " + th + " ima-ng sha256:" + d, "want 5"},
		{"10 " + th + " ima-ng sha256:" + d + " /a b", "want 5"},
		{"10  " + th + " ima-ng sha256:" + d + " /a", "want 5"},
		{"x " + th + " ima-ng sha256:" + d + " /a", `PCR field "x"`},
		{"010 " + th + " ima-ng sha256:" + d + " /a", `PCR field "010"`},
		{"10 " + th[:38] + " ima-ng sha256:" + d + " /a", "template hash"},
		{"10 " + strings.ToUpper(th) + " ima-ng sha256:" + d + " /a", "template hash"},
		{"10 " + th + " ima sha256:" + d + " /a", `template "ima"`},
		{"10 " + th + " ima-ng " + d + " /a", "no <alg>: prefix"},
		{"10 " + th + " ima-ng foo:" + d + " /a", `algorithm "foo"`},
		{"10 " + th + " ima-ng sha256:" + d[:62] + " /a", "62 hex digits"},
		{"10 " + th + " ima-ng sha256:" + d[:63] + " /a", "not lowercase hex"},
		{"10 " + th + " ima-ng sha256:" + d + " ", "path is empty"},
		{"10 " + th + " ima-ng sha256:" + d + " /a\r", "control character at byte 2"},
		{"10 " + th + " ima-ng sha256:" + d + " /a\n", ""},
	} {
		_, err := ParseLine(c.line)
		if c.want == "" {
			if err != nil {
				t.Errorf("%q: %v", c.line, err)
			}
			continue
		}
		if err == nil || !strings.Contains(err.Error(), c.want) {
			t.Errorf("%q: %v, want %q", c.line, err, c.want)
		}
	}
	e, _ := ParseLine("10 " + strings.Repeat("0", 40) + " ima-ng sha256:" + d + " /a")
	if err := e.CheckTemplateHash(); err == nil || !strings.Contains(err.Error(), "ToMToU") {
		t.Errorf("zero template hash: %v", err)
	}
	e, _ = ParseLine("10 " + th + " ima-ng sha256:" + d + " /a")
	if err := e.CheckTemplateHash(); err == nil || !strings.Contains(err.Error(), "does not match") {
		t.Errorf("wrong template hash: %v", err)
	}
	if _, _, err := Replay(make([]byte, 32), "10 x"); err == nil {
		t.Error("Replay accepted text without a final newline")
	}
	if _, _, err := Replay(make([]byte, 32), FormatLine("sha256", sha256Of("a"), "/a")+"bad\n"); err == nil || !strings.Contains(err.Error(), "line 2") {
		t.Errorf("Replay bad line: %v", err)
	}
	if _, _, err := Replay(make([]byte, 20), ""); err == nil {
		t.Error("Replay accepted a 20-byte start value")
	}
}

func TestPolicy(t *testing.T) {
	doc := `{"meta":{"version":1,"generator":2},"digests":{"/bin/a":["` + hex.EncodeToString(sha256Of("a")) + `"],
	"/bin/b":["` + strings.ToUpper(hex.EncodeToString(sha256Of("b"))) + `"]},"excludes":["/tmp/.*","/var/log"],
	"ima":{"log_hash_alg":"sha256"}}`
	p, err := ParsePolicy([]byte(doc))
	if err != nil {
		t.Fatal(err)
	}
	if p.LogHashAlg != "sha256" || p.Generator != 2 || len(p.Excludes) != 2 {
		t.Errorf("parsed %+v", p)
	}
	entry := func(path, content string) Entry {
		return Entry{PCR: 10, Template: TemplateNG, Alg: "sha256", FileDigest: sha256Of(content), Path: path}
	}
	for _, c := range []struct {
		e    Entry
		want string
	}{
		{entry("/bin/a", "a"), ""},
		{entry("/bin/b", "b"), ""}, // policy digests are compared case-insensitively
		{entry("/tmp/whatever", "z"), ""},
		{entry("/var/log/x", "z"), ""},
		{entry("/x/tmp/y", "z"), "not in the runtime policy"}, // excludes are anchored at the start
		{entry("/bin/a", "b"), "path /bin/a: digest sha256:" + hex.EncodeToString(sha256Of("b"))},
		{entry("/bin/c", "c"), "path /bin/c is not in"},
	} {
		err := p.Check(c.e)
		if (c.want == "") != (err == nil) || (err != nil && !strings.Contains(err.Error(), c.want)) {
			t.Errorf("Check(%s) = %v, want %q", c.e.Path, err, c.want)
		}
	}
	for _, c := range []struct{ doc, want string }{
		{"", "EOF"},
		{"[]", "cannot unmarshal"},
		{`{"digests":null}`, `"digests" is missing`},
		{`{}`, `"digests" is missing`},
		{`{"digests":{"/a":["xyz"]}}`, `digest "xyz" of "/a" is not hex`},
		{`{"digests":{"/a":[""]}}`, `digest "" of "/a"`},
		{`{"digests":{"/a":"abcd"}}`, "cannot unmarshal"},
		{`{"digests":{},"excludes":["("]}`, `excludes[0] "("`},
		{`{"digests":{}} {}`, "data after"},
	} {
		if _, err := ParsePolicy([]byte(c.doc)); err == nil || !strings.Contains(err.Error(), c.want) {
			t.Errorf("ParsePolicy(%q) = %v, want %q", c.doc, err, c.want)
		}
	}
}

package evidence

import (
	"bufio"
	"bytes"
	"crypto/sha256"
	"encoding/hex"
	"fmt"
	"os"
	"strconv"
	"strings"

	"github.com/attestload/attestload/attestation/measuredboot"
)

// Profile names.
const (
	ProfileIMA       = "ima"
	ProfileQuoteOnly = "quote-only"
	ProfileCaptured  = "captured"
)

// Profile describes what an agent measures and what the verifier is told to expect. A Profile is immutable and
// safe for concurrent use; its per-agent state lives in the AgentLogs it creates.
type Profile interface {
	// Name is one of ProfileIMA, ProfileQuoteOnly, ProfileCaptured.
	Name() string
	// HasIMA reports whether the verifier will request an IMA log (and quote PCR 10).
	HasIMA() bool
	// PolicyJSON is the allowlists.ima_policy text shared by every agent of the profile.
	PolicyJSON() []byte
	// Generator is the allowlists.generator column: 2 with IMA, 1 without.
	Generator() int
	// TPMPolicy is verifiermain.tpm_policy: PCR number -> allowed hex values.
	TPMPolicy() map[string][]string
	// NewAgentLog returns a fresh per-agent log in its initial (just booted) state.
	NewAgentLog() *AgentLog
	// StaticPCRs are PCR values the agent's TPM must hold besides PCR 10 (e.g. 0 and 7 for quote-only).
	StaticPCRs() map[int][]byte
	// MeasuredBoot is the boot the agents show with a UEFI event log (WithMeasuredBoot), nil without.
	MeasuredBoot() *measuredboot.Boot
}

// source is the shared, read-only line store behind AgentLogs of one profile.
type source struct {
	initial, grow int
	// maxEntries bounds the log (captured logs cannot grow); 0 means unbounded.
	maxEntries int
	line       func(i int) string
	extend     func(i int) []byte
	// initialPCR10 is PCR 10 after the initial entries, computed once for all agents.
	initialPCR10 [sha256.Size]byte
}

func (s *source) pcrAfter(start [sha256.Size]byte, from, to int) [sha256.Size]byte {
	var buf [2 * sha256.Size]byte // pcr || extend value, on the stack so growing a log allocates nothing
	pcr := start
	for i := from; i < to; i++ {
		copy(buf[:sha256.Size], pcr[:])
		copy(buf[sha256.Size:], s.extend(i))
		pcr = sha256.Sum256(buf[:])
	}
	return pcr
}

// AgentLog is one agent's IMA log state: only the entry count and PCR 10, the lines themselves come from the
// profile. It is not safe for concurrent use; an agent runs one cycle at a time.
type AgentLog struct {
	src   *source
	count int
	pcr10 [sha256.Size]byte
}

func newAgentLog(src *source) *AgentLog {
	return &AgentLog{src: src, count: src.initial, pcr10: src.initialPCR10}
}

// EntryCount is the number of lines in the log (the capabilities' entry_count).
func (l *AgentLog) EntryCount() int { return l.count }

// Entries returns lines[from:] as one text, each line ending in "\n", and how many lines that is. from ==
// EntryCount gives "" and 0, which the verifier accepts when nothing new was measured.
func (l *AgentLog) Entries(from int) (text string, n int, err error) {
	if from < 0 || from > l.count {
		return "", 0, fmt.Errorf("evidence: starting offset %d outside the log of %d entries", from, l.count)
	}
	size := 0
	for i := from; i < l.count; i++ {
		size += len(l.src.line(i))
	}
	var b strings.Builder
	b.Grow(size)
	for i := from; i < l.count; i++ {
		b.WriteString(l.src.line(i))
	}
	return b.String(), l.count - from, nil
}

// PCR10 is the SHA-256 PCR 10 value after all current entries.
func (l *AgentLog) PCR10() []byte { return append([]byte(nil), l.pcr10[:]...) }

// Grow appends the profile's per-cycle growth of new measurements (none for captured and quote-only logs).
func (l *AgentLog) Grow() {
	to := l.count + l.src.grow
	if l.src.maxEntries > 0 {
		to = min(to, l.src.maxEntries)
	}
	l.pcr10 = l.src.pcrAfter(l.pcr10, l.count, to)
	l.count = to
}

// Reboot returns the log to its initial entries, as after a reboot (pair it with the TPM's Reboot).
func (l *AgentLog) Reboot() {
	l.count = l.src.initial
	l.pcr10 = l.src.initialPCR10
}

// Limits for NewSynthetic.
const (
	MaxInitialEntries = 1_000_000
	MaxGrowPerCycle   = 100_000
	MaxUniverse       = 200_000
)

type synthetic struct {
	src    source
	policy []byte
	// lines[0] is boot_aggregate, lines[1+j] measures file j; extends likewise.
	lines   []string
	extends [][]byte
}

// NewSynthetic returns the "ima" profile: a log whose entry 0 is boot_aggregate and whose entry i > 0 measures
// /usr/bin/lt-file-<(i-1) mod universe>, with file digests derived from the file index. The runtime policy lists
// exactly universe+1 paths. initialEntries is 1..1,000,000, growPerCycle 0..100,000, universe 1..200,000.
func NewSynthetic(initialEntries, growPerCycle, universe int) (Profile, error) {
	if initialEntries < 1 || initialEntries > MaxInitialEntries {
		return nil, fmt.Errorf("evidence: initial IMA entries %d outside 1..%d", initialEntries, MaxInitialEntries)
	}
	if growPerCycle < 0 || growPerCycle > MaxGrowPerCycle {
		return nil, fmt.Errorf("evidence: IMA growth per cycle %d outside 0..%d", growPerCycle, MaxGrowPerCycle)
	}
	if universe < 1 || universe > MaxUniverse {
		return nil, fmt.Errorf("evidence: IMA file universe %d outside 1..%d", universe, MaxUniverse)
	}
	return newSynthetic("lt", initialEntries, growPerCycle, universe)
}

// newSynthetic is NewSynthetic with a name prefix, so tests can rebuild the reference vectors' "vec" logs.
func newSynthetic(prefix string, initial, grow, universe int) (*synthetic, error) {
	s := &synthetic{lines: make([]string, universe+1), extends: make([][]byte, universe+1)}
	digests := make(map[string][]string, universe+1)
	add := func(i int, path, seed string) {
		d := sha256.Sum256([]byte(seed))
		s.lines[i] = FormatLine("sha256", d[:], path)
		s.extends[i] = ExtendValue(Entry{Alg: "sha256", FileDigest: d[:], Path: path})
		digests[path] = []string{hex.EncodeToString(d[:])}
	}
	add(0, "boot_aggregate", prefix+"-boot-aggregate")
	for j := 0; j < universe; j++ {
		name := prefix + "-file-" + strconv.Itoa(j)
		add(1+j, "/usr/bin/"+name, name)
	}
	idx := func(i int) int {
		if i == 0 {
			return 0
		}
		return 1 + (i-1)%universe
	}
	s.src = source{
		initial: initial,
		grow:    grow,
		line:    func(i int) string { return s.lines[idx(i)] },
		extend:  func(i int) []byte { return s.extends[idx(i)] },
	}
	s.src.initialPCR10 = s.src.pcrAfter([sha256.Size]byte{}, 0, initial)
	var err error
	if s.policy, err = buildPolicyJSON(GeneratorCompatible, digests); err != nil {
		return nil, err
	}
	return s, nil
}

func (s *synthetic) Name() string                     { return ProfileIMA }
func (s *synthetic) HasIMA() bool                     { return true }
func (s *synthetic) PolicyJSON() []byte               { return bytes.Clone(s.policy) }
func (s *synthetic) Generator() int                   { return GeneratorCompatible }
func (s *synthetic) TPMPolicy() map[string][]string   { return map[string][]string{} }
func (s *synthetic) NewAgentLog() *AgentLog           { return newAgentLog(&s.src) }
func (s *synthetic) StaticPCRs() map[int][]byte       { return map[int][]byte{} }
func (s *synthetic) MeasuredBoot() *measuredboot.Boot { return nil }

type quoteOnly struct {
	src        source
	policy     []byte
	pcr0, pcr7 []byte
}

// measuredOnce is a PCR that was extended once, from zero, with SHA-256(label): the firmware and secure-boot
// values of quote-only agents.
func measuredOnce(label string) []byte {
	d := sha256.Sum256([]byte(label))
	return Extend(make([]byte, sha256.Size), d[:])
}

// NewQuoteOnly returns the "quote-only" profile: no IMA (generator 1, empty policy) and a PCR policy on PCR 0 and 7,
// the cheapest verification path. Its agent logs are empty and never grow.
func NewQuoteOnly() Profile {
	q := &quoteOnly{pcr0: measuredOnce("lt-firmware"), pcr7: measuredOnce("lt-secureboot")}
	q.src = source{line: func(int) string { return "" }, extend: func(int) []byte { return nil }}
	q.policy, _ = buildPolicyJSON(GeneratorEmpty, map[string][]string{}) // an empty policy always marshals
	return q
}

func (q *quoteOnly) Name() string       { return ProfileQuoteOnly }
func (q *quoteOnly) HasIMA() bool       { return false }
func (q *quoteOnly) PolicyJSON() []byte { return bytes.Clone(q.policy) }
func (q *quoteOnly) Generator() int     { return GeneratorEmpty }
func (q *quoteOnly) TPMPolicy() map[string][]string {
	return map[string][]string{"0": {hex.EncodeToString(q.pcr0)}, "7": {hex.EncodeToString(q.pcr7)}}
}
func (q *quoteOnly) NewAgentLog() *AgentLog { return newAgentLog(&q.src) }
func (q *quoteOnly) StaticPCRs() map[int][]byte {
	return map[int][]byte{0: bytes.Clone(q.pcr0), 7: bytes.Clone(q.pcr7)}
}
func (q *quoteOnly) MeasuredBoot() *measuredboot.Boot { return nil }

type captured struct {
	src     source
	policy  []byte
	lines   []string
	extends [][]byte
}

// maxCapturedLine bounds one line of a captured log; real ima-ng lines are a few hundred bytes.
const maxCapturedLine = 64 << 10

// LoadCaptured returns the "captured" profile from a real ima-ng log file. Every agent sends the whole log and it
// never grows. PCR 10 is recomputed from each line's template fields, not taken from column 2, and the runtime
// policy allows exactly the (path, digest) pairs in the log.
func LoadCaptured(path string) (Profile, error) {
	f, err := os.Open(path)
	if err != nil {
		return nil, fmt.Errorf("evidence: captured IMA log: %w", err)
	}
	defer f.Close()
	c := &captured{}
	digests := map[string][]string{}
	sc := bufio.NewScanner(f)
	sc.Buffer(make([]byte, 0, 4096), maxCapturedLine)
	n := 0
	for sc.Scan() {
		n++
		text := sc.Text()
		e, err := ParseLine(text)
		if err != nil {
			return nil, fmt.Errorf("evidence: captured IMA log %s line %d: %w", path, n, err)
		}
		c.lines = append(c.lines, text+"\n")
		c.extends = append(c.extends, ExtendValue(e))
		digests[e.Path] = append(digests[e.Path], hex.EncodeToString(e.FileDigest))
	}
	if err := sc.Err(); err != nil {
		return nil, fmt.Errorf("evidence: captured IMA log %s after line %d: %w", path, n, err)
	}
	if len(c.lines) == 0 {
		return nil, fmt.Errorf("evidence: captured IMA log %s has no entries", path)
	}
	if c.policy, err = buildPolicyJSON(GeneratorCompatible, digests); err != nil {
		return nil, err
	}
	c.src = source{
		initial:    len(c.lines),
		maxEntries: len(c.lines),
		line:       func(i int) string { return c.lines[i] },
		extend:     func(i int) []byte { return c.extends[i] },
	}
	c.src.initialPCR10 = c.src.pcrAfter([sha256.Size]byte{}, 0, len(c.lines))
	return c, nil
}

func (c *captured) Name() string                     { return ProfileCaptured }
func (c *captured) HasIMA() bool                     { return true }
func (c *captured) PolicyJSON() []byte               { return bytes.Clone(c.policy) }
func (c *captured) Generator() int                   { return GeneratorCompatible }
func (c *captured) TPMPolicy() map[string][]string   { return map[string][]string{} }
func (c *captured) NewAgentLog() *AgentLog           { return newAgentLog(&c.src) }
func (c *captured) StaticPCRs() map[int][]byte       { return map[int][]byte{} }
func (c *captured) MeasuredBoot() *measuredboot.Boot { return nil }

package record

import (
	"bytes"
	"encoding/binary"
	"encoding/json"
	"errors"
	"fmt"
	"strconv"
	"unicode/utf8"
)

// A results file is read with a hand-written decoder because it is the report's hot path: encoding/json spends
// most of its time on reflection and on keys a reader never looks at. The decoder accepts exactly the lines
// encoding/json accepts when unmarshalling into a Record (type errors included, so a line that the daemon or a
// script would reject is rejected here too), and extracts into a Line only the fields readers aggregate. The one
// deliberate differences: a bare `null` line, which encoding/json accepts as an empty record, is malformed here,
// and so is an object that is not a record at all (ErrNotRecord): one that lacks both the old layout's pair
// agent_index and task_index and the schema-1 agent_id (non-empty), counting a key whose last value is null as
// absent. FuzzDecodeLine holds the two decoders to the same answers.

// maxDepth matches encoding/json's nesting limit.
const maxDepth = 10000

// LineAttempt is the part of an Attempt that Decoder extracts. A Has field is false when the key was absent or
// null; Error is "" then too.
type LineAttempt struct {
	Action             Action
	StartTime, EndTime float64
	Duration           float64
	HasDuration        bool
	OK                 bool
	RetryAfter         int
	Status             int
	HasStatus          bool
	Error              ErrorClass
}

// Line is the part of a Record that Decoder extracts from one results line: what the report aggregates.
type Line struct {
	Schema             int
	AgentIndex         int
	WorkerIndex        int
	CreateOK, UpdateOK bool // create_successful, update_successful
	CreateDuration     float64
	UpdateDuration     float64
	Create, Update     []LineAttempt // create_attempts, update_attempts
	Session            []LineAttempt // session_attempts
	Outcome            Outcome
	Evaluation         string // verdict.evaluation
	FailureReason      string // verdict.failure_reason
	HasFailureReason   bool
	VerdictSeconds     float64 // verdict.seconds
	HasVerdictSeconds  bool
	SessionDuration    float64
	StartTime, EndTime float64
	Error              ErrorClass
	LateSeconds        float64
	HasLateSeconds     bool
	Scheduled          bool   // scheduled_time is present
	Rebooted           bool   // rebooted
	AgentID            []byte // reused across lines: copy it to keep it
}

// Reset empties l, keeping the capacity of its slices.
func (l *Line) Reset() {
	create, update, session, id := l.Create[:0], l.Update[:0], l.Session[:0], l.AgentID[:0]
	*l = Line{Create: create, Update: update, Session: session, AgentID: id}
}

// Decoder decodes results lines into Lines. It holds scratch state so that decoding a line allocates nothing in
// the common case; the zero value is ready to use, and a Decoder must not be used by two goroutines at once.
type Decoder struct {
	buf    []byte
	pos    int
	depth  int
	intern map[string]string

	// The identity keys of the line being decoded, for ErrNotRecord.
	hasAgentIndex, hasTaskIndex, hasAgentID bool
}

var errSyntax = errors.New("invalid JSON")

// ErrNotRecord rejects valid JSON objects that are not results records, such as {"a":1} or {}: counting them
// as attestations would inflate every figure with cycles that never happened.
var ErrNotRecord = errors.New("not a results record: it has neither agent_index and task_index (old layout) " +
	"nor agent_id (schema 1)")

type decodeError struct {
	off int
	msg string
}

func (e *decodeError) Error() string { return fmt.Sprintf("%s at byte %d", e.msg, e.off+1) }

func (d *Decoder) fail(msg string) error { return &decodeError{off: d.pos, msg: msg} }

// Decode parses one JSONL line into c (which it resets first). A malformed line gives an error that says what is
// wrong and at which byte, or ErrNotRecord.
func (d *Decoder) Decode(line []byte, c *Line) error {
	c.Reset()
	d.buf, d.pos, d.depth = line, 0, 0
	d.hasAgentIndex, d.hasTaskIndex, d.hasAgentID = false, false, false
	d.ws()
	if d.pos >= len(d.buf) {
		return d.fail("empty line")
	}
	if d.buf[d.pos] != '{' {
		if err := d.skipValue(); err != nil {
			return err
		}
		return d.fail("line is not a JSON object")
	}
	if err := d.object(func(key []byte) error { return d.recordField(key, c) }); err != nil {
		return err
	}
	d.ws()
	if d.pos != len(d.buf) {
		return d.fail("unexpected data after the object")
	}
	if !(d.hasAgentIndex && d.hasTaskIndex) && !d.hasAgentID {
		return ErrNotRecord
	}
	return nil
}

func (d *Decoder) ws() {
	if d.pos < len(d.buf) && d.buf[d.pos] > ' ' {
		return // the common case: no whitespace at all
	}
	for d.pos < len(d.buf) {
		switch d.buf[d.pos] {
		case ' ', '\t', '\n', '\r':
			d.pos++
		default:
			return
		}
	}
}

// object walks an object; field is called with the (unescaped) key and must consume the value.
func (d *Decoder) object(field func(key []byte) error) error {
	d.depth++
	if d.depth > maxDepth {
		return d.fail("exceeded max depth")
	}
	d.pos++ // '{'
	d.ws()
	if d.pos < len(d.buf) && d.buf[d.pos] == '}' {
		d.pos++
		d.depth--
		return nil
	}
	for {
		d.ws()
		if d.pos >= len(d.buf) || d.buf[d.pos] != '"' {
			return d.fail("expected a key")
		}
		key, err := d.stringBytes()
		if err != nil {
			return err
		}
		d.ws()
		if d.pos >= len(d.buf) || d.buf[d.pos] != ':' {
			return d.fail("expected ':'")
		}
		d.pos++
		d.ws()
		if err := field(key); err != nil {
			return err
		}
		d.ws()
		if d.pos >= len(d.buf) {
			return d.fail("unterminated object")
		}
		switch d.buf[d.pos] {
		case ',':
			d.pos++
		case '}':
			d.pos++
			d.depth--
			return nil
		default:
			return d.fail("expected ',' or '}'")
		}
	}
}

// array walks an array; elem must consume one value.
func (d *Decoder) array(elem func() error) error {
	d.depth++
	if d.depth > maxDepth {
		return d.fail("exceeded max depth")
	}
	d.pos++ // '['
	d.ws()
	if d.pos < len(d.buf) && d.buf[d.pos] == ']' {
		d.pos++
		d.depth--
		return nil
	}
	for {
		d.ws()
		if err := elem(); err != nil {
			return err
		}
		d.ws()
		if d.pos >= len(d.buf) {
			return d.fail("unterminated array")
		}
		switch d.buf[d.pos] {
		case ',':
			d.pos++
		case ']':
			d.pos++
			d.depth--
			return nil
		default:
			return d.fail("expected ',' or ']'")
		}
	}
}

// stringBytes scans a string at d.pos and returns its contents, unescaped and with invalid UTF-8 replaced the way
// encoding/json does it. The fast path (plain ASCII, no escapes) returns a sub-slice of the line.
// plainString reports whether seg (a string's bytes up to its closing quote) has no escape, control byte or
// non-ASCII byte, so that it is its own value. It looks at eight bytes at a time: for a word w, a byte below 0x20,
// a byte equal to '\\' (found as a zero byte of w^0x5c5c...) and a byte with its top bit set each leave a top bit
// in the mask, and the subtractions only borrow out of a byte that has one of those (so no byte is missed and a
// clean word never sets a bit).
func plainString(seg []byte) bool {
	const ones, highs = 0x0101010101010101, 0x8080808080808080
	i := 0
	for ; i+8 <= len(seg); i += 8 {
		w := binary.LittleEndian.Uint64(seg[i:])
		bs := w ^ (ones * '\\')
		if ((w-ones*0x20)&^w|(bs-ones)&^bs|w)&highs != 0 {
			return false
		}
	}
	for _, b := range seg[i:] {
		if b < 0x20 || b == '\\' || b >= utf8.RuneSelf {
			return false
		}
	}
	return true
}

func (d *Decoder) stringBytes() ([]byte, error) {
	start := d.pos
	d.pos++
	if q := bytes.IndexByte(d.buf[d.pos:], '"'); q >= 0 {
		seg := d.buf[d.pos : d.pos+q]
		if plainString(seg) {
			d.pos += q + 1
			return seg, nil
		}
	}
	simple := true
	for {
		if d.pos >= len(d.buf) {
			return nil, d.fail("unterminated string")
		}
		b := d.buf[d.pos]
		switch {
		case b == '"':
			d.pos++
			raw := d.buf[start:d.pos]
			if simple {
				return raw[1 : len(raw)-1], nil
			}
			var s string
			if err := json.Unmarshal(raw, &s); err != nil {
				return nil, &decodeError{off: start, msg: "invalid string"}
			}
			return []byte(s), nil
		case b == '\\':
			simple = false
			d.pos++
			if d.pos >= len(d.buf) {
				return nil, d.fail("unterminated string")
			}
			switch d.buf[d.pos] {
			case '"', '\\', '/', 'b', 'f', 'n', 'r', 't':
				d.pos++
			case 'u':
				if d.pos+4 >= len(d.buf) {
					return nil, d.fail("invalid \\u escape")
				}
				for _, h := range d.buf[d.pos+1 : d.pos+5] {
					if !isHex(h) {
						return nil, d.fail("invalid \\u escape")
					}
				}
				d.pos += 5
			default:
				return nil, d.fail("invalid escape")
			}
		case b < 0x20:
			return nil, d.fail("control character in string")
		case b >= utf8.RuneSelf:
			r, size := utf8.DecodeRune(d.buf[d.pos:])
			if r == utf8.RuneError && size == 1 {
				simple = false
			}
			d.pos += size
		default:
			d.pos++
		}
	}
}

func isHex(b byte) bool {
	return b >= '0' && b <= '9' || b >= 'a' && b <= 'f' || b >= 'A' && b <= 'F'
}

// str decodes a string field; null leaves it unchanged, as encoding/json does for a non-pointer string.
func (d *Decoder) str(dst *string) error { return str(d, dst) }

// str decodes a field of a string type.
func str[T ~string](d *Decoder, dst *T) error {
	if d.null() {
		return nil
	}
	if d.pos >= len(d.buf) || d.buf[d.pos] != '"' {
		return d.typeErr("string")
	}
	b, err := d.stringBytes()
	if err != nil {
		return err
	}
	*dst = T(d.internBytes(b))
	return nil
}

// strPtr decodes an optional string field: null clears it and has.
func (d *Decoder) strPtr(dst *string, has *bool) error { return strPtr(d, dst, has) }

// strPtr decodes an optional field of a string type.
func strPtr[T ~string](d *Decoder, dst *T, has *bool) error {
	if !present(d, dst, has) {
		return nil
	}
	return str(d, dst)
}

// internBytes returns a string for b without allocating when the value has been seen before. The table is
// bounded so that a file full of distinct strings cannot grow it.
func (d *Decoder) internBytes(b []byte) string {
	if s, ok := d.intern[string(b)]; ok {
		return s
	}
	s := string(b)
	if d.intern == nil {
		d.intern = make(map[string]string)
	}
	if len(d.intern) < 4096 {
		d.intern[s] = s
	}
	return s
}

func (d *Decoder) null() bool {
	if bytes.HasPrefix(d.buf[d.pos:], []byte("null")) {
		d.pos += 4
		return true
	}
	return false
}

func (d *Decoder) typeErr(want string) error {
	start := d.pos
	if err := d.skipValue(); err != nil {
		return err
	}
	return &decodeError{off: start, msg: "expected " + want}
}

// number scans a JSON number and returns its literal.
func (d *Decoder) number() ([]byte, error) {
	start := d.pos
	p := d.pos
	n := len(d.buf)
	if p < n && d.buf[p] == '-' {
		p++
	}
	switch {
	case p < n && d.buf[p] == '0':
		p++
	case p < n && d.buf[p] >= '1' && d.buf[p] <= '9':
		for p < n && d.buf[p] >= '0' && d.buf[p] <= '9' {
			p++
		}
	default:
		d.pos = p
		return nil, d.fail("invalid number")
	}
	if p < n && d.buf[p] == '.' {
		p++
		if p >= n || d.buf[p] < '0' || d.buf[p] > '9' {
			d.pos = p
			return nil, d.fail("invalid number")
		}
		for p < n && d.buf[p] >= '0' && d.buf[p] <= '9' {
			p++
		}
	}
	if p < n && (d.buf[p] == 'e' || d.buf[p] == 'E') {
		p++
		if p < n && (d.buf[p] == '+' || d.buf[p] == '-') {
			p++
		}
		if p >= n || d.buf[p] < '0' || d.buf[p] > '9' {
			d.pos = p
			return nil, d.fail("invalid number")
		}
		for p < n && d.buf[p] >= '0' && d.buf[p] <= '9' {
			p++
		}
	}
	d.pos = p
	return d.buf[start:p], nil
}

func (d *Decoder) isNumberStart() bool {
	if d.pos >= len(d.buf) {
		return false
	}
	b := d.buf[d.pos]
	return b == '-' || b >= '0' && b <= '9'
}

// float decodes a float64 field; null leaves it unchanged.
func (d *Decoder) float(dst *float64) error {
	return decodeNumber(d, dst, "number", "number out of range", parseFloat)
}

// decodeNumber decodes a number field with parse; null leaves dst unchanged. kind names the expected JSON type
// in a type error and bad is the message for a literal that parse refuses.
func decodeNumber[T int | float64](d *Decoder, dst *T, kind, bad string, parse func([]byte) (T, error)) error {
	if d.null() {
		return nil
	}
	if !d.isNumberStart() {
		return d.typeErr(kind)
	}
	start := d.pos
	lit, err := d.number()
	if err != nil {
		return err
	}
	v, err := parse(lit)
	if err != nil {
		return &decodeError{off: start, msg: bad}
	}
	*dst = v
	return nil
}

// parseFloat has a fast path for the plain decimals the writer produces; anything else goes to strconv.
func parseFloat(lit []byte) (float64, error) {
	if len(lit) < 16 {
		var mant uint64
		frac := -1
		ok := true
		for i, b := range lit {
			switch {
			case b >= '0' && b <= '9':
				mant = mant*10 + uint64(b-'0')
			case b == '.' && frac < 0:
				frac = len(lit) - i - 1
			default:
				ok = false
			}
			if !ok {
				break
			}
		}
		// Exact when the mantissa fits in 53 bits and the power of ten is exact (at most 1e22), since one
		// correctly rounded division of two exact values is correctly rounded.
		if ok && mant < 1<<53 {
			if frac <= 0 {
				return float64(mant), nil
			}
			return float64(mant) / pow10[frac], nil
		}
	}
	return strconv.ParseFloat(string(lit), 64)
}

var pow10 = [...]float64{1, 1e1, 1e2, 1e3, 1e4, 1e5, 1e6, 1e7, 1e8, 1e9, 1e10, 1e11, 1e12, 1e13, 1e14, 1e15, 1e16}

// floatPtr decodes an optional float64 field: null clears it and has.
func (d *Decoder) floatPtr(dst *float64, has *bool) error {
	if !present(d, dst, has) {
		return nil
	}
	return d.float(dst)
}

// present reports whether an optional field holds a value, setting has; null also clears dst.
func present[T any](d *Decoder, dst *T, has *bool) bool {
	if d.null() {
		var zero T
		*dst, *has = zero, false
		return false
	}
	*has = true
	return true
}

// integer decodes an int field; null leaves it unchanged. Like encoding/json, it rejects fractions and exponents.
func (d *Decoder) integer(dst *int) error {
	return decodeNumber(d, dst, "integer", "expected an integer", parseInt)
}

func parseInt(lit []byte) (int, error) {
	if len(lit) > 0 && len(lit) < 10 && lit[0] != '-' {
		v := 0
		for _, b := range lit {
			if b < '0' || b > '9' {
				return 0, errSyntax
			}
			v = v*10 + int(b-'0')
		}
		return v, nil
	}
	v, err := strconv.ParseInt(string(lit), 10, 64)
	return int(v), err
}

// intPtr decodes an optional int field: null clears it and has.
func (d *Decoder) intPtr(dst *int, has *bool) error {
	if !present(d, dst, has) {
		return nil
	}
	return d.integer(dst)
}

// boolean decodes a bool field; null leaves it unchanged.
func (d *Decoder) boolean(dst *bool) error {
	switch {
	case d.null():
		return nil
	case bytes.HasPrefix(d.buf[d.pos:], []byte("true")):
		d.pos += 4
		*dst = true
	case bytes.HasPrefix(d.buf[d.pos:], []byte("false")):
		d.pos += 5
		*dst = false
	default:
		return d.typeErr("true or false")
	}
	return nil
}

// skipValue validates and skips any JSON value.
func (d *Decoder) skipValue() error {
	if d.pos >= len(d.buf) {
		return d.fail("unexpected end of line")
	}
	switch b := d.buf[d.pos]; {
	case b == '{':
		return d.object(func([]byte) error { return d.skipValue() })
	case b == '[':
		return d.array(d.skipValue)
	case b == '"':
		_, err := d.stringBytes()
		return err
	case b == 't' || b == 'f' || b == 'n':
		for _, lit := range []string{"true", "false", "null"} {
			if bytes.HasPrefix(d.buf[d.pos:], []byte(lit)) {
				d.pos += len(lit)
				return nil
			}
		}
	case b == '-' || b >= '0' && b <= '9':
		_, err := d.number()
		return err
	}
	return d.fail("invalid value")
}

// checked skips a value that the report does not use but that encoding/json would type-check.
func (d *Decoder) checked(kind byte) error {
	if d.null() {
		return nil
	}
	switch kind {
	case 'i':
		var x int
		return d.integer(&x)
	case 'f':
		var x float64
		return d.float(&x)
	case 's':
		if d.pos >= len(d.buf) || d.buf[d.pos] != '"' {
			return d.typeErr("string")
		}
		_, err := d.stringBytes()
		return err
	case 'b':
		var x bool
		return d.boolean(&x)
	}
	return d.skipValue()
}

// recordKeys lists every key of Record; keyFold maps a key that only differs in case to its canonical
// spelling, because encoding/json matches keys case-insensitively.
var recordKeys = []string{"agent_index", "task_index", "worker_index", "create_successful", "update_successful",
	"create_duration", "update_duration", "create_attempts", "update_attempts", "schema", "run_id", "instance",
	"agent_id", "outcome", "verdict", "session_attempts", "session_duration", "trace_id", "attestation_index",
	"start_time", "end_time", "error", "profile", "ima_offset", "ima_entries_sent", "scheduled_time", "late_seconds",
	"rebooted"}

var attemptKeys = []string{"action", "method", "url", "start_time", "end_time", "duration", "ok", "conflicts",
	"retry_after", "status", "error", "code", "request_id", "bytes_sent", "bytes_received", "server_retry_after"}

var verdictKeys = []string{"evaluation", "failure_reason", "seconds"}

var verdictKeySet = map[string]struct{}{"evaluation": {}, "failure_reason": {}, "seconds": {}}

// keyFold is only reached for keys that matched no field exactly.
func keyFold(key []byte, known []string) string {
	for _, k := range known {
		if bytes.EqualFold(key, []byte(k)) {
			return k
		}
	}
	return ""
}

func (d *Decoder) recordField(key []byte, c *Line) error {
	switch string(key) {
	case "agent_index", "task_index", "agent_id":
		return d.identityField(key, c)
	case "worker_index":
		return d.integer(&c.WorkerIndex)
	case "attestation_index", "ima_offset", "ima_entries_sent":
		return d.checked('i')
	case "create_successful":
		return d.boolean(&c.CreateOK)
	case "update_successful":
		return d.boolean(&c.UpdateOK)
	case "create_duration":
		return d.float(&c.CreateDuration)
	case "update_duration":
		return d.float(&c.UpdateDuration)
	case "create_attempts":
		return d.attempts(&c.Create)
	case "update_attempts":
		return d.attempts(&c.Update)
	case "session_attempts":
		return d.attempts(&c.Session)
	case "schema":
		return d.integer(&c.Schema)
	case "run_id", "instance", "profile", "trace_id":
		return d.checked('s')
	case "outcome":
		return str(d, &c.Outcome)
	case "verdict":
		return d.verdict(c)
	case "session_duration":
		return d.float(&c.SessionDuration)
	case "start_time":
		return d.float(&c.StartTime)
	case "end_time":
		return d.float(&c.EndTime)
	case "error":
		var has bool
		return strPtr(d, &c.Error, &has)
	case "scheduled_time":
		var x float64
		return d.floatPtr(&x, &c.Scheduled)
	case "late_seconds":
		return d.floatPtr(&c.LateSeconds, &c.HasLateSeconds)
	case "rebooted":
		return d.boolean(&c.Rebooted)
	}
	if k := keyFold(key, recordKeys); k != "" {
		return d.recordField([]byte(k), c)
	}
	return d.skipValue()
}

// identityField decodes the keys that make an object a record (see ErrNotRecord). Like *int and *string fields,
// the last value decides, and null means absent (encoding/json leaves the field alone).
func (d *Decoder) identityField(key []byte, c *Line) error {
	null := d.null()
	switch string(key) {
	case "agent_index":
		d.hasAgentIndex = !null
		if null {
			return nil
		}
		return d.integer(&c.AgentIndex)
	case "task_index":
		d.hasTaskIndex = !null
		if null {
			return nil
		}
		return d.checked('i')
	}
	if null {
		d.hasAgentID = false
		return nil
	}
	if d.pos >= len(d.buf) || d.buf[d.pos] != '"' {
		return d.typeErr("string")
	}
	b, err := d.stringBytes()
	d.hasAgentID = len(b) > 0
	c.AgentID = append(c.AgentID[:0], b...)
	return err
}

// verdict decodes the verdict object; null leaves it as it is.
func (d *Decoder) verdict(c *Line) error {
	if d.null() {
		return nil
	}
	if d.pos >= len(d.buf) || d.buf[d.pos] != '{' {
		return d.typeErr("object")
	}
	return d.object(func(k []byte) error {
		if _, exact := verdictKeySet[string(k)]; !exact {
			if f := keyFold(k, verdictKeys); f != "" {
				k = []byte(f)
			}
		}
		switch string(k) {
		case "evaluation":
			return d.str(&c.Evaluation)
		case "failure_reason":
			return d.strPtr(&c.FailureReason, &c.HasFailureReason)
		case "seconds":
			return d.floatPtr(&c.VerdictSeconds, &c.HasVerdictSeconds)
		}
		return d.skipValue()
	})
}

// attempts decodes an attempt list; like encoding/json, null empties it and a later duplicate key replaces it.
func (d *Decoder) attempts(dst *[]LineAttempt) error {
	*dst = (*dst)[:0]
	if d.null() {
		return nil
	}
	if d.pos >= len(d.buf) || d.buf[d.pos] != '[' {
		return d.typeErr("array")
	}
	return d.array(func() error {
		if d.null() {
			*dst = append(*dst, LineAttempt{})
			return nil
		}
		if d.pos >= len(d.buf) || d.buf[d.pos] != '{' {
			return d.typeErr("object")
		}
		*dst = append(*dst, LineAttempt{})
		a := &(*dst)[len(*dst)-1]
		return d.object(func(k []byte) error { return d.attemptField(k, a) })
	})
}

func (d *Decoder) attemptField(key []byte, a *LineAttempt) error {
	switch string(key) {
	case "action":
		return str(d, &a.Action)
	case "method", "url", "code", "request_id":
		return d.checked('s')
	case "start_time":
		return d.float(&a.StartTime)
	case "end_time":
		return d.float(&a.EndTime)
	case "duration":
		return d.floatPtr(&a.Duration, &a.HasDuration)
	case "ok":
		if d.null() {
			a.OK = false
			return nil
		}
		return d.boolean(&a.OK)
	case "conflicts":
		return d.checked('b')
	case "retry_after":
		var has bool
		return d.intPtr(&a.RetryAfter, &has)
	case "status":
		return d.intPtr(&a.Status, &a.HasStatus)
	case "error":
		var has bool
		return strPtr(d, &a.Error, &has)
	case "bytes_sent", "bytes_received", "server_retry_after":
		return d.checked('i')
	}
	if k := keyFold(key, attemptKeys); k != "" {
		return d.attemptField([]byte(k), a)
	}
	return d.skipValue()
}

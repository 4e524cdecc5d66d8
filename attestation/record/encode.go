package record

import (
	"encoding/json"
	"io"
)

// Encoder writes Records as results lines: each one compact JSON object followed by a newline, with <, > and &
// written as they are (a results file is never embedded in HTML, and escaping them would only make lines longer
// and harder to grep). Decoder reads what it writes.
type Encoder struct {
	enc *json.Encoder
}

// NewEncoder returns an Encoder that writes to w. Each Encode is one Write of the whole line.
func NewEncoder(w io.Writer) *Encoder {
	enc := json.NewEncoder(w)
	enc.SetEscapeHTML(false)
	return &Encoder{enc: enc}
}

// Encode writes r as one line. A record that cannot be encoded (a NaN or infinite duration) is an error, and
// nothing is written.
func (e *Encoder) Encode(r *Record) error { return e.enc.Encode(r) }

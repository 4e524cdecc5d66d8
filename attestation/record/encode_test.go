package record

import (
	"bytes"
	"math"
	"reflect"
	"testing"
)

// What the Encoder writes, the Decoder reads back: one line per record, the same fields, HTML characters as
// they are.
func TestEncoderRoundTrip(t *testing.T) {
	var buf bytes.Buffer
	enc := NewEncoder(&buf)
	dur, st := 0.5, 403
	class := ClassForbidden
	in := []*Record{
		{Schema: SchemaVersion, AgentID: "agent<1>&", Outcome: OutcomeFail, Error: &class, StartTime: 1, EndTime: 2,
			CreateAttempts: []Attempt{{Action: ActionCreate, Duration: &dur, Status: &st, Error: &class}}},
		{AgentIndex: 2, TaskIndex: 3, Outcome: OutcomeSuccess, CreateSuccessful: true, UpdateSuccessful: true},
	}
	for _, r := range in {
		if err := enc.Encode(r); err != nil {
			t.Fatal(err)
		}
	}
	if !bytes.Contains(buf.Bytes(), []byte(`"agent_id":"agent<1>&"`)) {
		t.Errorf("HTML characters escaped:\n%s", buf.Bytes())
	}
	lines := bytes.Split(bytes.TrimSuffix(buf.Bytes(), []byte("\n")), []byte("\n"))
	if len(lines) != len(in) {
		t.Fatalf("%d lines for %d records:\n%s", len(lines), len(in), buf.Bytes())
	}
	var d Decoder
	for i, l := range lines {
		var got Line
		if err := d.Decode(l, &got); err != nil {
			t.Fatalf("line %d: %v", i+1, err)
		}
		if want := normalise(project(in[i])); !reflect.DeepEqual(normalise(got), want) {
			t.Errorf("line %d decoded as %+v, want %+v", i+1, got, want)
		}
	}
}

func TestEncoderRefusesNaN(t *testing.T) {
	var buf bytes.Buffer
	if err := NewEncoder(&buf).Encode(&Record{CreateDuration: math.NaN()}); err == nil || buf.Len() != 0 {
		t.Errorf("NaN duration: err %v, %d bytes written; want an error and nothing", err, buf.Len())
	}
}

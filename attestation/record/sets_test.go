package record

import (
	"encoding/json"
	"testing"
)

func TestSetsAreClosed(t *testing.T) {
	for _, o := range Outcomes() {
		if !o.Known() {
			t.Errorf("outcome %q listed but not known", o)
		}
	}
	for _, c := range ErrorClasses() {
		if !c.Known() {
			t.Errorf("error class %q listed but not known", c)
		}
	}
	if len(ErrorClasses()) != 19 {
		t.Errorf("%d error classes listed, want 19", len(ErrorClasses()))
	}
	for _, v := range []string{"", "weird", "Success", "TIMEOUT"} {
		if Outcome(v).Known() || ErrorClass(v).Known() {
			t.Errorf("%q counts as a known outcome or error class", v)
		}
	}
}

// The file keeps the v0 action names create/update; the phases call them negotiate/evidence.
func TestActionPhases(t *testing.T) {
	r := &Record{
		SessionAttempts: []Attempt{{Action: ActionSessionCreate}, {Action: ActionSessionPoP}},
		CreateAttempts:  []Attempt{{Action: ActionCreate}},
		UpdateAttempts:  []Attempt{{Action: ActionUpdate}},
	}
	for _, p := range RequestPhases() {
		atts := r.Attempts(p)
		if len(atts) == 0 {
			t.Fatalf("phase %s: no attempts", p)
		}
		for _, a := range atts {
			if a.Action.Phase() != p {
				t.Errorf("action %s: phase %q, want %q", a.Action, a.Action.Phase(), p)
			}
		}
	}
	if r.Attempts(PhaseVerdict) != nil || Action("delete").Phase() != "" {
		t.Error("the verdict phase has attempts, or an unknown action has a phase")
	}
}

// The typed fields encode as the plain strings they were.
func TestTypedFieldsEncodeAsStrings(t *testing.T) {
	c := ClassTimeout
	b, err := json.Marshal(Attempt{Action: ActionUpdate, Error: &c})
	if err != nil {
		t.Fatal(err)
	}
	want := `{"action":"update","method":"","url":"","start_time":0,"end_time":0,"duration":null,"ok":null,` +
		`"conflicts":null,"retry_after":null,"status":null,"error":"timeout","request_id":"","bytes_sent":0,` +
		`"bytes_received":0}`
	if string(b) != want {
		t.Errorf("got  %s\nwant %s", b, want)
	}
}

package verdict

import (
	"context"
	"crypto/tls"
	"fmt"
	"net/http"
	"net/http/httptest"
	"strings"
	"sync/atomic"
	"testing"

	"github.com/attestload/attestload/attestation/record"
)

// The admin API shows only an agent's latest attestation, answers 201, and names the index only in links.
func TestAdminAPISource(t *testing.T) {
	var gets atomic.Int64
	srv := httptest.NewServer(http.HandlerFunc(func(w http.ResponseWriter, r *http.Request) {
		gets.Add(1)
		parts := strings.Split(r.URL.Path, "/") // /v3/agents/{id}/attestations/latest
		if len(parts) != 6 || parts[1] != "v3" || parts[5] != "latest" {
			http.Error(w, "bad path "+r.URL.Path, http.StatusBadRequest)
			return
		}
		var idx int
		var ev string
		switch parts[3] {
		case "lt-a":
			idx, ev = 3, "fail"
		case "lt-b":
			idx, ev = 8, "pass"
		case "lt-c":
			idx, ev = 2, "pending"
		case "lt-broken":
			w.WriteHeader(http.StatusCreated)
			_, _ = w.Write([]byte(`{"data":`))
			return
		default:
			w.WriteHeader(http.StatusNotFound)
			return
		}
		w.Header().Set("Location", fmt.Sprintf("/3/agents/%s/attestations/%d", parts[3], idx))
		w.WriteHeader(http.StatusCreated)
		fmt.Fprintf(w, `{"data":{"type":"attestation","attributes":{"stage":"x","evaluation":%q}}}`, ev)
	}))
	defer srv.Close()
	src, err := NewAdminAPISource(srv.URL, nil, AdminOptions{})
	if err != nil {
		t.Fatal(err)
	}
	got, err := src.Resolve(context.Background(), []Key{{"lt-a", 3}, {"lt-b", 7}, {"lt-b", 9}, {"lt-c", 2}, {"lt-gone", 1}})
	if err != nil {
		t.Fatal(err)
	}
	want := map[Key]string{{"lt-a", 3}: "fail", {"lt-b", 7}: "unknown", {"lt-gone", 1}: "unknown"}
	if len(got) != len(want) {
		t.Fatalf("resolved %+v, want %v (lt-b/9 not yet visible and lt-c/2 pending stay open)", got, want)
	}
	for k, ev := range want {
		if got[k].Evaluation != ev {
			t.Errorf("%v: %q, want %q", k, got[k].Evaluation, ev)
		}
	}
	if gets.Load() != 4 {
		t.Errorf("%d GETs, want one per agent (4)", gets.Load())
	}
	if got[Key{"lt-a", 3}].Evaluation != record.EvaluationFail || got[Key{"lt-a", 3}].FailureReason != nil {
		t.Errorf("the admin API has no failure reason, got %+v", got[Key{"lt-a", 3}])
	}
	_, err = src.Resolve(context.Background(), []Key{{"lt-broken", 1}})
	if err == nil || !strings.Contains(err.Error(), "admin API body") {
		t.Errorf("broken body: err = %v", err)
	}
}

func TestAdminAPISourceConfigErrors(t *testing.T) {
	if _, err := NewAdminAPISource("https://127.0.0.1:8881", &tls.Config{}, AdminOptions{}); err == nil ||
		!strings.Contains(err.Error(), "client certificate") {
		t.Errorf("https without a client certificate: err = %v", err)
	}
	if _, err := NewAdminAPISource("127.0.0.1:8881", nil, AdminOptions{}); err == nil ||
		!strings.Contains(err.Error(), "must be https://host:port") {
		t.Errorf("URL without scheme: err = %v", err)
	}
	if _, err := NewDBSource(nil, DBOptions{}); err == nil {
		t.Error("NewDBSource(nil) succeeded")
	}
}

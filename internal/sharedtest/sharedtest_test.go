package sharedtest

import (
	"os"
	"path/filepath"
	"strings"
	"testing"
)

func TestRepoRootHoldsThisModule(t *testing.T) {
	b, err := os.ReadFile(filepath.Join(RepoRoot(t), "go.mod"))
	if err != nil {
		t.Fatal(err)
	}
	if !strings.HasPrefix(string(b), "module github.com/attestload/attestload\n") {
		t.Fatalf("go.mod found by RepoRoot is not this module's: %.60q", b)
	}
}

func TestTestdataIsUnderTheRoot(t *testing.T) {
	got := Testdata(t, "keylime-vectors")
	want := filepath.Join(RepoRoot(t), "testdata", "keylime-vectors")
	if got != want {
		t.Fatalf("Testdata = %s, want %s", got, want)
	}
}

func TestDecodeVector(t *testing.T) {
	var v struct {
		AK struct {
			AgentID string `json:"agent_id"`
		} `json:"ak"`
	}
	DecodeVector(t, "02-agent1-cycle1.json", &v)
	if v.AK.AgentID == "" {
		t.Fatal("vector 02 decoded without ak.agent_id")
	}
}

package client

import (
	"encoding/json"
	"os"
	"path/filepath"
	"testing"
)

// sharedDir finds ../shared next to the repository root (the directory holding go.mod).
func sharedDir(t testing.TB) string {
	t.Helper()
	dir, err := os.Getwd()
	if err != nil {
		t.Fatal(err)
	}
	for {
		if _, err := os.Stat(filepath.Join(dir, "go.mod")); err == nil {
			return filepath.Join(dir, "..", "shared")
		}
		parent := filepath.Dir(dir)
		if parent == dir {
			t.Fatal("go.mod not found above the test directory")
		}
		dir = parent
	}
}

type vectorExchange struct {
	Label   string `json:"label"`
	Request struct {
		Method  string            `json:"method"`
		Path    string            `json:"path"`
		Headers map[string]string `json:"headers"`
		Body    string            `json:"body"`
	} `json:"request"`
	Response struct {
		Status  int               `json:"status"`
		Headers map[string]string `json:"headers"`
		Body    string            `json:"body"`
	} `json:"response"`
}

type vectorFile struct {
	AK struct {
		AgentID       string `json:"agent_id"`
		PrivateKeyPEM string `json:"private_key_pem"`
	} `json:"ak"`
	HTTP []vectorExchange `json:"http"`
	// The quote-only vector nests its exchanges per step.
	Session struct {
		HTTP []vectorExchange `json:"http"`
	} `json:"session"`
	Cycle1 struct {
		HTTP []vectorExchange `json:"http"`
	} `json:"cycle1"`
}

func readShared(t testing.TB, rel string) []byte {
	t.Helper()
	b, err := os.ReadFile(filepath.Join(sharedDir(t), filepath.FromSlash(rel)))
	if err != nil {
		t.Fatalf("read shared file: %v", err)
	}
	return b
}

func loadVector(t testing.TB, name string) vectorFile {
	t.Helper()
	b := readShared(t, "testdata/keylime-vectors/"+name)
	var v vectorFile
	if err := json.Unmarshal(b, &v); err != nil {
		t.Fatalf("parse vector %s: %v", name, err)
	}
	v.HTTP = append(append(v.HTTP, v.Session.HTTP...), v.Cycle1.HTTP...)
	return v
}

// vectorResponse returns the recorded response of the exchange whose request has method and a path ending in
// suffix.
func vectorResponse(t testing.TB, v vectorFile, method, suffix string) vectorExchange {
	t.Helper()
	for _, x := range v.HTTP {
		if x.Request.Method == method && len(x.Request.Path) >= len(suffix) && x.Request.Path[len(x.Request.Path)-len(suffix):] == suffix {
			return x
		}
	}
	t.Fatalf("no %s …%s exchange in vector", method, suffix)
	return vectorExchange{}
}

package client

import (
	"testing"

	"github.com/attestload/attestload/internal/sharedtest"
)

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

func loadVector(t testing.TB, name string) vectorFile {
	t.Helper()
	var v vectorFile
	sharedtest.DecodeVector(t, name, &v)
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

package faults

import (
	"bytes"
	"fmt"
	"os"
	"path/filepath"
	"regexp"
	"strings"
	"testing"
	"time"

	"go.yaml.in/yaml/v3"

	"github.com/attestload/attestload/test/faults/harness"
)

// leaf is one configuration key of config.example.yaml with a pointer to its value node.
type leaf struct {
	path string // dotted, with [i] for list items: scheduler.rate.stages[0].duration
	node *yaml.Node
}

// leaves walks a mapping and returns every leaf key (scalars and lists of scalars), descending into the first
// item of lists of mappings.
func leaves(prefix string, n *yaml.Node) []leaf {
	var out []leaf
	for i := 0; i+1 < len(n.Content); i += 2 {
		k, v := n.Content[i].Value, n.Content[i+1]
		path := k
		if prefix != "" {
			path = prefix + "." + k
		}
		switch {
		case v.Kind == yaml.MappingNode:
			out = append(out, leaves(path, v)...)
		case v.Kind == yaml.SequenceNode && len(v.Content) > 0 && v.Content[0].Kind == yaml.MappingNode:
			out = append(out, leaf{path: path, node: v})
			out = append(out, leaves(path+"[0]", v.Content[0])...)
		default:
			out = append(out, leaf{path: path, node: v})
		}
	}
	return out
}

var durationRE = regexp.MustCompile(`^[0-9.]+(ms|s|m|h)$`)

// wrongValues are values of the wrong type, or out of range, for a leaf given its example value.
func wrongValues(n *yaml.Node) []*yaml.Node {
	mapping := &yaml.Node{Kind: yaml.MappingNode, Content: []*yaml.Node{
		{Kind: yaml.ScalarNode, Value: "nested"}, {Kind: yaml.ScalarNode, Value: "1"}}}
	out := []*yaml.Node{mapping}
	if n.Kind != yaml.ScalarNode {
		return out
	}
	str := func(s string) *yaml.Node {
		return &yaml.Node{Kind: yaml.ScalarNode, Value: s, Style: yaml.DoubleQuotedStyle}
	}
	switch {
	case n.Tag == "!!int":
		out = append(out, str("many"), &yaml.Node{Kind: yaml.ScalarNode, Value: "-5"})
	case n.Tag == "!!float":
		out = append(out, str("fast"), &yaml.Node{Kind: yaml.ScalarNode, Value: "-1.5"})
	case n.Tag == "!!bool":
		out = append(out, str("maybe"))
	case durationRE.MatchString(n.Value):
		out = append(out, str("soon"), &yaml.Node{Kind: yaml.ScalarNode, Value: "-3s"})
	}
	return out
}

func exampleConfig(t *testing.T) *yaml.Node {
	t.Helper()
	b, err := os.ReadFile(filepath.Join(harness.Root(t), "config.example.yaml"))
	if err != nil {
		t.Fatal(err)
	}
	var doc yaml.Node
	if err := yaml.Unmarshal(b, &doc); err != nil {
		t.Fatalf("config.example.yaml: %v", err)
	}
	return &doc
}

// expectUsageError runs attestload with args and asserts a configuration error: exit code 2, the culprit named
// on stderr, no panic or stack trace, nothing on stdout.
func expectUsageError(t *testing.T, dir string, culprit string, args ...string) string {
	t.Helper()
	// No metrics address from the environment (the harness gives each run a port of its own that way): it would
	// outrank the config file's metrics.listen under test. The runs here must stop before listening anyway.
	p, code := harness.Run(t, dir, []string{"ATTESTLOAD_METRICS_LISTEN="}, 30*time.Second, args...)
	stderr := p.Stderr.String()
	harness.NoCrash(t, "stderr", stderr)
	if code != 2 {
		t.Errorf("exit code %d, want 2 (configuration error); stderr:\n%s", code, stderr)
	}
	if !strings.Contains(stderr, culprit) {
		t.Errorf("stderr does not name %q:\n%s", culprit, stderr)
	}
	if strings.Count(strings.TrimSpace(stderr), "\n") > 3 {
		t.Errorf("a configuration error should be a few lines, got:\n%s", stderr)
	}
	return stderr
}

// Every key of config.example.yaml, given a value of the wrong type or out of range, is refused with an error
// that names the key.
func TestEveryConfigKeyWithAWrongValue(t *testing.T) {
	harness.RequireFaults(t)
	doc := exampleConfig(t)
	dir := t.TempDir()
	all := leaves("", doc.Content[0])
	if len(all) < 40 {
		t.Fatalf("found only %d keys in config.example.yaml; the walker is broken", len(all))
	}
	n := 0
	for _, l := range all {
		orig := *l.node
		for i, bad := range wrongValues(&orig) {
			*l.node = *bad
			var buf bytes.Buffer
			enc := yaml.NewEncoder(&buf)
			if err := enc.Encode(doc); err != nil {
				t.Fatal(err)
			}
			*l.node = orig
			name := fmt.Sprintf("%s#%d", l.path, i)
			file := filepath.Join(dir, strings.NewReplacer("[", "_", "]", "_").Replace(name)+".yaml")
			if err := os.WriteFile(file, buf.Bytes(), 0o600); err != nil {
				t.Fatal(err)
			}
			n++
			t.Run(name, func(t *testing.T) {
				expectUsageError(t, dir, l.path, "run", "--config", file)
			})
		}
	}
	t.Logf("%d bad values over %d keys", n, len(all))
}

// Unknown keys, bad URLs, bad prefixes and flag values are refused before anything starts.
func TestBadConfigValues(t *testing.T) {
	harness.RequireFaults(t)
	dir := t.TempDir()
	write := func(name, body string) string {
		p := filepath.Join(dir, name)
		if err := os.WriteFile(p, []byte(body), 0o600); err != nil {
			t.Fatal(err)
		}
		return p
	}
	for _, c := range []struct {
		name, culprit string
		args          []string
	}{
		{"unknown top-level key", "verifierr", []string{"run", "--config", write("u1.yaml", "verifierr:\n  url: https://x\n")}},
		{"unknown nested key", "run.wrokers", []string{"run", "--config", write("u2.yaml", "run:\n  wrokers: 3\n")}},
		{"not YAML", "u3.yaml", []string{"run", "--config", write("u3.yaml", "run: [\n")}},
		{"missing config file", "nope.yaml", []string{"run", "--config", filepath.Join(dir, "nope.yaml")}},
		{"verifier url scheme", "verifier.url", []string{"run", "ftp://verifier:8881", "postgresql://u@h/db"}},
		{"verifier url without host", "verifier.url", []string{"run", "https://", "postgresql://u@h/db"}},
		{"verifier url garbage", "verifier.url", []string{"run", "::not a url::", "postgresql://u@h/db"}},
		{"verifier without database", "database.url", []string{"run", "https://127.0.0.1:1"}},
		{"sqlite database", "database.url", []string{"run", "https://127.0.0.1:1", "sqlite:////var/lib/keylime/cv_data.sqlite"}},
		{"database url garbage", "database.url", []string{"run", "https://127.0.0.1:1", "mysql://u@h/db"}},
		{"hostile prefix", "database.prefix", []string{"run", "--prefix", "x'; DROP TABLE verifiermain; --"}},
		{"metrics listen without port", "metrics.listen", []string{"run", "--metrics-listen", "127.0.0.1"}},
		{"bad model flag", "scheduler.model", []string{"run", "--model", "open"}},
		{"bad rate stages flag", "scheduler.rate.stages", []string{"run", "--model", "rate", "--rate-stages", "1m:ten"}},
		{"bad threshold", "thresholds", []string{"run", "--threshold", "evidence.p99<<2s"}},
		{"bad shard", "--shard", []string{"run", "--shard", "3/2"}},
		{"negative workers flag", "run.workers", []string{"run", "-w", "-1"}},
		{"workers not a number", "workers", []string{"run", "-w", "lots"}},
		{"bad environment value", "ATTESTLOAD_RUN_AGENTS", nil},
	} {
		t.Run(c.name, func(t *testing.T) {
			if c.args == nil {
				p, code := harness.Run(t, dir, []string{"ATTESTLOAD_RUN_AGENTS=many"}, 30*time.Second, "run")
				harness.NoCrash(t, "stderr", p.Stderr.String())
				if code != 2 || !(strings.Contains(p.Stderr.String(), "run.agents") || strings.Contains(p.Stderr.String(), c.culprit)) {
					t.Errorf("exit %d, stderr does not name run.agents or %s:\n%s", code, c.culprit, p.Stderr.String())
				}
				return
			}
			expectUsageError(t, dir, c.culprit, c.args...)
		})
	}
}

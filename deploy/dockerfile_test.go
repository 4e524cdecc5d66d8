package deploy

import (
	"context"
	"os"
	"os/exec"
	"path/filepath"
	"regexp"
	"strings"
	"testing"
	"time"
)

// dockerInstructions reads a Dockerfile's instructions, joining continued lines and dropping comments.
func dockerInstructions(t *testing.T, path string) []string {
	t.Helper()
	b, err := os.ReadFile(path)
	if err != nil {
		t.Fatal(err)
	}
	var out []string
	var cur strings.Builder
	for line := range strings.SplitSeq(string(b), "\n") {
		trimmed := strings.TrimSpace(line)
		if strings.HasPrefix(trimmed, "#") || (trimmed == "" && cur.Len() == 0) {
			continue
		}
		if strings.HasSuffix(trimmed, "\\") {
			cur.WriteString(strings.TrimSuffix(trimmed, "\\") + " ")
			continue
		}
		cur.WriteString(trimmed)
		out = append(out, cur.String())
		cur.Reset()
	}
	return out
}

// Every ARG of the Dockerfile is used, and the build stage's go build stamps VERSION into the binary: the RUN
// line is run here as the image build runs it (with /out in a temporary directory) and the binary's version
// command must print the VERSION given. The ARG was declared and never used, so every image said "dev".
func TestDockerfileVersionArg(t *testing.T) {
	if testing.Short() {
		t.Skip("builds the binary; skipped with -short")
	}
	ins := dockerInstructions(t, "Dockerfile")
	argRe := regexp.MustCompile(`^ARG\s+([A-Za-z_][A-Za-z0-9_]*)`)
	var build string
	for i, in := range ins {
		if m := argRe.FindStringSubmatch(in); m != nil {
			used := false
			for _, later := range ins[i+1:] {
				if strings.Contains(later, "$"+m[1]) || strings.Contains(later, "${"+m[1]+"}") {
					used = true
				}
			}
			if !used {
				t.Errorf("ARG %s is declared but never used", m[1])
			}
		}
		if strings.HasPrefix(in, "RUN ") && strings.Contains(in, "go build") {
			build = strings.TrimPrefix(in, "RUN ")
		}
	}
	if build == "" {
		t.Fatal("no RUN ... go build instruction")
	}
	out := t.TempDir()
	build = strings.ReplaceAll(build, "/out", out)
	// CGO_ENABLED=0 and -trimpath change how the packages are compiled, not what the binary says; without them
	// the build reuses the test cache's packages instead of compiling every dependency again (minutes on 2 cores).
	build = strings.Replace(strings.Replace(build, "CGO_ENABLED=0 ", "", 1), "-trimpath ", "", 1)
	ctx, cancel := context.WithTimeout(context.Background(), 5*time.Minute)
	defer cancel()
	cmd := exec.CommandContext(ctx, "sh", "-c", build)
	cmd.Dir = ".."
	cmd.Env = append(os.Environ(), "VERSION=v0.0.0-dockerfile-test")
	if b, err := cmd.CombinedOutput(); err != nil {
		t.Fatalf("%s: %v\n%s", build, err, b)
	}
	v, err := exec.CommandContext(ctx, filepath.Join(out, "attestload"), "version").CombinedOutput()
	if err != nil {
		t.Fatalf("version: %v\n%s", err, v)
	}
	if !strings.HasPrefix(string(v), "attestload v0.0.0-dockerfile-test\n") {
		t.Errorf("the image's binary says %q, want the VERSION build argument", strings.SplitN(string(v), "\n", 2)[0])
	}
}

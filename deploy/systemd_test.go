package deploy

import (
	"bufio"
	"context"
	"os"
	"os/exec"
	"path/filepath"
	"slices"
	"strings"
	"testing"
	"time"

	"github.com/attestload/attestload/daemon"
)

// unitDirectives reads the [Service] section's directives of a unit file, joining continued lines.
func unitDirectives(t *testing.T, path string) map[string]string {
	t.Helper()
	b, err := os.ReadFile(path)
	if err != nil {
		t.Fatal(err)
	}
	out := map[string]string{}
	section := ""
	var cont strings.Builder
	for line := range strings.SplitSeq(string(b), "\n") {
		line = strings.TrimSpace(line)
		if cont.Len() == 0 && (line == "" || line[0] == '#' || line[0] == ';') {
			continue
		}
		if strings.HasSuffix(line, "\\") {
			cont.WriteString(strings.TrimSuffix(line, "\\") + " ")
			continue
		}
		line = cont.String() + line
		cont.Reset()
		if strings.HasPrefix(line, "[") {
			section = line
			continue
		}
		if k, v, ok := strings.Cut(line, "="); ok && section == "[Service]" {
			k, v = strings.TrimSpace(k), strings.TrimSpace(v)
			if k == "Environment" && out[k] != "" {
				v = out[k] + " " + v // several Environment= lines add up
			}
			out[k] = v
		}
	}
	return out
}

// readEnvironmentFile parses an EnvironmentFile as systemd does (systemd.exec(5)): KEY=VALUE lines, '#' and ';'
// comments, blank lines ignored, white space around the key and before the value dropped, a value in double or
// single quotes taken without them (backslash escapes inside double quotes), a trailing backslash continuing the
// line.
func readEnvironmentFile(t *testing.T, path string) map[string]string {
	t.Helper()
	f, err := os.Open(path)
	if err != nil {
		t.Fatal(err)
	}
	defer f.Close()
	env := map[string]string{}
	sc := bufio.NewScanner(f)
	var pending string
	for sc.Scan() {
		line := pending + sc.Text()
		pending = ""
		if strings.HasSuffix(line, "\\") && !strings.HasSuffix(line, "\\\\") {
			pending = strings.TrimSuffix(line, "\\")
			continue
		}
		trimmed := strings.TrimSpace(line)
		if trimmed == "" || trimmed[0] == '#' || trimmed[0] == ';' {
			continue
		}
		k, v, ok := strings.Cut(trimmed, "=")
		if !ok {
			t.Fatalf("%s: line %q is not KEY=VALUE (systemd ignores it with a warning)", path, trimmed)
		}
		k, v = strings.TrimSpace(k), strings.TrimSpace(v)
		if len(v) >= 2 && (v[0] == '"' || v[0] == '\'') && v[len(v)-1] == v[0] {
			q := v[0]
			v = v[1 : len(v)-1]
			if q == '"' {
				v = strings.NewReplacer(`\"`, `"`, `\\`, `\`, `\$`, `$`).Replace(v)
			}
		}
		env[k] = v
	}
	if err := sc.Err(); err != nil {
		t.Fatal(err)
	}
	return env
}

// execStartArgv splits an ExecStart= command line and expands variables as systemd.service(5) describes: words
// are separated by white space unless quoted; a word that is exactly $NAME becomes the value's white-space
// separated words (none when unset or empty); ${NAME} inside a word is replaced by the value as is.
func execStartArgv(t *testing.T, line string, env map[string]string) []string {
	t.Helper()
	line = strings.TrimLeft(line, "-@:+!") // the prefixes only change how systemd treats the process
	var words []string
	var quoted []bool
	var cur strings.Builder
	inWord, q := false, byte(0)
	wasQuoted := false
	for i := 0; i < len(line); i++ {
		c := line[i]
		switch {
		case q != 0 && c == q:
			q = 0
		case q != 0:
			cur.WriteByte(c)
		case c == '"' || c == '\'':
			q, inWord, wasQuoted = c, true, true
		case c == ' ' || c == '\t':
			if inWord {
				words, quoted = append(words, cur.String()), append(quoted, wasQuoted)
				cur.Reset()
				inWord, wasQuoted = false, false
			}
		default:
			cur.WriteByte(c)
			inWord = true
		}
	}
	if q != 0 {
		t.Fatalf("ExecStart has an unterminated quote: %s", line)
	}
	if inWord {
		words, quoted = append(words, cur.String()), append(quoted, wasQuoted)
	}
	var argv []string
	for i, w := range words {
		if !quoted[i] && strings.HasPrefix(w, "$") && !strings.HasPrefix(w, "${") && !strings.HasPrefix(w, "$$") {
			argv = append(argv, strings.Fields(env[w[1:]])...)
			continue
		}
		for {
			start := strings.Index(w, "${")
			if start < 0 {
				break
			}
			end := strings.Index(w[start:], "}")
			if end < 0 {
				t.Fatalf("ExecStart word %q has an unterminated ${", w)
			}
			w = w[:start] + env[w[start+2:start+end]] + w[start+end+1:]
		}
		argv = append(argv, strings.ReplaceAll(w, "$$", "$"))
	}
	return argv
}

// TestSystemdUnitCommandLine runs the binary with the command line the unit gives it: ExecStart expanded with the
// shipped EnvironmentFile as systemd would, the shipped config.yaml at /etc/attestload/config.yaml, and the
// environment systemd passes (every variable of the file). The unit's paths are mapped into a temporary directory;
// the verifier and database URLs (example hosts) are the only lines replaced, by the in-process simulated verifier,
// and the run is sized for a test through the environment, so the argv is exactly the unit's.
func TestSystemdUnitCommandLine(t *testing.T) {
	unit := unitDirectives(t, "systemd/attestload.service")
	envFile := strings.TrimPrefix(unit["EnvironmentFile"], "-")
	if envFile != "/etc/attestload/attestload.env" {
		t.Fatalf("EnvironmentFile=%s, want /etc/attestload/attestload.env (what the unit's header installs)", envFile)
	}
	env := readEnvironmentFile(t, "systemd/attestload.env")

	// Every variable of the shipped file is either a config key or one the unit expands.
	keys := map[string]bool{}
	for _, k := range daemon.Keys() {
		keys[daemon.EnvName(k)] = true
	}
	expanded := map[string]bool{}
	for _, w := range strings.Fields(unit["ExecStart"]) {
		if name, ok := strings.CutPrefix(w, "$"); ok {
			expanded[strings.Trim(name, "{}")] = true
		}
	}
	for k := range env {
		if !keys[k] && !expanded[k] {
			t.Errorf("systemd/attestload.env sets %s, which is neither a config key nor expanded by ExecStart", k)
		}
		if expanded[k] && strings.HasPrefix(k, daemon.EnvPrefix) {
			t.Errorf("%s is expanded by ExecStart and also reaches the process, where %s* names config keys", k, daemon.EnvPrefix)
		}
	}
	if _, ok := env["RUN_ARGS"]; !ok {
		t.Fatal("systemd/attestload.env has no RUN_ARGS line (the unit's header says to put the shard there)")
	}

	root := t.TempDir()
	etc, state, cache := filepath.Join(root, "etc"), filepath.Join(root, "state"), filepath.Join(root, "cache")
	for _, d := range []string{etc, state, cache} {
		if err := os.MkdirAll(d, 0o755); err != nil {
			t.Fatal(err)
		}
	}
	cfg, err := os.ReadFile("systemd/config.yaml")
	if err != nil {
		t.Fatal(err)
	}
	if err := os.WriteFile(filepath.Join(etc, "config.yaml"), cfg, 0o644); err != nil {
		t.Fatal(err)
	}
	bin := filepath.Join(root, "attestload")
	build := exec.Command("go", "build", "-o", bin, "github.com/attestload/attestload/cmd/attestload")
	if out, err := build.CombinedOutput(); err != nil {
		t.Fatalf("go build: %v\n%s", err, out)
	}

	argv := execStartArgv(t, unit["ExecStart"], env)
	t.Logf("ExecStart as systemd runs it: %q", argv)
	if want := []string{"--shard", "0/2"}; !slices.Equal(argv[len(argv)-2:], want) {
		t.Errorf("argv ends %q, want RUN_ARGS split into %q", argv[len(argv)-2:], want)
	}
	mapPath := func(s string) string {
		s = strings.Replace(s, "/usr/local/bin/attestload", bin, 1)
		s = strings.Replace(s, "/etc/attestload", etc, 1)
		s = strings.Replace(s, "/var/cache", cache, 1)
		return strings.Replace(s, "/var/lib/attestload", state, 1)
	}
	for i := range argv {
		argv[i] = mapPath(argv[i])
	}
	if wd := unit["WorkingDirectory"]; wd != "/var/lib/attestload" {
		t.Fatalf("WorkingDirectory=%s, want /var/lib/attestload (config.yaml's relative paths assume it)", wd)
	}

	delete(env, "ATTESTLOAD_VERIFIER_URL")
	delete(env, "ATTESTLOAD_DATABASE_URL")
	procEnv := []string{"PATH=" + os.Getenv("PATH"), "HOME=" + root}
	// Environment= assignments (space-separated, each possibly quoted), mapped like the paths; EnvironmentFile=
	// values override them as in systemd.
	for _, kv := range execStartArgv(t, unit["Environment"], nil) {
		k, v, _ := strings.Cut(kv, "=")
		if _, ok := env[k]; !ok {
			procEnv = append(procEnv, k+"="+mapPath(v))
		}
	}
	for k, v := range env {
		procEnv = append(procEnv, k+"="+v)
	}
	procEnv = append(procEnv, "ATTESTLOAD_RUN_AGENTS=4", "ATTESTLOAD_RUN_TASKS=1", "ATTESTLOAD_RUN_DISTINCT_KEYS=2",
		"ATTESTLOAD_SCHEDULER_MODEL=closed", "ATTESTLOAD_METRICS_LISTEN=127.0.0.1:0",
		"ATTESTLOAD_SIMULATOR_QUOTE_INTERVAL=0", "ATTESTLOAD_SIMULATOR_SESSION_HASH_ITERATIONS=1000")
	ctx, cancel := context.WithTimeout(context.Background(), 3*time.Minute)
	defer cancel()
	cmd := exec.CommandContext(ctx, argv[0], argv[1:]...)
	cmd.Dir = state
	cmd.Env = procEnv
	out, err := cmd.CombinedOutput()
	if err != nil {
		t.Fatalf("the unit's command line failed: %v\n%s", err, out)
	}
	results, _ := filepath.Glob(filepath.Join(state, "results", "*.jsonl*"))
	if len(results) != 1 {
		t.Fatalf("results in %s: %v, want one file\n%s", filepath.Join(state, "results"), results, out)
	}
	if _, err := os.Stat(filepath.Join(cache, "attestload", "ak-pool.bin")); err != nil {
		t.Errorf("the AK pool is not in the unit's cache directory: %v", err)
	}
}

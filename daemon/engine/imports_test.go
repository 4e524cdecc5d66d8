package engine

import (
	"os/exec"
	"strings"
	"testing"
)

// forbidden are the import paths (prefixes) the engine must never reach, directly or through a dependency: the
// configuration, database, telemetry and protocol stacks belong to the composition root and the exporters.
var forbidden = []string{
	"github.com/spf13/", // viper, cobra, pflag
	"github.com/jackc/", // pgx
	"github.com/prometheus/",
	"go.opentelemetry.io/",
	"github.com/google/go-tpm",
	"github.com/attestload/attestload/attestation/client",
	"github.com/attestload/attestload/exporter/",
	"net/http",
	"database/sql",
}

// recordPkg is the one package of the module the engine may import.
const recordPkg = "github.com/attestload/attestload/attestation/record"

// goList runs go list on this package (its tests included when test is set) and returns one output line per
// package.
func goList(t *testing.T, test bool, format string) []string {
	t.Helper()
	goBin, err := exec.LookPath("go")
	if err != nil {
		t.Fatalf("the import check needs the go command: %v", err)
	}
	args := []string{"list", "-deps", "-f", format}
	if test {
		args = append(args, "-test")
	}
	out, err := exec.Command(goBin, append(args, ".")...).CombinedOutput()
	if err != nil {
		t.Fatalf("go list: %v\n%s", err, out)
	}
	return strings.Split(strings.TrimSpace(string(out)), "\n")
}

// TestImportsOnlyRecordAndStd is what `go list -deps ./daemon/engine` shows: the engine and its tests import the
// standard library and attestation/record, nothing else, and nothing they pull in reaches viper, pgx,
// Prometheus, OpenTelemetry, the TPM or the HTTP stack.
func TestImportsOnlyRecordAndStd(t *testing.T) {
	const self = "github.com/attestload/attestload/daemon/engine"
	for _, test := range []bool{false, true} {
		std := map[string]bool{}
		imports := map[string][]string{}
		for _, line := range goList(t, test, "{{.ImportPath}}|{{.Standard}}|{{join .Imports \",\"}}") {
			f := strings.Split(line, "|")
			if len(f) != 3 {
				t.Fatalf("go list line %q", line)
			}
			std[f[0]] = f[1] == "true"
			imports[f[0]] = strings.FieldsFunc(f[2], func(r rune) bool { return r == ',' })
		}
		if _, ok := imports[self]; !ok {
			t.Fatalf("go list did not list %s", self)
		}
		for path, imps := range imports {
			for _, bad := range forbidden {
				if strings.HasPrefix(path, bad) {
					t.Errorf("the engine depends on %s (tests included: %v)", path, test)
				}
			}
			// The engine itself, its test variants ("engine [engine.test]") and the test main.
			if !strings.HasPrefix(path, self) {
				continue
			}
			for _, imp := range imps {
				if !std[imp] && imp != recordPkg && !strings.HasPrefix(imp, self) {
					t.Errorf("%s imports %s; the engine may import only the standard library and %s", path, imp,
						recordPkg)
				}
			}
		}
	}
}

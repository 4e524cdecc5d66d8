package dashboards

import (
	"bytes"
	"encoding/json"
	"flag"
	"os"
	"path/filepath"
	"regexp"
	"slices"
	"strings"
	"testing"

	"github.com/prometheus/prometheus/model/labels"
	"github.com/prometheus/prometheus/promql/parser"

	"github.com/attestload/attestload/exporter/metrics"
	"github.com/attestload/attestload/exporter/pgactivity"
)

var update = flag.Bool("update", false, "rewrite the committed dashboards/*.json from the Go code")

// TestGolden regenerates the dashboards and requires the committed JSON to be identical, so the files that
// Grafana provisions never drift from the code. `go generate ./dashboards` (or go test -update) rewrites them.
func TestGolden(t *testing.T) {
	files, err := Build()
	if err != nil {
		t.Fatal(err)
	}
	if *update {
		if _, err := Write("."); err != nil {
			t.Fatal(err)
		}
	}
	for name, want := range files {
		got, err := os.ReadFile(name)
		if err != nil {
			t.Errorf("%s: %v (run go generate ./dashboards)", name, err)
			continue
		}
		if !bytes.Equal(got, want) {
			t.Errorf("%s differs from what the code generates (run go generate ./dashboards and review the diff)", name)
		}
	}
	committed, err := filepath.Glob("*.json")
	if err != nil {
		t.Fatal(err)
	}
	for _, name := range committed {
		if _, ok := files[name]; !ok {
			t.Errorf("%s is committed but no longer generated: delete it", name)
		}
	}
}

// Build must give the same bytes every time (map iteration, ids).
func TestBuildDeterministic(t *testing.T) {
	a, err := Build()
	if err != nil {
		t.Fatal(err)
	}
	b, err := Build()
	if err != nil {
		t.Fatal(err)
	}
	for name := range a {
		if !bytes.Equal(a[name], b[name]) {
			t.Errorf("%s: two builds differ", name)
		}
	}
}

func TestWriteErrors(t *testing.T) {
	dir := t.TempDir()
	if _, err := Write(filepath.Join(dir, "missing")); err == nil || !strings.Contains(err.Error(), "dashboards output directory") {
		t.Errorf("Write to a missing directory: err = %v", err)
	}
	file := filepath.Join(dir, "file")
	if err := os.WriteFile(file, nil, 0o600); err != nil {
		t.Fatal(err)
	}
	if _, err := Write(file); err == nil || !strings.Contains(err.Error(), "is not a directory") {
		t.Errorf("Write to a file: err = %v", err)
	}
	paths, err := Write(dir)
	if err != nil {
		t.Fatal(err)
	}
	if want := []string{"database.json", "fleet.json", "overview.json"}; len(paths) != len(want) {
		t.Fatalf("Write wrote %v, want %v", paths, want)
	}
	for i, p := range paths {
		if filepath.Base(p) != []string{"database.json", "fleet.json", "overview.json"}[i] {
			t.Errorf("Write path %d = %s", i, p)
		}
	}
}

// grafanaJSON is the part of Grafana's dashboard model the checks below read.
type grafanaJSON struct {
	UID    string       `json:"uid"`
	Title  string       `json:"title"`
	Panels []panelJSON  `json:"panels"`
	Vars   templateJSON `json:"templating"`
}

type panelJSON struct {
	ID         int          `json:"id"`
	Type       string       `json:"type"`
	Title      string       `json:"title"`
	Datasource *dsJSON      `json:"datasource"`
	Targets    []targetJSON `json:"targets"`
	Panels     []panelJSON  `json:"panels"` // collapsed rows
}

type dsJSON struct {
	Type string `json:"type"`
	UID  string `json:"uid"`
}

type targetJSON struct {
	RefID    string  `json:"refId"`
	Expr     string  `json:"expr"`
	Exemplar bool    `json:"exemplar"`
	DS       *dsJSON `json:"datasource"`
}

type templateJSON struct {
	List []struct {
		Name  string `json:"name"`
		Type  string `json:"type"`
		Query any    `json:"query"`
	} `json:"list"`
}

func loadAll(t *testing.T) map[string]grafanaJSON {
	t.Helper()
	files, err := Build()
	if err != nil {
		t.Fatal(err)
	}
	out := make(map[string]grafanaJSON, len(files))
	for name, data := range files {
		var d grafanaJSON
		if err := json.Unmarshal(data, &d); err != nil {
			t.Fatalf("%s: %v", name, err)
		}
		out[name] = d
	}
	return out
}

func allPanels(ps []panelJSON) []panelJSON {
	var out []panelJSON
	for _, p := range ps {
		out = append(out, p)
		out = append(out, allPanels(p.Panels)...)
	}
	return out
}

// Markers that stand in for Grafana's variables so that the expressions parse and the filters can be found.
const (
	instanceMark = "INSTANCE_VARIABLE"
	runMark      = "RUN_VARIABLE"
)

// promql turns a panel expression into plain PromQL the way Grafana would before sending it, with the
// instance and run variables replaced by markers.
func promql(expr string) string {
	return strings.NewReplacer(
		"$__rate_interval", "1m",
		"$__interval", "15s",
		"$__range", "1h",
		"$instance", instanceMark,
		"$run", runMark,
	).Replace(expr)
}

var parse = parser.NewParser(parser.Options{}).ParseExpr

type promQuery struct {
	where string // dashboard / panel / target, for messages
	expr  string
}

func allQueries(t *testing.T) []promQuery {
	t.Helper()
	var qs []promQuery
	labelValues := regexp.MustCompile(`^label_values\((.*), *([a-zA-Z_][a-zA-Z0-9_]*)\)$`)
	panels, err := Queries()
	if err != nil {
		t.Fatal(err)
	}
	for _, q := range panels {
		qs = append(qs, promQuery{q.Dashboard + " / " + q.Panel + " / " + q.RefID, q.Expr})
	}
	for name, d := range loadAll(t) {
		for _, v := range d.Vars.List {
			if v.Type != "query" {
				continue
			}
			s, ok := v.Query.(string)
			if !ok {
				t.Errorf("%s: variable %s: query is %T, want a string", name, v.Name, v.Query)
				continue
			}
			m := labelValues.FindStringSubmatch(s)
			if m == nil {
				t.Errorf("%s: variable %s: query %q is not label_values(selector, label)", name, v.Name, s)
				continue
			}
			qs = append(qs, promQuery{name + " / variable " + v.Name, m[1]})
		}
	}
	if len(qs) < 30 {
		t.Fatalf("found only %d queries; the dashboard walk is broken", len(qs))
	}
	return qs
}

// TestQueriesUseExportedMetrics parses every expression of every panel (and every variable's selector) with the
// Prometheus parser and checks that each metric it names is one that exporter/metrics registers.
func TestQueriesUseExportedMetrics(t *testing.T) {
	known := map[string]bool{}
	for _, n := range exported() {
		known[n] = true
	}
	used := map[string]bool{}
	for _, q := range allQueries(t) {
		if strings.TrimSpace(q.expr) == "" {
			t.Errorf("%s: empty expression", q.where)
			continue
		}
		e, err := parse(promql(q.expr))
		if err != nil {
			t.Errorf("%s: %v\n%s", q.where, err, q.expr)
			continue
		}
		for _, vs := range selectors(e) {
			name := metricName(vs)
			if name == "" {
				t.Errorf("%s: selector %s has no metric name", q.where, vs)
				continue
			}
			family, ok := resolve(name, known)
			if !ok {
				t.Errorf("%s: metric %s is not registered by the daemon (metrics.Names(), pgactivity.Names())", q.where, name)
				continue
			}
			used[family] = true
		}
	}
	// The dashboards should show everything the daemon measures; a metric nobody can see is dead weight.
	for _, n := range exported() {
		if !used[n] {
			t.Logf("metric %s is on no dashboard", n)
		}
	}
}

// exported is every metric name the daemon can register: its own and the PostgreSQL sampler's.
func exported() []string {
	return append(metrics.Names(), pgactivity.Names()...)
}

// resolve maps a series name to its registered family: histograms expose _bucket, _sum and _count series.
func resolve(name string, known map[string]bool) (string, bool) {
	if known[name] {
		return name, true
	}
	for _, suffix := range []string{"_bucket", "_sum", "_count"} {
		family, ok := strings.CutSuffix(name, suffix)
		if ok && known[family] && !strings.HasSuffix(family, "_total") {
			return family, true
		}
	}
	return "", false
}

func selectors(e parser.Expr) []*parser.VectorSelector {
	var out []*parser.VectorSelector
	parser.Inspect(e, func(n parser.Node, _ []parser.Node) error {
		if vs, ok := n.(*parser.VectorSelector); ok {
			out = append(out, vs)
		}
		return nil
	})
	return out
}

func metricName(vs *parser.VectorSelector) string {
	if vs.Name != "" {
		return vs.Name
	}
	for _, m := range vs.LabelMatchers {
		if m.Name == labels.MetricName && m.Type == labels.MatchEqual {
			return m.Value
		}
	}
	return ""
}

// TestQueriesFollowVariables checks that the instance and run variables act on every panel: every selector is
// limited to the chosen instances, and every panel expression to the chosen runs.
func TestQueriesFollowVariables(t *testing.T) {
	for _, q := range allQueries(t) {
		e, err := parse(promql(q.expr))
		if err != nil {
			continue // reported by TestQueriesUseExportedMetrics
		}
		runFiltered := false
		for _, vs := range selectors(e) {
			if metricName(vs) == "attestload_run_info" && hasMatcher(vs, "run_id", labels.MatchRegexp, runMark) {
				runFiltered = true
				continue
			}
			// The instance variable's own query lists the instances, so it cannot be limited to them.
			if !hasMatcher(vs, "instance", labels.MatchRegexp, instanceMark) && !strings.HasSuffix(q.where, "/ variable instance") {
				t.Errorf("%s: selector %s ignores the instance variable", q.where, vs)
			}
		}
		if !runFiltered && !strings.Contains(q.where, "/ variable ") {
			t.Errorf("%s: expression ignores the run variable:\n%s", q.where, q.expr)
		}
	}
}

func hasMatcher(vs *parser.VectorSelector, name string, typ labels.MatchType, value string) bool {
	return slices.ContainsFunc(vs.LabelMatchers, func(m *labels.Matcher) bool {
		return m.Name == name && m.Type == typ && m.Value == value
	})
}

func TestDashboardShape(t *testing.T) {
	wantUID := map[string]string{"overview.json": UIDOverview, "database.json": UIDDatabase, "fleet.json": UIDFleet}
	for name, d := range loadAll(t) {
		if d.UID != wantUID[name] {
			t.Errorf("%s: uid %q, want %q", name, d.UID, wantUID[name])
		}
		var vars []string
		for _, v := range d.Vars.List {
			vars = append(vars, v.Name)
		}
		if !slices.Equal(vars, []string{"datasource", "instance", "run"}) {
			t.Errorf("%s: variables %v, want datasource, instance, run", name, vars)
		}
		ids := map[int]bool{}
		for _, p := range allPanels(d.Panels) {
			if p.ID == 0 || ids[p.ID] {
				t.Errorf("%s: panel %q has id %d (missing or duplicate)", name, p.Title, p.ID)
			}
			ids[p.ID] = true
			if p.Type == "row" {
				continue
			}
			if p.Datasource == nil || p.Datasource.UID != "${datasource}" {
				t.Errorf("%s: panel %q does not use the datasource variable", name, p.Title)
			}
			if len(p.Targets) == 0 {
				t.Errorf("%s: panel %q has no query", name, p.Title)
			}
			for _, tg := range p.Targets {
				if tg.DS == nil || tg.DS.UID != "${datasource}" {
					t.Errorf("%s: panel %q query %s does not use the datasource variable", name, p.Title, tg.RefID)
				}
			}
			// Latency panels carry exemplars, which Grafana turns into links to the traces in Jaeger.
			if p.Type == "heatmap" || strings.Contains(p.Title, "p99") && !strings.Contains(p.Title, "Lateness") {
				for _, tg := range p.Targets {
					if !tg.Exemplar {
						t.Errorf("%s: latency panel %q query %s has no exemplars", name, p.Title, tg.RefID)
					}
				}
			}
		}
	}
}

// The issue asks for a cycle-duration heatmap with exemplars on the overview.
func TestOverviewHasExemplarHeatmap(t *testing.T) {
	d := loadAll(t)["overview.json"]
	for _, p := range allPanels(d.Panels) {
		if p.Type == "heatmap" && strings.Contains(p.Targets[0].Expr, "attestload_cycle_duration_seconds") &&
			p.Targets[0].Exemplar {
			return
		}
	}
	t.Error("overview has no cycle-duration heatmap with exemplars")
}

func TestExpand(t *testing.T) {
	qs, err := Queries()
	if err != nil {
		t.Fatal(err)
	}
	for _, q := range qs {
		e := Expand(q.Expr, "2m")
		if strings.Contains(e, "$") {
			t.Errorf("%s / %s: variables left after Expand: %s", q.Dashboard, q.Panel, e)
		}
		if _, err := parse(e); err != nil {
			t.Errorf("%s / %s: expanded query does not parse: %v", q.Dashboard, q.Panel, err)
		}
	}
	if got, want := Expand(`rate(m{instance=~"$instance"}[$__rate_interval]) and on (job, instance) i{run_id=~"$run"}`, "2m"),
		`rate(m{instance=~".*"}[2m]) and on (job, instance) i{run_id=~".*"}`; got != want {
		t.Errorf("Expand = %s, want %s", got, want)
	}
}

package dashboards

import (
	"encoding/json"
	"fmt"
	"sort"
	"strings"
)

// Query is one PromQL expression of a dashboard panel, as written in the dashboard JSON (with Grafana's
// variables in it).
type Query struct {
	Dashboard string // file name, e.g. overview.json
	Panel     string // panel title
	RefID     string // the query's letter within the panel
	Expr      string
}

// Queries lists every panel query of every dashboard, read back from the rendered JSON, in file order and then
// panel order. An end-to-end check evaluates them (after Expand) against a Prometheus that scraped a run.
func Queries() ([]Query, error) {
	files, err := Build()
	if err != nil {
		return nil, err
	}
	names := make([]string, 0, len(files))
	for name := range files {
		names = append(names, name)
	}
	sort.Strings(names)
	var out []Query
	for _, name := range names {
		var d struct {
			Panels []jsonPanel `json:"panels"`
		}
		if err := json.Unmarshal(files[name], &d); err != nil {
			return nil, fmt.Errorf("read back dashboard %s: %w", name, err)
		}
		for _, p := range flatten(d.Panels) {
			for _, t := range p.Targets {
				out = append(out, Query{Dashboard: name, Panel: p.Title, RefID: t.RefID, Expr: t.Expr})
			}
		}
	}
	return out, nil
}

type jsonPanel struct {
	Title   string `json:"title"`
	Targets []struct {
		RefID string `json:"refId"`
		Expr  string `json:"expr"`
	} `json:"targets"`
	Panels []jsonPanel `json:"panels"` // the panels of a collapsed row
}

func flatten(ps []jsonPanel) []jsonPanel {
	var out []jsonPanel
	for _, p := range ps {
		out = append(out, p)
		out = append(out, flatten(p.Panels)...)
	}
	return out
}

// Expand replaces the Grafana variables of a panel query the way Grafana does with every instance and every run
// selected, and rateInterval (e.g. "1m") as $__rate_interval, giving plain PromQL for Prometheus's HTTP API.
func Expand(expr, rateInterval string) string {
	return strings.NewReplacer(
		"$__rate_interval", rateInterval,
		"$instance", ".*",
		"$run", ".*",
	).Replace(expr)
}

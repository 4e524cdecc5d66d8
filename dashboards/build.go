package dashboards

import (
	"bytes"
	"encoding/json"
	"fmt"
	"os"
	"path/filepath"
	"sort"

	"github.com/grafana/grafana-foundation-sdk/go/cog"
	"github.com/grafana/grafana-foundation-sdk/go/cog/variants"
	"github.com/grafana/grafana-foundation-sdk/go/common"
	"github.com/grafana/grafana-foundation-sdk/go/dashboard"
	"github.com/grafana/grafana-foundation-sdk/go/heatmap"
	"github.com/grafana/grafana-foundation-sdk/go/prometheus"
	"github.com/grafana/grafana-foundation-sdk/go/stat"
	"github.com/grafana/grafana-foundation-sdk/go/table"
	"github.com/grafana/grafana-foundation-sdk/go/timeseries"
)

// Stable dashboard uids: links, bookmarks and provisioning refer to them, so they never change.
const (
	UIDOverview = "attestload-overview"
	UIDDatabase = "attestload-database"
	UIDFleet    = "attestload-fleet"
)

// Tag is carried by every attestload dashboard; the dashboards link to each other through it.
const Tag = "attestload"

// Build renders every dashboard to indented JSON, keyed by file name (overview.json, database.json, fleet.json).
// The output is deterministic: the same code gives the same bytes.
func Build() (map[string][]byte, error) {
	out := make(map[string][]byte, 3)
	for name, build := range map[string]func() *dashboard.DashboardBuilder{
		"overview.json": overview,
		"database.json": database,
		"fleet.json":    fleet,
	} {
		d, err := build().Build()
		if err != nil {
			return nil, fmt.Errorf("build dashboard %s: %w", name, err)
		}
		numberPanels(&d)
		var buf bytes.Buffer
		enc := json.NewEncoder(&buf)
		enc.SetIndent("", "  ")
		// PromQL is full of < > &; keep it readable in the files that reviewers diff.
		enc.SetEscapeHTML(false)
		if err := enc.Encode(d); err != nil {
			return nil, fmt.Errorf("encode dashboard %s: %w", name, err)
		}
		out[name] = buf.Bytes()
	}
	return out, nil
}

// Write renders every dashboard into dir (which must exist), one file each, and returns the paths written in
// order.
func Write(dir string) ([]string, error) {
	files, err := Build()
	if err != nil {
		return nil, err
	}
	st, err := os.Stat(dir)
	if err != nil {
		return nil, fmt.Errorf("dashboards output directory: %w", err)
	}
	if !st.IsDir() {
		return nil, fmt.Errorf("dashboards output directory %s is not a directory", dir)
	}
	names := make([]string, 0, len(files))
	for name := range files {
		names = append(names, name)
	}
	sort.Strings(names)
	paths := make([]string, 0, len(names))
	for _, name := range names {
		p := filepath.Join(dir, name)
		if err := os.WriteFile(p, files[name], 0o644); err != nil {
			return paths, fmt.Errorf("write dashboard: %w", err)
		}
		paths = append(paths, p)
	}
	return paths, nil
}

// numberPanels gives panels ids in layout order. Grafana would assign them on import, but then the JSON on disk
// and the dashboard in Grafana would disagree, and panel links (viewPanel=N) would not be stable.
func numberPanels(d *dashboard.Dashboard) {
	id := uint32(0)
	for i := range d.Panels {
		id++
		switch {
		case d.Panels[i].Panel != nil:
			d.Panels[i].Panel.Id = cog.ToPtr(id)
		case d.Panels[i].RowPanel != nil:
			d.Panels[i].RowPanel.Id = id
		}
	}
}

// datasource is the Prometheus datasource chosen in the dashboard's datasource variable.
func datasource() common.DataSourceRef {
	return common.DataSourceRef{Type: cog.ToPtr("prometheus"), Uid: cog.ToPtr("${datasource}")}
}

// newDashboard has what every attestload dashboard shares: tags, links to the others, time settings, and the
// datasource, instance and run variables.
func newDashboard(uid, title, description string) *dashboard.DashboardBuilder {
	return dashboard.NewDashboardBuilder(title).
		Uid(uid).
		Description(description).
		Tags([]string{Tag}).
		Editable().
		Tooltip(dashboard.DashboardCursorSyncCrosshair).
		Refresh("10s").
		Time("now-30m", "now").
		Timezone(common.TimeZoneBrowser).
		Link(dashboard.NewDashboardLinkBuilder("attestload").
			Type(dashboard.DashboardLinkTypeDashboards).
			Tags([]string{Tag}).
			AsDropdown(false).
			IncludeVars(true).
			KeepTime(true)).
		WithVariable(dashboard.NewDatasourceVariableBuilder("datasource").
			Label("Prometheus").
			Type("prometheus")).
		WithVariable(labelVariable("instance", "Instance", `label_values(attestload_build_info, instance)`)).
		WithVariable(labelVariable("run", "Run", `label_values(attestload_run_info{instance=~"$instance"}, run_id)`))
}

// labelVariable is a multi-value variable over a label's values, "All" by default. Its "All" value is the regex
// .* so that queries can always use =~.
func labelVariable(name, label, query string) *dashboard.QueryVariableBuilder {
	return dashboard.NewQueryVariableBuilder(name).
		Label(label).
		Datasource(datasource()).
		Query(dashboard.StringOrMap{String: cog.ToPtr(query)}).
		Refresh(dashboard.VariableRefreshOnTimeRangeChanged).
		Sort(dashboard.VariableSortAlphabeticalAsc).
		Multi(true).
		IncludeAll(true).
		AllValue(".*").
		Current(dashboard.VariableOption{
			Selected: cog.ToPtr(true),
			Text:     dashboard.StringOrArrayOfString{ArrayOfString: []string{"All"}},
			Value:    dashboard.StringOrArrayOfString{ArrayOfString: []string{"$__all"}},
		})
}

// query is one PromQL target of a panel.
func query(ref, expr, legend string) *prometheus.DataqueryBuilder {
	return prometheus.NewDataqueryBuilder().
		RefId(ref).
		Datasource(datasource()).
		Expr(expr).
		LegendFormat(legend).
		Range()
}

// withExemplars asks Prometheus for the exemplars of a latency query; Grafana draws them as dots that link to
// the trace (the datasource's exemplar trace-id destination points at Jaeger).
func withExemplars(q *prometheus.DataqueryBuilder) *prometheus.DataqueryBuilder {
	return q.Exemplar(true)
}

func row(title string) *dashboard.RowBuilder {
	return dashboard.NewRowBuilder(title)
}

// graph is a time series panel of the given size (width in grid columns out of 24, height in rows).
func graph(title, description, unit string, w, h uint32, targets ...cog.Builder[variants.Dataquery]) *timeseries.PanelBuilder {
	p := timeseries.NewPanelBuilder().
		Title(title).
		Description(description).
		Datasource(datasource()).
		Unit(unit).
		Span(w).
		Height(h).
		FillOpacity(10).
		LineWidth(1).
		ShowPoints(common.VisibilityModeNever).
		Legend(common.NewVizLegendOptionsBuilder().
			DisplayMode(common.LegendDisplayModeTable).
			Placement(common.LegendPlacementBottom).
			ShowLegend(true).
			Calcs([]string{"mean", "max", "lastNotNull"})).
		Tooltip(common.NewVizTooltipOptionsBuilder().
			Mode(common.TooltipDisplayModeMulti).
			Sort(common.SortOrderDescending))
	for _, t := range targets {
		p.WithTarget(t)
	}
	return p
}

// single is a stat panel showing the latest value of one query.
func single(title, description, unit string, w, h uint32, target cog.Builder[variants.Dataquery]) *stat.PanelBuilder {
	return stat.NewPanelBuilder().
		Title(title).
		Description(description).
		Datasource(datasource()).
		Unit(unit).
		Span(w).
		Height(h).
		GraphMode(common.BigValueGraphModeArea).
		ColorMode(common.BigValueColorModeNone).
		ReduceOptions(common.NewReduceDataOptionsBuilder().Calcs([]string{"lastNotNull"})).
		WithTarget(target)
}

// heat is a heatmap of a histogram family's buckets (already bucketed by Prometheus, so Grafana must not
// re-bucket), with exemplars.
func heat(title, description string, w, h uint32, family string, matchers ...string) *heatmap.PanelBuilder {
	return heatmap.NewPanelBuilder().
		Title(title).
		Description(description).
		Datasource(datasource()).
		Span(w).
		Height(h).
		Calculate(false).
		RowsFrame(heatmap.NewRowsHeatmapOptionsBuilder().Layout(common.HeatmapCellLayoutLe)).
		YAxis(heatmap.NewYAxisConfigBuilder().Unit("s")).
		Color(heatmap.NewHeatmapColorOptionsBuilder().
			Mode(heatmap.HeatmapColorModeScheme).
			Scheme("Oranges").
			Scale(heatmap.HeatmapColorScaleExponential).
			Exponent(0.5).
			Steps(64)).
		CellValues(heatmap.NewCellValuesBuilder().Unit("cps")).
		Tooltip(heatmap.NewHeatmapTooltipBuilder().Mode(common.TooltipDisplayModeSingle).YHistogram(true)).
		ShowLegend().
		ExemplarsColor("rgba(31, 96, 196, 0.9)").
		WithTarget(withExemplars(query("A", heatmapBuckets(family, matchers...), "{{le}}")).
			Format(prometheus.PromQueryFormatHeatmap))
}

// listing lists the label sets of one instant query, one row per series; the constant value and the time stamp
// say nothing and are hidden.
func listing(title, description string, w, h uint32, target *prometheus.DataqueryBuilder) *table.PanelBuilder {
	return table.NewPanelBuilder().
		Title(title).
		Description(description).
		Datasource(datasource()).
		Span(w).
		Height(h).
		Filterable(true).
		WithTransformation(dashboard.DataTransformerConfig{
			Id:      "organize",
			Options: map[string]any{"excludeByName": map[string]any{"Time": true, "Value": true}},
		}).
		WithTarget(target.Instant().Format(prometheus.PromQueryFormatTable))
}

// Package dashboards builds attestload's Grafana dashboards as code, with grafana-foundation-sdk, and renders
// them to the JSON files committed next to this package (overview.json, database.json, fleet.json), which the
// deployment provisions into Grafana.
//
// The dashboards only ever query metrics that attestload exports: the tests parse every PromQL expression and
// check each metric name against exporter/metrics.Names() and exporter/pgactivity.Names(), and compare a fresh
// rendering with the committed JSON byte for byte. To change a dashboard, edit the Go code and run `go generate ./dashboards` (or
// `attestload dashboards --out dashboards`).
//
// This package knows metric names and label values, PromQL and Grafana's JSON model; it knows nothing of the
// daemon, the push protocol or how the metrics are produced.
package dashboards

//go:generate go test -run TestGolden -update .

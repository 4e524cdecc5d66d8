package dashboards

import "github.com/grafana/grafana-foundation-sdk/go/dashboard"

func database() *dashboard.DashboardBuilder {
	return newDashboard(UIDDatabase, "attestload / Database", "x")
}

package record

// RunInfo is the run-level sidecar the daemon writes next to results/<stamp>.jsonl as results/<stamp>.run.json
// (exporter/results.WriteSidecar), at start, periodically and at exit. Fields a reader cannot get from records
// (dropped cycles, outages) come from here.
type RunInfo struct {
	Schema        int     `json:"schema"`
	RunID         string  `json:"run_id"`
	Instance      string  `json:"instance"`
	Model         string  `json:"model"` // closed, fleet or rate
	StartTime     float64 `json:"start_time"`
	EndTime       float64 `json:"end_time"`
	DroppedCycles int64   `json:"dropped_cycles"`
	LateCycles    int64   `json:"late_cycles"`
	Agents        int     `json:"agents"`
	Workers       int     `json:"workers"`
	// Outages are the time ranges during which the verifier could not be reached at all.
	Outages []OutageInfo `json:"outages,omitempty"`
	// KeyTypes counts the run's agents by attestation-key type (rsa2048, ecc-p256); absent in older sidecars.
	KeyTypes map[string]int `json:"key_types,omitempty"`
	// Profile is the evidence profile (ima, quote-only, captured) and MeasuredBoot whether the agents also sent a
	// UEFI event log against an mbpolicies reference state; absent in older sidecars.
	Profile      string `json:"profile,omitempty"`
	MeasuredBoot bool   `json:"measured_boot,omitempty"`
	// Connections is the connection model and what its connections did; absent in older sidecars.
	Connections *ConnInfo `json:"connections,omitempty"`
}

// ConnInfo is a run's connection model (per-agent or shared) and its connections: opened, TLS handshakes, the
// most open at once, idle ones closed to stay within the descriptor budget, and the source addresses used.
type ConnInfo struct {
	Model         string `json:"model"`
	Opened        int64  `json:"opened"`
	TLSHandshakes int64  `json:"tls_handshakes"`
	PeakOpen      int64  `json:"peak_open"`
	Evicted       int64  `json:"evicted,omitempty"`
	Budget        int    `json:"budget,omitempty"`
	SourceAddrs   int    `json:"source_addrs,omitempty"`
}

// OutageInfo is one outage of the verifier: Unix seconds, the error class that opened it, and whether the run
// ended during it.
type OutageInfo struct {
	Start   float64    `json:"start"`
	End     float64    `json:"end"`
	Error   ErrorClass `json:"error"`
	Ongoing bool       `json:"ongoing,omitempty"`
}

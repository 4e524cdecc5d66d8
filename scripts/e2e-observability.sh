#!/usr/bin/env bash
# e2e-observability.sh: end-to-end check of attestload's live observability (issue 5).
#
# A real Prometheus (Debian package) scrapes attestload running against the simulated verifier (the
# `attestload verifier-sim` command in PostgreSQL mode, with injected slow and failing cycles) and a real
# PostgreSQL; a real Jaeger (built from source with the Go toolchain)
# receives its traces over OTLP. After the run it checks:
#   1. PromQL sums of attestload_cycles_total by outcome equal the JSONL line counts by outcome, and
#      attestload_verdicts_total by evaluation equals the JSONL verdicts of accepted evidence;
#   2. every failed and every slow cycle in the JSONL has a trace_id, and Jaeger holds each of those traces;
#   3. the trace id of an exemplar scraped by Prometheus is found in Jaeger;
#   4. attestload_pg_* series are present and non-zero;
#   5. every Grafana panel query (`attestload dashboards --queries`), evaluated by this Prometheus at the end of
#      the run, returns data. The verifier also answers some negotiations 429 and some session creations 503
#      (both with Retry-After, both retried) so that the retry, rate-limit and server-error panels have data.
#
# Everything listens on 127.0.0.1 on free ports; nothing else is contacted except the Go module proxy (building
# Jaeger once) and the Debian mirror (installing prometheus once). Tools are cached outside the repository in
# $ATTESTLOAD_E2E_CACHE (default ~/.cache/attestload-e2e), so a second run starts in seconds.
#
# Needs: go, python3, curl, PostgreSQL (scripts/pg-start.sh), root or sudo for apt-get on the first run.
# `e2e-observability.sh --build-jaeger` only builds and caches Jaeger, then exits; `--jaeger-cached` prints yes or
# no. .ci/run starts the build in the background at its beginning on a machine that has not built Jaeger yet, so
# the long first build overlaps the tests, and waits for it before running this script for the checks.
#
# Environment: ATTESTLOAD_E2E_CACHE, JAEGER_VERSION (a github.com/jaegertracing/jaeger module version whose
# cmd/jaeger is the Jaeger v2 binary), E2E_DURATION (default 45s), E2E_KEEP=1 keeps the work directory.
#
# attestload configuration keys this script relies on (besides the run/scheduler/evidence/results ones):
#   metrics.listen, metrics.final_scrape_wait
#   tracing.enabled, tracing.protocol, tracing.endpoint, tracing.insecure, tracing.sample_ratio,
#   tracing.slow_threshold
#   verdict.source (database), verdict.timeout, verdict.poll_interval
#   pgactivity.enabled, pgactivity.interval
set -euo pipefail

say() { printf 'e2e: %s\n' "$*" >&2; }
die() { say "FAIL: $*"; exit 1; }

root="$(cd "$(dirname "${BASH_SOURCE[0]}")/.." && pwd)"
cache="${ATTESTLOAD_E2E_CACHE:-${XDG_CACHE_HOME:-$HOME/.cache}/attestload-e2e}"
jaeger_version="${JAEGER_VERSION:-v1.76.0}"
duration="${E2E_DURATION:-45s}"
slow_threshold_s=1
jaeger_bin="$cache/jaeger-$jaeger_version/bin/jaeger"

mode="${1:-}"
case "$mode" in
"" | --build-jaeger) ;;
--jaeger-cached)
	if [[ -x "$jaeger_bin" ]]; then echo yes; else echo no; fi
	exit 0
	;;
*) die "unknown argument '$mode' (options: --build-jaeger, --jaeger-cached)" ;;
esac

for c in go python3 curl; do command -v "$c" >/dev/null 2>&1 || die "$c not found"; done
mkdir -p "$cache"
work="$(mktemp -d "${TMPDIR:-/tmp}/attestload-e2e.XXXXXX")"
pids=()
cleanup() {
	local rc=$?
	for p in "${pids[@]}"; do kill "$p" 2>/dev/null || true; done
	for p in "${pids[@]}"; do wait "$p" 2>/dev/null || true; done
	if [[ -n "${e2e_db:-}" && -n "${admin_url:-}" ]]; then
		psql "$admin_url" -qAtc "DROP DATABASE IF EXISTS \"$e2e_db\" WITH (FORCE)" >/dev/null 2>&1 || true
	fi
	if [[ "${E2E_KEEP:-0}" == 1 || $rc -ne 0 ]]; then say "work directory kept: $work"; else rm -rf "$work"; fi
	exit $rc
}
trap cleanup EXIT

free_port() { python3 -c 'import socket; s=socket.socket(); s.bind(("127.0.0.1",0)); print(s.getsockname()[1]); s.close()'; }

# wait_http URL SECONDS: until URL answers 2xx.
wait_http() {
	local url=$1 n=$2
	for ((i = 0; i < n * 5; i++)); do
		curl -fsS -o /dev/null "$url" 2>/dev/null && return 0
		sleep 0.2
	done
	return 1
}

# ---------------------------------------------------------------------------------------------------- tools
ensure_prometheus() {
	if command -v prometheus >/dev/null 2>&1; then return; fi
	say "installing Debian's prometheus (once)"
	local sudo=()
	[[ "$(id -u)" -eq 0 ]] || sudo=(sudo -n)
	# The package would start a system-wide Prometheus on all interfaces; keep it from starting at all.
	printf '#!/bin/sh\nexit 101\n' | "${sudo[@]}" tee /usr/sbin/policy-rc.d >/dev/null
	"${sudo[@]}" chmod +x /usr/sbin/policy-rc.d
	DEBIAN_FRONTEND=noninteractive "${sudo[@]}" apt-get install -y --no-install-recommends prometheus >&2 ||
		{ "${sudo[@]}" rm -f /usr/sbin/policy-rc.d; die "apt-get install prometheus failed"; }
	"${sudo[@]}" rm -f /usr/sbin/policy-rc.d
}

# Jaeger's go.mod has replace directives, so `go install …@version` refuses it; build inside a copy of the
# module instead, which honours them. The binary is cached per version.
ensure_jaeger() {
	[[ -x "$jaeger_bin" ]] && return
	say "building Jaeger $jaeger_version with $(go env GOVERSION) (once; several minutes)"
	local dir
	dir="$(cd "$work" && GOFLAGS=-mod=mod go mod download -json "github.com/jaegertracing/jaeger@$jaeger_version" |
		python3 -c 'import json,sys; print(json.load(sys.stdin)["Dir"])')" || die "cannot download jaeger $jaeger_version"
	local src="$cache/jaeger-$jaeger_version/src"
	rm -rf "$src" && mkdir -p "$(dirname "$src")" && cp -r "$dir" "$src" && chmod -R u+w "$src"
	# Lowest priority: when .ci/run builds this in the background, the tests running beside it keep the CPU.
	(cd "$src" && GOTOOLCHAIN=local nice -n 19 go build -trimpath -o "$jaeger_bin.tmp" ./cmd/jaeger) >&2 ||
		die "jaeger $jaeger_version does not build with $(go env GOVERSION)"
	mv "$jaeger_bin.tmp" "$jaeger_bin"
	rm -rf "$src"
}

if [[ "$mode" == --build-jaeger ]]; then
	ensure_jaeger
	say "Jaeger $jaeger_version ready: $jaeger_bin"
	exit 0
fi

ensure_prometheus
ensure_jaeger

# ---------------------------------------------------------------------------------------------------- services
admin_url="$("$root/scripts/pg-start.sh")" || die "PostgreSQL did not start (scripts/pg-start.sh)"
e2e_db="attestload_e2e_$$"
psql "$admin_url" -qAtc "CREATE DATABASE \"$e2e_db\"" >/dev/null || die "cannot create database $e2e_db"
db_url="$(python3 -c 'import sys,urllib.parse as u; p=u.urlsplit(sys.argv[1]); print(u.urlunsplit(p._replace(path="/"+sys.argv[2])))' "$admin_url" "$e2e_db")"

p_otlp=$(free_port) p_otlp_http=$(free_port) p_query=$(free_port) p_query_grpc=$(free_port) p_health=$(free_port)
p_prom=$(free_port) p_metrics=$(free_port) p_sim=$(free_port)

cat >"$work/jaeger.yaml" <<EOF
service:
  extensions: [jaeger_storage, jaeger_query, healthcheckv2]
  pipelines:
    traces:
      receivers: [otlp]
      processors: [batch]
      exporters: [jaeger_storage_exporter]
  telemetry:
    metrics:
      level: none
    logs:
      level: warn
extensions:
  healthcheckv2:
    use_v2: true
    http:
      endpoint: 127.0.0.1:$p_health
  jaeger_query:
    storage:
      traces: mem
    http:
      endpoint: 127.0.0.1:$p_query
    grpc:
      endpoint: 127.0.0.1:$p_query_grpc
  jaeger_storage:
    backends:
      mem:
        memory:
          max_traces: 200000
receivers:
  otlp:
    protocols:
      grpc:
        endpoint: 127.0.0.1:$p_otlp
      http:
        endpoint: 127.0.0.1:$p_otlp_http
processors:
  batch:
exporters:
  jaeger_storage_exporter:
    trace_storage: mem
EOF
"$jaeger_bin" --config "$work/jaeger.yaml" >"$work/jaeger.log" 2>&1 &
pids+=($!)
wait_http "http://127.0.0.1:$p_query/api/services" 60 || { tail -20 "$work/jaeger.log" >&2; die "Jaeger did not start"; }
say "jaeger up: OTLP gRPC 127.0.0.1:$p_otlp, query 127.0.0.1:$p_query"

cat >"$work/prometheus.yml" <<EOF
global:
  scrape_interval: 1s
  scrape_timeout: 1s
scrape_configs:
  - job_name: attestload
    static_configs:
      - targets: ['127.0.0.1:$p_metrics']
EOF
prometheus --config.file="$work/prometheus.yml" --storage.tsdb.path="$work/prom" \
	--web.listen-address="127.0.0.1:$p_prom" --enable-feature=exemplar-storage >"$work/prometheus.log" 2>&1 &
pids+=($!)
prom="http://127.0.0.1:$p_prom"
wait_http "$prom/-/ready" 60 || { tail -20 "$work/prometheus.log" >&2; die "Prometheus did not start"; }
say "prometheus up: $prom"

# ---------------------------------------------------------------------------------------------------- the run
say "building attestload"
(cd "$root" && go build -o "$work/attestload" ./cmd/attestload) || die "attestload does not build"

# The verifier: failing cycles are evidence PATCHes answered 400 (not retried), slow ones are negotiation POSTs
# that stall 1.5 s (above the 1 s slow threshold) before being handled. Some negotiations are answered 429 and
# some session creations 503, each with Retry-After: 1, which the client retries (retry and rate-limit panels).
"$work/attestload" verifier-sim --listen "127.0.0.1:$p_sim" --plain-http --database "$db_url" --init-schema \
	--quote-interval 1 --session-hash-iterations 1000 \
	--fault update:error-rate=0.04 --fault update:error-status=400 \
	--fault create:stall-rate=0.04 --fault create:stall-for=1500ms \
	--fault create:error-rate=0.02 --fault create:error-status=429 --fault create:retry-after=1 \
	--fault session_create:error-rate=0.3 --fault session_create:error-status=503 \
	--fault session_create:retry-after=1 >"$work/sim.log" 2>&1 &
pids+=($!)
for ((i = 0; i < 100; i++)); do
	curl -s -o /dev/null "http://127.0.0.1:$p_sim/" 2>/dev/null && break
	sleep 0.1
done

mkdir -p "$work/results"
cat >"$work/attestload.yaml" <<EOF
verifier:
  url: http://127.0.0.1:$p_sim
database:
  url: "$db_url"
run:
  agents: 24
  workers: 24
  duration: $duration
  drain_timeout: 10s
  key_pool: $work/keys.bin
  distinct_keys: 8
results:
  dir: $work/results
  compression: none # the checks below read the JSONL with Python's json module
scheduler:
  model: closed
evidence:
  profile: quote-only
metrics:
  listen: 127.0.0.1:$p_metrics
  final_scrape_wait: 10s
tracing:
  enabled: true
  protocol: grpc
  endpoint: 127.0.0.1:$p_otlp
  insecure: true
  sample_ratio: 0.05
  slow_threshold: ${slow_threshold_s}s
verdict:
  source: database
  timeout: 20s
  poll_interval: 250ms
pgactivity:
  enabled: true
  interval: 1s
EOF
"$work/attestload" dashboards --queries --rate-interval 1m >"$work/queries.tsv" || die "attestload dashboards --queries failed"
[[ -s "$work/queries.tsv" ]] || die "attestload dashboards --queries printed no query"
say "running attestload for $duration"
run_start=$(date +%s)
run_rc=0
"$work/attestload" run --config "$work/attestload.yaml" >"$work/run.out" 2>"$work/run.err" || run_rc=$?
# 0: clean; 99: thresholds crossed (none are configured, so any other code is a failure of the run itself).
[[ $run_rc -eq 0 ]] || { tail -30 "$work/run.err" >&2; die "attestload run exited with $run_rc"; }
jsonl="$(ls "$work"/results/*.jsonl 2>/dev/null | head -1)"
[[ -s "$jsonl" ]] || die "no results file in $work/results"

# ---------------------------------------------------------------------------------------------------- checks
# One python program does the arithmetic; bash only orchestrates. It prints the failures, one per line.
python3 - "$jsonl" "$prom" "http://127.0.0.1:$p_query" "$slow_threshold_s" "$work/queries.tsv" "$run_start" <<'PY' ||
import json, sys, time, urllib.parse, urllib.request
from collections import Counter

jsonl, prom, jaeger, slow = sys.argv[1], sys.argv[2], sys.argv[3], float(sys.argv[4])
queries_tsv, run_start = sys.argv[5], float(sys.argv[6])
fails = []

def get(url, timeout=10):
    with urllib.request.urlopen(url, timeout=timeout) as r:
        return r.status, json.load(r)

def promql(q):
    _, body = get(prom + "/api/v1/query?" + urllib.parse.urlencode({"query": q}))
    if body.get("status") != "success":
        raise SystemExit(f"PromQL {q!r}: {body}")
    return {tuple(sorted(r["metric"].items())): float(r["value"][1]) for r in body["data"]["result"]}

records = [json.loads(l) for l in open(jsonl) if l.strip()]
by_outcome = Counter(r["outcome"] for r in records)
by_verdict = Counter(r["verdict"]["evaluation"] for r in records if r.get("update_successful"))
print(f"e2e: {len(records)} records: {dict(by_outcome)}; verdicts {dict(by_verdict)}", file=sys.stderr)
if by_outcome["fail"] == 0:
    fails.append("no failed cycle in the run: fault injection did not work, the check would prove nothing")

# 1. counters equal the JSONL (the daemon waited for a final scrape; allow Prometheus a moment to commit it).
# The target is gone by now and Prometheus has marked its series stale, so an instant query of the bare metric
# is empty: read the last value through a range function instead (counters only grow, max is the last value).
for attempt in range(20):
    got = {dict(k).get("outcome"): v
           for k, v in promql("sum by (outcome) (max_over_time(attestload_cycles_total[15m]))").items()}
    if all(got.get(o, 0) == n for o, n in by_outcome.items()) and sum(got.values()) == len(records):
        break
    time.sleep(0.5)
else:
    fails.append(f"attestload_cycles_total by outcome {got} != JSONL {dict(by_outcome)}")
got = {dict(k).get("evaluation"): v for k, v in promql("sum by (evaluation) (max_over_time(attestload_verdicts_total[15m]))").items()}
if {k: v for k, v in got.items() if v} != {k: float(v) for k, v in by_verdict.items()}:
    fails.append(f"attestload_verdicts_total by evaluation {got} != JSONL {dict(by_verdict)}")

# 2. every failed and every slow cycle has a trace, and Jaeger has it.
def in_jaeger(tid):
    try:
        status, body = get(f"{jaeger}/api/traces/{tid}")
        return status == 200 and body.get("data") and body["data"][0]["spans"]
    except Exception:
        return False

must = [r for r in records if r["outcome"] == "fail" or (r["end_time"] - r["start_time"]) >= slow]
missing_id = [r for r in must if not r.get("trace_id")]
if missing_id:
    fails.append(f"{len(missing_id)} failed/slow cycles without trace_id, e.g. agent {missing_id[0]['agent_id']}")
deadline = time.time() + 20  # the batch exporter and Jaeger's own batch may still be flushing
pending = [r["trace_id"] for r in must if r.get("trace_id")]
while pending and time.time() < deadline:
    pending = [t for t in pending if not in_jaeger(t)]
    if pending:
        time.sleep(1)
if pending:
    fails.append(f"{len(pending)} of {len(must)} failed/slow traces not in Jaeger, e.g. {pending[0]}")
print(f"e2e: {len(must)} failed/slow cycles, all traced" if not (pending or missing_id) else "", file=sys.stderr)

# 3. an exemplar's trace id leads to a trace.
now = time.time()
_, body = get(prom + "/api/v1/query_exemplars?" + urllib.parse.urlencode(
    {"query": "attestload_cycles_total", "start": now - 3600, "end": now}))
ids = [e["labels"].get("trace_id") for s in body.get("data", []) for e in s.get("exemplars", [])]
ids = [i for i in ids if i]
if not ids:
    fails.append("Prometheus holds no exemplar with a trace_id for attestload_cycles_total")
elif not any(in_jaeger(i) for i in ids[-5:]):
    fails.append(f"exemplar trace ids {ids[-5:]} not found in Jaeger")

# 4. PostgreSQL activity.
for q in ["sum(max_over_time(attestload_pg_backends[15m]))",
          "max_over_time(attestload_pg_transactions_committed_total[15m])",
          "sum(max_over_time(attestload_pg_tuples_total[15m]))", "max_over_time(attestload_pg_up[15m])"]:
    vals = promql(q)
    if not vals or not any(v > 0 for v in vals.values()):
        fails.append(f"{q} is absent or zero")

# 5. every dashboard panel query returns data, over the run's time range as Grafana would draw it (a range query
# from the run's start to its last scrape; after that the target is gone and its series are stale).
_, body = get(prom + "/api/v1/query_range?" + urllib.parse.urlencode(
    {"query": "attestload_build_info", "start": run_start, "end": time.time(), "step": "1s"}))
stamps = [float(v[0]) for r in body["data"]["result"] for v in r["values"]]
# (dashboard, panel) pairs allowed to show no data. None are: the run injects every event a panel waits for
# (failed and slow cycles, 429 and 503 with Retry-After, hence retries), and the unlabelled late/dropped counters
# and lateness histogram read 0, which is data. Add a pair only with a comment saying why it cannot have data.
no_data_ok = set()
if not stamps:
    fails.append("Prometheus holds no sample of attestload_build_info from the run")
else:
    first, last = min(stamps), max(stamps)
    empty, n = [], 0
    for line in open(queries_tsv):
        parts = line.rstrip("\n").split("\t")
        if len(parts) != 4:
            fails.append(f"dashboards --queries line is not DASHBOARD<TAB>PANEL<TAB>REFID<TAB>PROMQL: {line!r}")
            continue
        board, panel, ref, q = parts
        n += 1
        _, res = get(prom + "/api/v1/query_range?" + urllib.parse.urlencode(
            {"query": q, "start": first, "end": last, "step": "2s"}))
        if res.get("status") != "success":
            fails.append(f"{board} / {panel} / {ref}: Prometheus refused the query: {res}")
        elif not res["data"]["result"] and (board, panel) not in no_data_ok:
            empty.append(f"{board} / {panel} / {ref}")
    for e in empty:
        fails.append(f"panel query returns no data: {e}")
    print(f"e2e: {n} panel queries evaluated, {len(empty)} without data", file=sys.stderr)

for f in fails:
    print("e2e: FAIL:", f, file=sys.stderr)
sys.exit(1 if fails else 0)
PY
	die "checks failed (see above)"
say "OK: counters match the JSONL, failed/slow cycles and exemplars lead to traces in Jaeger, attestload_pg_* present, every panel query has data"

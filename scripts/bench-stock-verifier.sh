#!/usr/bin/env bash
# bench-stock-verifier.sh: issue 11's repeatability benchmark against the stock Keylime verifier (not part of CI;
# it takes 10 to 30 minutes on 2 cores).
#
#   scripts/bench-stock-verifier.sh [RUNS]    RUNS (default 5) runs of 100 agents x 10 cycles with 8 workers and
#                                            otherwise default flags against the stock verifier (scripts/keylime-
#                                            verifier.sh starts it with 2 worker processes unless one runs), after
#                                            BENCH_WARMUP (default 1) uncounted warm-up runs of the same shape, then
#                                            one run of the same shape against the calibrated simulated verifier
#
# For every run it prints the cycles per second (records over the load's duration from the run's sidecar), the
# outcomes, the CPU seconds each verifier worker process spent (utime + stime from /proc/PID/stat, before and
# after) and their split, and the machine's load average; at the end max/min of cycles/s (target <= 1.15), the
# worst worker split (target within 60/40) and the simulator's capacity against the stock verifier's (target within
# 1.5x). Environment:
#   BENCH_AGENTS, _TASKS, _WORKERS   the run shape (default 100, 10, 8)
#   BENCH_FLAGS                     more attestload run flags, the same for every run
#   BENCH_DIR                       where results go (default a new directory under /tmp)
#   BENCH_SIM=0                     skip the simulator run
#   BENCH_WARMUP                    runs of the same shape made first and not counted (default 1)
# and those of scripts/keylime-verifier.sh (ATTESTLOAD_KEYLIME_STATE, _DB, _WORKERS, ...). A verifier this script
# started is stopped at the end; one that already ran is left running.
set -euo pipefail

say() { printf 'bench: %s\n' "$*" >&2; }
die() { say "error: $*"; exit 1; }

repo="$(cd "$(dirname "${BASH_SOURCE[0]}")/.." && pwd)"
runs="${1:-5}"
agents="${BENCH_AGENTS:-100}"
tasks="${BENCH_TASKS:-10}"
workers="${BENCH_WORKERS:-8}"
warmup="${BENCH_WARMUP:-1}"
read -r -a extra <<<"${BENCH_FLAGS:-}"
[[ "$runs" =~ ^[1-9][0-9]*$ ]] || die "RUNS must be a positive whole number, got '$runs'"
[[ "$warmup" =~ ^[0-9]+$ ]] || die "BENCH_WARMUP must be a whole number, got '$warmup'"
for v in "$agents" "$tasks" "$workers"; do [[ "$v" =~ ^[1-9][0-9]*$ ]] || die "agents, tasks and workers must be positive whole numbers"; done
dir="${BENCH_DIR:-$(mktemp -d /tmp/attestload-bench.XXXXXX)}"
mkdir -p "$dir"
export ATTESTLOAD_KEYLIME_WORKERS="${ATTESTLOAD_KEYLIME_WORKERS:-2}"
# Plain JSONL results (the default is zstd), which the Python below reads; the same for every run.
export ATTESTLOAD_RESULTS_COMPRESSION=none
kv="$repo/scripts/keylime-verifier.sh"

bin="$dir/attestload"
say "building attestload into $bin"
(cd "$repo" && go build -o "$bin" ./cmd/attestload) || die "go build failed"

started=0
if ! "$kv" status >/dev/null 2>&1; then
	"$kv" start >&2 || die "the stock verifier did not start"
	started=1
fi
cleanup() { if [[ $started == 1 ]]; then "$kv" stop >&2 || true; fi; }
trap cleanup EXIT
eval "$("$kv" env)"
state="${ATTESTLOAD_KEYLIME_STATE:-}"
if [[ -z "$state" ]]; then
	if [[ -n "${XDG_RUNTIME_DIR:-}" && -d "${XDG_RUNTIME_DIR}" && -w "${XDG_RUNTIME_DIR}" ]]; then
		state="$XDG_RUNTIME_DIR/attestload-keylime"
	else
		state="/tmp/attestload-keylime-$(id -u)"
	fi
fi
parent="$(<"$state/pid")"
tck="$(getconf CLK_TCK)"

# cpu_of PID: CPU seconds (utime + stime) of one process.
cpu_of() { awk -v t="$tck" '{sub(/^.*\) /, ""); split($0, f, " "); printf "%.2f", (f[12] + f[13]) / t}' "/proc/$1/stat"; }
children() { cat /proc/"$parent"/task/*/children 2>/dev/null; }

# rate FILE.jsonl: "records success fail cycles_per_second" from the results and their sidecar.
rate() {
	python3 - "$1" <<'PY'
import json, sys
path = sys.argv[1]
n = ok = 0
for line in open(path):
    r = json.loads(line)
    n += 1
    ok += r.get("outcome") == "success"
info = json.load(open(path[:-len(".jsonl")] + ".run.json"))
d = info["end_time"] - info["start_time"]
print(n, ok, n - ok, "%.2f" % (n / d if d > 0 else 0))
PY
}

summary="$dir/summary.txt"
: >"$summary"
# stock_run LABEL OUT: one run against the stock verifier, its line (prefixed LABEL) appended to the summary.
stock_run() {
	local label="$1" out="$2"
	declare -A before=()
	for c in $(children); do before[$c]="$(cpu_of "$c")"; done
	say "$label: $agents agents x $tasks cycles, $workers workers, against $ATTESTLOAD_VERIFIER_URL"
	"$bin" run -a "$agents" -t "$tasks" -w "$workers" --metrics-listen '' --results-dir "$out" "${extra[@]}" \
		>"$out.log" 2>&1 || say "$label exited $? (see $out.log)"
	local jsonl n ok fail cps
	jsonl="$(ls "$out"/*.jsonl | head -1)"
	read -r n ok fail cps < <(rate "$jsonl")
	local deltas=() top w1 w2 split
	for c in $(children); do
		deltas+=("$(awk -v a="$(cpu_of "$c")" -v b="${before[$c]:-0}" 'BEGIN{printf "%.2f", a - b}') $c")
	done
	# The two busiest children are the worker processes (the third is multiprocessing's manager).
	mapfile -t top < <(printf '%s\n' "${deltas[@]}" | sort -rn | head -2)
	w1="${top[0]%% *}" w2="${top[1]%% *}"
	split="$(awk -v a="$w1" -v b="$w2" 'BEGIN{ if (a + b > 0) printf "%.0f/%.0f", 100 * a / (a + b), 100 * b / (a + b); else print "0/0"}')"
	echo "$label: $n cycles ($ok ok, $fail failed) at $cps cycles/s; worker CPU ${w1}s/${w2}s, split $split; load $(cut -d' ' -f1-3 /proc/loadavg)" | tee -a "$summary"
	grep -h "defect\|WARN" "$out.log" | grep -v "^ *+" | head -5 | sed 's/^/    /' | tee -a "$summary" || true
}

# Warm-up: the first run after the verifier starts pays for its worker processes' first requests of each kind and
# cold PostgreSQL caches (in the runs of 2026-12-07 both slow runs of five were the first after a start); it is
# printed but not counted.
for i in $(seq 1 "$warmup"); do stock_run "warm-up run $i (not counted)" "$dir/warmup-$i"; done
for i in $(seq 1 "$runs"); do stock_run "stock run $i" "$dir/stock-$i"; done

if [[ "${BENCH_SIM:-1}" != 0 ]]; then
	out="$dir/sim"
	cfg="$dir/sim.yaml"
	printf 'simulator:\n  session_hash_iterations: 600000\n' >"$cfg"
	say "the calibrated simulated verifier: $agents agents x $tasks cycles, $workers workers"
	env -u ATTESTLOAD_VERIFIER_URL -u ATTESTLOAD_VERIFIER_CA_FILE -u ATTESTLOAD_DATABASE_URL \
		-u ATTESTLOAD_VERDICT_ADMIN_CERT_FILE -u ATTESTLOAD_VERDICT_ADMIN_KEY_FILE \
		"$bin" run --config "$cfg" -a "$agents" -t "$tasks" -w "$workers" --metrics-listen '' --results-dir "$out" \
		"${extra[@]}" >"$out.log" 2>&1 || say "simulator run exited $? (see $out.log)"
	read -r n ok fail cps < <(rate "$(ls "$out"/*.jsonl | head -1)")
	echo "simulator: $n cycles ($ok ok, $fail failed) at $cps cycles/s; load $(cut -d' ' -f1-3 /proc/loadavg)" | tee -a "$summary"
fi

python3 - "$summary" <<'PY'
import re, sys
rates, worst, sim = [], 0.0, None
for line in open(sys.argv[1]):
    m = re.search(r"^stock run \d+: .* at ([0-9.]+) cycles/s; .* split (\d+)/(\d+)", line)
    if m:
        rates.append(float(m.group(1)))
        worst = max(worst, int(m.group(2)), int(m.group(3)))
    m = re.search(r"^simulator: .* at ([0-9.]+) cycles/s", line)
    if m:
        sim = float(m.group(1))
if rates and min(rates) > 0:
    r = max(rates) / min(rates)
    print("cycles/s max/min over %d runs: %.3f (target <= 1.15: %s)" % (len(rates), r, "met" if r <= 1.15 else "NOT met"))
    print("busiest worker's share in the worst run: %d%% (target within 60/40: %s)" % (worst, "met" if worst <= 60 else "NOT met"))
    if sim:
        mean = sum(rates) / len(rates)
        f = max(sim, mean) / min(sim, mean)
        print("simulator %.2f cycles/s against the stock verifier's mean %.2f: a factor of %.2f (target <= 1.5: %s)"
              % (sim, mean, f, "met" if f <= 1.5 else "NOT met"))
PY
say "results, logs and summary in $dir"

#!/usr/bin/env bash
# `attestload report --legacy` against the old tool's `report_results` on its own 20,000-task file (issue 13: at
# least 20x faster, same tables). Not part of CI.
#
#   OLD_TOOL=/path/to/keylime-perf-tests scripts/bench-legacy.sh      # RUNS=5 by default
#
# OLD_TOOL is a checkout of keylime-perf-tests (https://github.com/hpe-security-lab/keylime-perf-tests) whose
# report_results runs with $PYTHON (default python3; it imports tornado, pycurl and sqlalchemy, which Debian's
# python3-tornado, python3-pycurl and python3-sqlalchemy provide). This script neither fetches nor changes it.
# The input is written by scripts/gen-v0-results.py (20,000 tasks, 8 workers, 100 agents, with 409 conflicts,
# retries, failures and null durations). Runs alternate old and new; each prints wall and user+sys CPU seconds,
# and the end shows the medians, their ratios and the load average. The tables are compared once, ANSI colours and
# the old tool's dependency line removed. Wall-clock ratios mean something only on an otherwise idle machine.
set -euo pipefail

: "${OLD_TOOL:?set OLD_TOOL to a keylime-perf-tests checkout (its report_results is the reference)}"
RUNS=${RUNS:-5}
PYTHON=${PYTHON:-python3}
DIR=${BENCH_DIR:-/tmp/attestload-bench-legacy}
ROOT=$(cd "$(dirname "$0")/.." && pwd)

command -v /usr/bin/time >/dev/null || { echo "bench-legacy: needs GNU time (apt-get install time)" >&2; exit 1; }
mkdir -p "$DIR"
in="$DIR/20240101000000.jsonl"
[[ -s "$in" ]] || "$PYTHON" "$ROOT/scripts/gen-v0-results.py" "$in"
bin="$DIR/attestload"
(cd "$ROOT" && go build -o "$bin" ./cmd/attestload)

clean() { sed 's/\x1b\[[0-9;]*m//g' | grep -v '^Using dependencies: '; }
"$PYTHON" "$OLD_TOOL/report_results" "$in" | clean >"$DIR/old.txt"
"$bin" report --legacy "$in" | clean >"$DIR/new.txt"
if cmp -s "$DIR/old.txt" "$DIR/new.txt"; then
	echo "tables: identical ($(wc -l <"$DIR/new.txt") lines)"
else
	echo "tables DIFFER:"; diff "$DIR/old.txt" "$DIR/new.txt" || true
fi
echo "input: $(wc -l <"$in") tasks, $(stat -c %s "$in") bytes; $($PYTHON --version); load average before: $(cut -d' ' -f1-3 /proc/loadavg)"

old=() new=() oldc=() newc=()
for run in $(seq "$RUNS"); do
	read -r w u s < <(/usr/bin/time -f '%e %U %S' "$PYTHON" "$OLD_TOOL/report_results" "$in" 2>&1 >/dev/null | tail -1)
	old+=("$w"); oldc+=("$(awk -v u="$u" -v s="$s" 'BEGIN{print u+s}')")
	read -r w2 u2 s2 < <(/usr/bin/time -f '%e %U %S' "$bin" report --legacy "$in" 2>&1 >/dev/null | tail -1)
	new+=("$w2"); newc+=("$(awk -v u="$u2" -v s="$s2" 'BEGIN{print u+s}')")
	printf 'run %d: report_results wall %.2fs cpu %.2fs | attestload report --legacy wall %.3fs cpu %.3fs\n' \
		"$run" "$w" "${oldc[-1]}" "$w2" "${newc[-1]}"
done
median() { printf '%s\n' "$@" | sort -g | awk '{a[NR]=$1} END{print (NR%2 ? a[(NR+1)/2] : (a[NR/2]+a[NR/2+1])/2)}'; }
mo=$(median "${old[@]}") mn=$(median "${new[@]}") co=$(median "${oldc[@]}") cn=$(median "${newc[@]}")
awk -v mo="$mo" -v mn="$mn" -v co="$co" -v cn="$cn" 'BEGIN{
	printf "median wall: old %.2fs, new %.3fs: %.1fx faster\n", mo, mn, mo/mn
	printf "median cpu:  old %.2fs, new %.3fs: %.1fx less CPU\n", co, cn, co/cn }'
echo "load average after: $(cut -d' ' -f1-3 /proc/loadavg)"

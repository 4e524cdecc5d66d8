#!/usr/bin/env bash
# Report throughput on a large results file (issue 13): `attestload report` over N records (default 10,000,000),
# plain and zstd, on 2 cores. Prints, for each: wall seconds, user+sys CPU seconds, MB/s of uncompressed JSONL by
# wall clock (the figure the target is about: at least 300 MB/s) and per CPU-second, and the peak RSS (target: under
# 64 MB), with the load average before and after. Not part of CI.
#
#   scripts/bench-report.sh                 # 10M records in $BENCH_DIR (default /tmp/attestload-bench-report)
#   N=1000000 RUNS=3 scripts/bench-report.sh
#
# The files are generated once (exporter/report's TestLargeFile with -large-out: plain JSONL and a zstd copy in
# frames of 1 MiB, as the results writer makes them) and kept for later runs; delete $BENCH_DIR to regenerate. The
# plain file of 10M records takes about 9 GB. Wall-clock figures mean something only on an otherwise idle machine.
set -euo pipefail

N=${N:-10000000}
RUNS=${RUNS:-3}
CORES=${CORES:-0,1}
DIR=${BENCH_DIR:-/tmp/attestload-bench-report}
ROOT=$(cd "$(dirname "$0")/.." && pwd)

command -v /usr/bin/time >/dev/null || { echo "bench-report: needs GNU time (apt-get install time)" >&2; exit 1; }
mkdir -p "$DIR"
plain="$DIR/large-$N.jsonl"
if [[ ! -s "$plain" || ! -s "$plain.zst" ]]; then
	echo "generating $N records in $DIR (once)..."
	rm -f "$plain" "$plain.zst"
	(cd "$ROOT" && go test -count=1 -run '^TestLargeFile$' -timeout 0 ./exporter/report/ \
		-large -large-records "$N" -large-out "$DIR" >/dev/null)
fi
bin="$DIR/attestload"
(cd "$ROOT" && go build -o "$bin" ./cmd/attestload)
bytes=$(stat -c %s "$plain")
echo "input: $N records, $(awk -v b="$bytes" 'BEGIN{printf "%.0f", b/1e6}') MB of JSONL, zstd copy $(awk -v b="$(stat -c %s "$plain.zst")" 'BEGIN{printf "%.0f", b/1e6}') MB"
echo "cores: taskset -c $CORES, GOMAXPROCS=2; load average before: $(cut -d' ' -f1-3 /proc/loadavg)"

pin=()
command -v taskset >/dev/null && pin=(taskset -c "$CORES")
for f in "$plain" "$plain.zst"; do
	for run in $(seq "$RUNS"); do
		out=$(GOMAXPROCS=2 "${pin[@]}" /usr/bin/time -f '%e %U %S %M' "$bin" report --format json "$f" 2>&1 >/dev/null | tail -1)
		read -r wall user sys rss <<<"$out"
		awk -v f="$(basename "$f")" -v r="$run" -v w="$wall" -v u="$user" -v s="$sys" -v m="$rss" -v b="$bytes" 'BEGIN{
			c = u + s
			printf "%-28s run %d: wall %6.1fs  cpu %6.1fs (user %.1f sys %.1f)  %6.0f MB/s wall  %6.0f MB/cpu-s  peak RSS %.1f MB\n",
				f, r, w, c, u, s, b/1e6/w, b/1e6/c, m*1024/1e6 }'
	done
done
echo "load average after: $(cut -d' ' -f1-3 /proc/loadavg)"

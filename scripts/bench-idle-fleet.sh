#!/usr/bin/env bash
# bench-idle-fleet.sh: issue 12's idle-fleet memory figure (not part of CI).
#
#   scripts/bench-idle-fleet.sh [AGENTS]   one `attestload run` of AGENTS (default 100000) fleet agents with ECC
#                                          P-256 keys, the quote-only profile and an interval of 1h against the
#                                          in-process simulated verifier in its in-memory mode, for BENCH_DURATION
#                                          (default 60s)
#
# It prints the peak RSS and CPU time of the process (/usr/bin/time -v), the RSS over time (/proc/PID/status,
# every second), the machine's load average, and from a heap profile taken BENCH_PROFILE_AT seconds after the
# start (default 10 s before the end, through metrics.pprof) the live heap split between the simulated verifier
# (attestation/simverifier and the server side of its connections) and the rest (the load tool). The simulator is
# uncalibrated (it answers at once instead of costing what the stock verifier costs: calibrated, 28 attestations/s
# would need more than the machine's two cores) and uses 10,000 PBKDF2 rounds per session (the demo's value).
# Environment:
#   BENCH_DURATION        the run's --duration (default 60s)
#   BENCH_FLAGS           more attestload run flags
#   BENCH_DIR             where the results, profiles and logs go (default a new directory under /tmp)
#   BENCH_BIN             an attestload binary to measure instead of building one
set -euo pipefail

say() { printf 'bench: %s\n' "$*" >&2; }
die() { say "error: $*"; exit 1; }

repo="$(cd "$(dirname "${BASH_SOURCE[0]}")/.." && pwd)"
agents="${1:-100000}"
duration="${BENCH_DURATION:-60s}"
read -r -a extra <<<"${BENCH_FLAGS:-}"
[[ "$agents" =~ ^[1-9][0-9]*$ ]] || die "AGENTS must be a positive whole number, got '$agents'"
[[ "$duration" =~ ^[1-9][0-9]*s$ ]] || die "BENCH_DURATION must be whole seconds such as 60s, got '$duration'"
secs="${duration%s}"
profile_at="${BENCH_PROFILE_AT:-$((secs > 15 ? secs - 10 : secs / 2))}"
[[ -x /usr/bin/time ]] || die "/usr/bin/time is missing (apt-get install time)"
dir="${BENCH_DIR:-$(mktemp -d /tmp/attestload-idle.XXXXXX)}"
mkdir -p "$dir"
bin="${BENCH_BIN:-$dir/attestload}"
if [[ -z "${BENCH_BIN:-}" ]]; then
	say "building attestload into $bin"
	(cd "$repo" && go build -o "$bin" ./cmd/attestload)
fi

say "load average before: $(cut -d' ' -f1-3 /proc/loadavg)"
err="$dir/run.err"
ATTESTLOAD_SIMULATOR_CALIBRATED=false ATTESTLOAD_SIMULATOR_SESSION_HASH_ITERATIONS=10000 \
	/usr/bin/time -v "$bin" run --model fleet --agents "$agents" --key-type ecc-p256 --profile quote-only \
	--interval 1h --duration "$duration" --results-dir "$dir/results" --metrics-listen 127.0.0.1:0 --pprof \
	"${extra[@]}" >"$dir/run.out" 2>"$err" &
timepid=$!
pid=""
for _ in $(seq 1 50); do
	pid="$(pgrep -P "$timepid" || true)"
	[[ -n "$pid" ]] && break
	sleep 0.1
done
[[ -n "$pid" ]] || die "attestload did not start (see $err)"

url=""
start=$(date +%s)
profiled=0
: >"$dir/rss.tsv"
while kill -0 "$pid" 2>/dev/null; do
	now=$(date +%s)
	rss="$(awk '/^VmRSS/{print $2}' "/proc/$pid/status" 2>/dev/null || true)"
	[[ -n "$rss" ]] && printf '%d\t%d\n' "$((now - start))" "$rss" >>"$dir/rss.tsv"
	if [[ -z "$url" ]]; then
		url="$(sed -n 's/.*msg="serving Go profiles".* url=\([^ ]*\).*/\1/p' "$err" | head -1)"
	fi
	if [[ "$profiled" == 0 && -n "$url" ]] && grep -q 'msg="run started"' "$err"; then
		rs="$(date -d "$(sed -n 's/^time=\([^ ]*\) level=INFO msg="run started".*/\1/p' "$err" | head -1)" +%s)"
		if ((now - rs >= profile_at)); then
			curl -sf --max-time 120 -o "$dir/heap.pb.gz" "${url}heap?gc=1" || say "heap profile failed (curl exit $?)"
			curl -s --max-time 60 -o "$dir/goroutines.txt" "${url}goroutine?debug=1" ||
				say "goroutine profile failed (curl exit $?)"
			profiled=1
			say "heap profile at $((now - rs)) s into the load: $dir/heap.pb.gz"
		fi
	fi
	sleep 1
done
wait "$timepid" || true

say "load average after: $(cut -d' ' -f1-3 /proc/loadavg)"
grep -E 'Maximum resident|User time|System time|Elapsed' "$err" | sed 's/^\s*/bench: /' >&2
grep -E 'msg="run started"|msg="setup done"' "$err" | head -2 >&2 || true
max_rss_line="$(sort -t$'\t' -k2 -n "$dir/rss.tsv" | tail -1)"
say "RSS sampled every second: peak $(cut -f2 <<<"$max_rss_line") kB at $(cut -f1 <<<"$max_rss_line") s ($dir/rss.tsv)"
grep -o 'Performed [0-9]* attestations in [0-9:]*' "$dir/run.out" | sed 's/^/bench: /' >&2 || true
if ls "$dir"/results/*.jsonl >/dev/null 2>&1; then
	say "outcomes: $(grep -ho '"outcome":"[a-z]*"' "$dir"/results/*.jsonl | sort | uniq -c | tr -s ' \n' ' ')"
fi
if [[ -s "$dir/heap.pb.gz" ]]; then
	total="$(go tool pprof -sample_index=inuse_space -top -nodecount=1 "$bin" "$dir/heap.pb.gz" 2>/dev/null |
		sed -n 's/.* of \([0-9.]*[kMG]*B\) total.*/\1/p' | head -1)"
	sim="$(go tool pprof -sample_index=inuse_space -focus='simverifier|net/http\.\(\*conn\)|net/http\.\(\*Server\)' \
		-nodefraction=0 -nodecount=1000000 -top "$bin" "$dir/heap.pb.gz" 2>/dev/null |
		sed -n 's/^Showing nodes accounting for \([0-9.]*[kMG]*B, [0-9.]*%\) of .*/\1/p' | head -1)"
	say "live heap at the profile: $total in all, of which the simulated verifier (simverifier, server connections): ${sim:-?}"
	say "goroutines: $(head -1 "$dir/goroutines.txt" 2>/dev/null)"
	say "top: go tool pprof -sample_index=inuse_space -top $bin $dir/heap.pb.gz"
fi
say "files in $dir"

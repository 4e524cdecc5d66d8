#!/usr/bin/env bash
# mutate.sh: mutation testing (gremlins, a Go tool dependency of this module) over the packages the run's numbers
# rest on. Slow (tens of minutes on 2 cores) and not part of CI; run it after changing one of these packages and put
# the figures in docs/testing.md.
#
#   make mutate                        # every package below
#   make mutate MUTATE_ONLY=verdict    # the packages whose name contains "verdict"
#
# Each mutant is compiled and the package's own tests run against it (one at a time, at low priority: the machine
# stays usable). A mutant is KILLED when a test fails, LIVED when every test passes, TIMED OUT when the tests ran
# longer than the timeout coefficient times the package's unmutated test time. The score per package is
# killed / (killed + lived + timed out): a timed-out mutant is not counted as caught (gremlins' own "efficacy"
# leaves it out, which flatters). Database tests need ATTESTLOAD_TEST_DATABASE_URL (make mutate starts the local
# cluster as make test does); without it they fail, and every mutant they cover would count as killed, so the
# script refuses to run without it.
#
# Environment: MUTATE_OUT (directory for the per-package logs and JSON, default bin/mutate), MUTATE_ONLY (substring
# filter on the package path), MUTATE_WORKERS (default 1), MUTATE_TIMEOUT_COEFFICIENT (default 8), MUTATE_NICE
# (default 15).
set -euo pipefail

cd "$(dirname "$0")/.."
out="${MUTATE_OUT:-bin/mutate}"
only="${MUTATE_ONLY:-}"
workers="${MUTATE_WORKERS:-1}"
coef="${MUTATE_TIMEOUT_COEFFICIENT:-8}"
niceness="${MUTATE_NICE:-15}"

[[ -n "${ATTESTLOAD_TEST_DATABASE_URL:-}" ]] ||
	{ echo "mutate: ATTESTLOAD_TEST_DATABASE_URL is not set (use make mutate, or scripts/pg-start.sh)" >&2; exit 2; }

# package directory | files left out (gremlins -E regexps, matched against the file path), separated by spaces
# [| tests to run (a go test -run pattern; default all)]. The listed packages are mutated in the files that hold
# the behaviour named in docs/testing.md; the rest of each package (configuration, HTTP plumbing, other report
# formats, the engine's record fan-out) is tested but not mutated here. The engine package (daemon/engine) is pure:
# its schedulers, agent pool, pacer, progress, back-off and outage tracking are mutated with all of its tests
# (synctest, about a second).
targets=(
	"attestation/client|"
	"attestation/softtpm|"
	"attestation/enroll|connect\.go$ schema\.go$"
	"daemon/engine|doc\.go$ fanout\.go$ interfaces\.go$ options\.go$"
	"exporter/report|aggregate\.go$ doc\.go$ hist\.go$ html\.go$ open\.go$ pipeline\.go$ read\.go$ report\.go$ summary\.go$ text\.go$"
	"internal/pyfmt|"
	"exporter/verdict|admin\.go$ collector\.go$ db\.go$ sources\.go$"
	"attestation/simverifier|agent\.go$ attestations\.go$ config\.go$ cost\.go$ cputime_[a-z]+\.go$ database\.go$ doc\.go$ faults\.go$ jsonapi\.go$ monitor\.go$ process\.go$ routes\.go$ sessions\.go$ tls\.go$ verifier\.go$"
)

mkdir -p "$out"
# gremlins times each mutant against the coverage run; a cached (instant) coverage run would time every mutant out.
# -failfast: a mutant is killed by its first failing test, there is no need to run the rest.
export GOFLAGS="${GOFLAGS:+$GOFLAGS }-count=1 -failfast"
summary="$out/summary.txt"
: >"$summary"
status=0
for t in "${targets[@]}"; do
	IFS='|' read -r pkg excl run <<<"$t"
	[[ -z "$only" || "$pkg" == *"$only"* ]] || continue
	name="${pkg//\//_}"
	args=(unleash --workers "$workers" --test-cpu 1 --timeout-coefficient "$coef" -o "$out/$name.json")
	for e in $excl; do args+=(-E "$e"); done
	echo "mutate: $pkg" >&2
	flags="$GOFLAGS"
	[[ -z "${run:-}" ]] || flags="$flags -run=$run"
	if ! GOFLAGS="$flags" nice -n "$niceness" go tool gremlins "${args[@]}" "./$pkg" >"$out/$name.log" 2>&1; then
		echo "mutate: gremlins failed on $pkg; see $out/$name.log" >&2
		status=1
		continue
	fi
	k=$(grep -c '^ *KILLED ' "$out/$name.log" || true)
	l=$(grep -c '^ *LIVED ' "$out/$name.log" || true)
	to=$(grep -c '^ *TIMED OUT ' "$out/$name.log" || true)
	nc=$(grep -c '^ *NOT COVERED ' "$out/$name.log" || true)
	nv=$(grep -c '^ *NOT VIABLE ' "$out/$name.log" || true)
	score=$(awk -v k="$k" -v l="$l" -v t="$to" 'BEGIN { if (k+l+t == 0) print "n/a"; else printf "%.1f%%", 100*k/(k+l+t) }')
	printf '%-26s killed %4d  lived %3d  timed out %3d  not covered %3d  not viable %3d  score %s\n' \
		"$pkg" "$k" "$l" "$to" "$nc" "$nv" "$score" | tee -a "$summary"
	grep -E '^ *(LIVED|TIMED OUT) ' "$out/$name.log" | sed "s|^ *|    $pkg: |" >>"$summary" || true
done
echo "mutate: summary and survivors in $summary" >&2
exit "$status"

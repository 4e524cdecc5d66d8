#!/usr/bin/env bash
# deploy-check.sh: check that the deployment files in deploy/ are accepted by the tools that will read them.
#
#   scripts/deploy-check.sh
#
# - docker-compose (Debian's, 1.29) renders deploy/docker-compose.yaml, with and without the keylime profile;
# - promtool (from Debian's prometheus package) checks deploy/prometheus/prometheus.yml;
# - kubectl kustomize renders deploy/kubernetes.
# Missing Debian packages are installed with apt-get (needs root or sudo; skipped when the tools are present, so a
# second run installs nothing). Nothing is started and no container image is pulled. Exits non-zero on the first
# file a tool rejects, with that tool's message.
set -euo pipefail

say() { printf 'deploy-check: %s\n' "$*" >&2; }
die() { say "error: $*"; exit 1; }

root="$(cd "$(dirname "${BASH_SOURCE[0]}")/.." && pwd)"
cd "$root"

as_root() {
	if [[ "$(id -u)" -eq 0 ]]; then "$@"
	elif command -v sudo >/dev/null 2>&1; then sudo "$@"
	else die "need root (or sudo) to run: $*"
	fi
}

need=()
command -v docker-compose >/dev/null 2>&1 || need+=(docker-compose)
command -v promtool >/dev/null 2>&1 || need+=(prometheus)
if ((${#need[@]} > 0)); then
	say "installing ${need[*]} with apt-get"
	as_root apt-get update -qq
	as_root env DEBIAN_FRONTEND=noninteractive apt-get install -y -qq --no-install-recommends "${need[@]}" >/dev/null
fi
command -v kubectl >/dev/null 2>&1 || die "kubectl not found (install it, e.g. from the Kubernetes apt repository)"

tmp="$(mktemp -d)"
trap 'rm -rf "$tmp"' EXIT

say "docker-compose config"
docker-compose -f deploy/docker-compose.yaml config >"$tmp/compose.yaml" ||
	die "docker-compose rejected deploy/docker-compose.yaml"
docker-compose -f deploy/docker-compose.yaml --profile keylime config >"$tmp/compose-keylime.yaml" ||
	die "docker-compose rejected deploy/docker-compose.yaml with --profile keylime"

say "promtool check config"
promtool check config deploy/prometheus/prometheus.yml >&2 ||
	die "promtool rejected deploy/prometheus/prometheus.yml"

say "kubectl kustomize"
kubectl kustomize deploy/kubernetes >"$tmp/kubernetes.yaml" ||
	die "kubectl kustomize rejected deploy/kubernetes"
grep -q '^kind: StatefulSet$' "$tmp/kubernetes.yaml" || die "deploy/kubernetes renders no StatefulSet"

say "ok"

#!/usr/bin/env bash
# pg-start.sh: make the local PostgreSQL cluster usable for attestload's database tests.
#
# Idempotent: starts the Debian cluster if it is down, waits until it accepts TCP connections on loopback, and
# ensures a password-authenticated role that may create databases (the tests make a throwaway database each).
# Prints exactly one line on stdout, the admin URL to export as ATTESTLOAD_TEST_DATABASE_URL:
#
#   export ATTESTLOAD_TEST_DATABASE_URL="$(scripts/pg-start.sh)"
#
# Progress goes to stderr. Overrides (environment): PG_VERSION and PG_CLUSTER (default: the first cluster that
# pg_lsclusters lists), ATTESTLOAD_PG_ROLE / ATTESTLOAD_PG_PASSWORD (default attestload / attestload: a
# loopback-only test role, not a secret worth protecting), PG_WAIT_SECONDS (default 60).
set -euo pipefail

say() { printf 'pg-start: %s\n' "$*" >&2; }
die() { say "error: $*"; exit 1; }

role="${ATTESTLOAD_PG_ROLE:-attestload}"
password="${ATTESTLOAD_PG_PASSWORD:-attestload}"
wait_seconds="${PG_WAIT_SECONDS:-60}"

[[ "$role" =~ ^[a-z_][a-z0-9_]*$ ]] || die "ATTESTLOAD_PG_ROLE must be a plain lower-case identifier, got '$role'"
[[ "$password" =~ ^[A-Za-z0-9_.~-]+$ ]] || die "ATTESTLOAD_PG_PASSWORD may only use URL-safe characters [A-Za-z0-9_.~-]"

command -v pg_lsclusters >/dev/null 2>&1 ||
	die "pg_lsclusters not found: install PostgreSQL (Debian/Ubuntu: apt-get install postgresql)"

# Commands that must run as root (cluster control) or as the postgres OS user (peer-authenticated superuser).
as_root() {
	if [[ "$(id -u)" -eq 0 ]]; then "$@"
	elif command -v sudo >/dev/null 2>&1; then sudo -n "$@" || die "need root for '$1' (sudo -n failed)"
	else die "need root for '$1' and sudo is not available"
	fi
}
as_postgres() {
	if [[ "$(id -un)" == postgres ]]; then "$@"
	elif [[ "$(id -u)" -eq 0 ]]; then
		if command -v runuser >/dev/null 2>&1; then runuser -u postgres -- "$@"
		else su postgres -s /bin/sh -c "$(printf '%q ' "$@")"
		fi
	elif command -v sudo >/dev/null 2>&1; then sudo -n -u postgres "$@" || die "cannot run '$1' as postgres (sudo -n failed)"
	else die "need to run '$1' as the postgres user and sudo is not available"
	fi
}

# pg_lsclusters columns: Ver Cluster Port Status Owner Datadir Logfile
line=""
if [[ -n "${PG_VERSION:-}" || -n "${PG_CLUSTER:-}" ]]; then
	line="$(pg_lsclusters --no-header | awk -v v="${PG_VERSION:-}" -v c="${PG_CLUSTER:-main}" \
		'(v == "" || $1 == v) && $2 == c { print; exit }')"
else
	line="$(pg_lsclusters --no-header | head -n 1)"
fi
[[ -n "$line" ]] || die "no PostgreSQL cluster found (pg_lsclusters is empty; create one with pg_createcluster)"
read -r version cluster port status _ <<<"$line"

if [[ "$status" != online* ]]; then
	say "starting cluster $version/$cluster on port $port"
	# A concurrent caller may have started it between our check and now; pg_ctlcluster then fails with
	# "already running", which is fine as long as the server answers below.
	# Its stdout goes to stderr: it prints "Removed stale pid file." after an unclean shutdown, which would corrupt
	# the URL our caller captures from our stdout.
	as_root pg_ctlcluster "$version" "$cluster" start >&2 || say "pg_ctlcluster start returned non-zero; checking whether it is up anyway"
fi

ready=""
for _ in $(seq 1 "$((wait_seconds * 2))"); do
	if pg_isready -q -h 127.0.0.1 -p "$port" -t 1; then ready=1; break; fi
	sleep 0.5
done
[[ -n "$ready" ]] || die "PostgreSQL $version/$cluster is not accepting connections on 127.0.0.1:$port after ${wait_seconds}s (see /var/log/postgresql/postgresql-$version-$cluster.log)"

# Create or update the role. The password goes through a psql variable (:'pw' quotes it as a literal), so it is
# never spliced into SQL by the shell; -X ignores any ~/.psqlrc.
as_postgres psql -X -q -v ON_ERROR_STOP=1 -p "$port" -d postgres -v role="$role" -v pw="$password" >/dev/null <<'SQL'
SELECT NOT EXISTS (SELECT 1 FROM pg_roles WHERE rolname = :'role') AS create_role \gset
\if :create_role
CREATE ROLE :"role" LOGIN CREATEDB PASSWORD :'pw';
\else
ALTER ROLE :"role" LOGIN CREATEDB PASSWORD :'pw';
\endif
SQL

url="postgres://${role}:${password}@127.0.0.1:${port}/postgres?sslmode=disable"
say "PostgreSQL $version/$cluster ready on 127.0.0.1:$port, role '$role' (CREATEDB)"
printf '%s\n' "$url"

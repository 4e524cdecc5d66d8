#!/usr/bin/env bash
# keylime-verifier.sh: run the stock Keylime verifier (push mode, PostgreSQL, loopback) for attestload.
#
#   scripts/keylime-verifier.sh start    install what it needs, configure, start, wait until it listens, print
#                                        what a client needs (idempotent: a running verifier is left as it is)
#   scripts/keylime-verifier.sh env      the same facts as shell assignments: eval "$(scripts/keylime-verifier.sh env)"
#                                        sets ATTESTLOAD_VERIFIER_URL, _CA_FILE, ATTESTLOAD_DATABASE_URL and the
#                                        verdict.admin_* certificate, so a bare `attestload run` targets it
#   scripts/keylime-verifier.sh status   exit 0 and say so when it runs, exit 3 when it does not
#   scripts/keylime-verifier.sh stop     stop exactly the processes start started, drop the database it created
#
# The verifier runs from Keylime's source, unmodified, with Debian's /usr/bin/python3 and Debian's Python
# packages (apt-get installs the missing ones; nothing comes from pip). Environment:
#   ATTESTLOAD_KEYLIME_SRC    a Keylime checkout (the directory holding keylime/ and templates/); default
#                             ../shared/keylime beside the repository. Point it at the Keylime version you run:
#                             git clone https://github.com/keylime/keylime
#   ATTESTLOAD_KEYLIME_STATE  state directory (configuration, certificates, log, pid); default
#                             $XDG_RUNTIME_DIR/attestload-keylime, else /tmp/attestload-keylime-$UID. Outside the
#                             repository, so the clone stays clean.
#   ATTESTLOAD_KEYLIME_DB     name of the database it creates (and drops on stop); default attestload_keylime
#   ATTESTLOAD_KEYLIME_WORKERS verifier worker processes; default 0 (Keylime's: one per core)
#   ATTESTLOAD_TEST_DATABASE_URL  admin URL of the PostgreSQL server; default: what scripts/pg-start.sh prints
#                             (it starts the local cluster when it is down)
# Progress goes to stderr; the facts (start) and assignments (env) go to stdout.
set -euo pipefail

say() { printf 'keylime-verifier: %s\n' "$*" >&2; }
die() { say "error: $*"; exit 1; }

repo="$(cd "$(dirname "${BASH_SOURCE[0]}")/.." && pwd)"
python=/usr/bin/python3
src="${ATTESTLOAD_KEYLIME_SRC:-$repo/../shared/keylime}"
if [[ -n "${ATTESTLOAD_KEYLIME_STATE:-}" ]]; then
	state="$ATTESTLOAD_KEYLIME_STATE"
elif [[ -n "${XDG_RUNTIME_DIR:-}" && -d "${XDG_RUNTIME_DIR}" && -w "${XDG_RUNTIME_DIR}" ]]; then
	state="$XDG_RUNTIME_DIR/attestload-keylime"
else
	state="/tmp/attestload-keylime-$(id -u)"
fi
db_name="${ATTESTLOAD_KEYLIME_DB:-attestload_keylime}"
workers="${ATTESTLOAD_KEYLIME_WORKERS:-0}"
wait_seconds=90

[[ "$db_name" =~ ^[a-z_][a-z0-9_]{0,62}$ ]] || die "ATTESTLOAD_KEYLIME_DB must be a plain lower-case identifier, got '$db_name'"
[[ "$workers" =~ ^[0-9]+$ ]] || die "ATTESTLOAD_KEYLIME_WORKERS must be a whole number, got '$workers'"

# The Debian packages the verifier imports (stock-verifier.md); tpm2-tools because it will not import without
# tpm2_startup, and it runs tpm2_eventlog on UEFI logs; libefivar1 to parse them.
packages=(python3-tornado python3-sqlalchemy python3-alembic python3-psycopg2 python3-cryptography python3-pycurl
	python3-lark python3-pyasn1 python3-pyasn1-modules python3-jinja2 python3-gpg python3-requests python3-yaml
	python3-jsonschema python3-typing-extensions python3-zmq python3-psutil python3-packaging tpm2-tools libefivar1)

install_packages() {
	local missing=() p
	for p in "${packages[@]}"; do
		if [[ "$(dpkg-query -W -f='${db:Status-Status}' "$p" 2>/dev/null)" != installed ]]; then missing+=("$p"); fi
	done
	[[ ${#missing[@]} -eq 0 ]] && return 0
	command -v apt-get >/dev/null || die "missing packages ${missing[*]} and no apt-get: install them by hand (Debian 12 names)"
	local run=()
	if [[ "$(id -u)" -ne 0 ]]; then
		command -v sudo >/dev/null || die "missing packages ${missing[*]}: run as root, or install them: apt-get install ${missing[*]}"
		run=(sudo -n)
	fi
	say "installing ${missing[*]}"
	if ! "${run[@]}" env DEBIAN_FRONTEND=noninteractive apt-get install -y -qq "${missing[@]}" >&2; then
		"${run[@]}" apt-get update -qq >&2
		"${run[@]}" env DEBIAN_FRONTEND=noninteractive apt-get install -y -qq "${missing[@]}" >&2 ||
			die "apt-get install ${missing[*]} failed"
	fi
}

check_src() {
	[[ -f "$src/keylime/cmd/verifier.py" && -d "$src/templates" ]] ||
		die "no Keylime source at '$src' (want keylime/cmd/verifier.py and templates/): set ATTESTLOAD_KEYLIME_SRC to a checkout of https://github.com/keylime/keylime"
	[[ -x "$python" ]] || die "$python not found: the verifier runs with Debian's Python 3 (apt-get install python3)"
}

# pid_alive: the recorded verifier parent still runs (and is still the verifier, not a reused pid).
pid_alive() {
	local pid
	[[ -f "$state/pid" ]] || return 1
	pid="$(<"$state/pid")"
	[[ "$pid" =~ ^[0-9]+$ ]] || return 1
	[[ -r "/proc/$pid/cmdline" ]] || return 1
	tr '\0' ' ' <"/proc/$pid/cmdline" | grep -q 'keylime\.cmd\.verifier' || return 1
	[[ "$(readlink "/proc/$pid/cwd" 2>/dev/null)" == "$state/var" ]] || return 1
	echo "$pid"
}

admin_url() {
	if [[ -n "${ATTESTLOAD_TEST_DATABASE_URL:-}" ]]; then
		printf '%s\n' "$ATTESTLOAD_TEST_DATABASE_URL"
	else
		"$repo/scripts/pg-start.sh"
	fi
}

# db_url_for NAME: the admin URL with its database (path) replaced and the query string dropped.
db_url_for() {
	local admin="$1" name="$2" base
	base="${admin%%\?*}"
	base="${base%/*}"
	printf '%s/%s\n' "$base" "$name"
}

free_port() {
	"$python" -c 'import socket
s = socket.socket()
s.bind(("127.0.0.1", 0))
print(s.getsockname()[1])
s.close()'
}

# set_option FILE OPTION VALUE: replace "OPTION = ..." in the [verifier] section (every template option is there).
set_option() {
	local file="$1" opt="$2" val="$3"
	grep -q "^$opt = " "$file" || die "option '$opt' not in $file: the Keylime templates at '$src' differ from the ones this script knows"
	OPT="$opt" VAL="$val" "$python" - "$file" <<'PY'
import os, re, sys
path = sys.argv[1]
opt, val = os.environ["OPT"], os.environ["VAL"]
text = open(path).read()
section = text.index("[verifier]")
end = text.find("\n[", section + 1)
end = len(text) if end < 0 else end
body = re.sub(r"(?m)^" + re.escape(opt) + r" = .*$", lambda m: opt + " = " + val, text[section:end], count=1)
open(path, "w").write(text[:section] + body + text[end:])
PY
}

print_facts() {
	# shellcheck disable=SC1091
	source "$state/facts"
	cat <<EOF
Keylime verifier running (pid $KL_PID, source $KL_SRC)
  URL:         $KL_URL
  CA file:     $KL_CA
  admin cert:  $KL_ADMIN_CERT
  admin key:   $KL_ADMIN_KEY
  database:    $KL_DB_URL
  log:         $KL_LOG
Run attestload against it:  eval "\$(scripts/keylime-verifier.sh env)"; attestload run
Stop it:                    scripts/keylime-verifier.sh stop
EOF
}

cmd_start() {
	check_src
	if pid="$(pid_alive)"; then
		say "already running (pid $pid)"
		print_facts
		return 0
	fi
	install_packages
	command -v tpm2_startup >/dev/null || die "tpm2_startup not on PATH after installing tpm2-tools"
	command -v psql >/dev/null || die "psql not found: it comes with PostgreSQL (Debian: apt-get install postgresql-client-15)"

	local admin db_url port
	admin="$(admin_url)"
	db_url="$(db_url_for "$admin" "$db_name")"
	port="$(free_port)"

	rm -rf "$state"
	mkdir -p "$state/conf" "$state/var"
	chmod 700 "$state"
	local conf="$state/conf" var="$state/var" log="$state/verifier.log"

	# A fresh database each start: rows of an earlier run would be the verifier's state too.
	PGOPTIONS='-c client_min_messages=warning' psql -X -q -v ON_ERROR_STOP=1 "$admin" -c "DROP DATABASE IF EXISTS \"$db_name\" WITH (FORCE)" \
		-c "CREATE DATABASE \"$db_name\"" >&2 || die "cannot create database $db_name (admin URL from ATTESTLOAD_TEST_DATABASE_URL or scripts/pg-start.sh)"

	PYTHONPATH="$src" "$python" -m keylime.cmd.convert_config --defaults --templates "$src/templates" --out "$conf" \
		>"$state/convert_config.log" 2>&1 || { cat "$state/convert_config.log" >&2; die "convert_config failed"; }
	local vc="$conf/verifier.conf"
	set_option "$vc" mode push
	set_option "$vc" ip 127.0.0.1
	set_option "$vc" port "$port"
	set_option "$vc" database_url "postgresql://${db_url#*://}"
	set_option "$vc" tls_dir generate
	set_option "$vc" num_workers "$workers"

	# setsid: the verifier gets its own session and process group, so stop can end exactly what started here.
	(
		cd "$var"
		exec env -u PYTHONHOME KEYLIME_DIR="$var" KEYLIME_VERIFIER_CONFIG="$vc" \
			KEYLIME_LOGGING_CONFIG="$conf/logging.conf" KEYLIME_CA_CONFIG="$conf/ca.conf" PYTHONPATH="$src" \
			setsid "$python" -m keylime.cmd.verifier >>"$log" 2>&1 </dev/null
	) &
	local pid=$!
	echo "$pid" >"$state/pid"
	cat >"$state/facts" <<EOF
KL_PID=$pid
KL_SRC='$src'
KL_URL=https://127.0.0.1:$port
KL_CA='$var/cv_ca/cacert.crt'
KL_ADMIN_CERT='$var/cv_ca/client-cert.crt'
KL_ADMIN_KEY='$var/cv_ca/client-private.pem'
KL_DB_URL='$db_url'
KL_DB_NAME=$db_name
KL_ADMIN_URL='$admin'
KL_LOG='$log'
EOF
	chmod 600 "$state/facts"

	say "started pid $pid on 127.0.0.1:$port, waiting until it listens (log $log)"
	local i
	for ((i = 0; i < wait_seconds * 5; i++)); do
		if grep -q "Listening on 127.0.0.1:$port" "$log" 2>/dev/null; then
			print_facts
			return 0
		fi
		if ! kill -0 "$pid" 2>/dev/null; then
			tail -30 "$log" >&2 || true
			die "the verifier exited before listening (log above, full log $log)"
		fi
		sleep 0.2
	done
	tail -30 "$log" >&2 || true
	stop_processes
	die "the verifier did not listen on 127.0.0.1:$port within ${wait_seconds}s (log $log)"
}

# stop_processes: SIGTERM to the parent's direct children (the parent ignores SIGTERM and exits once its workers
# are gone), then, if anything of its process group is left after a grace period, SIGKILL to that group only.
stop_processes() {
	local pid
	pid="$(pid_alive)" || return 0
	local kids
	kids="$(cat "/proc/$pid/task/"*/children 2>/dev/null || true)"
	[[ -n "$kids" ]] && kill -TERM $kids 2>/dev/null || true
	local i
	for ((i = 0; i < 100; i++)); do
		kill -0 "$pid" 2>/dev/null || break
		sleep 0.1
	done
	if kill -0 "$pid" 2>/dev/null || pgrep -g "$pid" >/dev/null 2>&1; then
		say "the verifier did not exit within 10s of SIGTERM to its workers: SIGKILL to its process group $pid"
		kill -KILL -- "-$pid" 2>/dev/null || true
	fi
	for ((i = 0; i < 50; i++)); do
		pgrep -g "$pid" >/dev/null 2>&1 || break
		sleep 0.1
	done
}

cmd_stop() {
	if [[ ! -f "$state/facts" ]]; then
		say "not running (no state in $state)"
		return 0
	fi
	# shellcheck disable=SC1091
	source "$state/facts"
	stop_processes
	say "stopped pid $KL_PID"
	PGOPTIONS='-c client_min_messages=warning' psql -X -q "$KL_ADMIN_URL" -c "DROP DATABASE IF EXISTS \"$KL_DB_NAME\" WITH (FORCE)" >&2 ||
		say "could not drop database $KL_DB_NAME"
	rm -f "$state/pid" "$state/facts"
}

cmd_status() {
	local pid
	if pid="$(pid_alive)"; then
		print_facts
		return 0
	fi
	echo "Keylime verifier not running (state $state)"
	return 3
}

cmd_env() {
	pid_alive >/dev/null || die "not running: scripts/keylime-verifier.sh start"
	# shellcheck disable=SC1091
	source "$state/facts"
	printf 'export ATTESTLOAD_VERIFIER_URL=%q\n' "$KL_URL"
	printf 'export ATTESTLOAD_VERIFIER_CA_FILE=%q\n' "$KL_CA"
	printf 'export ATTESTLOAD_DATABASE_URL=%q\n' "$KL_DB_URL"
	printf 'export ATTESTLOAD_VERDICT_ADMIN_CERT_FILE=%q\n' "$KL_ADMIN_CERT"
	printf 'export ATTESTLOAD_VERDICT_ADMIN_KEY_FILE=%q\n' "$KL_ADMIN_KEY"
	printf 'export ATTESTLOAD_KEYLIME_LOG=%q\n' "$KL_LOG"
	printf 'export ATTESTLOAD_KEYLIME_PID=%q\n' "$KL_PID"
}

case "${1:-}" in
start) cmd_start ;;
stop) cmd_stop ;;
status) cmd_status ;;
env) cmd_env ;;
*)
	echo "usage: $0 start|stop|status|env" >&2
	exit 2
	;;
esac

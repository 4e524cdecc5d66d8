#!/usr/bin/env bash
# html-check.sh REPORT.html [SCREENSHOT.png]
#
# Opens a report page in headless Chromium with networking off, fails when the page logs a console error or
# tries to fetch anything, and writes a screenshot (default: REPORT.png) so a person can see the charts.
# Installs Debian's chromium with apt-get when it is missing and HTML_CHECK_INSTALL=1 (CI sets it).
set -euo pipefail

page=${1:?usage: html-check.sh REPORT.html [SCREENSHOT.png]}
shot=${2:-${page%.html}.png}
[ -f "$page" ] || { echo "html-check: no such file: $page" >&2; exit 2; }

browser=$(command -v chromium || command -v chromium-browser || true)
if [ -z "$browser" ] && [ "${HTML_CHECK_INSTALL:-0}" = 1 ]; then
  apt-get update -qq && DEBIAN_FRONTEND=noninteractive apt-get install -y -qq chromium >/dev/null
  browser=$(command -v chromium)
fi
[ -n "$browser" ] || { echo "html-check: chromium is not installed" >&2; exit 77; }

tmp=$(mktemp -d)
trap 'rm -rf "$tmp"' EXIT
url="file://$(cd "$(dirname "$page")" && pwd)/$(basename "$page")"
flags=(--headless --no-sandbox --disable-gpu --disable-background-networking --disable-component-update
  --disable-sync --no-first-run --disable-default-apps --disable-extensions --user-data-dir="$tmp/profile"
  --enable-logging=stderr --v=0 --hide-scrollbars
  # Any request leaving the file itself resolves to nowhere, so a stray fetch shows up as a console error.
  --host-resolver-rules="MAP * ~NOTFOUND" --proxy-server="127.0.0.1:9")

# 1. The DOM after load; the console goes to stderr with --enable-logging.
timeout 60 "$browser" "${flags[@]}" --dump-dom "$url" >"$tmp/dom.html" 2>"$tmp/console.log" || {
  echo "html-check: chromium failed to load the page" >&2; cat "$tmp/console.log" >&2; exit 1; }
# 2. The screenshot.
timeout 60 "$browser" "${flags[@]}" --window-size=1400,1800 --screenshot="$shot" "$url" \
  >/dev/null 2>>"$tmp/console.log" || { echo "html-check: screenshot failed" >&2; exit 1; }

status=0
# A self-contained page references nothing outside itself (the SVG namespace URI is a name, not a fetch).
if grep -Eo '(src|href|url)(=|\()["'"'"']?(https?:)?//[^"'"'"' )]*' "$page" >"$tmp/external.log"; then
  echo "html-check: the page references external resources:" >&2
  cat "$tmp/external.log" >&2
  status=1
fi
if grep -E 'CONSOLE|Uncaught|ERR_|Failed to load resource' "$tmp/console.log" >"$tmp/errors.log"; then
  echo "html-check: the page logged errors or tried to fetch something:" >&2
  cat "$tmp/errors.log" >&2
  status=1
fi
svgs=$(grep -o '<svg' "$tmp/dom.html" | wc -l)
if [ "$svgs" -lt 4 ]; then
  echo "html-check: expected 4 charts in the rendered page, found $svgs" >&2
  status=1
fi
[ -s "$shot" ] || { echo "html-check: no screenshot written" >&2; status=1; }
[ "$status" = 0 ] && echo "html-check: ok ($svgs charts, screenshot $shot)"
exit "$status"

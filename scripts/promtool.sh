#!/usr/bin/env bash
# promtool from Debian's prometheus package, unpacked into .cache/prometheus (nothing installed,
# no service started), then run with the given arguments:
#   scripts/promtool.sh check rules docs/alerts/pool-alerts.yml
# Without arguments: check the alert rules and run their unit tests (scripts/docs.sh does).
set -euo pipefail
cd "$(dirname "$0")/.."
dir=.cache/prometheus
bin="$dir/usr/bin/promtool"
if [ ! -x "$bin" ]; then
	tmp="$(mktemp -d)"
	trap 'rm -rf "$tmp"' EXIT
	(cd "$tmp" && apt-get download prometheus >/dev/null 2>&1) ||
		{ echo "promtool: apt-get download prometheus failed: check access to Debian's archive" >&2; exit 1; }
	rm -rf "$dir.new"
	dpkg-deb -x "$tmp"/prometheus_*.deb "$dir.new"
	rm -rf "$dir"
	mv "$dir.new" "$dir"
fi
if [ $# -eq 0 ]; then
	"$bin" check rules docs/alerts/pool-alerts.yml
	exec "$bin" test rules docs/alerts/pool-alerts.test.yml
fi
exec "$bin" "$@"

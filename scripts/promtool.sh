#!/usr/bin/env bash
# promtool from Debian's prometheus package, unpacked into .cache/prometheus (nothing installed,
# no service started), then run with the given arguments:
#   scripts/promtool.sh check rules docs/alerts/pool-alerts.yml
# Without arguments (scripts/docs.sh): check the alert rules, run their unit tests, and check that
# every query of the Grafana dashboard (docs/grafana) is valid PromQL (as recording rules).
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
	rm -rf "$tmp"
	trap - EXIT
fi
if [ $# -eq 0 ]; then
	"$bin" check rules docs/alerts/pool-alerts.yml
	"$bin" test rules docs/alerts/pool-alerts.test.yml
	queries="$(mktemp --suffix=.yml)"
	trap 'rm -f "$queries"' EXIT
	python3 - docs/grafana/pool-dashboard.json >"$queries" <<'PY'
import json, sys
panels = json.load(open(sys.argv[1]))["panels"]
rules = [{"record": f"dashboard:panel_{p['id']}:{t['refId']}", "expr": t["expr"]} for p in panels for t in p["targets"]]
if not rules:
    sys.exit("promtool: the dashboard has no queries")
print(json.dumps({"groups": [{"name": "dashboard", "rules": rules}]}))
PY
	echo "Dashboard queries (docs/grafana/pool-dashboard.json):"
	exec "$bin" check rules "$queries"
fi
exec "$bin" "$@"

#!/usr/bin/env bash
# Every molecule scenario on one shared lab: `molecule test --all` with shared_state
# (.config/molecule/config.yml). The default scenario creates the lab and converges it once,
# checks idempotence once, and verifies; then every other scenario runs its verify (and its own
# cleanup) on the same lab, in name order; the lab is destroyed once at the end, also on failure.
# The full log goes to $POOL_MOLECULE_LOG_DIR/all.log, split per scenario into <name>.log; on a
# failure, what failed is repeated at the tail, where a CI log shows it.
set -euo pipefail

cd "$(dirname "$0")/.."
if ! find molecule -mindepth 2 -maxdepth 2 -name molecule.yml | grep -q .; then
	echo "molecule-all: no scenarios under molecule/" >&2
	exit 1
fi

logs="${POOL_MOLECULE_LOG_DIR:-.cache/molecule-logs}"
mkdir -p "$logs"
rm -f "$logs"/*.log
all="$logs/all.log"

# Molecule prefixes lines with colours: strip them for the files and the summary.
plain() { sed -E 's/\x1b\[[0-9;]*m//g' "$1"; }

# Seconds since the start before every line, so that the log times each step.
stamp() { python3 -u -c 'import sys, time
t0 = time.monotonic()
for line in sys.stdin:
    sys.stdout.write(f"{time.monotonic() - t0:6.0f} {line}")'; }

# One file per scenario: a line belongs to the scenario named in the last "NAME ➜ step:" line.
split_logs() {
	plain "$all" | awk -v dir="$logs" '
		match($0, /^[[:space:]]*[0-9]+ (INFO|WARNING|ERROR|CRITICAL)[[:space:]]+[A-Za-z0-9_-]+ ➜ /) {
			name = substr($0, RSTART, RLENGTH)
			sub(/ ➜ $/, "", name)
			sub(/.*[[:space:]]/, "", name)
		}
		name != "" { print > (dir "/" name ".log") }
	'
}

failure_summary() {
	echo "molecule-all: what failed (from $all):" >&2
	plain "$all" | sed -E 's/^[[:space:]]*([0-9:.]+[[:space:]]+)?(│[[:space:]]?)?([0-9:.]+[[:space:]]+)?//' |
		grep -aE '^(FAILED|ERROR) |^E  |^fatal: |^failed: |"msg": |➜ [a-z_]+: Executed: Failed' | tail -n 40 | cut -c1-700 >&2 || true
}

# shellcheck source=scripts/molecule-env.sh
source scripts/molecule-env.sh

start=$SECONDS
echo "molecule-all: molecule test --all on one shared lab (full log: $all)"
steps() {
	echo "molecule-all: seconds since the start at each scenario step:"
	plain "$all" | grep -aE '^[[:space:]]*[0-9]+ (INFO|ERROR)[[:space:]]+[a-z0-9_-]+ ➜ [a-z_]+: (Executing|Executed)' || true
}
# The slowest test phases of every verify (pytest's --durations), where a CI log's tail shows
# where the lab's minutes go.
slowest() {
	echo "molecule-all: the 25 slowest test phases (seconds, phase, test):"
	plain "$all" | grep -aoE '[0-9]+\.[0-9]+s (call|setup|teardown) +[^ ]+' | sort -rn | head -n 25 || true
}
if molecule test --all --exclude vagrant 2>&1 | stamp | tee "$all"; then
	split_logs
	steps
	slowest
	echo "molecule-all: every scenario passed in $((SECONDS - start)) s"
else
	rc=${PIPESTATUS[0]}
	split_logs
	steps
	slowest
	failure_summary
	echo "molecule-all: FAILED (exit $rc) after $((SECONDS - start)) s; per-scenario logs in $logs/" >&2
	exit "$rc"
fi
